//! Bad input for the ticket connector: Request Tracker refusing, unreachable
//! or silent; attestations with forged or unreadable fields; account exports
//! that are malformed or too large. Each is a typed error that loses nothing
//! and verifies nothing. Against the real RT (`deploy/local/rt.sh start`).

mod support;

use connector_kit::contract as pb;
use connector_kit::{Connector, ErrorKind};
use connector_ticket::{SecretSource, TicketConnector};
use support::{Rest2, attestation, leaver_attestation, rt_env, run_id};

fn leaver(person: &str, account: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: person.into(), account_name: account.into() }),
        presence: pb::Presence::Present as i32,
        enabled: false,
        attributes: Default::default(),
        entitlements: vec![],
        credentials: pb::CredentialAction::RevokeAll as i32,
        owned_identities: None,
    }
}

#[tokio::test]
async fn rt_refusing_unreachable_or_silent_is_a_typed_error() {
    let env = rt_env();
    // Wrong password: RT answers 401.
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").expect("write");
    let mut config = support::config(&env, "bad-auth");
    config.password = SecretSource { file: Some(wrong), env: None };
    let connector = TicketConnector::new(&config).expect("config");
    let error = connector.preflight().await.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error}");

    // Nothing listening: unavailable, retryable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut config = support::config(&env, "bad-port");
    config.base_url = format!("http://127.0.0.1:{port}");
    let connector = TicketConnector::new(&config).expect("config");
    let error = connector.apply("c-1", &leaver("p-1", "nobody")).await.expect_err("unreachable");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.retryable);

    // Accepts and never answers: a timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = support::config(&env, "bad-silent");
    config.base_url = format!("http://127.0.0.1:{port}");
    config.request_timeout_secs = 1;
    let connector = TicketConnector::new(&config).expect("config");
    let error =
        connector.read(&pb::AccountRef { person_id: "p".into(), account_name: "a".into() }).await.expect_err("silent");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    hold.abort();
}

#[tokio::test]
async fn forged_unreadable_or_oversized_evidence_verifies_nothing() {
    let env = rt_env();
    let run = run_id();
    let mut config = support::config(&env, &format!("bad-{run}"));
    config.max_export_bytes = 512;
    let connector = TicketConnector::new(&config).expect("config");
    let ana = Rest2::fulfiller(&env, 0);
    let (person, account) = (format!("p-{run}"), format!("fay{run}"));
    let desired = leaver(&person, &account);
    let ack = connector.apply(&format!("cmd-{run}"), &desired).await.expect("apply");
    let ticket = ack.ticket.expect("ticket").ticket_id;
    let command = format!("cmd-{run}");
    let reference = desired.account.clone().expect("account");
    let unattested = |result: Result<pb::AccountState, connector_kit::ConnectorError>, needle: &str| {
        let error = result.expect_err("not attested");
        assert_eq!(error.kind, ErrorKind::Unattested, "{error}");
        assert!(error.message.contains(needle), "{needle:?} not in {error}");
    };

    unattested(connector.read(&reference).await, "awaits an attestation");

    // Forged time.
    let forged = format!("{}attested_at: 2020-01-01T00:00:00Z\n", leaver_attestation(&command, &account));
    ana.comment(&ticket, &forged, None, &[]).await;
    unattested(connector.read(&reference).await, "forged field `attested_at");

    // Another account named.
    ana.comment(&ticket, &leaver_attestation(&command, "someone-else"), None, &[]).await;
    unattested(connector.read(&reference).await, "about account");

    // Unreadable: a field nobody knows.
    ana.comment(&ticket, &format!("{}colour: blue\n", leaver_attestation(&command, &account)), None, &[]).await;
    unattested(connector.read(&reference).await, "unknown field");

    // Stale: answers another command.
    ana.comment(&ticket, &leaver_attestation("cmd-old", &account), None, &[]).await;
    unattested(connector.read(&reference).await, "latest request");

    // A malformed export.
    let malformed = b"name;enabled\nfay;no\n";
    ana.comment(&ticket, &leaver_attestation(&command, &account), None, &[("accounts.csv", malformed)]).await;
    unattested(connector.read(&reference).await, "export header");

    // An export larger than accepted.
    let mut large = String::from("account_name,person_id,enabled,entitlements\n");
    for n in 0..40 {
        large.push_str(&format!("user{n:04},p-{n},yes,role:clerk\n"));
    }
    ana.comment(&ticket, &leaver_attestation(&command, &account), None, &[("accounts.csv", large.as_bytes())]).await;
    unattested(connector.read(&reference).await, "more than the 512 accepted");

    // An export that contradicts the statement.
    let contradicting = format!("account_name,person_id,enabled,entitlements\n{account},{person},yes,\n");
    ana.comment(&ticket, &leaver_attestation(&command, &account), None, &[("accounts.csv", contradicting.as_bytes())])
        .await;
    unattested(connector.read(&reference).await, "contradicts");

    // Finally a valid one: the state as attested, who and when from RT.
    let valid = attestation(&command, &account, "exists: yes\nenabled: no\nentitlements: none\ncredentials: none\n");
    ana.comment(&ticket, &valid, Some("resolved"), &[]).await;
    let state = connector.read(&reference).await.expect("attested");
    let attestation = state.attestation.expect("attestation");
    assert_eq!(attestation.fulfiller, env.fulfillers[0]);
    assert_eq!(attestation.command_id, command);
    assert!(state.exists && !state.enabled && state.credentials.is_some_and(|c| c.complete && c.active.is_empty()));
}
