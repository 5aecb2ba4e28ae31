-- The coordinator's schema, version 1 (SQLite). Times are Unix milliseconds;
-- protobuf messages are stored in their canonical encoding; lists and maps as
-- JSON text. Kept portable: the PostgreSQL schema mirrors it type for type.

-- One row per accepted lifecycle event; event_id is the idempotency key.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    kind           TEXT    NOT NULL,
    person_id      TEXT    NOT NULL,
    attributes     TEXT    NOT NULL,
    effective_at   BIGINT  NOT NULL,
    source_system  TEXT    NOT NULL,
    initiator      TEXT    NOT NULL,
    urgent         INTEGER NOT NULL,
    received_at    BIGINT  NOT NULL,
    policy_hash    TEXT    NOT NULL,
    plan           BLOB    NOT NULL,
    plan_hash      TEXT    NOT NULL,
    trace_id       TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    finished_at    BIGINT
);
CREATE INDEX events_by_person ON events (person_id, effective_at);

-- One row per (event, target): the durable unit of propagation.
CREATE TABLE tasks (
    event_id           TEXT    NOT NULL,
    target_id          TEXT    NOT NULL,
    event_seq          BIGINT  NOT NULL,
    person_id          TEXT    NOT NULL,
    effective_at       BIGINT  NOT NULL,
    urgent             INTEGER NOT NULL,
    state              TEXT    NOT NULL,
    planned            BLOB    NOT NULL,
    grants_access      INTEGER NOT NULL,
    command_id         TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at    BIGINT,
    last_error         TEXT    NOT NULL,
    acknowledgement    BLOB,
    read_back          BLOB,
    differences        TEXT    NOT NULL,
    deadline_at        BIGINT  NOT NULL,
    deadline_breached  INTEGER NOT NULL,
    planned_at         BIGINT  NOT NULL,
    dispatched_at      BIGINT,
    acknowledged_at    BIGINT,
    finished_at        BIGINT,
    PRIMARY KEY (event_id, target_id)
);
CREATE INDEX tasks_by_state ON tasks (state);
CREATE INDEX tasks_by_person ON tasks (person_id, target_id);

-- Approval decisions, one per approver per (event, target).
CREATE TABLE approvals (
    event_id   TEXT   NOT NULL,
    target_id  TEXT   NOT NULL,
    approver   TEXT   NOT NULL,
    decision   TEXT   NOT NULL,
    comment    TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (event_id, target_id, approver)
);

-- Each person's latest verified attributes: what reconciliation compares against.
CREATE TABLE identities (
    person_id     TEXT    PRIMARY KEY,
    attributes    TEXT    NOT NULL,
    effective_at  BIGINT  NOT NULL,
    event_id      TEXT    NOT NULL,
    has_left      INTEGER NOT NULL,
    targets       TEXT    NOT NULL,
    updated_at    BIGINT  NOT NULL
);

-- The append-only audit hash chain.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    principal  TEXT   NOT NULL,
    event_id   TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    payload    TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);
CREATE INDEX audit_by_event ON audit (event_id);
