//! A leaver against the real server, holding a live token: after the leaver's
//! desired state is applied, the login is refused and the policies are gone;
//! the live token is either rejected by `lookup-self`, or, where the server
//! cannot revoke it, the acknowledgement and the read-back say so and the
//! read-back comparison does not report the state as verified.

mod support;

use connector_kit::contract as pb;
use connector_kit::readback::compare;
use connector_vault::config::SharedSecret;
use connector_vault::names::{KvPath, UserName};
use connector_vault::target::{LoginOutcome, TokenStatus};
use rand::Rng;

fn policy(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: "policy".into(), id: id.into(), privileged: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_loses_login_policies_and_tokens_or_is_not_verified() {
    let mut config = support::config();
    let shared = config.records.prefix.replace("/accounts", "/shared");
    let db_path = format!("secret/{shared}/db");
    let reports_path = format!("secret/{shared}/reports");
    config.shared_secrets = vec![
        SharedSecret { path: db_path.clone(), fields: vec!["password".into()], readable_by: vec!["pam-admin".into()] },
        SharedSecret {
            path: reports_path.clone(),
            fields: vec!["password".into()],
            readable_by: vec!["pam-read".into()],
        },
    ];
    let direct = support::direct(&config);
    let db = KvPath::parse(&db_path).expect("a valid path");
    let reports = KvPath::parse(&reports_path).expect("a valid path");
    let initial = |value: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::json!({ "user": "app", "password": value }).as_object().cloned().unwrap_or_default()
    };
    direct.write_secret(&db, &initial("db-before")).await.expect("shared secret written");
    direct.write_secret(&reports, &initial("reports-before")).await.expect("shared secret written");
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
        owned_identities: None,
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

    // The shared secret the leaver's pam-admin could read is rotated, the
    // evidence names its path and never a value; the other one is untouched.
    let rotated: Vec<&str> =
        acknowledgement.changes.iter().filter(|c| c.action == "rotate_secret").map(|c| c.subject.as_str()).collect();
    assert_eq!(rotated, vec![db_path.as_str()], "only the secret pam-admin could read is rotated");
    let db_after = direct.read_secret(&db).await.expect("read").expect("the secret still exists");
    let new_value = db_after.get("password").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    assert!(!new_value.is_empty() && new_value != "db-before", "the password field has a new value");
    assert_eq!(db_after.get("user").and_then(|v| v.as_str()), Some("app"), "other fields are kept");
    let evidence = format!("{acknowledgement:?}");
    assert!(!evidence.contains(&new_value) && !evidence.contains("db-before"), "no secret value in the evidence");
    let reports_after = direct.read_secret(&reports).await.expect("read").expect("exists");
    assert_eq!(reports_after.get("password").and_then(|v| v.as_str()), Some("reports-before"));

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
    // What the read-back cannot show is a residual risk, bounded by the
    // token_max_ttl every managed user gets, never "verified".
    let risks = connector_kit::credentials::residual_risks(&description, &leaver, &state);

    let capabilities = description.capabilities.unwrap_or_default();
    match direct.lookup_self(Some(&live)).await.expect("lookup-self") {
        TokenStatus::Rejected { .. } => {
            // Revoked. Verified only where read-back can prove it.
            assert_eq!(differences, vec![], "what can be proven is proven by read-back");
            if capabilities.credential_revocation_verifiable {
                assert!(risks.is_empty(), "tokens listed: nothing left unproven: {risks:?}");
            } else {
                let kinds: Vec<&str> = risks.iter().map(|r| r.credential_kind.as_str()).collect();
                assert_eq!(kinds, ["token"], "unlistable tokens are a residual risk: {risks:?}");
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
            assert_eq!(differences, vec![], "what can be proven is proven by read-back");
            let bounded: Vec<(&str, i64)> = risks
                .iter()
                .map(|r| (r.credential_kind.as_str(), r.max_lifetime.as_ref().map_or(0, |d| d.seconds)))
                .collect();
            assert!(
                bounded.len() == 1 && bounded[0].0 == "token" && bounded[0].1 > 0,
                "the live tokens are a residual risk bounded by token_max_ttl, never verified: {risks:?}"
            );
        }
    }

    // Re-applying the leaver changes nothing and rotates nothing again.
    let again = client.apply(&format!("leave-again-{suffix}"), leaver.clone()).await.expect("leaver re-applied");
    assert!(again.changes.is_empty(), "a repeated leaver reports changes: {:?}", again.changes);
    let db_again = direct.read_secret(&db).await.expect("read").expect("exists");
    assert_eq!(db_again.get("password").and_then(|v| v.as_str()), Some(new_value.as_str()), "not rotated again");

    let absent = pb::DesiredAccount {
        presence: pb::Presence::Absent as i32,
        credentials: pb::CredentialAction::Keep as i32,
        ..leaver
    };
    client.apply(&format!("delete-{suffix}"), absent).await.expect("cleanup");
}
