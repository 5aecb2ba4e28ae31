//! The end-to-end benchmark (docs/benchmarks/e2e.md): N joiners, then N
//! leavers, through the real coordinator and the four real connector
//! processes (mutual TLS) against slapd, scim2-server, moto and RustyVault.
//!
//! Prints events per second per phase (submission of the first event to the
//! last event finished), and p50 / p99 of the time to verified (joiners) and
//! the time to revoke (leavers): from the coordinator's receipt of the event
//! to the last of its four tasks finished, as the coordinator recorded them.
//!
//! The leavers run with one attempt per task: SCIM and RustyVault cannot prove
//! that no credential remains, so their leaver tasks end `failed` on exactly
//! that difference after the first read-back (checked here), which shows the
//! account disabled and stripped; retrying would only add backoff.
//!
//!   JML_BENCH_EVENTS=1000 cargo bench -p mesh-e2e --bench e2e

use std::time::{Duration, Instant};

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{millis, task};
use mesh_e2e::{Mesh, MeshOptions, Person};

const UNPROVEN: &str = "credentials: the target cannot prove that none remain";

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Per event: the last task's finish minus the coordinator's receipt, in ms.
fn latencies(statuses: &[pb::EventStatus]) -> Vec<i64> {
    let mut out: Vec<i64> = statuses
        .iter()
        .filter_map(|s| {
            let received = millis(&s.received_at)?;
            let finished = s.tasks.iter().filter_map(|t| millis(&t.finished_at)).max()?;
            Some(finished - received)
        })
        .collect();
    out.sort_unstable();
    out
}

async fn phase(
    mesh: &Mesh,
    persons: &[Person],
    kind: pb::EventKind,
    label: &str,
) -> anyhow::Result<Vec<pb::EventStatus>> {
    let ids: Vec<String> = persons.iter().map(|p| format!("{}-{label}", p.username)).collect();
    let events = persons.iter().zip(&ids).map(|(p, id)| p.event(id, kind)).collect();
    let start = Instant::now();
    mesh.submit_all(events).await?;
    let submitted = start.elapsed();
    let statuses = mesh.wait_finished(&ids, Duration::from_secs(7200)).await?;
    let wall = start.elapsed();
    let statuses: Vec<pb::EventStatus> = statuses.into_values().collect();
    let lat = latencies(&statuses);
    println!(
        "{label}: {} events in {:.1} s (submitted in {:.1} s): {:.1} events/s; p50 {} ms, p99 {} ms, max {} ms",
        persons.len(),
        wall.as_secs_f64(),
        submitted.as_secs_f64(),
        persons.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0)
    );
    Ok(statuses)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("JML_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let options = MeshOptions { deadline: "1h".into(), max_attempts: 8, base_backoff_ms: 200 };
    let mut mesh = Mesh::start("bench", options).await?;
    let persons: Vec<Person> = (0..n).map(|i| Person::new(&mesh.run_id, i, "Sales")).collect();

    let joined = phase(&mesh, &persons, pb::EventKind::Joiner, "joiners").await?;
    let unverified = joined.iter().filter(|s| s.state != pb::EventState::Verified as i32).count();
    anyhow::ensure!(unverified == 0, "{unverified} joiners not verified");

    mesh.stop_coordinator().await?;
    mesh.options.max_attempts = 1;
    mesh.start_coordinator().await?;
    let left = phase(&mesh, &persons, pb::EventKind::Leaver, "leavers").await?;
    for status in &left {
        for target in ["ldap", "aws"] {
            let task = task(status, target);
            anyhow::ensure!(task.state == pb::TaskState::Verified as i32, "leaver on {target}: {task:?}");
        }
        for target in ["scim", "vault"] {
            let task = task(status, target);
            let read_back = task.read_back.clone().unwrap_or_default();
            anyhow::ensure!(
                task.differences == [UNPROVEN]
                    && read_back.exists
                    && !read_back.enabled
                    && read_back.entitlements.is_empty(),
                "leaver on {target}: {task:?}"
            );
        }
    }
    println!("every joiner verified on the four targets; every leaver disabled and stripped on the four targets");
    println!("audit: {}", mesh.verify_audit().await?);
    Ok(())
}
