//! Propagation benchmark: four reference connectors on loopback, the SQLite
//! store, the coordinator's gRPC API.
//!
//! Two runs:
//! - *sustained*: `--events` joiners submitted as fast as `--submitters`
//!   concurrent clients can, until every one is verified on every target:
//!   events/s and verified target changes/s;
//! - *paced*: `--rate` events/s for `--seconds`, open loop: p50 / p99 from
//!   submit to all targets verified.
//!
//! `cargo bench -p coordinator --bench propagation -- [--events N] [--rate R] [--seconds S] [--trace-export]`
//!
//! Logs go through the kit's `telemetry::init` either way. With
//! `--trace-export` (or `JML_BENCH_TRACE_EXPORT=1`) every span of the
//! in-process mesh (coordinator and connectors) is also exported over
//! OTLP/gRPC, always sampled, to a receiver in this process that accepts and
//! drops them: the overhead of tracing export, for the on/off ratio.

#[global_allocator]
static GLOBAL: coordinator::Allocator = coordinator::Allocator;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::server::RunningCoordinator;
use coordinator::store::EventState;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::sync::Mutex;

struct Options {
    events: usize,
    submitters: usize,
    rate: u64,
    seconds: u64,
    concurrency: usize,
    trace_export: bool,
}

fn options() -> Options {
    let mut options = Options {
        events: 5000,
        submitters: 64,
        rate: 200,
        seconds: 10,
        concurrency: 64,
        trace_export: std::env::var("JML_BENCH_TRACE_EXPORT").is_ok_and(|v| v == "1"),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--trace-export" {
            options.trace_export = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--events", Some(v)) => options.events = v as usize,
            ("--submitters", Some(v)) => options.submitters = v as usize,
            ("--rate", Some(v)) => options.rate = v,
            ("--seconds", Some(v)) => options.seconds = v,
            ("--concurrency", Some(v)) => options.concurrency = v as usize,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

fn policy(endpoints: &BTreeMap<&str, String>, concurrency: usize) -> String {
    let mut targets = String::new();
    for (id, endpoint) in endpoints {
        targets.push_str(&format!(
            "  - {{ id: {id}, endpoint: \"{endpoint}\", insecure_plaintext: true, account_name: \"{{username}}\", concurrency: {concurrency}, attributes: {{ display_name: \"{{display_name}}\" }} }}\n"
        ));
    }
    format!(
        r#"version: 1
source_of_truth: {{ system: workday, attributes: [username, display_name, department] }}
targets:
{targets}workflows:
  - name: staff
    owner: it@example.org
    trigger: {{ events: [joiner, mover] }}
    grants: {{ ldap: [ {{ kind: group, id: staff }} ], scim: [ {{ kind: group, id: staff }} ], vault: [ {{ kind: role, id: viewer }} ], aws: [ {{ kind: group, id: staff }} ] }}
  - name: engineering
    owner: eng@example.org
    trigger: {{ events: [joiner, mover], when: {{ department: Engineering }} }}
    grants: {{ ldap: [ {{ kind: group, id: engineering }} ], aws: [ {{ kind: group, id: engineering }} ] }}
"#
    )
}

fn joiner(prefix: &str, i: usize) -> pb::LifecycleEvent {
    let name = format!("{prefix}{i:07}");
    pb::LifecycleEvent {
        event_id: format!("bench-{name}"),
        kind: pb::EventKind::Joiner as i32,
        person_id: name.clone(),
        attributes: BTreeMap::from([
            ("username".into(), name.clone()),
            ("display_name".into(), format!("Person {name}")),
            ("department".into(), if i % 2 == 0 { "Engineering" } else { "Sales" }.into()),
        ]),
        effective_at: String::new(),
        source_system: "workday".into(),
        urgent: false,
        source_changed_at: String::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

type Started = Arc<Mutex<HashMap<String, Instant>>>;

/// Collects submit -> finished latencies for events named in `started`.
fn collector(
    engine: &Engine,
    started: Started,
    expected: usize,
) -> tokio::task::JoinHandle<(Vec<Duration>, usize, Instant)> {
    let mut finished = engine.subscribe_finished();
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(expected);
        let mut failed = 0;
        while latencies.len() + failed < expected {
            let Ok((event_id, state)) = finished.recv().await else { break };
            let now = Instant::now();
            let Some(start) = started.lock().await.remove(&event_id) else { continue };
            if state == EventState::Verified {
                latencies.push(now - start);
            } else {
                failed += 1;
            }
        }
        (latencies, failed, Instant::now())
    })
}

/// An OTLP/gRPC trace receiver that accepts every export and drops it.
struct DroppingReceiver;

#[tonic::async_trait]
impl TraceService for DroppingReceiver {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Serves [`DroppingReceiver`] on a free loopback port; answers its endpoint.
async fn dropping_receiver() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(DroppingReceiver))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(format!("http://{addr}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    if options.trace_export {
        connector_kit::telemetry::init_with_otlp_endpoint("coordinator-bench", &dropping_receiver().await?);
    } else {
        connector_kit::telemetry::init("coordinator-bench");
    }
    println!("trace export: {}", if options.trace_export { "on (OTLP/gRPC, every span sampled)" } else { "off" });
    let dir = tempfile::tempdir()?;
    let catalogue = MemoryConfig::default().entitlements;
    let mut servers = Vec::new();
    let mut endpoints = BTreeMap::new();
    for id in ["ldap", "scim", "vault", "aws"] {
        let target = Arc::new(MemoryTarget::new(&catalogue, None));
        let server = ConnectorServer::new(MemoryConnector::new(id, target)).bind("127.0.0.1:0".parse()?).await?;
        endpoints.insert(id, server.endpoint());
        servers.push(server);
    }
    let policy = Policy::parse(&policy(&endpoints, options.concurrency))?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    let engine = Engine::start(store, Arc::new(policy), EngineConfig::default()).await?;
    let running = RunningCoordinator::bind("127.0.0.1:0".parse()?, engine.clone()).await?;
    let client = LifecycleClient::connect(running.endpoint()).await?;
    println!("cores: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));

    // Sustained throughput.
    let started: Started = Arc::default();
    let collect = collector(&engine, started.clone(), options.events);
    let begin = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for _ in 0..options.submitters {
        let (mut client, started, next) = (client.clone(), started.clone(), next.clone());
        let total = options.events;
        submitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, tonic::Status>(());
                }
                let event = joiner("s", i);
                started.lock().await.insert(event.event_id.clone(), Instant::now());
                client.submit_event(pb::SubmitEventRequest { event: Some(event) }).await?;
            }
        }));
    }
    for submitter in submitters {
        submitter.await??;
    }
    let submitted = begin.elapsed();
    let (mut latencies, failed, end) = collect.await?;
    let elapsed = end - begin;
    latencies.sort();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "sustained: {} events ({} failed) in {:.2} s (submitted in {:.2} s): {:.0} events/s, {:.0} verified target changes/s; latency p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        failed,
        elapsed.as_secs_f64(),
        submitted.as_secs_f64(),
        rate,
        rate * 4.0,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );

    // Paced latency.
    let total = (options.rate * options.seconds) as usize;
    let started: Started = Arc::default();
    let collect = collector(&engine, started.clone(), total);
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let begin = Instant::now();
    let mut sends = Vec::new();
    for i in 0..total {
        let due = begin + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (mut client, started) = (client.clone(), started.clone());
        sends.push(tokio::spawn(async move {
            let event = joiner("p", i);
            started.lock().await.insert(event.event_id.clone(), Instant::now());
            client.submit_event(pb::SubmitEventRequest { event: Some(event) }).await.map(|_| ())
        }));
    }
    for send in sends {
        send.await??;
    }
    let (mut latencies, failed, _) = collect.await?;
    latencies.sort();
    println!(
        "paced: {} events/s for {} s: {} verified ({} failed); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        options.rate,
        options.seconds,
        latencies.len(),
        failed,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    running.shutdown().await?;
    connector_kit::telemetry::shutdown();
    drop(servers);
    Ok(())
}
