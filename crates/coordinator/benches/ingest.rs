//! HR ingestion benchmark: a roster of `--people` persons (default 100,000)
//! is loaded as a full snapshot (the seed, not measured for the goal), then
//! two more full snapshots are diffed against the store and their events
//! submitted, timed and with the peak resident memory of that phase:
//!
//! - *baseline*: the same roster again (nothing changes): the cost of
//!   reading and comparing the whole store;
//! - *churn*: `--churn-percent` (default 1) of the people changed: a third
//!   move department, a third are missing (leavers), a third new joiners.
//!
//! The coordinator is in process ([`coordinator::ingest::Ingest`], the same
//! code the `SubmitStates` rpc runs) on SQLite, with one in-memory reference
//! connector as its target; no workflow grants anything, so the joiners and
//! movers plan no task and only the leavers are dispatched (their
//! propagation is not waited for: the goal is diff + accepted events).
//! Peak memory is the process's `VmHWM`, reset (`/proc/self/clear_refs`)
//! before each phase.
//!
//! `cargo bench -p coordinator --bench ingest -- [--people N] [--churn-percent P]`
//!
//! With `--db FILE` the store is that SQLite file and one part runs per
//! process, so that a phase's peak is its own and not what an earlier phase
//! left allocated in the same process: `--only seed` (the first load), then
//! `--only churn` in a new process (engine start, the churn roster built and
//! diffed; the baseline phase is skipped).

#[global_allocator]
static GLOBAL: coordinator::Allocator = coordinator::Allocator;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::ingest::state::{Employment, SourceRecord};
use coordinator::ingest::{Batch, Ingest};
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn person(i: usize, department: &str) -> SourceRecord {
    SourceRecord {
        person_id: format!("P{i:07}"),
        source_system: "workday".into(),
        attributes: BTreeMap::from([
            ("username".into(), format!("u{i:07}")),
            ("display_name".into(), format!("Person {i}")),
            ("email".into(), format!("u{i:07}@example.org")),
            ("department".into(), department.into()),
        ]),
        employment_status: "active".into(),
        employment: Employment::Active,
        hire_at: None,
        terminated_at: None,
        changed_at: None,
    }
}

fn batch(records: Vec<SourceRecord>) -> Batch {
    Batch { records, full_snapshot: true, source_system: "workday".into(), ..Batch::default() }
}

async fn phase(ingest: &Ingest, name: &str, records: Vec<SourceRecord>) -> anyhow::Result<()> {
    reset_peak();
    let started = Instant::now();
    let response = ingest.submit_batch(batch(records), "hr-bench").await?;
    let elapsed = started.elapsed();
    let counts = response.counts.unwrap_or_default();
    println!(
        "{name:<9} {:>8.2} s  peak {:>7.1} MiB  joiners {} movers {} leavers {} unchanged+duplicates {}{}",
        elapsed.as_secs_f64(),
        peak_mib(),
        counts.joiners,
        counts.movers,
        counts.leavers,
        counts.unchanged + counts.duplicates,
        if response.held.is_some() { "  HELD" } else { "" }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let people = arg("--people", 100_000);
    let churn = arg("--churn-percent", 1);
    let dir = tempfile::tempdir()?;
    let db = text_arg("--db").map_or_else(|| dir.path().join("bench.db"), std::path::PathBuf::from);
    let only = text_arg("--only");
    if let Some(only) = &only {
        anyhow::ensure!(matches!(only.as_str(), "seed" | "churn"), "--only: seed or churn");
        anyhow::ensure!(text_arg("--db").is_some(), "--only needs --db FILE (the store the parts share)");
    }
    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(MemoryConnector::new("ldap", target)).bind("127.0.0.1:0".parse()?).await?;
    let policy = Policy::parse(&format!(
        r#"
version: 1
source_of_truth: {{ system: workday, attributes: [username, display_name, email, department] }}
targets:
  - {{ id: ldap, endpoint: "{}", insecure_plaintext: true, account_name: "{{username}}", concurrency: 16 }}
workflows:
  - {{ name: none, owner: it@example.org, trigger: {{ events: [joiner, mover], when: {{ department: Nowhere }} }}, grants: {{ ldap: [ {{ kind: group, id: staff }} ] }} }}
"#,
        server.endpoint()
    ))?;
    let store = Arc::new(SqliteStore::open(&db).await?);
    let engine = Engine::start(store, Arc::new(policy), EngineConfig::default()).await?;
    let ingest = Ingest::new(engine);
    println!("{people} people, {churn}% churn (release build: cargo bench)");

    let roster: Vec<SourceRecord> = (0..people).map(|i| person(i, "Sales")).collect();
    match only.as_deref() {
        Some("seed") => return phase(&ingest, "seed", roster).await,
        Some(_) => {}
        None => {
            phase(&ingest, "seed", roster.clone()).await?;
            phase(&ingest, "baseline", roster.clone()).await?;
        }
    }
    let changed = people * churn / 100;
    let third = changed / 3;
    let mut next: Vec<SourceRecord> = roster;
    for record in next.iter_mut().take(third) {
        record.attributes.insert("department".into(), "Engineering".into());
    }
    next.truncate(people - third);
    next.extend((people..people + (changed - 2 * third)).map(|i| person(i, "Sales")));
    phase(&ingest, "churn", next).await?;
    Ok(())
}
