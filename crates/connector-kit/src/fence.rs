//! Lease epoch fencing, in the gRPC adapter for every connector.
//!
//! Several coordinator replicas split the work by lane leases (one lane is
//! one person on one target); each takeover of a lane bumps its *epoch*, and
//! every `Apply` carries the epoch of the lease its sender holds
//! (`ApplyRequest.lease_epoch`). The [`FenceBook`] remembers, per account
//! (person id), the highest epoch this connector process has seen and
//! refuses a command below it with [`ErrorKind::StaleLease`]: a replica that
//! stalled, or was cut off from the database, past its lease cannot reach the
//! target once the new holder has. Commands for one account also run one at
//! a time here, so a command admitted under an older epoch finishes before a
//! newer holder's command starts and cannot overwrite it.
//!
//! Epoch 0 is a sender without leases (one coordinator on SQLite, `jmlctl`,
//! the conformance suite): accepted while no epoch was seen for the account,
//! refused once one was (fail closed).
//!
//! Limits, stated in `docs/ARCHITECTURE.md`: the book is in this process's
//! memory, so it holds per connector process (a restarted or second replica
//! of the connector starts empty and accepts the first epoch it sees), and
//! it remembers [`REMEMBERED_ACCOUNTS`] accounts, forgetting the least
//! recently used idle ones beyond that.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::{ConnectorError, ErrorKind};

/// How many accounts' highest epochs a connector process remembers.
pub const REMEMBERED_ACCOUNTS: usize = 65_536;

/// Per account: the highest lease epoch seen, behind the lock commands for
/// the account take while they run.
type Slot = Arc<AsyncMutex<u64>>;

/// The highest lease epoch seen per account.
#[derive(Default)]
pub struct FenceBook {
    slots: Mutex<(HashMap<String, Slot>, VecDeque<String>)>,
}

/// A command admitted by the fence: holds the account's lock until dropped.
pub struct Admitted {
    _guard: OwnedMutexGuard<u64>,
}

impl FenceBook {
    /// Admits a command for `account` under `epoch`, waiting for the
    /// account's running command to finish first; refuses a stale epoch.
    pub async fn admit(&self, account: &str, epoch: u64) -> Result<Admitted, ConnectorError> {
        let slot = self.slot(account)?;
        let mut highest = slot.lock_owned().await;
        if epoch < *highest {
            return Err(ConnectorError::new(
                ErrorKind::StaleLease,
                format!(
                    "lease epoch {epoch} is stale: epoch {} was already seen for this account (the sender's lease was taken over)",
                    *highest
                ),
            )
            .with_field("lease_epoch")
            .with_retryable(false));
        }
        *highest = epoch;
        Ok(Admitted { _guard: highest })
    }

    /// The highest epoch seen for `account` (0 when none).
    pub async fn highest(&self, account: &str) -> u64 {
        match self.slot(account) {
            Ok(slot) => *slot.lock().await,
            Err(_) => 0,
        }
    }

    fn slot(&self, account: &str) -> Result<Slot, ConnectorError> {
        let mut guard = self.slots.lock().map_err(|_| ConnectorError::internal("lease fence poisoned"))?;
        let (slots, order) = &mut *guard;
        if let Some(slot) = slots.get(account) {
            return Ok(slot.clone());
        }
        if slots.len() >= REMEMBERED_ACCOUNTS {
            // Forget the oldest idle account (one no command holds).
            let idle = order.iter().position(|name| slots.get(name).is_some_and(|slot| Arc::strong_count(slot) == 1));
            if let Some(position) = idle
                && let Some(name) = order.remove(position)
            {
                slots.remove(&name);
            }
        }
        let slot = Slot::default();
        slots.insert(account.to_owned(), slot.clone());
        order.push_back(account.to_owned());
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lower_epoch_is_refused_once_a_higher_one_was_seen() {
        let book = FenceBook::default();
        drop(book.admit("p1", 0).await.expect("no epoch seen yet"));
        drop(book.admit("p1", 1).await.expect("first lease"));
        drop(book.admit("p1", 1).await.expect("same holder again"));
        drop(book.admit("p1", 2).await.expect("takeover"));
        let stale = book.admit("p1", 1).await.err().expect("stale holder refused");
        assert_eq!(stale.kind, ErrorKind::StaleLease);
        assert!(!stale.retryable);
        assert!(book.admit("p1", 0).await.is_err(), "a sender without a lease is refused after a leased one");
        assert!(book.admit("p2", 0).await.is_ok(), "other accounts are not affected");
        assert_eq!(book.highest("p1").await, 2);
    }

    #[tokio::test]
    async fn commands_for_one_account_run_one_at_a_time() {
        let book = Arc::new(FenceBook::default());
        let first = book.admit("p1", 1).await.expect("admit");
        let waiting = tokio::spawn({
            let book = book.clone();
            async move { book.admit("p1", 2).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second command waits for the first");
        drop(first);
        waiting.await.expect("join").expect("admitted after the first finished");
    }
}
