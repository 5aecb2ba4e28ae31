-- Version 3 (PostgreSQL only): lane leases replace version 2's per-task
-- claims. A lane is one (person, target) pair; the replica holding a lane's
-- live lease is the only one that runs, supersedes or retries that lane's
-- tasks, so per-person order is decided in one place, exactly as in a single
-- coordinator. SQLite serves one coordinator process and has no counterpart.
ALTER TABLE tasks DROP COLUMN claimed_by;
ALTER TABLE tasks DROP COLUMN lease_expires_at;

-- One row per lane that ever had a task (created with the event's tasks).
-- claimed_by is NULL when free; a lease whose lease_expires_at (Unix ms)
-- has passed may be taken over by any replica.
CREATE TABLE lanes (
    person_id         TEXT   NOT NULL,
    target_id         TEXT   NOT NULL,
    claimed_by        TEXT,
    lease_expires_at  BIGINT,
    PRIMARY KEY (person_id, target_id)
);
CREATE INDEX lanes_by_holder ON lanes (claimed_by) WHERE claimed_by IS NOT NULL;
INSERT INTO lanes (person_id, target_id)
    SELECT DISTINCT person_id, target_id FROM tasks
    ON CONFLICT DO NOTHING;

-- Per-schedule runs (reconciliation `every:`): the first replica to start a
-- period's run records it; the others skip that period.
CREATE TABLE schedule_runs (
    name             TEXT   PRIMARY KEY,
    last_started_at  BIGINT NOT NULL,
    started_by       TEXT   NOT NULL
);
