//! Task claims with leases, for several coordinator replicas on one
//! PostgreSQL database.
//!
//! A replica asks for work with [`TaskClaims::claim`]: one statement that
//! finds the head of every (person, target) lane (its oldest unfinished task
//! by effective time, then arrival), keeps the heads that are runnable (not
//! awaiting approval, not backing off, and unclaimed or with an expired
//! lease), locks them with `FOR UPDATE SKIP LOCKED` and writes
//! `claimed_by` and `lease_expires_at`. So:
//!
//! - each (event, target) task is held by one replica at a time: two
//!   replicas claiming at once lock disjoint rows (SKIP LOCKED), and a row
//!   claimed by another replica with a live lease is re-checked after the
//!   lock and skipped;
//! - per-person order holds across replicas: only a lane's head is ever
//!   claimable, so a later task of the same person and target cannot start
//!   before the earlier one is finished, whichever replica holds it;
//! - a replica that dies stops renewing ([`TaskClaims::renew`]); once its
//!   leases expire, the same query hands its tasks to another replica, which
//!   resumes them from their stored state (the connector's command-id ledger
//!   makes the repeated `Apply` idempotent).
//!
//! A replica gives a task back with [`TaskClaims::release`] when it has
//! stored the task's new state (terminal, or waiting for a retry).
//!
//! Not yet done: the engine still schedules from its in-memory lanes; wiring
//! it to claim through this module (and fencing a late writer whose lease
//! was taken over) is the next step. See docs/ARCHITECTURE.md.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::store::StoreError;

/// A claimed task's key and lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The event.
    pub event_id: String,
    /// The target.
    pub target_id: String,
    /// The person (the lane is (person, target)).
    pub person_id: String,
    /// The event's arrival order.
    pub event_seq: i64,
    /// When the lease runs out unless renewed (Unix ms).
    pub lease_expires_at: i64,
}

/// One replica's handle on the shared task claims.
#[derive(Clone)]
pub struct TaskClaims {
    pool: PgPool,
    replica: String,
    lease: Duration,
}

impl std::fmt::Debug for TaskClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClaims").field("replica", &self.replica).field("lease", &self.lease).finish()
    }
}

/// The lane-head claim: see the module documentation.
const CLAIM: &str = "\
WITH heads AS (
    SELECT DISTINCT ON (person_id, target_id) event_id, target_id
    FROM tasks
    WHERE state NOT IN ('verified', 'failed', 'superseded')
    ORDER BY person_id, target_id, effective_at, event_seq
), runnable AS (
    SELECT t.event_id, t.target_id
    FROM tasks t JOIN heads h ON t.event_id = h.event_id AND t.target_id = h.target_id
    WHERE t.state NOT IN ('verified', 'failed', 'superseded', 'awaiting_approval')
      AND (t.claimed_by IS NULL OR t.claimed_by = $1 OR t.lease_expires_at < $2)
      AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= $2)
    ORDER BY t.urgent DESC, t.event_seq
    LIMIT $4
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE tasks SET claimed_by = $1, lease_expires_at = $3
FROM runnable r
WHERE tasks.event_id = r.event_id AND tasks.target_id = r.target_id
RETURNING tasks.event_id, tasks.target_id, tasks.person_id, tasks.event_seq, tasks.lease_expires_at";

impl TaskClaims {
    /// A handle for the replica named `replica` (unique per process, e.g.
    /// the pod name plus a random suffix), with leases of `lease`.
    pub fn new(pool: PgPool, replica: impl Into<String>, lease: Duration) -> Self {
        Self { pool, replica: replica.into(), lease }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn lease_end(&self, now: i64) -> i64 {
        now.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX))
    }

    /// Claims up to `limit` runnable lane heads at time `now` (Unix ms),
    /// urgent leavers first, then in arrival order. Tasks this replica
    /// already holds are claimed again (their lease renewed).
    pub async fn claim(&self, now: i64, limit: u32) -> Result<Vec<Claim>, StoreError> {
        let rows = sqlx::query(CLAIM)
            .bind(&self.replica)
            .bind(now)
            .bind(self.lease_end(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claims = rows
            .iter()
            .map(|row| {
                Ok(Claim {
                    event_id: row.try_get("event_id")?,
                    target_id: row.try_get("target_id")?,
                    person_id: row.try_get("person_id")?,
                    event_seq: row.try_get("event_seq")?,
                    lease_expires_at: row.try_get("lease_expires_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claims.sort_by_key(|claim| claim.event_seq);
        Ok(claims)
    }

    /// Extends the leases of every unfinished task this replica holds;
    /// returns how many. A replica calls it well within the lease period.
    pub async fn renew(&self, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE tasks SET lease_expires_at = $2 WHERE claimed_by = $1 AND lease_expires_at >= $3 \
             AND state NOT IN ('verified', 'failed', 'superseded')",
        )
        .bind(&self.replica)
        .bind(self.lease_end(now))
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Gives a task back; false when this replica no longer held it (its
    /// lease expired and another replica took it over).
    pub async fn release(&self, event_id: &str, target_id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE tasks SET claimed_by = NULL, lease_expires_at = NULL \
             WHERE event_id = $1 AND target_id = $2 AND claimed_by = $3",
        )
        .bind(event_id)
        .bind(target_id)
        .bind(&self.replica)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Whether this replica still holds a task with a live lease at `now`:
    /// checked before acting on a task, so a replica whose lease was taken
    /// over stops.
    pub async fn holds(&self, event_id: &str, target_id: &str, now: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS held FROM tasks WHERE event_id = $1 AND target_id = $2 AND claimed_by = $3 \
             AND lease_expires_at >= $4",
        )
        .bind(event_id)
        .bind(target_id)
        .bind(&self.replica)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}
