//! The store's reads, written once for both backends. The SQL uses numbered
//! placeholders (`$1`, `$2`, ...), which SQLite accepts as well as
//! PostgreSQL, and portable spellings (`= TRUE` for flags); where the two
//! dialects really differ the backend says so ([`ReadPool::BYTE_ORDER`]).
//! Rows are decoded by [`super::rows`].

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use sqlx::{PgPool, SqlitePool};

use super::rows::{
    StoredRow, audit_from_row, corrupt, decode, event_from_row, event_kind, identity_from_row, task_from_row,
    task_state,
};
use super::{
    ApprovalRecord, AuditRecord, EventRecord, IdentityRecord, OverdueRecord, PersonContext, StoreError, TaskRecord,
    Watermark,
};
use crate::policy::EventKindName;

/// A value bound to a placeholder.
pub(crate) enum Bind {
    /// TEXT.
    Text(String),
    /// An integer.
    Int(i64),
}

/// A backend's read pool.
pub(crate) trait ReadPool: Sync {
    /// The backend's row.
    type Row: StoredRow + Send;
    /// The collation that orders TEXT by bytes (SQLite's default; PostgreSQL
    /// needs `COLLATE "C"`), for paging in an order both backends share.
    const BYTE_ORDER: &'static str;
    /// Every row of a query.
    fn fetch_all<'a>(&'a self, sql: &'a str, binds: Vec<Bind>) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>>;
}

macro_rules! read_pool {
    ($pool:ty, $row:ty, $byte_order:expr) => {
        impl ReadPool for $pool {
            type Row = $row;
            const BYTE_ORDER: &'static str = $byte_order;
            fn fetch_all<'a>(
                &'a self,
                sql: &'a str,
                binds: Vec<Bind>,
            ) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>> {
                Box::pin(async move {
                    let mut query = sqlx::query(sql);
                    for bind in binds {
                        query = match bind {
                            Bind::Text(text) => query.bind(text),
                            Bind::Int(int) => query.bind(int),
                        };
                    }
                    query.fetch_all(self).await
                })
            }
        }
    };
}

read_pool!(SqlitePool, sqlx::sqlite::SqliteRow, "");
read_pool!(PgPool, sqlx::postgres::PgRow, " COLLATE \"C\"");

const UNFINISHED: &str = "state NOT IN ('verified', 'failed', 'superseded', 'verified_with_residual_risk')";

async fn first<P: ReadPool>(pool: &P, sql: &str, binds: Vec<Bind>) -> Result<Option<P::Row>, StoreError> {
    Ok(pool.fetch_all(sql, binds).await?.into_iter().next())
}

/// One event.
pub(crate) async fn event<P: ReadPool>(pool: &P, event_id: String) -> Result<Option<EventRecord>, StoreError> {
    first(pool, "SELECT * FROM events WHERE event_id = $1", vec![Bind::Text(event_id)])
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
}

/// An event's tasks.
pub(crate) async fn tasks<P: ReadPool>(pool: &P, event_id: String) -> Result<Vec<TaskRecord>, StoreError> {
    let rows = pool
        .fetch_all("SELECT * FROM tasks WHERE event_id = $1 ORDER BY target_id", vec![Bind::Text(event_id)])
        .await?;
    rows.iter().map(task_from_row).collect()
}

/// One task.
pub(crate) async fn task<P: ReadPool>(
    pool: &P,
    event_id: String,
    target_id: String,
) -> Result<Option<TaskRecord>, StoreError> {
    first(
        pool,
        "SELECT * FROM tasks WHERE event_id = $1 AND target_id = $2",
        vec![Bind::Text(event_id), Bind::Text(target_id)],
    )
    .await?
    .as_ref()
    .map(task_from_row)
    .transpose()
}

/// An event's approval decisions.
pub(crate) async fn approvals<P: ReadPool>(pool: &P, event_id: String) -> Result<Vec<ApprovalRecord>, StoreError> {
    let rows = pool
        .fetch_all("SELECT * FROM approvals WHERE event_id = $1 ORDER BY at, approver", vec![Bind::Text(event_id)])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ApprovalRecord {
                event_id: row.text("event_id")?,
                target_id: row.text("target_id")?,
                approver: row.text("approver")?,
                decision: row.text("decision")?,
                comment: row.text("comment")?,
                at: row.int("at")?,
            })
        })
        .collect()
}

/// Every unfinished task.
pub(crate) async fn unfinished_tasks<P: ReadPool>(pool: &P) -> Result<Vec<TaskRecord>, StoreError> {
    let sql = format!("SELECT * FROM tasks WHERE {UNFINISHED} ORDER BY event_seq, target_id");
    let rows = pool.fetch_all(&sql, Vec::new()).await?;
    rows.iter().map(task_from_row).collect()
}

/// Per (person, target), the latest (effective_at, event_seq) ever dispatched.
pub(crate) async fn started_watermarks<P: ReadPool>(pool: &P) -> Result<Vec<Watermark>, StoreError> {
    let rows = pool
        .fetch_all(
            "SELECT t.person_id, t.target_id, t.effective_at, MAX(t.event_seq) AS event_seq FROM tasks t \
             JOIN (SELECT person_id, target_id, MAX(effective_at) AS effective_at FROM tasks \
                   WHERE dispatched_at IS NOT NULL GROUP BY person_id, target_id) latest \
               ON latest.person_id = t.person_id AND latest.target_id = t.target_id \
              AND latest.effective_at = t.effective_at \
             WHERE t.dispatched_at IS NOT NULL GROUP BY t.person_id, t.target_id, t.effective_at",
            Vec::new(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(((row.text("person_id")?, row.text("target_id")?), (row.int("effective_at")?, row.int("event_seq")?)))
        })
        .collect()
}

/// A person's identity record.
pub(crate) async fn identity<P: ReadPool>(pool: &P, person_id: String) -> Result<Option<IdentityRecord>, StoreError> {
    first(pool, "SELECT * FROM identities WHERE person_id = $1", vec![Bind::Text(person_id)])
        .await?
        .as_ref()
        .map(identity_from_row)
        .transpose()
}

/// Every event of a person, in arrival order.
pub(crate) async fn person_events<P: ReadPool>(pool: &P, person_id: String) -> Result<Vec<EventRecord>, StoreError> {
    let rows =
        pool.fetch_all("SELECT * FROM events WHERE person_id = $1 ORDER BY seq", vec![Bind::Text(person_id)]).await?;
    rows.iter().map(event_from_row).collect()
}

/// What is known of a person for planning.
pub(crate) async fn person_context<P: ReadPool>(pool: &P, person_id: String) -> Result<PersonContext, StoreError> {
    let rows = pool
        .fetch_all(
            "SELECT DISTINCT target_id FROM tasks WHERE person_id = $1 AND grants_access = TRUE \
             AND state <> 'superseded'",
            vec![Bind::Text(person_id.clone())],
        )
        .await?;
    let provisioned = rows.iter().map(|row| row.text("target_id")).collect::<Result<BTreeSet<_>, _>>()?;
    let latest_attributes = match identity(pool, person_id.clone()).await? {
        Some(identity) => Some(identity.attributes),
        None => first(
            pool,
            "SELECT attributes FROM events WHERE person_id = $1 ORDER BY effective_at DESC, seq DESC LIMIT 1",
            vec![Bind::Text(person_id)],
        )
        .await?
        .map(|row| serde_json::from_str(&row.text("attributes")?).map_err(|e| corrupt("events.attributes", e)))
        .transpose()?,
    };
    Ok(PersonContext { provisioned, latest_attributes })
}

/// Audit records with seq > `after`, at most `limit`, in order.
pub(crate) async fn audit_records<P: ReadPool>(
    pool: &P,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = pool
        .fetch_all(
            "SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            vec![Bind::Int(after), Bind::Int(i64::from(limit))],
        )
        .await?;
    rows.iter().map(audit_from_row).collect()
}

/// An event's audit records, in order.
pub(crate) async fn event_audit<P: ReadPool>(pool: &P, event_id: String) -> Result<Vec<AuditRecord>, StoreError> {
    let rows =
        pool.fetch_all("SELECT * FROM audit WHERE event_id = $1 ORDER BY seq", vec![Bind::Text(event_id)]).await?;
    rows.iter().map(audit_from_row).collect()
}

/// Identity records after `after` in byte order, with the kind of the event
/// that set each (a baseline record, set by none, is a joiner's).
pub(crate) async fn identities_after<P: ReadPool>(
    pool: &P,
    after: String,
    limit: u32,
) -> Result<Vec<(IdentityRecord, EventKindName)>, StoreError> {
    let order = P::BYTE_ORDER;
    let sql = format!(
        "SELECT i.*, COALESCE(e.kind, 'joiner') AS event_kind FROM identities i \
         LEFT JOIN events e ON e.event_id = i.event_id \
         WHERE i.person_id{order} > $1 ORDER BY i.person_id{order} LIMIT $2"
    );
    let rows = pool.fetch_all(&sql, vec![Bind::Text(after), Bind::Int(i64::from(limit))]).await?;
    rows.iter().map(|row| Ok((identity_from_row(row)?, event_kind(&row.text("event_kind")?)?))).collect()
}

/// One HR ingestion document.
pub(crate) async fn ingest_get<P: ReadPool>(
    pool: &P,
    space: String,
    key: String,
) -> Result<Option<String>, StoreError> {
    let rows = pool
        .fetch_all(
            "SELECT value FROM ingest_state WHERE space = $1 AND key = $2",
            vec![Bind::Text(space), Bind::Text(key)],
        )
        .await?;
    Ok(rows.first().map(|row| row.text("value")).transpose()?)
}

/// HR ingestion documents of a space after a key, in byte order.
pub(crate) async fn ingest_after<P: ReadPool>(
    pool: &P,
    space: String,
    after: String,
    limit: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    let order = P::BYTE_ORDER;
    let sql = format!(
        "SELECT key, value FROM ingest_state WHERE space = $1 AND key{order} > $2 ORDER BY key{order} LIMIT $3"
    );
    let rows = pool.fetch_all(&sql, vec![Bind::Text(space), Bind::Text(after), Bind::Int(i64::from(limit))]).await?;
    rows.iter().map(|row| Ok((row.text("key")?, row.text("value")?))).collect()
}

/// Tasks past their deadline and unfinished, or flagged breached.
pub(crate) async fn overdue<P: ReadPool>(pool: &P, now: i64) -> Result<Vec<OverdueRecord>, StoreError> {
    let sql = format!(
        "SELECT event_id, person_id, target_id, state, deadline_at, finished_at, planned FROM tasks \
         WHERE deadline_breached = TRUE OR (deadline_at < $1 AND {UNFINISHED}) \
         ORDER BY deadline_at, event_id, target_id"
    );
    let rows = pool.fetch_all(&sql, vec![Bind::Int(now)]).await?;
    rows.iter()
        .map(|row| {
            Ok(OverdueRecord {
                event_id: row.text("event_id")?,
                person_id: row.text("person_id")?,
                target_id: row.text("target_id")?,
                state: task_state(&row.text("state")?)?,
                deadline_at: row.int("deadline_at")?,
                finished_at: row.optional_int("finished_at")?,
                workflows: decode::<jml_contract::v1::PlannedTarget>("tasks.planned", Some(row.blob("planned")?))?
                    .map(|planned| planned.workflows)
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The read methods of [`super::Store`] for a store whose `pool` field is a
/// [`ReadPool`]: expanded inside each backend's `impl Store`, so the two
/// implementations share every read.
macro_rules! store_reads {
    () => {
        fn event(&self, event_id: &str) -> StoreFuture<'_, Option<EventRecord>> {
            Box::pin($crate::store::reads::event(&self.pool, event_id.to_owned()))
        }

        fn tasks(&self, event_id: &str) -> StoreFuture<'_, Vec<TaskRecord>> {
            Box::pin($crate::store::reads::tasks(&self.pool, event_id.to_owned()))
        }

        fn task(&self, event_id: &str, target_id: &str) -> StoreFuture<'_, Option<TaskRecord>> {
            Box::pin($crate::store::reads::task(&self.pool, event_id.to_owned(), target_id.to_owned()))
        }

        fn approvals(&self, event_id: &str) -> StoreFuture<'_, Vec<ApprovalRecord>> {
            Box::pin($crate::store::reads::approvals(&self.pool, event_id.to_owned()))
        }

        fn unfinished_tasks(&self) -> StoreFuture<'_, Vec<TaskRecord>> {
            Box::pin($crate::store::reads::unfinished_tasks(&self.pool))
        }

        fn started_watermarks(&self) -> StoreFuture<'_, Vec<Watermark>> {
            Box::pin($crate::store::reads::started_watermarks(&self.pool))
        }

        fn person_context(&self, person_id: &str) -> StoreFuture<'_, PersonContext> {
            Box::pin($crate::store::reads::person_context(&self.pool, person_id.to_owned()))
        }

        fn identity(&self, person_id: &str) -> StoreFuture<'_, Option<IdentityRecord>> {
            Box::pin($crate::store::reads::identity(&self.pool, person_id.to_owned()))
        }

        fn person_events(&self, person_id: &str) -> StoreFuture<'_, Vec<EventRecord>> {
            Box::pin($crate::store::reads::person_events(&self.pool, person_id.to_owned()))
        }

        fn audit_records(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<AuditRecord>> {
            Box::pin($crate::store::reads::audit_records(&self.pool, after, limit))
        }

        fn event_audit(&self, event_id: &str) -> StoreFuture<'_, Vec<AuditRecord>> {
            Box::pin($crate::store::reads::event_audit(&self.pool, event_id.to_owned()))
        }

        fn identities_after(&self, after: String, limit: u32) -> StoreFuture<'_, Vec<(IdentityRecord, EventKindName)>> {
            Box::pin($crate::store::reads::identities_after(&self.pool, after, limit))
        }

        fn overdue(&self, now: i64) -> StoreFuture<'_, Vec<OverdueRecord>> {
            Box::pin($crate::store::reads::overdue(&self.pool, now))
        }

        fn ingest_get(&self, space: &str, key: &str) -> StoreFuture<'_, Option<String>> {
            Box::pin($crate::store::reads::ingest_get(&self.pool, space.to_owned(), key.to_owned()))
        }

        fn ingest_after(&self, space: &str, after: String, limit: u32) -> StoreFuture<'_, Vec<(String, String)>> {
            Box::pin($crate::store::reads::ingest_after(&self.pool, space.to_owned(), after, limit))
        }

        fn account_name_holders(
            &self,
            target_id: &str,
            account_name: &str,
        ) -> StoreFuture<'_, Vec<$crate::store::AccountNameRecord>> {
            Box::pin($crate::store::account_names::holders(&self.pool, target_id.to_owned(), account_name.to_owned()))
        }
    };
}
pub(crate) use store_reads;
