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
//!
//! With `JML_BENCH_URGENT=1` it measures instead an urgent leaver's time to
//! revoke as each target's own client sees it (slapd: locked and in no
//! group; scim2-server: inactive; moto: disabled tag and in no group;
//! RustyVault: none of the joiner's policies left), from its submission:
//! first with nothing else queued (idle), then submitted right after N
//! joiners were accepted (the backlog), and prints loaded / idle per target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{millis, task};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};

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

/// Records what one poll of a target showed: revoked (when), not yet, or a
/// failed read (counted, read again next round).
fn note(
    seen: &mut BTreeMap<&'static str, Duration>,
    failed_reads: &mut usize,
    target: &'static str,
    revoked: anyhow::Result<bool>,
    since: Instant,
) {
    match revoked {
        Ok(true) => {
            seen.insert(target, since.elapsed());
        }
        Ok(false) => {}
        Err(_) => *failed_reads += 1,
    }
}

/// Polls each target with its own client until it shows `person`'s access
/// revoked; per target, the time from `since`.
async fn seen_revoked(
    targets: &Targets,
    person: &Person,
    vault_policies: &BTreeSet<String>,
    since: Instant,
) -> anyhow::Result<BTreeMap<&'static str, Duration>> {
    let mut seen = BTreeMap::new();
    let limit = Duration::from_secs(1800);
    // A target saturated by the backlog may refuse a read now and then: a
    // failed read proves nothing, and the next round reads again.
    let mut failed_reads = 0usize;
    while seen.len() < 4 {
        anyhow::ensure!(since.elapsed() < limit, "not revoked everywhere within {limit:?}: {seen:?}");
        if !seen.contains_key("ldap") {
            let read = targets.ldap.account(&person.username).await;
            let revoked = read.map(|a| a.is_none_or(|a| a.locked && a.groups.is_empty()));
            note(&mut seen, &mut failed_reads, "ldap", revoked, since);
        }
        if !seen.contains_key("scim") {
            let revoked = targets.scim.account(&person.email).await.map(|a| a.is_none_or(|a| !a.active));
            note(&mut seen, &mut failed_reads, "scim", revoked, since);
        }
        if !seen.contains_key("aws") {
            let read = targets.iam.account(&person.username).await;
            let revoked = read.map(|a| a.is_none_or(|a| a.disabled_tag && a.groups.is_empty()));
            note(&mut seen, &mut failed_reads, "aws", revoked, since);
        }
        if !seen.contains_key("vault") {
            let read = targets.vault.user(&person.username).await;
            let revoked = read.map(|p| p.is_none_or(|p| p.is_disjoint(vault_policies)));
            note(&mut seen, &mut failed_reads, "vault", revoked, since);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if failed_reads > 0 {
        println!("({failed_reads} reads of a target failed while polling and were repeated)");
    }
    Ok(seen)
}

/// An urgent leaver for `person`, submitted now; per target, when its own
/// client saw the access revoked.
async fn urgent_leaver(
    mesh: &Mesh,
    targets: &Targets,
    person: &Person,
    label: &str,
    vault_policies: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<&'static str, Duration>> {
    anyhow::ensure!(!vault_policies.is_empty(), "{} holds no Vault policy before leaving", person.username);
    let mut event = person.event(&format!("{}-{label}", person.username), pb::EventKind::Leaver);
    event.urgent = true;
    let since = Instant::now();
    mesh.submit(event).await?;
    seen_revoked(targets, person, vault_policies, since).await
}

async fn urgent(mesh: &Mesh, n: usize) -> anyhow::Result<()> {
    let targets = Targets::from_env().await?;
    let idle = Person::new(&mesh.run_id, n, "Sales");
    let loaded = Person::new(&mesh.run_id, n + 1, "Sales");
    phase(mesh, &[idle.clone(), loaded.clone()], pb::EventKind::Joiner, "first").await?;
    // Read before any backlog: the policies each holds, to see them go.
    let idle_policies = targets.vault.user(&idle.username).await?.unwrap_or_default();
    let loaded_policies = targets.vault.user(&loaded.username).await?.unwrap_or_default();
    let at_idle = urgent_leaver(mesh, &targets, &idle, "urgent-idle", &idle_policies).await?;
    println!("idle: {at_idle:?}");
    let persons: Vec<Person> = (0..n).map(|i| Person::new(&mesh.run_id, i, "Sales")).collect();
    let ids: Vec<String> = persons.iter().map(|p| format!("{}-backlog", p.username)).collect();
    let started = Instant::now();
    mesh.submit_all(persons.iter().zip(&ids).map(|(p, id)| p.event(id, pb::EventKind::Joiner)).collect()).await?;
    println!("{n} joiners accepted in {:.1} s; the urgent leaver follows", started.elapsed().as_secs_f64());
    let at_load = urgent_leaver(mesh, &targets, &loaded, "urgent-loaded", &loaded_policies).await?;
    println!("with the backlog: {at_load:?}");
    let mut unfinished = 0;
    for id in &ids {
        let state = mesh.status(id).await?.state;
        if state != pb::EventState::Verified as i32 && state != pb::EventState::Failed as i32 {
            unfinished += 1;
        }
    }
    println!("when the urgent leaver was revoked everywhere, {unfinished} of the {n} joiners were unfinished");
    println!("target   idle (ms)   with the backlog (ms)   ratio");
    for (target, idle_time) in &at_idle {
        let load_time = at_load[target];
        println!(
            "{target:<8} {:>9} {:>23} {:>7.2}",
            idle_time.as_millis(),
            load_time.as_millis(),
            load_time.as_secs_f64() / idle_time.as_secs_f64().max(0.001)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("JML_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let options = MeshOptions { deadline: "1h".into(), max_attempts: 8, base_backoff_ms: 200 };
    let mut mesh = Mesh::start("bench", options).await?;
    if std::env::var("JML_BENCH_URGENT").is_ok_and(|v| v == "1") {
        let result = urgent(&mesh, n).await;
        mesh.stop_all().await?;
        return result;
    }
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
            // LDAP's revocation is proven with a residual risk (connections
            // bound before it stay bound): verified either way.
            let proven = [pb::TaskState::Verified as i32, pb::TaskState::VerifiedWithResidualRisk as i32];
            anyhow::ensure!(proven.contains(&task.state), "leaver on {target}: {task:?}");
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
