-- Schema 1 of the PostgreSQL ledger store: the layout of the SQLite driver's schema 2, on a server.
-- Runs inside the migration transaction with search_path set to the ledger's own schema.
--
-- entries: seq is the 0-based leaf index, body the event's RFC 8785 bytes, leaf_hash
-- SHA-256(0x00 || body), citizen_key a 64-bit BLAKE2b of the citizen_ref (the body is re-checked
-- on read). The citizen index leads with the segment (seq >> 18, 262,144 events): appends touch
-- only the current segment's small subtree instead of one random leaf page per event across the
-- whole index, and a lookup names the segments it wants (= ANY on the leading column).
CREATE TABLE entries (
    seq         bigint PRIMARY KEY,
    event_id    text   NOT NULL UNIQUE,
    citizen_key bigint,
    time_us     bigint NOT NULL,
    type        text   NOT NULL,
    body        bytea  NOT NULL,
    leaf_hash   bytea  NOT NULL
);
CREATE INDEX entries_citizen_seg ON entries ((seq >> 18), citizen_key, seq) WHERE citizen_key IS NOT NULL;

-- Tree nodes keyed by provenance.store.node_id (ids grow in creation order): the bottom six
-- levels in nodes, the levels above (1/32 of the rows, read by every proof) in upper_nodes.
CREATE TABLE nodes (id bigint PRIMARY KEY, hash bytea NOT NULL);
CREATE TABLE upper_nodes (id bigint PRIMARY KEY, hash bytea NOT NULL);

-- The signed notes; the note is authoritative, size and root are its index.
CREATE TABLE checkpoints (
    size    bigint PRIMARY KEY,
    root    bytea  NOT NULL,
    time_us bigint NOT NULL,
    note    text   NOT NULL
);

-- origin and the first verifier key, written once by the first open.
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

-- The tree's size: entries [0, size) have their nodes. In schema 1 this row was also the
-- sequencer's lock (every append integrated inside its own transaction, under FOR UPDATE here).
CREATE TABLE tree (id integer PRIMARY KEY CHECK (id = 1), size bigint NOT NULL);
INSERT INTO tree VALUES (1, 0);
