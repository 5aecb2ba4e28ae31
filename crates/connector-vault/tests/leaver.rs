//! A leaver against the real server, holding a live token: after the leaver's
//! desired state is applied, the login is refused and the policies are gone;
//! the live token is either rejected by `lookup-self`, or, where the server
//! cannot revoke it, the acknowledgement and the read-back say so and the
//! read-back comparison does not report the state as verified.

mod support;

use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use connector_vault::names::UserName;
use connector_vault::target::{LoginOutcome, TokenStatus};
use rand::Rng;

fn policy(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: "policy".into(), id: id.into(), privileged: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_loses_login_policies_and_tokens_or_is_not_verified() {
    let config = support::config();
    let direct = support::direct(&config);
    let (client, _server) = support::serve(&config).await;
    let description = client.describe().await.expect("Describe");

    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let account = pb::AccountRef { person_id: format!("person-{suffix}"), account_name: format!("leaver-{suffix}") };
    let name = UserName::parse(&account.account_name).expect("a valid user name");
    let joiner = pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: Default::default(),
        entitlements: vec![policy("pam-admin"), policy("pam-ops")],
        credentials: pb::CredentialAction::Keep as i32,
    };
    client.apply(&format!("join-{suffix}"), joiner.clone()).await.expect("joiner applied");
    let joined = client.read(account.clone()).await.expect("read after joiner");
    assert_eq!(compare(&description, &joiner, &joined), vec![], "the joiner reads back as desired");

    // The person sets a password out of band and logs in: a live token.
    let password = format!("pw-{:032x}", rand::rng().random::<u128>());
    direct.set_password(&name, &password).await.expect("password set out of band");
    let live = match direct.login(&name, &password).await.expect("login call") {
        LoginOutcome::Granted { token } => token,
        LoginOutcome::Refused { reason } => panic!("the user could not log in before leaving: {reason}"),
    };
    match direct.lookup_self(Some(&live)).await.expect("lookup-self") {
        TokenStatus::Valid { ttl, path } => {
            assert_eq!(path, direct.login_path(&name), "the token comes from the user's login");
            if let Some(ttl) = ttl {
                assert!(ttl <= config.token_max_ttl_seconds, "the token's TTL {ttl} s is bounded by token_max_ttl");
            }
        }
        TokenStatus::Rejected { status } => panic!("a fresh login token is rejected (HTTP {status})"),
    }
    // A wrong password is a refusal even where the server answers it with HTTP 200.
    assert!(
        matches!(direct.login(&name, "not-the-password").await.expect("login call"), LoginOutcome::Refused { .. }),
        "a wrong password must not count as a login"
    );

    // The leaver: disabled, no policy, every credential revoked.
    let leaver = pb::DesiredAccount {
        enabled: false,
        entitlements: vec![],
        credentials: pb::CredentialAction::RevokeAll as i32,
        ..joiner.clone()
    };
    let acknowledgement = client.apply(&format!("leave-{suffix}"), leaver.clone()).await.expect("leaver applied");
    let actions: Vec<&str> = acknowledgement.changes.iter().map(|c| c.action.as_str()).collect();
    assert!(actions.contains(&"disable"), "the acknowledgement lists the disable: {actions:?}");
    assert_eq!(
        acknowledgement.changes.iter().filter(|c| c.action == "remove_entitlement").count(),
        2,
        "both policies are removed: {actions:?}"
    );

    // Login refused, policies gone, on the server itself.
    match direct.login(&name, &password).await.expect("login call") {
        LoginOutcome::Refused { .. } => {}
        LoginOutcome::Granted { .. } => panic!("the leaver can still log in"),
    }
    assert_eq!(direct.read_user(&name).await.expect("read user"), None, "no userpass user, so no policy on any login");

    let state = client.read(account.clone()).await.expect("read after leaver");
    assert!(state.exists && !state.enabled, "the account is kept, disabled");
    assert!(state.entitlements.is_empty(), "no policy is held: {:?}", state.entitlements);
    let credentials = state.credentials.clone().unwrap_or_default();
    assert!(!credentials.active.contains(&"password".to_string()), "no password login remains");
    let differences = compare(&description, &leaver, &state);

    let capabilities = description.capabilities.unwrap_or_default();
    match direct.lookup_self(Some(&live)).await.expect("lookup-self") {
        TokenStatus::Rejected { .. } => {
            // Revoked. Verified only where read-back can prove it.
            if capabilities.credential_revocation_verifiable {
                assert_eq!(differences, vec![], "revocation proven by read-back");
            } else {
                assert_eq!(differences, vec![Difference::CredentialsUnproven]);
            }
        }
        TokenStatus::Valid { .. } => {
            // This server could not revoke the token: everything must say so.
            assert!(!capabilities.credential_revocation_verifiable, "Describe must not claim verifiable revocation");
            assert!(
                description.limitations.iter().any(|l| l.contains("CANNOT be revoked")),
                "Describe states that live tokens cannot be revoked: {:?}",
                description.limitations
            );
            assert!(
                acknowledgement.warnings.iter().any(|w| w.contains("NOT revoked") && w.contains(name.as_str())),
                "the acknowledgement warns that the user's tokens were not revoked: {:?}",
                acknowledgement.warnings
            );
            assert!(!credentials.complete, "read-back must not claim a complete credential listing");
            assert_eq!(
                differences,
                vec![Difference::CredentialsUnproven],
                "the comparison must not report the leaver as verified"
            );
        }
    }

    let absent = pb::DesiredAccount {
        presence: pb::Presence::Absent as i32,
        credentials: pb::CredentialAction::Keep as i32,
        ..leaver
    };
    client.apply(&format!("delete-{suffix}"), absent).await.expect("cleanup");
}
