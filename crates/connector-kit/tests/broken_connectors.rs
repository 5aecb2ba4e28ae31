//! The conformance suite must catch connectors that break the rules. Each test
//! here wraps the reference connector so that it breaks exactly one rule,
//! serves it over real gRPC, runs the case that guards that rule, and expects
//! the case to fail. The unbroken reference connector passes every case (see
//! `connector-memory/tests/conformance.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::conformance::{self, ConformanceTarget, Fixture, Outcome, Violation};
use connector_kit::contract as pb;
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_kit::{AccountStream, Connector, ConnectorError};
use connector_memory::{MemoryBackdoor, MemoryConfig, MemoryConnector, MemoryTarget};
use futures::StreamExt;

/// Which rule the wrapped connector breaks.
#[derive(Clone, Copy, PartialEq)]
enum Breakage {
    /// `Read` answers from what it last applied, not from the target.
    ReadsFromCache,
    /// Every `Apply` reports a change, even when nothing differs.
    ReappliesAreNotIdempotent,
    /// An account name of `*` reads back the first account (filter injection).
    WildcardReadsMatch,
    /// An unknown entitlement creates the account, then fails untyped.
    HalfWritesOnUnknownEntitlement,
    /// `List` returns every account twice.
    ListsDuplicates,
    /// `Apply` of a disabled state leaves the account enabled.
    IgnoresDisable,
    /// `Read` echoes the last `Apply` (enabled, attributes, entitlements,
    /// credentials) instead of reading the target.
    EchoesLastApply,
    /// `Apply` to an existing account acknowledges a change and writes nothing.
    AcknowledgesWithoutWriting,
    /// `Apply` adds what is missing and never removes an entitlement.
    IgnoresRemovals,
    /// `Read` claims a complete, empty credential listing without enumerating.
    ClaimsCompleteCredentials,
    /// `Read` answers from a cache of earlier reads.
    CachesReads,
}

struct Broken {
    inner: MemoryConnector,
    breakage: Breakage,
    cache: Mutex<HashMap<String, pb::AccountState>>,
    applied: Mutex<HashMap<String, pb::DesiredAccount>>,
}

/// The state a connector that echoes its last `Apply` reports.
fn echo(desired: &pb::DesiredAccount) -> pb::AccountState {
    let revoked = desired.credentials == pb::CredentialAction::RevokeAll as i32;
    pb::AccountState {
        account: desired.account.clone(),
        exists: desired.presence == pb::Presence::Present as i32,
        enabled: desired.enabled,
        attributes: desired.attributes.clone(),
        entitlements: desired.entitlements.clone(),
        credentials: Some(pb::CredentialState {
            active: if revoked { vec![] } else { vec!["password".into()] },
            complete: true,
            ..Default::default()
        }),
        target_native_id: "echo".into(),
        ..Default::default()
    }
}

impl Connector for Broken {
    fn describe(&self) -> pb::DescribeResponse {
        self.inner.describe()
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let mut desired = desired.clone();
        if self.breakage == Breakage::IgnoresDisable {
            desired.enabled = true;
        }
        if self.breakage == Breakage::HalfWritesOnUnknownEntitlement {
            let known: Vec<pb::Entitlement> = desired
                .entitlements
                .iter()
                .filter(|e| self.inner.target().entitlement(&e.kind, &e.id).is_some())
                .cloned()
                .collect();
            if known.len() != desired.entitlements.len() {
                let mut partial = desired.clone();
                partial.entitlements = known;
                self.inner.apply(command_id, &partial).await?;
                return Err(ConnectorError::internal("group add failed"));
            }
        }
        if let Some(account) = desired.account.clone() {
            if let Ok(mut applied) = self.applied.lock() {
                applied.insert(account.account_name.clone(), desired.clone());
            }
            let existing = self.inner.target().get(&account.account_name);
            if self.breakage == Breakage::AcknowledgesWithoutWriting
                && let Some(stored) = &existing
            {
                let change = pb::Change { action: "update".into(), subject: account.account_name.clone() };
                return Ok(pb::ApplyResponse {
                    changes: vec![change],
                    target_native_id: stored.native_id.clone(),
                    ..Default::default()
                });
            }
            if self.breakage == Breakage::IgnoresRemovals
                && let Some(stored) = &existing
            {
                for (kind, id) in &stored.entitlements {
                    if !desired.entitlements.iter().any(|e| &e.kind == kind && &e.id == id) {
                        desired.entitlements.push(pb::Entitlement {
                            kind: kind.clone(),
                            id: id.clone(),
                            privileged: false,
                        });
                    }
                }
            }
        }
        let mut acknowledgement = self.inner.apply(command_id, &desired).await?;
        if self.breakage == Breakage::ReappliesAreNotIdempotent {
            acknowledgement.changes.push(pb::Change { action: "touch".into(), subject: "modifyTimestamp".into() });
        }
        if self.breakage == Breakage::ReadsFromCache
            && let Some(account) = &desired.account
        {
            let state = self.inner.read(account).await?;
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(account.account_name.clone(), state);
            }
        }
        Ok(acknowledgement)
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        if self.breakage == Breakage::EchoesLastApply
            && let Some(desired) = self.applied.lock().ok().and_then(|a| a.get(&account.account_name).cloned())
        {
            return Ok(echo(&desired));
        }
        if self.breakage == Breakage::CachesReads {
            if let Some(state) = self.cache.lock().ok().and_then(|c| c.get(&account.account_name).cloned()) {
                return Ok(state);
            }
            let state = self.inner.read(account).await?;
            if state.exists
                && let Ok(mut cache) = self.cache.lock()
            {
                cache.insert(account.account_name.clone(), state.clone());
            }
            return Ok(state);
        }
        if self.breakage == Breakage::ClaimsCompleteCredentials {
            let mut state = self.inner.read(account).await?;
            state.credentials = Some(pb::CredentialState { active: vec![], complete: true, ..Default::default() });
            return Ok(state);
        }
        if self.breakage == Breakage::ReadsFromCache
            && let Some(state) = self.cache.lock().ok().and_then(|c| c.get(&account.account_name).cloned())
        {
            return Ok(state);
        }
        if self.breakage == Breakage::WildcardReadsMatch && account.account_name.contains('*') {
            let mut pages = self.inner.list(1);
            if let Some(Ok(page)) = pages.next().await {
                return Ok(page.into_iter().next().unwrap_or_default());
            }
        }
        self.inner.read(account).await
    }

    fn list(&self, page_size: u32) -> AccountStream {
        let pages = self.inner.list(page_size);
        if self.breakage == Breakage::ListsDuplicates {
            return Box::pin(pages.map(|page| {
                page.map(|accounts| {
                    let half = accounts.len().div_ceil(2);
                    let mut doubled: Vec<pb::AccountState> = accounts[..half].to_vec();
                    doubled.extend(accounts[..half].iter().cloned());
                    doubled
                })
            }));
        }
        pages
    }
}

async fn broken_target(breakage: Breakage) -> (ConformanceTarget, RunningServer) {
    let config = MemoryConfig::default();
    let store = Arc::new(MemoryTarget::new(&config.entitlements, None));
    let broken = Broken {
        inner: MemoryConnector::new("broken", store.clone()),
        breakage,
        cache: Mutex::default(),
        applied: Mutex::default(),
    };
    let server = ConnectorServer::new(broken).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let group = |id: &str| pb::Entitlement { kind: "group".into(), id: id.into(), privileged: false };
    let fixture = Fixture {
        attributes: Box::new(|name| BTreeMap::from([("display_name".into(), format!("Person {name}"))])),
        changed_attributes: Box::new(|name| BTreeMap::from([("display_name".into(), format!("Moved {name}"))])),
        entitlements: vec![group("staff"), group("engineering"), group("sales")],
        hostile_attribute: Some("display_name".into()),
        list_accounts: 30,
        list_page_size: 10,
        backdoor: Some(Arc::new(MemoryBackdoor(store))),
        ..Fixture::default()
    };
    (ConformanceTarget { client, fixture, guard: None }, server)
}

fn expect_violation(result: Result<Outcome, Violation>, needle: &str) {
    match result {
        Err(violation) => {
            assert!(violation.message.contains(needle), "the violation should mention {needle:?}: {violation}");
        }
        Ok(outcome) => panic!("the suite missed a broken connector: {outcome:?}"),
    }
}

#[tokio::test]
async fn suite_catches_read_answered_from_a_cache() {
    let (target, _server) = broken_target(Breakage::ReadsFromCache).await;
    expect_violation(conformance::read_is_fresh_from_target(&target).await, "not reading the target");
}

#[tokio::test]
async fn suite_catches_non_idempotent_reapply() {
    let (target, _server) = broken_target(Breakage::ReappliesAreNotIdempotent).await;
    expect_violation(conformance::reapply_same_command_is_idempotent(&target).await, "reported changes");
}

#[tokio::test]
async fn suite_catches_wildcard_lookup() {
    let (target, _server) = broken_target(Breakage::WildcardReadsMatch).await;
    expect_violation(conformance::hostile_lookups_match_nothing(&target).await, "interpreted");
}

#[tokio::test]
async fn suite_catches_half_written_account() {
    let (target, _server) = broken_target(Breakage::HalfWritesOnUnknownEntitlement).await;
    expect_violation(conformance::unknown_entitlement_is_a_typed_error(&target).await, "non-retryable");
}

#[tokio::test]
async fn suite_catches_duplicate_listing() {
    let (target, _server) = broken_target(Breakage::ListsDuplicates).await;
    expect_violation(conformance::list_finds_exactly_what_was_created(&target).await, "twice");
}

#[tokio::test]
async fn suite_catches_ignored_disable() {
    let (target, _server) = broken_target(Breakage::IgnoresDisable).await;
    expect_violation(conformance::disable_then_enable(&target).await, "disable");
}

#[tokio::test]
async fn suite_catches_read_echoing_the_last_apply() {
    let (target, _server) = broken_target(Breakage::EchoesLastApply).await;
    expect_violation(conformance::read_shows_enabled_changed_on_target(&target).await, "not reading the target");
    expect_violation(conformance::read_shows_attributes_changed_on_target(&target).await, "not reading the target");
    expect_violation(conformance::read_shows_credential_added_on_target(&target).await, "not enumerating");
}

#[tokio::test]
async fn suite_catches_acknowledging_without_writing() {
    let (target, _server) = broken_target(Breakage::AcknowledgesWithoutWriting).await;
    expect_violation(conformance::mover_swaps_entitlements_and_attributes(&target).await, "read-back differs");
    expect_violation(conformance::read_shows_enabled_changed_on_target(&target).await, "after re-enable");
}

#[tokio::test]
async fn suite_catches_ignored_removals() {
    let (target, _server) = broken_target(Breakage::IgnoresRemovals).await;
    expect_violation(conformance::mover_swaps_entitlements_and_attributes(&target).await, "excess");
}

#[tokio::test]
async fn suite_catches_complete_credentials_claimed_without_enumerating() {
    let (target, _server) = broken_target(Breakage::ClaimsCompleteCredentials).await;
    expect_violation(conformance::read_shows_credential_added_on_target(&target).await, "not enumerating");
}

#[tokio::test]
async fn suite_catches_reads_answered_from_a_cache_of_reads() {
    let (target, _server) = broken_target(Breakage::CachesReads).await;
    expect_violation(conformance::read_shows_account_deleted_on_target(&target).await, "not reading the target");
}

#[tokio::test]
async fn unbroken_reference_passes_the_cases_used_above() {
    let (target, _server) = broken_target(Breakage::IgnoresDisable).await;
    // The same wrapper with a breakage that the next case does not exercise
    // passes: the failures above come from the breakage, not the harness.
    assert_eq!(conformance::read_is_fresh_from_target(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::list_finds_exactly_what_was_created(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::read_shows_attributes_changed_on_target(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::read_shows_credential_added_on_target(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::read_shows_person_id_changed_on_target(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::read_shows_account_deleted_on_target(&target).await, Ok(Outcome::Passed));
    let (target, _server) = broken_target(Breakage::ListsDuplicates).await;
    assert_eq!(conformance::mover_swaps_entitlements_and_attributes(&target).await, Ok(Outcome::Passed));
    assert_eq!(conformance::read_shows_enabled_changed_on_target(&target).await, Ok(Outcome::Passed));
}

/// An unexpected skip fails the connector's test; an expected one that
/// passes fails too, so the list stays true.
#[test]
fn skips_must_be_expected() {
    let skipped = || Ok(Outcome::Skipped("the backdoor cannot add a credential on this target".into()));
    conformance::expect_outcome(
        "read_shows_credential_added_on_target",
        skipped(),
        &["read_shows_credential_added_on_target"],
    );
    for (result, expected) in [(skipped(), &[][..]), (Ok(Outcome::Passed), &["revoke_credentials"][..])] {
        let case = if expected.is_empty() { "read_shows_credential_added_on_target" } else { "revoke_credentials" };
        let outcome = std::panic::catch_unwind(|| conformance::expect_outcome(case, result, expected));
        assert!(outcome.is_err(), "{case} with expected skips {expected:?} must fail");
    }
    let unknown = std::panic::catch_unwind(|| {
        conformance::expect_outcome("revoke_credentials", Ok(Outcome::Passed), &["no_such_case"])
    });
    assert!(unknown.is_err());
}
