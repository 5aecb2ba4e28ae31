//! The connector metrics endpoint, scraped after known calls: the counts match.
//! (One test in this binary: the registry is process-wide.)

use std::sync::Arc;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn metrics_count_known_calls() {
    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(MemoryConnector::new("mem", target))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds");
    let metrics = connector_kit::metrics::serve("127.0.0.1:0".parse().expect("address")).await.expect("metrics bind");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    for n in 0..3 {
        let desired = pb::DesiredAccount {
            account: Some(pb::AccountRef { person_id: format!("p{n}"), account_name: format!("user{n}") }),
            presence: pb::Presence::Present as i32,
            enabled: true,
            entitlements: vec![pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
            credentials: pb::CredentialAction::Keep as i32,
            ..Default::default()
        };
        client.apply(&format!("c{n}"), desired).await.expect("apply");
    }
    let mut missing = pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: "p9".into(), account_name: "user9".into() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    missing.entitlements.push(pb::Entitlement { kind: "group".into(), id: "no-such-group".into(), privileged: false });
    client.apply("c9", missing).await.expect_err("unknown group");
    for n in 0..2 {
        client
            .read(pb::AccountRef { person_id: format!("p{n}"), account_name: format!("user{n}") })
            .await
            .expect("read");
    }
    let text = scrape(metrics).await;
    assert_eq!(sample(&text, "jml_connector_calls_total{operation=\"apply\",outcome=\"ok\"}"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "jml_connector_calls_total{operation=\"apply\",outcome=\"not_found\"}"), Some(1.0));
    assert_eq!(sample(&text, "jml_connector_calls_total{operation=\"read\",outcome=\"ok\"}"), Some(2.0));
    assert_eq!(sample(&text, "jml_connector_call_duration_seconds_count{operation=\"apply\"}"), Some(4.0));
    // Each create makes two changes: the account and its group.
    assert_eq!(sample(&text, "jml_connector_changes_total"), Some(6.0));
}
