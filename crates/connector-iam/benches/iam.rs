//! Benchmark: Apply+Read pairs through the IAM connector over gRPC against a
//! real moto server, next to the same work done with direct SDK calls.
//!
//! ```text
//! deploy/local/moto.sh start /tmp/jml && source /tmp/jml/moto.env
//! CARGO_TARGET_DIR=/work/target-iam cargo bench -p connector-iam --bench iam
//! ```
//!
//! `JML_BENCH_IAM_PAIRS` sets the number of pairs (default 200). Each pair
//! creates one user (joiner: a group, an attribute tag) and reads it back;
//! the direct baseline does `CreateUser` + `AddUserToGroup` and `GetUser` +
//! `ListGroupsForUser` only, so the difference is the connector's full
//! read-back (every credential kind, policies, inline policies) plus gRPC.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use aws_sdk_iam::types::Tag;
use connector_iam::KIND_GROUP;
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;

fn summary(label: &str, samples: &mut [Duration], total: Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{label:<28} pairs {:>4}  total {:>8.1} ms  mean {:>6.2} ms  p50 {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms",
        samples.len(),
        total.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / samples.len() as f64,
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let pairs: usize = std::env::var("JML_BENCH_IAM_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let (connector, client, _) = support::connector("bench").await;
    let path = connector.config().user_path.clone();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse()?).await?;
    let grpc = ConnectorClient::connect(&server.endpoint(), ClientOptions::default())?;

    let mut samples = Vec::with_capacity(pairs);
    let mut apply_samples = Vec::with_capacity(pairs);
    let mut read_samples = Vec::with_capacity(pairs);
    let started = Instant::now();
    for n in 0..pairs {
        let account = pb::AccountRef { person_id: format!("bench-p{n}"), account_name: format!("benchc{n:05}") };
        let desired = pb::DesiredAccount {
            account: Some(account.clone()),
            presence: pb::Presence::Present as i32,
            enabled: true,
            attributes: [("display_name".to_string(), format!("Bench {n}"))].into(),
            entitlements: vec![pb::Entitlement { kind: KIND_GROUP.into(), id: "staff".into(), privileged: false }],
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        };
        let one = Instant::now();
        grpc.apply(&format!("bench-{n}"), desired).await?;
        let applied = one.elapsed();
        let state = grpc.read(account).await?;
        samples.push(one.elapsed());
        apply_samples.push(applied);
        read_samples.push(one.elapsed() - applied);
        anyhow::ensure!(state.exists && state.entitlements.len() == 1, "read-back differs");
    }
    let connector_total = started.elapsed();
    summary("connector (gRPC, full)", &mut samples, connector_total);
    let apply_total = apply_samples.iter().sum();
    summary("  of which Apply (create)", &mut apply_samples, apply_total);
    let read_total = read_samples.iter().sum();
    summary("  of which Read", &mut read_samples, read_total);

    let mut samples = Vec::with_capacity(pairs);
    let started = Instant::now();
    for n in 0..pairs {
        let name = format!("benchd{n:05}");
        let one = Instant::now();
        client
            .create_user()
            .user_name(&name)
            .path(&path)
            .tags(Tag::builder().key("lifecycle-mesh:person-id").value(format!("bench-d{n}")).build()?)
            .tags(Tag::builder().key("lifecycle-mesh:display-name").value(format!("Bench {n}")).build()?)
            .send()
            .await?;
        client.add_user_to_group().user_name(&name).group_name("staff").send().await?;
        client.get_user().user_name(&name).send().await?;
        let groups = client.list_groups_for_user().user_name(&name).send().await?;
        samples.push(one.elapsed());
        anyhow::ensure!(groups.groups().len() == 1, "direct read-back differs");
    }
    let direct_total = started.elapsed();
    summary("direct SDK (minimal)", &mut samples, direct_total);
    println!(
        "connector / direct: {:.2}x",
        connector_total.as_secs_f64() / direct_total.as_secs_f64().max(f64::EPSILON)
    );

    // Clean up: the connector deletes its users; the direct ones directly.
    for n in 0..pairs {
        let account = pb::AccountRef { person_id: format!("bench-p{n}"), account_name: format!("benchc{n:05}") };
        let absent = pb::DesiredAccount {
            account: Some(account),
            presence: pb::Presence::Absent as i32,
            credentials: pb::CredentialAction::Keep as i32,
            ..Default::default()
        };
        grpc.apply(&format!("bench-del-{n}"), absent).await?;
        let name = format!("benchd{n:05}");
        client.remove_user_from_group().user_name(&name).group_name("staff").send().await?;
        client.delete_user().user_name(&name).send().await?;
    }
    server.shutdown().await?;
    Ok(())
}
