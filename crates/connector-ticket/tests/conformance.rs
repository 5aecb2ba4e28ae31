//! The conformance cases that apply to a manual target, against the real
//! Request Tracker.
//!
//! A manual target changes only when a person acts, so the served connector
//! is the real [`TicketConnector`] wrapped in [`Fulfilled`]: after each
//! `Apply` that filed a request, a fulfiller (the RT user `fulfiller-ana`,
//! through RT's own REST2 API, as a person at the application would) records
//! an attestation of exactly the requested state. `Read` is then the real
//! connector parsing that attestation out of RT.
//!
//! Expected skips, by reason:
//! - `reapply_same_command_is_idempotent`: the same state under a *new*
//!   command is filed again on a manual target (each command needs its own
//!   attestation), so "no changes" does not hold by design; the same command
//!   again is unchanged (checked in `same_command_again_files_nothing`).
//! - `read_is_fresh_from_target`, `hostile_values_round_trip_or_are_refused`:
//!   need a backdoor into the application, which a manual target is not.
//! - `list_finds_exactly_what_was_created`: `List` serves the newest export
//!   a fulfiller attached, not a live enumeration.
//! - `invalid_desired_state_is_refused`, `hostile_lookups_match_nothing`,
//!   `delete_removes_account` (its deletion of a never-created account):
//!   they read accounts no ticket was filed for, which fails `UNATTESTED`
//!   (unknown) instead of "absent" by design: a manual target's state is
//!   never assumed. The invalid requests themselves are refused by the
//!   kit's validation, as for every connector.
//! - `unknown_entitlement_is_a_typed_error`: whether a role exists in the
//!   application is known only to the fulfiller.

mod support;

use connector_kit::conformance::{ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_kit::{AccountStream, Connector, ConnectorError};
use connector_ticket::TicketConnector;
use support::{Rest2, attestation, rt_env, run_id};

/// The real connector, with a fulfiller answering each request it files.
struct Fulfilled {
    inner: TicketConnector,
    fulfiller: Rest2,
}

fn statement(desired: &pb::DesiredAccount) -> String {
    if desired.presence != pb::Presence::Present as i32 {
        return "exists: no\n".into();
    }
    let mut body = format!("exists: yes\nenabled: {}\n", if desired.enabled { "yes" } else { "no" });
    if desired.entitlements.is_empty() {
        body.push_str("entitlements: none\n");
    }
    for entitlement in &desired.entitlements {
        body.push_str(&format!("entitlement: {}:{}\n", entitlement.kind, entitlement.id));
    }
    for (name, value) in &desired.attributes {
        body.push_str(&format!("attribute {name}: {value}\n"));
    }
    let revoke = desired.credentials == pb::CredentialAction::RevokeAll as i32;
    body.push_str(if revoke { "credentials: none\n" } else { "credentials: password\n" });
    body
}

impl Connector for Fulfilled {
    fn describe(&self) -> pb::DescribeResponse {
        self.inner.describe()
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        self.inner.preflight().await
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let acknowledgement = self.inner.apply(command_id, desired).await?;
        if let Some(ticket) = acknowledgement.ticket.as_ref().filter(|_| !acknowledgement.changes.is_empty()) {
            let account = desired.account.clone().unwrap_or_default();
            let text = attestation(command_id, &account.account_name, &statement(desired));
            self.fulfiller.comment(&ticket.ticket_id, &text, Some("resolved"), &[]).await;
        }
        Ok(acknowledgement)
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        self.inner.read(account).await
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.inner.list(page_size)
    }
}

async fn target() -> ConformanceTarget {
    let env = rt_env();
    let mut config = support::config(&env, &format!("cf-{}", run_id()));
    config.attributes = vec!["mail".into()];
    let inner = TicketConnector::new(&config).expect("config");
    let fixture = Fixture {
        attributes: Box::new(|name| [("mail".to_owned(), format!("{name}@example.org"))].into()),
        changed_attributes: Box::new(|name| [("mail".to_owned(), format!("{name}.moved@example.org"))].into()),
        entitlements: ["clerk", "viewer", "approver", "payroll-admin"]
            .iter()
            .map(|id| pb::Entitlement { kind: "role".into(), id: (*id).into(), privileged: *id == "payroll-admin" })
            .collect(),
        ..Fixture::default()
    };
    let connector = Fulfilled { inner, fulfiller: Rest2::fulfiller(&env, 0) };
    ConformanceTarget::serve(connector, fixture).await.expect("serve")
}

macro_rules! case {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let target = target().await;
            connector_kit::conformance::expect_pass(
                stringify!($name),
                connector_kit::conformance::$name(&target).await,
            );
        }
    };
}

case!(describe_is_complete);
case!(create_then_read_back_matches);
case!(command_id_reuse_with_other_state_is_refused);
case!(mover_swaps_entitlements_and_attributes);
case!(disable_then_enable);
case!(revoke_credentials);

#[tokio::test]
async fn same_command_again_files_nothing() {
    let target = target().await;
    let account = pb::AccountRef { person_id: format!("p-{}", run_id()), account_name: format!("idem{}", run_id()) };
    let desired = pb::DesiredAccount {
        account: Some(account),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: Default::default(),
        entitlements: vec![pb::Entitlement { kind: "role".into(), id: "clerk".into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    };
    let first = target.client.apply("idem-1", desired.clone()).await.expect("first");
    let again = target.client.apply("idem-1", desired).await.expect("again");
    assert!(again.changes.is_empty(), "{again:?}");
    assert_eq!(again.target_native_id, first.target_native_id);
    assert_eq!(again.ticket.map(|t| t.action).as_deref(), Some("unchanged"));
}
