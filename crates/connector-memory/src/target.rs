//! The in-memory "target": the accounts the reference connector manages,
//! held in a map, plus fault injection for coordinator tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::CatalogueEntry;

/// One account as the in-memory target stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// The correlation key.
    pub person_id: String,
    /// The account name (the map key).
    pub account_name: String,
    /// The target's own id.
    pub native_id: String,
    /// Whether the account may log in.
    pub enabled: bool,
    /// Attributes by name.
    pub attributes: BTreeMap<String, String>,
    /// Entitlements as (kind, id).
    pub entitlements: BTreeSet<(String, String)>,
    /// Credential identifiers still usable.
    pub credentials: BTreeSet<String>,
    /// Last change.
    pub changed_at: SystemTime,
}

/// Faults a test can inject.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Added latency per `Apply`.
    pub apply_latency: Duration,
    /// The next N applies fail with a retryable UNAVAILABLE.
    pub fail_next_applies: u32,
    /// The next N applies fail with THROTTLED and this retry-after.
    pub throttle_next_applies: Option<(u32, Duration)>,
    /// `Read` shows one entitlement fewer than the target holds: a target
    /// whose read-back disagrees with what it acknowledged.
    pub read_disagrees: bool,
}

/// The in-memory target.
#[derive(Debug)]
pub struct MemoryTarget {
    accounts: RwLock<BTreeMap<String, StoredAccount>>,
    catalogue: BTreeMap<(String, String), bool>,
    faults: Mutex<Faults>,
    journal: Option<Mutex<std::fs::File>>,
}

impl MemoryTarget {
    /// An empty target with the given entitlement catalogue, optionally
    /// appending every change as a line to `journal` (for tests that count
    /// side effects across process restarts).
    pub fn new(catalogue: &[CatalogueEntry], journal: Option<std::fs::File>) -> Self {
        Self {
            accounts: RwLock::default(),
            catalogue: catalogue.iter().map(|e| ((e.kind.clone(), e.id.clone()), e.privileged)).collect(),
            faults: Mutex::default(),
            journal: journal.map(Mutex::new),
        }
    }

    /// Whether an entitlement exists, and if so whether it is privileged.
    pub fn entitlement(&self, kind: &str, id: &str) -> Option<bool> {
        self.catalogue.get(&(kind.to_owned(), id.to_owned())).copied()
    }

    /// A copy of one account.
    pub fn get(&self, account_name: &str) -> Option<StoredAccount> {
        self.accounts.read().ok()?.get(account_name).cloned()
    }

    /// Replaces or removes one account.
    pub fn put(&self, account_name: &str, account: Option<StoredAccount>) {
        if let Ok(mut accounts) = self.accounts.write() {
            match account {
                Some(account) => accounts.insert(account_name.to_owned(), account),
                None => accounts.remove(account_name),
            };
        }
    }

    /// Up to `limit` accounts with names after `after`, in name order.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<StoredAccount> {
        let Ok(accounts) = self.accounts.read() else { return Vec::new() };
        let range = match after {
            Some(after) => accounts.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => accounts.range::<str, _>(..),
        };
        range.take(limit).map(|(_, account)| account.clone()).collect()
    }

    /// Number of accounts held.
    pub fn len(&self) -> usize {
        self.accounts.read().map(|a| a.len()).unwrap_or_default()
    }

    /// Whether no account is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `count` synthetic accounts `seed-NNNNNNN` (person `pNNNNNNN`,
    /// display name, group `staff`); every `drift_every`th also holds the
    /// privileged group `admins`. For benchmarks.
    pub fn seed(&self, count: usize, drift_every: usize) {
        let Ok(mut accounts) = self.accounts.write() else { return };
        let now = SystemTime::now();
        for index in 0..count {
            let account_name = format!("seed-{index:07}");
            let mut entitlements: BTreeSet<(String, String)> = [("group".to_string(), "staff".to_string())].into();
            if drift_every > 0 && index % drift_every == 0 {
                entitlements.insert(("group".into(), "admins".into()));
            }
            accounts.insert(
                account_name.clone(),
                StoredAccount {
                    person_id: format!("p{index:07}"),
                    native_id: format!("native-{index}"),
                    enabled: true,
                    attributes: [("display_name".to_string(), format!("Person {index}"))].into(),
                    entitlements,
                    credentials: ["password".to_string()].into(),
                    changed_at: now,
                    account_name,
                },
            );
        }
    }

    /// Grants an entitlement directly, as an ad hoc edit on the target would.
    pub fn grant_directly(&self, account_name: &str, kind: &str, id: &str) -> bool {
        let Ok(mut accounts) = self.accounts.write() else { return false };
        match accounts.get_mut(account_name) {
            Some(account) => {
                account.entitlements.insert((kind.to_owned(), id.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Sets the faults to inject.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut current) = self.faults.lock() {
            *current = faults;
        }
    }

    /// The faults now in force.
    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Takes one injected apply failure, if any is left.
    pub fn take_apply_fault(&self) -> Option<connector_kit::ConnectorError> {
        let mut faults = self.faults.lock().ok()?;
        if faults.fail_next_applies > 0 {
            faults.fail_next_applies -= 1;
            return Some(connector_kit::ConnectorError::unavailable("injected fault: target unavailable"));
        }
        if let Some((left, retry_after)) = faults.throttle_next_applies
            && left > 0
        {
            faults.throttle_next_applies = (left > 1).then_some((left - 1, retry_after));
            return Some(connector_kit::ConnectorError::throttled("injected fault: slow down", Some(retry_after)));
        }
        None
    }

    /// Appends one change to the journal, when there is one.
    pub fn journal(&self, command_id: &str, account_name: &str, action: &str, subject: &str) {
        if let Some(journal) = &self.journal
            && let Ok(mut file) = journal.lock()
        {
            let _ = writeln!(file, "{command_id}\t{account_name}\t{action}\t{subject}");
        }
    }
}
