-- HR ingestion (crate::ingest): the last record accepted per (source system,
-- person) (space `source_record`) and the batches the mass-change guard holds
-- (space `held_batch`). Values are JSON documents of crate::ingest; every
-- write goes with its audit records in one transaction.
CREATE TABLE ingest_state (
    space       TEXT   NOT NULL,
    key         TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (space, key)
);
