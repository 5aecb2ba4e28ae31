-- Version 9: the account-name index (crate::naming). One row per account name
-- a person's accepted plan gives them on a target (a reservation from the
-- event's acceptance on; the account is then created or linked under it),
-- removed when a deletion of that account is proven. Submit refuses a name
-- that collides with another person's under the target's declared comparison:
-- `name_key` is the name case-folded (for case-insensitive targets),
-- `skeleton_key` its case-folded UTS #39 confusable skeleton (for targets
-- whose names collide by look-alikes).
CREATE TABLE account_names (
    target_id     TEXT   NOT NULL,
    account_name  TEXT   NOT NULL,
    person_id     TEXT   NOT NULL,
    name_key      TEXT   NOT NULL,
    skeleton_key  TEXT   NOT NULL,
    event_id      TEXT   NOT NULL,
    recorded_at   BIGINT NOT NULL,
    PRIMARY KEY (target_id, account_name, person_id)
);
CREATE INDEX account_names_by_name_key ON account_names (target_id, name_key);
CREATE INDEX account_names_by_skeleton ON account_names (target_id, skeleton_key);
