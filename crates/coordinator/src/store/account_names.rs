//! The account-name index (migration 0009): which person holds which
//! account name on which target, so that submit can refuse a name that
//! collides with another person's (`crate::naming`). Written in the same
//! transaction as what makes it true: an accepted event's present accounts
//! reserve their names; a proven deletion releases the name. The SQL uses
//! numbered placeholders, which both backends accept.

use jml_contract::v1 as pb;

use super::{StoreError, TaskRecord};

/// One account name held by one person on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountNameRecord {
    /// The target.
    pub target_id: String,
    /// The account name as planned.
    pub account_name: String,
    /// Whose it is.
    pub person_id: String,
    /// The name case-folded ([`crate::naming::name_key`]).
    pub name_key: String,
    /// Its case-folded UTS #39 skeleton ([`crate::naming::skeleton_key`]).
    pub skeleton_key: String,
    /// The event that reserved it.
    pub event_id: String,
    /// When (Unix ms).
    pub recorded_at: i64,
}

impl AccountNameRecord {
    /// The index row for `account_name` of `person_id` on `target_id`.
    pub fn new(target_id: &str, account_name: &str, person_id: &str, event_id: &str, recorded_at: i64) -> Self {
        Self {
            target_id: target_id.to_owned(),
            account_name: account_name.to_owned(),
            person_id: person_id.to_owned(),
            name_key: crate::naming::name_key(account_name),
            skeleton_key: crate::naming::skeleton_key(account_name),
            event_id: event_id.to_owned(),
            recorded_at,
        }
    }
}

/// The names the tasks of a newly accepted event reserve: every account
/// planned present.
pub(crate) fn reserved_by(tasks: &[TaskRecord], recorded_at: i64) -> Vec<AccountNameRecord> {
    tasks
        .iter()
        .filter_map(|task| {
            let desired = task.planned.desired.as_ref()?;
            let account = desired.account.as_ref()?;
            (desired.presence == pb::Presence::Present as i32 && !account.account_name.is_empty()).then(|| {
                AccountNameRecord::new(
                    &task.target_id,
                    &account.account_name,
                    &task.person_id,
                    &task.event_id,
                    recorded_at,
                )
            })
        })
        .collect()
}

/// The name a task releases: its account's, when the task proved it deleted.
pub(crate) fn released_by(task: &TaskRecord) -> Option<(String, String, String)> {
    let desired = task.planned.desired.as_ref()?;
    let account = desired.account.as_ref()?;
    (task.state.is_proven() && desired.presence == pb::Presence::Absent as i32)
        .then(|| (task.target_id.clone(), account.account_name.clone(), task.person_id.clone()))
}

/// Stores reservations (a name a person already holds is kept as it is).
pub(crate) const RESERVE: &str = "INSERT INTO account_names \
     (target_id, account_name, person_id, name_key, skeleton_key, event_id, recorded_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (target_id, account_name, person_id) DO NOTHING";

/// Forgets a deleted account's name.
pub(crate) const RELEASE: &str =
    "DELETE FROM account_names WHERE target_id = $1 AND account_name = $2 AND person_id = $3";

/// The writes for one backend's connection type.
macro_rules! account_name_writes {
    ($connection:ty) => {
        /// Reserves `records` in the current transaction.
        pub(crate) async fn reserve_names(
            conn: &mut $connection,
            records: &[$crate::store::account_names::AccountNameRecord],
        ) -> Result<(), $crate::store::StoreError> {
            for record in records {
                sqlx::query($crate::store::account_names::RESERVE)
                    .bind(&record.target_id)
                    .bind(&record.account_name)
                    .bind(&record.person_id)
                    .bind(&record.name_key)
                    .bind(&record.skeleton_key)
                    .bind(&record.event_id)
                    .bind(record.recorded_at)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Releases the name a proven deletion freed, in the current transaction.
        pub(crate) async fn release_name(
            conn: &mut $connection,
            task: &$crate::store::TaskRecord,
        ) -> Result<(), $crate::store::StoreError> {
            if let Some((target, name, person)) = $crate::store::account_names::released_by(task) {
                sqlx::query($crate::store::account_names::RELEASE)
                    .bind(target)
                    .bind(name)
                    .bind(person)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
    };
}
pub(crate) use account_name_writes;

/// Rows that may collide with `account_name` on `target_id`: the same name,
/// the same case-folded name or the same skeleton. The caller decides, by
/// the target's declared comparison, which of them really collide.
pub(crate) async fn holders<P: super::reads::ReadPool>(
    pool: &P,
    target_id: String,
    account_name: String,
) -> Result<Vec<AccountNameRecord>, StoreError> {
    use super::reads::Bind;
    use super::rows::StoredRow;
    let name_key = crate::naming::name_key(&account_name);
    let skeleton_key = crate::naming::skeleton_key(&account_name);
    let rows = pool
        .fetch_all(
            // Three indexed lookups, not one `OR`: without table statistics
            // SQLite answers the `OR` by walking every name of the target
            // (one submit then costs O(names), the whole population O(n^2)).
            "SELECT * FROM account_names WHERE target_id = $1 AND account_name = $2 \
             UNION SELECT * FROM account_names WHERE target_id = $1 AND name_key = $3 \
             UNION SELECT * FROM account_names WHERE target_id = $1 AND skeleton_key = $4 \
             ORDER BY recorded_at, person_id",
            vec![Bind::Text(target_id), Bind::Text(account_name), Bind::Text(name_key), Bind::Text(skeleton_key)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AccountNameRecord {
                target_id: row.text("target_id")?,
                account_name: row.text("account_name")?,
                person_id: row.text("person_id")?,
                name_key: row.text("name_key")?,
                skeleton_key: row.text("skeleton_key")?,
                event_id: row.text("event_id")?,
                recorded_at: row.int("recorded_at")?,
            })
        })
        .collect()
}
