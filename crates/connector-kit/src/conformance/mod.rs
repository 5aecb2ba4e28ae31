//! The conformance suite every connector runs against its real target.
//!
//! Each case is a plain `async fn` taking a [`ConformanceTarget`]: a gRPC
//! client of a running connector plus a [`Fixture`] saying what is valid on
//! that target. Cases pick themselves from `Describe`'s capabilities (a case
//! whose capability is missing is skipped, never faked), work under a fresh
//! random prefix per run, and delete what they created, pass or fail.
//!
//! A connector crate runs the whole suite, one named test per case, with
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn target() -> connector_kit::conformance::ConformanceTarget { /* start server, build fixture */ }
//! connector_kit::conformance_tests!(target);
//! ```

mod cases;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use jml_contract::v1 as pb;

use crate::client::ConnectorClient;

pub use cases::*;

/// Direct access to the target, bypassing the connector, so the suite can
/// check that `Read` really reads the target: every field `Read` reports has
/// a case that changes it here and requires `Read` to show it. A backdoor
/// that cannot make one kind of edit on its target leaves that method's
/// default, which answers [`BackdoorUnsupported`]: the case is skipped, and
/// the connector's test must list it as an expected skip.
pub trait Backdoor: Send + Sync {
    /// Grants `entitlement` to the account directly on the target (an ad hoc edit).
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Sets the managed attribute `attribute` (its contract name) to `value`
    /// directly on the target.
    fn set_attribute_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (account, attribute, value);
        unsupported("set an attribute")
    }

    /// Enables or disables the account directly on the target.
    fn set_enabled_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        enabled: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (account, enabled);
        unsupported("enable or disable an account")
    }

    /// Adds a usable credential directly on the target; answers it as `Read`
    /// names it in `CredentialState.active` (e.g. "password", "access_key:AKIA...").
    fn add_credential_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<String>> {
        let _ = account;
        Box::pin(async { Err(BackdoorUnsupported("add a credential").into()) })
    }

    /// Replaces the correlation key stored on the account directly on the target.
    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (account, person_id);
        unsupported("change the stored person id")
    }

    /// Deletes the account directly on the target.
    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = account;
        unsupported("delete an account")
    }

    /// Creates an account named `account_name` directly on the target, in the
    /// connector's scope, *without* a correlation key (an account made by
    /// hand before the mesh), with `mail` as its mail where the target has
    /// one. `Ok(false)` when this backdoor cannot; the scope and link cases
    /// are then skipped.
    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        let _ = (account_name, mail);
        Box::pin(async { Ok(false) })
    }

    /// Deletes an account [`Backdoor::create_untagged`] made (cleanup when a
    /// case failed before linking it).
    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = account_name;
        Box::pin(async { Ok(()) })
    }
}

/// A backdoor cannot make this kind of edit on its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the backdoor cannot {0} on this target")]
pub struct BackdoorUnsupported(pub &'static str);

fn unsupported<'a>(what: &'static str) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move { Err(BackdoorUnsupported(what).into()) })
}

/// Attribute values for an account, by account name.
pub type AttributeValues = Box<dyn Fn(&str) -> BTreeMap<String, String> + Send + Sync>;

/// What is valid on one target.
pub struct Fixture {
    /// Attribute values for a new account named `account_name` (every
    /// required attribute included).
    pub attributes: AttributeValues,
    /// Attribute values after a change (a mover's new title, say).
    pub changed_attributes: AttributeValues,
    /// At least three entitlements that exist on the target and are not
    /// privileged, plus optionally privileged ones.
    pub entitlements: Vec<pb::Entitlement>,
    /// The attribute in which hostile values are tried, if any.
    pub hostile_attribute: Option<String>,
    /// How many accounts the `List` case creates.
    pub list_accounts: usize,
    /// The page size the `List` case asks for (small, so several pages stream).
    pub list_page_size: u32,
    /// Direct access to the target, if the test can provide it.
    pub backdoor: Option<Arc<dyn Backdoor>>,
    /// Transforms a generated account name into a valid one for this target
    /// (identity by default).
    pub account_name: Box<dyn Fn(String) -> String + Send + Sync>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self {
            attributes: Box::new(|_| BTreeMap::new()),
            changed_attributes: Box::new(|_| BTreeMap::new()),
            entitlements: Vec::new(),
            hostile_attribute: None,
            list_accounts: 25,
            list_page_size: 7,
            backdoor: None,
            account_name: Box::new(|name| name),
        }
    }
}

/// A running connector and what is valid on its target.
pub struct ConformanceTarget {
    /// A client of the connector over gRPC.
    pub client: ConnectorClient,
    /// What is valid on the target.
    pub fixture: Fixture,
    /// Keeps servers and processes alive for the length of the case.
    pub guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl ConformanceTarget {
    /// Serves `connector` over real gRPC on `127.0.0.1:0` with the kit's
    /// server builder and connects a client to it: the usual set-up of a
    /// connector crate's conformance test.
    pub async fn serve<C: crate::Connector>(connector: C, fixture: Fixture) -> Result<Self, crate::server::ServeError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server = crate::server::ConnectorServer::new(connector).bind(addr).await?;
        let client = ConnectorClient::connect(&server.endpoint(), crate::client::ClientOptions::default())
            .map_err(|e| crate::server::ServeError::Transport(e.to_string()))?;
        Ok(Self { client, fixture, guard: Some(Box::new(server)) })
    }
}

/// How a case ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// The connector does not declare the capability the case needs.
    Skipped(String),
}

/// A rule the connector broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The case that found it.
    pub case: &'static str,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance case `{}` failed: {}", self.case, self.message)
    }
}

impl std::error::Error for Violation {}

/// Runs one case and panics with the violation, for use in `#[test]`s.
pub fn expect_pass(case: &'static str, result: Result<Outcome, Violation>) {
    match result {
        Ok(Outcome::Passed) => eprintln!("conformance case `{case}`: passed"),
        Ok(Outcome::Skipped(why)) => eprintln!("conformance case `{case}`: skipped ({why})"),
        Err(violation) => panic!("{violation}"),
    }
}

/// Checks one case's outcome against the connector's declared expected
/// skips: a violation fails, a skip not listed fails, and so does a listed
/// skip that passed (the list must stay true) or a listed name that is no
/// case at all.
pub fn expect_outcome(case: &'static str, result: Result<Outcome, Violation>, expected_skips: &[&str]) {
    if let Some(unknown) = expected_skips.iter().find(|name| !CASES.contains(*name)) {
        panic!("expected skip `{unknown}` names no conformance case");
    }
    let expected = expected_skips.contains(&case);
    match result {
        Ok(Outcome::Passed) if expected => {
            panic!("conformance case `{case}` is listed as an expected skip but passed: remove it from the list")
        }
        Ok(Outcome::Passed) => eprintln!("conformance case `{case}`: passed"),
        Ok(Outcome::Skipped(why)) if expected => eprintln!("conformance case `{case}`: skipped as expected ({why})"),
        Ok(Outcome::Skipped(why)) => {
            panic!("conformance case `{case}` was skipped ({why}) but is not listed in this connector's expected skips")
        }
        Err(violation) => panic!("{violation}"),
    }
}

/// The name of every conformance case, in the order `conformance_tests!` runs them.
pub const CASES: &[&str] = &[
    "describe_is_complete",
    "create_then_read_back_matches",
    "reapply_same_command_is_idempotent",
    "command_id_reuse_with_other_state_is_refused",
    "mover_swaps_entitlements_and_attributes",
    "disable_then_enable",
    "revoke_credentials",
    "delete_removes_account",
    "read_is_fresh_from_target",
    "list_finds_exactly_what_was_created",
    "hostile_values_round_trip_or_are_refused",
    "hostile_lookups_match_nothing",
    "invalid_desired_state_is_refused",
    "unknown_entitlement_is_a_typed_error",
    "read_shows_attributes_changed_on_target",
    "read_shows_enabled_changed_on_target",
    "read_shows_credential_added_on_target",
    "read_shows_person_id_changed_on_target",
    "read_shows_account_deleted_on_target",
    "scope_lists_untagged_accounts",
    "link_takes_over_untagged_account",
];

/// One named test per conformance case, for a connector crate's test file.
///
/// `$setup` is an `async fn() -> ConformanceTarget` that starts the
/// connector (over real gRPC) against its real target. A case the connector
/// honestly cannot run (a capability it lacks, an edit its target's backdoor
/// cannot make) must be listed, `expected_skips: [case, ...]`; any other
/// skip fails, and so does a listed case that passes.
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path) => {
        $crate::conformance_tests!($setup, expected_skips: []);
    };
    ($setup:path, expected_skips: [$($skip:ident),* $(,)?]) => {
        $crate::conformance_tests!(@cases $setup; [$(stringify!($skip)),*];
            describe_is_complete,
            create_then_read_back_matches,
            reapply_same_command_is_idempotent,
            command_id_reuse_with_other_state_is_refused,
            mover_swaps_entitlements_and_attributes,
            disable_then_enable,
            revoke_credentials,
            delete_removes_account,
            read_is_fresh_from_target,
            list_finds_exactly_what_was_created,
            hostile_values_round_trip_or_are_refused,
            hostile_lookups_match_nothing,
            invalid_desired_state_is_refused,
            unknown_entitlement_is_a_typed_error,
            read_shows_attributes_changed_on_target,
            read_shows_enabled_changed_on_target,
            read_shows_credential_added_on_target,
            read_shows_person_id_changed_on_target,
            read_shows_account_deleted_on_target,
            scope_lists_untagged_accounts,
            link_takes_over_untagged_account
        );
    };
    (@cases $setup:path; $skips:tt; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let target = $setup().await;
                $crate::conformance::expect_outcome(
                    stringify!($case),
                    $crate::conformance::$case(&target).await,
                    &$skips,
                );
            }
        )+
    };
}
