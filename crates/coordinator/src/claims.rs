//! Lane leases, for several coordinator replicas on one PostgreSQL database.
//!
//! A *lane* is one (person, target) pair: the unit in which the engine
//! orders, supersedes and retries tasks (see [`crate::engine`]). Each lane
//! has a row in `lanes`, created free with its first task. A replica runs a
//! lane's tasks only while it holds the lane's lease (`claimed_by` = the
//! replica, `lease_expires_at` in the future), so everything the engine
//! decides for one person on one target is decided in one place, exactly as
//! in a single coordinator:
//!
//! - **one holder at a time**: claims lock the lane rows they take with
//!   `FOR UPDATE SKIP LOCKED`, so two replicas claiming at once take
//!   disjoint lanes, and a lane with a live lease of another replica is never
//!   taken ([`LaneLeases::claim_free`], [`LaneLeases::claim_lanes`]);
//! - **per-person order across replicas**: the holder schedules a lane from
//!   its stored tasks and the lane's *watermark* (the latest task ever
//!   dispatched in it, [`LaneLeases::lane_state`]), so a stale event never
//!   applies after a newer one, whichever replica dispatched the newer one;
//! - **takeover**: a holder renews its leases well within the lease period
//!   ([`LaneLeases::renew`]); a replica that dies stops renewing, and once
//!   its leases expire the others claim its lanes and resume the tasks from
//!   their stored state (a task stored as dispatched is dispatched again
//!   with the same command id, which the connector's ledger makes
//!   idempotent);
//! - **fencing**: every task write of a holder carries its replica name
//!   ([`crate::store::Store::save_held_task`]) and is committed only while
//!   its lease is live (`FOR SHARE` on the lane rows in the write's
//!   transaction, taken in (person, target) order like renewals, so the two
//!   never deadlock), so a replica that stalled past its lease cannot
//!   overwrite the new holder's progress;
//! - **schedules once**: a periodic job (a reconciliation schedule) runs
//!   in a period only on the replica that first records the period's start
//!   ([`LaneLeases::take_schedule_run`]).
//!
//! - **epochs reach the targets**: every claim that is not the holder
//!   renewing its own live lease bumps the lane's `epoch` (migration 0008),
//!   and every command the holder sends carries it
//!   (`ApplyRequest.lease_epoch`, [`LaneLeases::epoch`]); the connector kit
//!   refuses a command whose epoch is below the highest it has seen for the
//!   account (`connector_kit::fence`), so once the new holder has reached a
//!   connector, nothing the stale holder sends (a retry, a call it had
//!   queued) lands on the target.
//!
//! What the fences cannot stop: a call the stale holder sent before the new
//! holder's first command reached that connector. It carries the same
//! command id and desired state the new holder then sends (ids derive from
//! event, target and state), so it repeats nothing harmful, and the
//! connector runs one command per account at a time, so it finishes before
//! the new holder's starts. The lease (default 10 s, renewed every lease/5)
//! must stay well above a stall the platform allows; a replica that cannot
//! renew stops dispatching the lane's tasks as soon as it learns it lost
//! the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::store::{StoreError, TaskRecord, TaskState};

/// A (person, target) lane.
pub type Lane = (String, String);

/// What a replica needs to take a lane over: its unfinished tasks and its
/// watermark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneState {
    /// Unfinished tasks of the claimed lanes, in event order.
    pub tasks: Vec<TaskRecord>,
    /// Per lane, (effective_at, event_seq) of the latest task ever dispatched.
    pub watermarks: Vec<(Lane, (i64, i64))>,
}

/// One replica's handle on the shared lane leases.
#[derive(Clone)]
pub struct LaneLeases {
    pool: PgPool,
    replica: String,
    lease: Duration,
    /// The epoch of each lane as this replica last claimed it.
    epochs: Arc<Mutex<HashMap<Lane, u64>>>,
}

impl std::fmt::Debug for LaneLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneLeases").field("replica", &self.replica).field("lease", &self.lease).finish()
    }
}

const UNFINISHED: &str = "('planned', 'awaiting_approval', 'dispatched', 'acknowledged', 'awaiting_fulfilment')";

fn lanes_of(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Lane>, StoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get("person_id")?, row.try_get("target_id")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

fn split(lanes: &[Lane]) -> (Vec<&str>, Vec<&str>) {
    lanes.iter().map(|(person, target)| (person.as_str(), target.as_str())).unzip()
}

impl LaneLeases {
    /// A handle for the replica named `replica` (unique per process, e.g.
    /// the pod name plus a random suffix), with leases of `lease`.
    pub fn new(pool: PgPool, replica: impl Into<String>, lease: Duration) -> Self {
        Self { pool, replica: replica.into(), lease, epochs: Arc::default() }
    }

    /// The lease epoch under which this replica holds `lane`, as its last
    /// claim of it returned; `None` when it never claimed it. Sent with every
    /// command for the lane (`ApplyRequest.lease_epoch`).
    pub fn epoch(&self, lane: &Lane) -> Option<u64> {
        self.epochs.lock().ok()?.get(lane).copied()
    }

    /// Records the epochs of lanes a claim returned.
    fn claimed(&self, rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Lane>, StoreError> {
        let lanes = lanes_of(rows)?;
        let epochs = rows
            .iter()
            .map(|row| row.try_get::<i64, _>("epoch").map(|epoch| u64::try_from(epoch).unwrap_or(0)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mut known = self.epochs.lock().map_err(|_| StoreError::Corrupt {
            what: "lanes.epoch",
            message: "the epoch table of this replica is poisoned".into(),
        })?;
        for (lane, epoch) in lanes.iter().zip(epochs) {
            known.insert(lane.clone(), epoch);
        }
        Ok(lanes)
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The lease period.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lease_end(&self, now: i64) -> i64 {
        now.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX))
    }

    /// Claims up to `limit` free lanes (never claimed, released, or with an
    /// expired lease) that have unfinished tasks, at `now` (Unix ms): lanes
    /// holding an urgent leaver first, then the oldest work first.
    pub async fn claim_free(&self, now: i64, limit: u32) -> Result<Vec<Lane>, StoreError> {
        let query = format!(
            "WITH pending AS (
                SELECT person_id, target_id, bool_or(urgent) AS urgent, min(event_seq) AS first_seq
                FROM tasks WHERE state IN {UNFINISHED} GROUP BY person_id, target_id
            ), free AS (
                SELECT l.person_id, l.target_id FROM lanes l
                JOIN pending p ON p.person_id = l.person_id AND p.target_id = l.target_id
                WHERE l.claimed_by IS NULL OR l.lease_expires_at < $2
                ORDER BY p.urgent DESC, p.first_seq
                LIMIT $4
                FOR UPDATE OF l SKIP LOCKED
            )
            UPDATE lanes SET claimed_by = $1, lease_expires_at = $3, epoch = lanes.epoch + 1 FROM free
            WHERE lanes.person_id = free.person_id AND lanes.target_id = free.target_id
            RETURNING lanes.person_id, lanes.target_id, lanes.epoch"
        );
        let rows = sqlx::query(&query)
            .bind(&self.replica)
            .bind(now)
            .bind(self.lease_end(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        self.claimed(&rows)
    }

    /// Claims the given lanes where they are free (or already this
    /// replica's, whose lease is then renewed); returns the lanes this
    /// replica now holds. A lane another replica holds with a live lease,
    /// or that another replica is claiming right now, is left out.
    pub async fn claim_lanes(&self, lanes: &[Lane], now: i64) -> Result<Vec<Lane>, StoreError> {
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        let (people, targets) = split(lanes);
        let rows = sqlx::query(
            "WITH wanted AS (
                SELECT l.person_id, l.target_id FROM lanes l
                JOIN unnest($4::text[], $5::text[]) AS w(person_id, target_id)
                  ON w.person_id = l.person_id AND w.target_id = l.target_id
                WHERE l.claimed_by IS NULL OR l.claimed_by = $1 OR l.lease_expires_at < $2
                FOR UPDATE OF l SKIP LOCKED
            )
            UPDATE lanes SET claimed_by = $1, lease_expires_at = $3,
              epoch = CASE WHEN lanes.claimed_by = $1 AND lanes.lease_expires_at >= $2
                           THEN lanes.epoch ELSE lanes.epoch + 1 END
            FROM wanted
            WHERE lanes.person_id = wanted.person_id AND lanes.target_id = wanted.target_id
            RETURNING lanes.person_id, lanes.target_id, lanes.epoch",
        )
        .bind(&self.replica)
        .bind(now)
        .bind(self.lease_end(now))
        .bind(&people)
        .bind(&targets)
        .fetch_all(&self.pool)
        .await?;
        self.claimed(&rows)
    }

    /// Renews this replica's live leases on `lanes` (the lanes it still has
    /// work in); returns the ones it still holds. A lane left out was lost:
    /// its lease expired and it may have been taken over. Leases on lanes
    /// not listed are left to expire.
    pub async fn renew(&self, lanes: &[Lane], now: i64) -> Result<Vec<Lane>, StoreError> {
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        let (people, targets) = split(lanes);
        // Rows locked in (person, target) order, as the store's fenced
        // writes lock them, so a renewal and a write never deadlock.
        let rows = sqlx::query(
            "WITH mine AS (
                SELECT l.person_id, l.target_id FROM lanes l
                JOIN unnest($4::text[], $5::text[]) AS w(person_id, target_id)
                  ON w.person_id = l.person_id AND w.target_id = l.target_id
                WHERE l.claimed_by = $1 AND l.lease_expires_at >= $2
                ORDER BY l.person_id, l.target_id
                FOR UPDATE OF l
            )
            UPDATE lanes SET lease_expires_at = $3 FROM mine
            WHERE lanes.person_id = mine.person_id AND lanes.target_id = mine.target_id
            RETURNING lanes.person_id, lanes.target_id",
        )
        .bind(&self.replica)
        .bind(now)
        .bind(self.lease_end(now))
        .bind(&people)
        .bind(&targets)
        .fetch_all(&self.pool)
        .await?;
        lanes_of(&rows)
    }

    /// Gives every lease of this replica back (a clean shutdown), so the
    /// other replicas take the lanes over at once rather than after expiry.
    pub async fn release_all(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE lanes SET claimed_by = NULL, lease_expires_at = NULL WHERE claimed_by = $1")
            .bind(&self.replica)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The unfinished tasks and watermarks of `lanes`, to take them over.
    pub async fn lane_state(&self, lanes: &[Lane]) -> Result<LaneState, StoreError> {
        if lanes.is_empty() {
            return Ok(LaneState::default());
        }
        let (people, targets) = split(lanes);
        let query = format!(
            "SELECT t.* FROM tasks t JOIN unnest($1::text[], $2::text[]) AS w(person_id, target_id)
               ON w.person_id = t.person_id AND w.target_id = t.target_id
             WHERE t.state IN {UNFINISHED} ORDER BY t.event_seq, t.target_id"
        );
        let rows = sqlx::query(&query).bind(&people).bind(&targets).fetch_all(&self.pool).await?;
        let tasks = rows.iter().map(crate::store::rows::task_from_row).collect::<Result<Vec<_>, _>>()?;
        let rows = sqlx::query(
            "SELECT DISTINCT ON (t.person_id, t.target_id) t.person_id, t.target_id, t.effective_at, t.event_seq
             FROM tasks t JOIN unnest($1::text[], $2::text[]) AS w(person_id, target_id)
               ON w.person_id = t.person_id AND w.target_id = t.target_id
             WHERE t.dispatched_at IS NOT NULL
             ORDER BY t.person_id, t.target_id, t.effective_at DESC, t.event_seq DESC",
        )
        .bind(&people)
        .bind(&targets)
        .fetch_all(&self.pool)
        .await?;
        let watermarks = rows
            .iter()
            .map(|row| {
                Ok((
                    (row.try_get("person_id")?, row.try_get("target_id")?),
                    (row.try_get("effective_at")?, row.try_get("event_seq")?),
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(LaneState { tasks, watermarks })
    }

    /// The (event, target, state) of every unfinished task in the lanes
    /// this replica holds with a live lease at `now`: how it learns of tasks another replica accepted
    /// into its lanes, and of approvals decided on another replica.
    pub async fn held_task_states(&self, now: i64) -> Result<Vec<(String, String, TaskState)>, StoreError> {
        let query = format!(
            "SELECT t.event_id, t.target_id, t.state FROM tasks t
             JOIN lanes l ON l.person_id = t.person_id AND l.target_id = t.target_id
             WHERE l.claimed_by = $1 AND l.lease_expires_at >= $2 AND t.state IN {UNFINISHED}"
        );
        let rows = sqlx::query(&query).bind(&self.replica).bind(now).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                let state = TaskState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt { what: "tasks.state", message: state.clone() })?;
                Ok((row.try_get("event_id")?, row.try_get("target_id")?, state))
            })
            .collect()
    }

    /// Whole rows of the given (event, target) tasks.
    pub async fn tasks(&self, keys: &[(String, String)]) -> Result<Vec<TaskRecord>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (events, targets) = split(keys);
        let rows = sqlx::query(
            "SELECT t.* FROM tasks t JOIN unnest($1::text[], $2::text[]) AS k(event_id, target_id)
               ON k.event_id = t.event_id AND k.target_id = t.target_id ORDER BY t.event_seq",
        )
        .bind(&events)
        .bind(&targets)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::store::rows::task_from_row).collect()
    }

    /// Whether this replica runs the schedule `name` for the period starting
    /// at `now`: true for the first replica asking since more than half a
    /// period `every` ago, false for the others.
    pub async fn take_schedule_run(&self, name: &str, every: Duration, now: i64) -> Result<bool, StoreError> {
        let half = i64::try_from(every.as_millis() / 2).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "INSERT INTO schedule_runs (name, last_started_at, started_by) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET last_started_at = excluded.last_started_at,
               started_by = excluded.started_by
             WHERE schedule_runs.last_started_at <= $4
             RETURNING name",
        )
        .bind(name)
        .bind(now)
        .bind(&self.replica)
        .bind(now.saturating_sub(half))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}
