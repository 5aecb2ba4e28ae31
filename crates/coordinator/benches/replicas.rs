//! Replica benchmark: events per second with one, two and three `coordinator`
//! replica processes on one PostgreSQL database, beside one `coordinator`
//! process on SQLite (issue 12: the ratios are the figure).
//!
//! Each run starts four fresh in-process reference connectors
//! (connector-memory over gRPC on loopback, as in the propagation benchmark),
//! a fresh database (a SQLite file, or a new PostgreSQL database on the
//! cluster of `JML_TEST_POSTGRES_URL`) and the coordinator processes; then
//! `--events` joiners (default 2,000) are submitted round-robin over the
//! replicas' lifecycle APIs by `--submitters` concurrent clients (default 8),
//! and the clock stops when the database shows every event verified (the
//! count is polled every 20 ms from the benchmark's own connection). The
//! table gives backend, replicas, events, seconds, events/s and the ratio to
//! the SQLite run.
//!
//! ```text
//! deploy/local/postgresql.sh start RUN_DIR && source RUN_DIR/postgresql.env
//! cargo bench -p coordinator --bench replicas -- [--events N] [--submitters S] [--concurrency C] [--coordinator-bin PATH]
//! ```
//!
//! The coordinator binary: `--coordinator-bin PATH`, else `JML_COORDINATOR_BIN`,
//! else the one `cargo bench` builds beside this benchmark (same profile),
//! else `target/release/coordinator` in the workspace, else `target/debug/coordinator`
//! (build it with `cargo build --release -p coordinator --bin coordinator`).
//! Every process runs on this machine, so the replicas share its cores with
//! PostgreSQL, the connectors and the submitters: the figure is how the
//! replicas scale here, not on separate machines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use connector_kit::contract as pb;
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Executor, Row};
use tonic::transport::Channel;

/// What to run.
struct Options {
    /// Joiners per run.
    events: usize,
    /// Concurrent submitting clients.
    submitters: usize,
    /// Per-target concurrency in the policy (per replica).
    concurrency: usize,
    /// The coordinator binary, when given.
    coordinator_bin: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        events: 2000,
        submitters: 8,
        concurrency: 32,
        coordinator_bin: std::env::var_os("JML_COORDINATOR_BIN").map(PathBuf::from),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1);
        let number = value.and_then(|v| v.parse::<usize>().ok());
        match (args[i].as_str(), number) {
            ("--events", Some(v)) => options.events = v.max(1),
            ("--submitters", Some(v)) => options.submitters = v.max(1),
            ("--concurrency", Some(v)) => options.concurrency = v.max(1),
            ("--coordinator-bin", _) if value.is_some() => options.coordinator_bin = value.map(PathBuf::from),
            _ => {
                // `cargo bench` passes `--bench`; anything unknown is skipped.
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

/// The coordinator binary to run: see the module documentation.
fn coordinator_bin(options: &Options) -> anyhow::Result<PathBuf> {
    if let Some(path) = &options.coordinator_bin {
        if !path.is_file() {
            bail!("coordinator binary {} does not exist", path.display());
        }
        return Ok(path.clone());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        PathBuf::from(env!("CARGO_BIN_EXE_coordinator")),
        workspace.join("target/release/coordinator"),
        workspace.join("target/debug/coordinator"),
    ];
    candidates.into_iter().find(|path| path.is_file()).context(
        "no coordinator binary: build it with `cargo build --release -p coordinator --bin coordinator` \
         or pass --coordinator-bin PATH (or JML_COORDINATOR_BIN)",
    )
}

/// Where the coordinators keep their state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// The four reference connectors of one run.
struct Connectors {
    servers: Vec<RunningServer>,
    endpoints: BTreeMap<&'static str, String>,
}

async fn connectors() -> anyhow::Result<Connectors> {
    let catalogue = MemoryConfig::default().entitlements;
    let mut servers = Vec::new();
    let mut endpoints = BTreeMap::new();
    for id in ["ldap", "scim", "vault", "aws"] {
        let target = Arc::new(MemoryTarget::new(&catalogue, None));
        let server = ConnectorServer::new(MemoryConnector::new(id, target)).bind("127.0.0.1:0".parse()?).await?;
        endpoints.insert(id, server.endpoint());
        servers.push(server);
    }
    Ok(Connectors { servers, endpoints })
}

/// The policy of the propagation benchmark: every joiner gets an account
/// on all four targets, Engineering two more groups.
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

fn joiner(i: usize) -> pb::LifecycleEvent {
    let name = format!("b{i:07}");
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

/// One coordinator process, killed when dropped.
struct Replica {
    child: Child,
    client: LifecycleClient<Channel>,
}

impl Replica {
    async fn start(bin: &Path, policy: &Path, db: &str, replica_id: Option<&str>) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(["--policy", &policy.display().to_string()])
            .args(["--listen", "127.0.0.1:0", "--insecure-plaintext", "--insecure-no-auth"])
            // A PostgreSQL URL carries a password: through the environment, not argv.
            .env("JML_DB", db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(id) = replica_id {
            command.env("JML_REPLICA_ID", id);
        }
        let mut child = command.spawn().with_context(|| format!("start {}", bin.display()))?;
        let stdout = child.stdout.take().context("coordinator stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the coordinator printed {line:?}, not `listening on ADDR`");
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.lines() {});
        let client = LifecycleClient::connect(format!("http://{addr}")).await?;
        Ok(Self { child, client })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark's own connection to the run's database, to count events.
enum Monitor {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Monitor {
    /// (verified events, failed events).
    async fn finished(&self) -> anyhow::Result<(usize, usize)> {
        const COUNT: &str = "SELECT \
            COALESCE(SUM(CASE WHEN state = 'verified' THEN 1 ELSE 0 END), 0), \
            COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) FROM events";
        let (verified, failed): (i64, i64) = match self {
            Self::Sqlite(pool) => {
                let row = sqlx::query(COUNT).fetch_one(pool).await?;
                (row.try_get(0)?, row.try_get(1)?)
            }
            Self::Postgres(pool) => {
                let row = sqlx::query(COUNT).fetch_one(pool).await?;
                (row.try_get(0)?, row.try_get(1)?)
            }
        };
        Ok((usize::try_from(verified)?, usize::try_from(failed)?))
    }
}

/// A fresh PostgreSQL database on the benchmark cluster: its name and URL.
async fn postgres_database(admin: &PgConnectOptions, url: &str) -> anyhow::Result<(String, String)> {
    let pool = PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await?;
    let name = format!("jml_bench_replicas_{}", uuid::Uuid::new_v4().simple());
    pool.execute(format!("CREATE DATABASE {name}").as_str()).await?;
    pool.close().await;
    Ok((name.clone(), with_database(url, &name)))
}

async fn drop_postgres_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await?;
    pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
    pool.close().await;
    Ok(())
}

/// `url` naming `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// One measured run.
struct Measurement {
    backend: Backend,
    replicas: usize,
    events: usize,
    seconds: f64,
}

impl Measurement {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// The PostgreSQL cluster: its URL and admin connection options.
struct Cluster {
    url: String,
    admin: PgConnectOptions,
}

async fn run(
    options: &Options,
    bin: &Path,
    backend: Backend,
    replicas: usize,
    cluster: &Cluster,
) -> anyhow::Result<Measurement> {
    let dir = tempfile::tempdir()?;
    let connectors = connectors().await?;
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy(&connectors.endpoints, options.concurrency))?;
    let (db, monitor, database) = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("bench.db");
            (path.display().to_string(), None, None)
        }
        Backend::Postgres => {
            let (name, url) = postgres_database(&cluster.admin, &cluster.url).await?;
            let pool =
                PgPoolOptions::new().max_connections(1).connect_with(cluster.admin.clone().database(&name)).await?;
            (url, Some(Monitor::Postgres(pool)), Some(name))
        }
    };
    let mut processes = Vec::new();
    for i in 0..replicas {
        let id = format!("bench-{}", i + 1);
        let replica_id = (backend == Backend::Postgres).then_some(id.as_str());
        processes.push(Replica::start(bin, &policy_file, &db, replica_id).await?);
    }
    let monitor = match monitor {
        Some(monitor) => monitor,
        // The coordinator created the file (WAL mode): read it beside it.
        None => Monitor::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(SqliteConnectOptions::new().filename(dir.path().join("bench.db")))
                .await?,
        ),
    };
    let clients: Arc<Vec<LifecycleClient<Channel>>> = Arc::new(processes.iter().map(|r| r.client.clone()).collect());

    let begin = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for _ in 0..options.submitters {
        let (clients, next, total) = (clients.clone(), next.clone(), options.events);
        submitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, tonic::Status>(());
                }
                let mut client = clients[i % clients.len()].clone();
                client.submit_event(pb::SubmitEventRequest { event: Some(joiner(i)) }).await?;
            }
        }));
    }
    for submitter in submitters {
        submitter.await??;
    }
    let submitted = begin.elapsed();
    loop {
        let (verified, failed) = monitor.finished().await?;
        if failed > 0 {
            bail!("{failed} events failed ({} with {replicas} replicas)", backend.name());
        }
        if verified >= options.events {
            break;
        }
        if begin.elapsed() > Duration::from_secs(1800) {
            bail!("only {verified} of {} events verified after 30 minutes", options.events);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = begin.elapsed().as_secs_f64();
    eprintln!(
        "{} x{replicas}: {} events submitted in {:.2} s, all verified in {seconds:.2} s",
        backend.name(),
        options.events,
        submitted.as_secs_f64()
    );
    drop(processes);
    match monitor {
        Monitor::Sqlite(pool) => pool.close().await,
        Monitor::Postgres(pool) => pool.close().await,
    }
    if let Some(name) = database {
        drop_postgres_database(&cluster.admin, &name).await?;
    }
    drop(connectors.servers);
    Ok(Measurement { backend, replicas, events: options.events, seconds })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|line| line.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    let bin = coordinator_bin(&options)?;
    let url = std::env::var("JML_TEST_POSTGRES_URL").context(
        "JML_TEST_POSTGRES_URL is not set: run `deploy/local/postgresql.sh start RUN_DIR` and \
         `source RUN_DIR/postgresql.env`",
    )?;
    let admin = PgConnectOptions::from_str(&url).context("JML_TEST_POSTGRES_URL is not a postgres:// URL")?;
    let cluster = Cluster { url, admin };
    println!("coordinator: {}", bin.display());
    println!(
        "cores: {}; load average before: {}; {} joiners, {} submitters, per-target concurrency {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_average(),
        options.events,
        options.submitters,
        options.concurrency
    );
    let mut measurements = Vec::new();
    for (backend, replicas) in
        [(Backend::Sqlite, 1), (Backend::Postgres, 1), (Backend::Postgres, 2), (Backend::Postgres, 3)]
    {
        measurements.push(run(&options, &bin, backend, replicas, &cluster).await?);
    }
    println!("load average after: {}", load_average());
    let sqlite = measurements.iter().find(|m| m.backend == Backend::Sqlite).map(Measurement::rate).unwrap_or(1.0);
    println!();
    println!("| backend | replicas | events | seconds | events/s | ratio to SQLite |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in &measurements {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} |",
            m.backend.name(),
            m.replicas,
            m.events,
            m.seconds,
            m.rate(),
            m.rate() / sqlite
        );
    }
    Ok(())
}
