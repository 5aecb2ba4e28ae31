//! Reconciliation of a large target: the `connector-memory` binary, started as
//! its own process with N seeded accounts (1% holding an ad hoc privileged
//! grant), is listed over gRPC on loopback and compared, page by page, with
//! the expected state of each person. Reports wall time, accounts per second,
//! drift found, and this process's peak resident memory (VmHWM), which is the
//! reconciler's footprint (the target lives in the other process).
//!
//! ```sh
//! cargo build --release -p connector-memory
//! cargo bench -p reconciliation --bench reconcile -- 1000000
//! ```

use std::process::Stdio;
use std::time::Instant;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use reconciliation::Reconciliation;
use tokio::io::{AsyncBufReadExt, BufReader};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn expected(person_id: &str, account_name: &str) -> pb::DesiredAccount {
    let index: usize = person_id.trim_start_matches('p').parse().unwrap_or(usize::MAX);
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: person_id.into(), account_name: account_name.into() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: [("display_name".to_string(), format!("Person {index}"))].into(),
        entitlements: vec![pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let accounts: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = ["release", "debug"]
        .iter()
        .map(|profile| root.join("target").join(profile).join("connector-memory"))
        .find(|path| path.exists())
        .ok_or_else(|| anyhow::anyhow!("build connector-memory first: cargo build --release -p connector-memory"))?;
    eprintln!("seeding {accounts} accounts in {}", binary.display());
    let mut child = tokio::process::Command::new(&binary)
        .args(["--insecure-plaintext", "--listen", "127.0.0.1:0", "--seed-accounts"])
        .arg(accounts.to_string())
        .args(["--seed-drift-every", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?).lines();
    let endpoint = loop {
        let line = lines.next_line().await?.ok_or_else(|| anyhow::anyhow!("connector exited"))?;
        if let Some(addr) = line.strip_prefix("listening on ") {
            break format!("http://{addr}");
        }
    };
    let client = ConnectorClient::connect(&endpoint, ClientOptions::default())?;
    let description = client.describe().await?;
    let rss_before = peak_rss_mib();

    let started = Instant::now();
    let mut run = Reconciliation::new(description);
    let mut stream = client.list(5_000).await?;
    let mut drift_found = 0usize;
    while let Some(page) = stream.message().await? {
        drift_found += run
            .page(&page.accounts, |state| {
                let account = state.account.as_ref()?;
                Some(expected(&account.person_id, &account.account_name))
            })
            .len();
    }
    let elapsed = started.elapsed();
    let counts = run.counts().clone();
    let _ = child.kill().await;

    println!("accounts listed      {}", counts.accounts_listed);
    println!(
        "drift found          {drift_found} ({:?})",
        counts.by_class.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>()
    );
    println!("wall time            {:.2} s", elapsed.as_secs_f64());
    println!("throughput           {:.0} accounts/s", counts.accounts_listed as f64 / elapsed.as_secs_f64().max(1e-9));
    println!("peak RSS (reconciler) {:.1} MiB (before the run: {rss_before:.1} MiB)", peak_rss_mib());
    println!("cores                {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    anyhow::ensure!(counts.accounts_listed as usize == accounts, "listed {} of {accounts}", counts.accounts_listed);
    anyhow::ensure!(drift_found == accounts.div_ceil(100), "expected 1% drift, found {drift_found}");
    Ok(())
}
