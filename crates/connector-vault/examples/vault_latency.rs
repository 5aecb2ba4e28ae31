//! Latency of joiner, read-back, leaver and delete through the Vault connector
//! over gRPC on loopback, against the server `deploy/local/rustyvault.sh start`
//! describes (`JML_TEST_VAULT_ADDR`, `JML_TEST_VAULT_TOKEN_FILE`).
//!
//! `cargo run --release -p connector-vault --example vault_latency -- [ACCOUNTS] [CONCURRENCY]`
//! Results are in docs/benchmarks/vault.md.

use std::time::{Duration, Instant};

use anyhow::Context;
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_vault::{VaultConfig, VaultConnector};
use futures::StreamExt;
use rand::Rng;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let accounts: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let mut config = VaultConfig::new(std::env::var("JML_TEST_VAULT_ADDR").context("JML_TEST_VAULT_ADDR")?);
    config.token_file = Some(std::env::var("JML_TEST_VAULT_TOKEN_FILE").context("JML_TEST_VAULT_TOKEN_FILE")?.into());
    config.records.prefix = format!("lifecycle-mesh/bench-{:08x}/accounts", rand::rng().random::<u32>());
    config.policies.insert("pam-admin".into(), "path \"secret/*\" { capabilities = [\"read\"] }".into());
    let connector = VaultConnector::connect(&config).await?;
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse()?).await?;
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default())?;
    let run = format!("b{:06x}", rand::rng().random::<u32>() & 0xff_ffff);

    for (step, presence, enabled, entitlements, credentials) in [
        ("joiner", pb::Presence::Present, true, vec!["pam-admin"], pb::CredentialAction::Keep),
        ("read", pb::Presence::Present, true, vec!["pam-admin"], pb::CredentialAction::Keep),
        ("leaver", pb::Presence::Present, false, vec![], pb::CredentialAction::RevokeAll),
        ("delete", pb::Presence::Absent, false, vec![], pb::CredentialAction::Keep),
    ] {
        let started = Instant::now();
        let client = &client;
        let run = &run;
        let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..accounts)
            .map(|n| {
                let entitlements = entitlements.clone();
                async move {
                    let account =
                        pb::AccountRef { person_id: format!("{run}-{n}"), account_name: format!("{run}-{n:05}") };
                    let began = Instant::now();
                    if step == "read" {
                        client.read(account).await?;
                    } else {
                        let desired = pb::DesiredAccount {
                            account: Some(account),
                            presence: presence as i32,
                            enabled,
                            attributes: Default::default(),
                            entitlements: entitlements
                                .iter()
                                .map(|id| pb::Entitlement { kind: "policy".into(), id: (*id).into(), privileged: true })
                                .collect(),
                            credentials: credentials as i32,
                            owned_identities: None,
                        };
                        client.apply(&format!("{run}-{step}-{n}"), desired).await?;
                    }
                    Ok(began.elapsed())
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut samples = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let wall = started.elapsed();
        println!(
            "{step:>7}: {accounts} accounts, concurrency {concurrency}: p50 {:?}, p95 {:?}, max {:?}, {:.1}/s",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.95),
            percentile(&mut samples, 1.0),
            accounts as f64 / wall.as_secs_f64()
        );
    }
    Ok(())
}
