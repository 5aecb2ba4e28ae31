//! The coordinator's Prometheus endpoint, scraped over HTTP after known
//! events driven through the engine against four reference connectors: the
//! counts match what the coordinator's own status says happened.
//!
//! One test in this binary: the registry is process-wide, so nothing else
//! may add to the counts.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use connector_kit::contract as pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape: every sample as (metric name, labels, value), and the
/// OpenMetrics exemplars (`# {labels} value`) as (metric name, labels of
/// the sample, labels of the exemplar).
struct Scrape(Vec<(String, Labels, f64)>, Vec<(String, Labels, Labels)>);

/// A sample's or an exemplar's labels.
type Labels = BTreeMap<String, String>;

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut exemplars = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (line, exemplar) = match line.split_once(" # {") {
                Some((sample, exemplar)) => (sample, exemplar.split_once('}').map(|(labels, _)| parse_labels(labels))),
                None => (line, None),
            };
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if let Some(exemplar) = exemplar {
                exemplars.push((name.to_owned(), parse_labels(labels), exemplar));
            }
            samples.push((name.to_owned(), parse_labels(labels), value.parse().expect("sample value")));
        }
        Self(samples, exemplars)
    }

    /// The sum of `name`'s samples whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, labels, _)| {
                n == name && with.iter().all(|(k, v)| labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// `key="value",key="value"` (values may hold commas and escaped quotes).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    labels
}

async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint reachable");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Scrape::parse(body)
}

async fn status(mesh: &mut Mesh, event_id: &str) -> pb::EventStatus {
    mesh.client.get_event(pb::GetEventRequest { event_id: event_id.into() }).await.expect("status").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counts_match_the_events_run() {
    // ldap has a 1 s deadline: the SRE joiner's ldap task, waiting for
    // approvals that never come, certainly breaches it.
    let mut mesh = Mesh::start_with(8, |policy| policy.replace("deadline: 10m", "deadline: 1s")).await;
    let metrics_addr = connector_kit::metrics::serve("127.0.0.1:0".parse().expect("address")).await.expect("serve");

    let mut events = Vec::new();
    for (i, name) in ["ada", "bob", "cy"].iter().enumerate() {
        let id = format!("j{i}");
        submit(&mut mesh.client, event(&id, pb::EventKind::Joiner, &format!("P{i}"), person(name, "Engineering"), ""))
            .await;
        assert_eq!(until_terminal(&mut mesh.client, &id).await.state, pb::EventState::Verified as i32);
        events.push(id);
    }
    submit(&mut mesh.client, event("l0", pb::EventKind::Leaver, "P0", Default::default(), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "l0").await.state, pb::EventState::Verified as i32);
    events.push("l0".into());

    // SCIM answers reads that disagree: its task is retried, then fails.
    mesh.target("scim").set_faults(connector_memory::Faults { read_disagrees: true, ..Default::default() });
    submit(&mut mesh.client, event("f0", pb::EventKind::Joiner, "P7", person("dee", "Sales"), "")).await;
    let failed = until_terminal(&mut mesh.client, "f0").await;
    mesh.target("scim").set_faults(connector_memory::Faults::default());
    assert_eq!(task(&failed, "scim").state, pb::TaskState::Failed as i32);
    events.push("f0".into());

    // Privileged grants await two approvals on ldap and vault.
    submit(&mut mesh.client, event("a0", pb::EventKind::Joiner, "P8", person("gus", "SRE"), "")).await;
    until_settled(&mut mesh.client, "a0").await;
    events.push("a0".into());

    let breached = async {
        while !task(&status(&mut mesh, "a0").await, "ldap").deadline_breached {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), breached).await.expect("the ldap deadline breach is recorded");

    // Known effective times: a Sales hire effective ten seconds ahead is
    // counted from its effective time (so well under ten seconds), not from
    // its receipt; a mover whose source changed an hour ago counts that hour
    // from source to verified.
    let ahead = coordinator::event::format_time(Some(coordinator::event::now_ms() + 10_000));
    submit(&mut mesh.client, event("e0", pb::EventKind::Joiner, "P9", person("eli", "Sales"), &ahead)).await;
    let hired = until_terminal(&mut mesh.client, "e0").await;
    assert_eq!(hired.state, pb::EventState::Verified as i32);
    events.push("e0".into());
    let an_hour_ago = coordinator::event::format_time(Some(coordinator::event::now_ms() - 3_600_000));
    let moved = pb::LifecycleEvent {
        source_changed_at: an_hour_ago,
        ..event("m1", pb::EventKind::Mover, "P1", person("bob", "Engineering"), "")
    };
    submit(&mut mesh.client, moved).await;
    assert_eq!(until_terminal(&mut mesh.client, "m1").await.state, pb::EventState::Verified as i32);
    events.push("m1".into());

    // What the coordinator's status says happened, per target.
    let mut statuses = BTreeMap::new();
    for id in &events {
        statuses.insert(id.clone(), status(&mut mesh, id).await);
    }
    let count = |target: &str, what: &dyn Fn(&str, &pb::TaskStatus) -> bool| -> f64 {
        statuses
            .iter()
            .flat_map(|(id, s)| s.tasks.iter().map(move |t| (id.as_str(), t)))
            .filter(|(id, t)| t.target_id == target && what(id, t))
            .count() as f64
    };
    let state_is = |state: pb::TaskState| move |_: &str, t: &pb::TaskStatus| t.state == state as i32;
    let awaiting: f64 = TARGETS.iter().map(|t| count(t, &state_is(pb::TaskState::AwaitingApproval))).sum();
    assert_eq!(awaiting, 2.0, "ldap and vault await approval");

    // Gauges are refreshed by the scheduler about once a second.
    let scraped = async {
        loop {
            let scraped = scrape(metrics_addr).await;
            if scraped.sum("jml_tasks_awaiting_approval", &[]) == awaiting
                && scraped.sum("jml_tasks_overdue", &[("target", "ldap")]) >= 1.0
            {
                return scraped;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let metrics = tokio::time::timeout(Duration::from_secs(60), scraped).await.expect("gauges refreshed");

    for target in TARGETS {
        let target_label = [("target", target)];
        let verified = count(target, &state_is(pb::TaskState::Verified));
        assert_eq!(metrics.sum("jml_tasks_verified_total", &target_label), verified, "{target} verified");
        assert_eq!(metrics.sum("jml_propagation_seconds_count", &target_label), verified, "{target} propagation");
        let revoked = count(target, &|id, t| id == "l0" && t.state == pb::TaskState::Verified as i32);
        assert_eq!(revoked, 1.0, "the leaver revoked {target}");
        assert_eq!(metrics.sum("jml_revocation_seconds_count", &target_label), revoked, "{target} revocation");
        let breaches = count(target, &|_, t| t.deadline_breached);
        assert_eq!(metrics.sum("jml_deadline_breaches_total", &target_label), breaches, "{target} breaches");
        let attempts: u32 =
            statuses.values().flat_map(|s| s.tasks.iter()).filter(|t| t.target_id == target).map(|t| t.attempts).sum();
        let applies = [("target", target), ("operation", "apply"), ("outcome", "ok")];
        assert_eq!(metrics.sum("jml_coordinator_connector_calls_total", &applies), f64::from(attempts), "{target}");
        let apply_latency = [("target", target), ("operation", "apply")];
        assert_eq!(
            metrics.sum("jml_coordinator_connector_call_duration_seconds_count", &apply_latency),
            f64::from(attempts),
            "{target} apply latency"
        );
        let awaiting_here = count(target, &state_is(pb::TaskState::AwaitingApproval));
        assert_eq!(metrics.sum("jml_tasks_awaiting_approval", &target_label), awaiting_here, "{target} awaiting");
        assert_eq!(
            metrics.sum("jml_queue_depth", &[("target", target), ("state", "awaiting_approval")]),
            awaiting_here,
            "{target} queue"
        );
    }
    assert!(metrics.sum("jml_deadline_breaches_total", &[("target", "ldap")]) >= 1.0);
    let scim_failed = task(&statuses["f0"], "scim");
    let mismatch = [("target", "scim"), ("error_kind", "read_back_mismatch")];
    assert_eq!(metrics.sum("jml_task_failures_total", &mismatch), 1.0);
    assert_eq!(metrics.sum("jml_task_retries_total", &mismatch), f64::from(scim_failed.attempts - 1));
    assert_eq!(metrics.sum("jml_task_failures_total", &[]), 1.0, "nothing else failed");
    let workflow = [("target", "ldap"), ("workflow", "staff,engineering")];
    assert_eq!(
        metrics.sum("jml_tasks_verified_total", &workflow),
        4.0,
        "three engineering joiners and a mover on ldap"
    );

    // Buckets reach a day.
    let ldap_sales = [("target", "ldap"), ("workflow", "staff,sales")];
    let bucket = |name: &str, le: &str, with: &[(&str, &str)]| {
        let mut labels = with.to_vec();
        labels.push(("le", le));
        metrics.sum(&format!("{name}_bucket"), &labels)
    };
    assert_eq!(bucket("jml_propagation_seconds", "86400.0", &ldap_sales), 2.0, "f0 and e0 on ldap: {:?}", metrics.0);
    // e0 waited ten seconds for its effective time; that is not propagation.
    assert_eq!(bucket("jml_propagation_seconds", "5.0", &ldap_sales), 2.0, "counted from the effective time");
    // The leaver: one time to revoke, every target proven.
    assert_eq!(metrics.sum("jml_time_to_revoke_seconds_count", &[("proven", "true")]), 1.0);
    assert_eq!(metrics.sum("jml_time_to_revoke_seconds_count", &[("proven", "false")]), 0.0);
    assert_eq!(bucket("jml_time_to_revoke_seconds", "60.0", &[]), 1.0, "l0 revoked within a minute");
    // m1: an hour (and a little) from the source's change to verified.
    let mover = [("kind", "mover")];
    assert_eq!(metrics.sum("jml_source_to_verified_seconds_count", &mover), 1.0);
    assert_eq!(bucket("jml_source_to_verified_seconds", "3600.0", &mover), 0.0);
    assert_eq!(bucket("jml_source_to_verified_seconds", "7200.0", &mover), 1.0);
    // Exemplars carry the trace id: e0's, the latest observation of its bucket.
    let carries = |trace_id: &str| {
        metrics.1.iter().any(|(name, labels, exemplar)| {
            name == "jml_propagation_seconds_bucket"
                && labels.get("target").is_some_and(|t| t == "ldap")
                && exemplar.get("trace_id").is_some_and(|t| t == trace_id)
        })
    };
    assert!(!hired.trace_id.is_empty() && carries(&hired.trace_id), "e0's trace id in an exemplar: {:?}", metrics.1);
}
