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
