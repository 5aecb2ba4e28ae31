-- Version 2 (PostgreSQL only): task claims for several coordinator replicas.
-- A replica claims a task by writing its id and a lease expiry; another
-- replica may take the task over only after the lease has expired. SQLite
-- serves one coordinator process, which needs no claims, so it has no
-- counterpart migration.
ALTER TABLE tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at BIGINT;

-- The unfinished tasks of each (person, target) lane in order: the claim
-- query reads the head of every lane from it.
CREATE INDEX tasks_unfinished_lanes ON tasks (person_id, target_id, effective_at, event_seq)
    WHERE state NOT IN ('verified', 'failed', 'superseded');
