//! slapd restarts while the connector runs: the next `Apply` succeeds on a
//! fresh connection, and read-back matches. Alone in its test binary so no
//! other test sees the restart.

mod support;

use std::collections::BTreeMap;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::readback::compare;
use connector_kit::server::ConnectorServer;
use support::Slapd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_after_a_slapd_restart_succeeds() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.config());
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions { max_attempts: 1, ..Default::default() })
        .expect("client");
    let description = client.describe().await.expect("describe");
    let name = format!("rs{:08x}", rand::random::<u32>());
    let mut desired = pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("{name}-p"), account_name: name.clone() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: BTreeMap::from([("display_name".to_string(), "Before Restart".to_string())]).into_iter().collect(),
        entitlements: vec![pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    };
    client.apply("restart-1", desired.clone()).await.expect("apply before the restart");

    let status = std::process::Command::new("bash")
        .arg(&slapd.script)
        .arg("restart")
        .arg(&slapd.run_dir)
        .status()
        .expect("slapd.sh restart runs");
    assert!(status.success(), "slapd.sh restart failed");

    desired.attributes.insert("display_name".into(), "After Restart".into());
    desired.entitlements.push(pb::Entitlement { kind: "group".into(), id: "sales".into(), privileged: false });
    // The client makes one attempt: the connector itself must recover.
    let ack = client.apply("restart-2", desired.clone()).await.expect("the first apply after the restart succeeds");
    assert!(!ack.changes.is_empty());
    let state = client.read(desired.account.clone().expect("account")).await.expect("read after the restart");
    assert_eq!(compare(&description, &desired, &state), vec![]);

    desired.presence = pb::Presence::Absent as i32;
    client.apply("restart-3", desired).await.expect("clean up");
}
