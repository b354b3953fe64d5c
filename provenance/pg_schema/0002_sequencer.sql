-- Schema 2: sequencing apart from integration ("many writers, one sequence").
--
-- A writer takes its seqs under this row's lock (SELECT ... FOR UPDATE), writes the entries and
-- the new next_seq, and commits: the events are durable and acknowledged. One integrator (the
-- holder of the store's advisory lock) extends the tree behind the writers, under the tree row's
-- lock, and moves tree.size. Entries in [tree.size, next_seq) are acknowledged but not yet in the
-- tree; readers of the tree (scans, proofs, traces) see only [0, tree.size).
--
-- A schema-1 store integrated every append in its own transaction, so its sequence ends where its
-- tree does: the sequencer starts after the last entry.
CREATE TABLE sequencer (id integer PRIMARY KEY CHECK (id = 1), next_seq bigint NOT NULL);
INSERT INTO sequencer SELECT 1, coalesce(max(seq) + 1, 0) FROM entries;

-- The citizen index leaves the writers' path. An index on entries is maintained by every insert,
-- inside the section all writers queue for, and its inserts land at random places (by citizen):
-- it cost about as much as the rest of the row. The integrator writes this table instead, with
-- the tree, in entry order; traces read only integrated entries anyway. Still led by the segment
-- (seq >> 18), so its inserts stay in the current segment's subtree.
CREATE TABLE citizens (
    segment     integer NOT NULL,
    citizen_key bigint  NOT NULL,
    seq         bigint  NOT NULL,
    PRIMARY KEY (segment, citizen_key, seq)
);
INSERT INTO citizens SELECT seq >> 18, citizen_key, seq FROM entries WHERE citizen_key IS NOT NULL ORDER BY seq;
DROP INDEX entries_citizen_seg;
