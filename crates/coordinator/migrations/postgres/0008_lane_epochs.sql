-- Version 8 (PostgreSQL only): lease epochs. Every claim of a lane that is not
-- its holder renewing its own live lease bumps the lane's epoch; commands carry
-- the epoch of the lease they were sent under (ApplyRequest.lease_epoch) and
-- connectors refuse one below the highest epoch they have seen for the account,
-- so a replica whose lease was taken over cannot reach a target. SQLite serves
-- one coordinator process and has no lanes, hence no counterpart.
ALTER TABLE lanes ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
