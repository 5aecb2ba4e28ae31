//! The mesh under test: the four real connector binaries (mutual TLS, each on
//! a free port) and the real coordinator binary on a fresh SQLite file, wired
//! by the quickstart's templates, plus the calls a test makes on it.
//!
//! The coordinator serves TLS and authenticates every caller from a callers
//! file ([`Mesh::callers_path`]): the HR integration and each approver with a
//! random bearer token made for the run, `jmlctl` with its client
//! certificate (the auditor).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use mesh_harness::{MeshProcess, binary, target_env, workspace_root};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A lifecycle API client that sends a bearer token with every call.
pub type Client = LifecycleClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct BearerToken(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The callers the coordinator knows, with a token each: (principal, roles).
pub const TOKEN_CALLERS: [(&str, &str); 5] = [
    ("hr-integration", "roles: [source], source_systems: [workday]"),
    ("ops-admin", "roles: [admin]"),
    ("alice", "roles: [approver]"),
    ("bob", "roles: [approver]"),
    ("carol", "roles: [approver]"),
];

/// The connectors: (binary suffix, the policy's target id).
pub const CONNECTORS: [(&str, &str); 4] = [("ldap", "ldap"), ("scim", "scim"), ("vault", "vault"), ("iam", "aws")];

/// The policy's target ids, in policy order.
pub const TARGET_IDS: [&str; 4] = ["ldap", "scim", "vault", "aws"];

/// The settings the templates need from the target servers' env files:
/// (script name, variable).
const REQUIRED_ENV: [(&str, &str); 10] = [
    ("slapd", "JML_TEST_SLAPD_URL"),
    ("slapd", "JML_TEST_SLAPD_CA_FILE"),
    ("slapd", "JML_TEST_SLAPD_BIND_DN"),
    ("slapd", "JML_TEST_SLAPD_BIND_PASSWORD_FILE"),
    ("slapd", "JML_TEST_SLAPD_BASE_DN"),
    ("scim", "JML_TEST_SCIM_URL"),
    ("scim", "JML_TEST_SCIM_TOKEN_FILE"),
    ("moto", "JML_TEST_MOTO_URL"),
    ("rustyvault", "JML_TEST_VAULT_ADDR"),
    ("rustyvault", "JML_TEST_VAULT_TOKEN_FILE"),
];

/// Held while `deploy/quickstart/seed.py` runs (see `Mesh::start`).
static SEEDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The groups the templates' workflows grant, seeded on SCIM and IAM.
pub const SEEDED_GROUPS: &str = "staff,engineering,sales";

/// How the coordinator under test is configured.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The propagation deadline of every target (policy syntax, e.g. `5m`).
    pub deadline: String,
    /// Apply + read-back attempts per task (`--max-attempts`).
    pub max_attempts: u32,
    /// First retry backoff (`--base-backoff-ms`).
    pub base_backoff_ms: u64,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self { deadline: "5m".into(), max_attempts: 8, base_backoff_ms: 200 }
    }
}

/// One person of the source of truth, with names unique to a run.
#[derive(Debug, Clone)]
pub struct Person {
    /// The person id.
    pub person_id: String,
    /// `username` (LDAP uid, IAM user name, Vault userpass name).
    pub username: String,
    /// `email` (the SCIM userName).
    pub email: String,
    /// `display_name`.
    pub display_name: String,
    /// `department`: `Engineering` or `Sales` select the workflows.
    pub department: String,
    /// `title`.
    pub title: String,
}

impl Person {
    /// Person `n` of run `run_id`.
    pub fn new(run_id: &str, n: usize, department: &str) -> Self {
        let username = format!("{run_id}-{n:04}");
        Self {
            person_id: format!("P-{run_id}-{n:04}"),
            email: format!("{username}@example.org"),
            display_name: format!("Person {n} of {run_id}"),
            username,
            department: department.into(),
            title: if department == "Engineering" { "SRE".into() } else { "Account Executive".into() },
        }
    }

    /// The attributes the source of truth sends.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("username".to_string(), self.username.clone()),
            ("display_name".to_string(), self.display_name.clone()),
            ("email".to_string(), self.email.clone()),
            ("department".to_string(), self.department.clone()),
            ("title".to_string(), self.title.clone()),
            ("location".to_string(), "London".to_string()),
            ("employment_type".to_string(), "employee".to_string()),
        ])
    }

    /// A lifecycle event for this person.
    pub fn event(&self, event_id: &str, kind: pb::EventKind) -> pb::LifecycleEvent {
        pb::LifecycleEvent {
            event_id: event_id.into(),
            kind: kind as i32,
            person_id: self.person_id.clone(),
            attributes: self.attributes(),
            effective_at: String::new(),
            source_system: "workday".into(),
            urgent: false,
            source_changed_at: String::new(),
        }
    }
}

/// Replaces every `@NAME@` in `template` with `vars[NAME]`; a missing name is an error.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('@') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(0);
        if name_len > 0 && after[name_len..].starts_with('@') {
            let name = &after[..name_len];
            out.push_str(vars.get(name).with_context(|| format!("template variable @{name}@ has no value"))?);
            rest = &after[name_len + 1..];
        } else {
            out.push('@');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A fresh id for one test run: lowercase letters and digits (valid in every
/// target's names).
pub fn run_id(label: &str) -> String {
    format!("e2e{label}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The mesh: four connector processes and the coordinator process.
pub struct Mesh {
    /// This run's id (prefix of every person's names).
    pub run_id: String,
    /// The run's directory (configs, certificates, database).
    pub dir: PathBuf,
    /// The IAM path this run's connector manages.
    pub iam_user_path: String,
    /// The coordinator's options.
    pub options: MeshOptions,
    vars: BTreeMap<String, String>,
    connectors: BTreeMap<String, MeshProcess>,
    connector_addrs: BTreeMap<String, SocketAddr>,
    coordinator: Option<MeshProcess>,
    /// Extra environment of every process started (e.g. `OTEL_*`).
    env: Vec<(String, String)>,
    /// principal -> bearer token (secret; never logged).
    tokens: BTreeMap<String, String>,
}

impl Mesh {
    /// Seeds the targets, starts the four connectors and the coordinator.
    pub async fn start(label: &str, options: MeshOptions) -> anyhow::Result<Self> {
        Self::start_with_env(label, options, Vec::new()).await
    }

    /// As [`Mesh::start`], every process started with `env` added to its
    /// environment (e.g. the `OTEL_*` trace export settings).
    pub async fn start_with_env(label: &str, options: MeshOptions, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        Self::launch(label, options, env, &[]).await
    }

    /// As [`Mesh::start`], with the propagation deadline of some targets
    /// (`(target id, deadline)`) other than `options.deadline`.
    pub async fn start_with_deadlines(
        label: &str,
        options: MeshOptions,
        deadlines: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(label, options, Vec::new(), deadlines).await
    }

    async fn launch(
        label: &str,
        options: MeshOptions,
        env: Vec<(String, String)>,
        deadlines: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut vars = BTreeMap::new();
        for (script, name) in REQUIRED_ENV {
            vars.insert(name.to_string(), target_env(script, name));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            target_env("moto", "AWS_ACCESS_KEY_ID");
        }
        let run_id = run_id(label);
        let dir = std::env::temp_dir().join(format!("mesh-e2e-{run_id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let root = workspace_root();
        // Tests of one binary start their meshes at once; seed.py creates a
        // group only when none has its name, so two seeds racing on fresh
        // servers both create it, and the SCIM connector then (rightly)
        // refuses the ambiguous name in every later test. One seed at a time.
        let _seeding = SEEDING.lock().await;
        let seed = tokio::process::Command::new("python3")
            .arg(root.join("deploy/quickstart/seed.py"))
            .args(["--scim-groups", SEEDED_GROUPS, "--iam-groups", SEEDED_GROUPS])
            .output()
            .await
            .context("running deploy/quickstart/seed.py")?;
        if !seed.status.success() {
            bail!("seeding the targets failed: {}", String::from_utf8_lossy(&seed.stderr));
        }
        let certs = dir.join("certs");
        let made = tokio::process::Command::new("bash")
            .arg(root.join("deploy/certs/make-dev-certs.sh"))
            .arg(&certs)
            .args(["coordinator", "connector-ldap", "connector-scim", "connector-iam", "connector-vault", "jmlctl"])
            .output()
            .await
            .context("running deploy/certs/make-dev-certs.sh")?;
        if !made.status.success() {
            bail!("making dev certificates failed: {}", String::from_utf8_lossy(&made.stderr));
        }
        let iam_user_path = format!("/lifecycle-mesh/{run_id}/");
        vars.insert("JML_CERT_DIR".into(), certs.display().to_string());
        vars.insert("JML_RUN_ID".into(), run_id.clone());
        vars.insert("JML_IAM_USER_PATH".into(), iam_user_path.clone());
        for target in TARGET_IDS {
            let deadline = deadlines.iter().find(|(t, _)| *t == target).map_or(options.deadline.as_str(), |(_, d)| d);
            vars.insert(format!("JML_{}_DEADLINE", target.to_uppercase()), deadline.to_owned());
        }
        let mut mesh = Self {
            run_id,
            dir,
            iam_user_path,
            options,
            vars,
            connectors: BTreeMap::new(),
            connector_addrs: BTreeMap::new(),
            coordinator: None,
            env,
            tokens: BTreeMap::new(),
        };
        mesh.write_callers()?;
        for (connector, _) in CONNECTORS {
            let template =
                std::fs::read_to_string(root.join(format!("deploy/quickstart/connector-{connector}.yaml.in")))?;
            std::fs::write(mesh.dir.join(format!("connector-{connector}.yaml")), render(&template, &mesh.vars)?)?;
            mesh.start_connector(connector).await?;
        }
        let policy = std::fs::read_to_string(root.join("deploy/quickstart/policy.yaml.in"))?;
        std::fs::write(mesh.policy_path(), render(&policy, &mesh.vars)?)?;
        mesh.start_coordinator().await?;
        Ok(mesh)
    }

    /// The rendered policy file.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    /// The coordinator's callers file.
    pub fn callers_path(&self) -> PathBuf {
        self.dir.join("callers.yaml")
    }

    /// The bearer token file of `principal`.
    pub fn token_path(&self, principal: &str) -> PathBuf {
        self.dir.join(format!("{principal}.token"))
    }

    /// Every bearer token of this run (to prove none leaks).
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.values().cloned().collect()
    }

    /// Makes a random token per caller (files `PRINCIPAL.token`, mode 0600)
    /// and the callers file holding their SHA-256 digests; `jmlctl`'s client
    /// certificate authenticates the auditor.
    fn write_callers(&mut self) -> anyhow::Result<()> {
        use sha2::Digest;
        use std::os::unix::fs::OpenOptionsExt;
        let mut yaml = String::from("callers:\n");
        for (principal, roles) in TOKEN_CALLERS {
            let token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
            let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            yaml.push_str(&format!("  - {{ principal: {principal}, {roles}, token_sha256: [\"{digest}\"] }}\n"));
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(self.token_path(principal))?;
            std::io::Write::write_all(&mut file, token.as_bytes())?;
            self.tokens.insert(principal.to_owned(), token);
        }
        yaml.push_str("  - { principal: auditor, roles: [auditor], certificate_names: [jmlctl] }\n");
        std::fs::write(self.callers_path(), yaml)?;
        Ok(())
    }

    /// The coordinator's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("lifecycle-mesh.db")
    }

    /// Starts connector `name` (`ldap`, `scim`, `vault`, `iam`): on a free
    /// port the first time, on the same port when restarted.
    pub async fn start_connector(&mut self, name: &str) -> anyhow::Result<()> {
        let certs = self.dir.join("certs");
        let listen = self.connector_addrs.get(name).map_or_else(|| "127.0.0.1:0".to_string(), ToString::to_string);
        let args = vec![
            "--config".to_string(),
            self.dir.join(format!("connector-{name}.yaml")).display().to_string(),
            "--listen".into(),
            listen,
            "--tls-cert".into(),
            certs.join(format!("connector-{name}.pem")).display().to_string(),
            "--tls-key".into(),
            certs.join(format!("connector-{name}.key")).display().to_string(),
            "--tls-client-ca".into(),
            certs.join("ca.pem").display().to_string(),
        ];
        let process = MeshProcess::start(&binary(&format!("connector-{name}"))?, &args, &self.process_env()).await?;
        let addr = process.addr();
        self.vars.insert(format!("JML_{}_ENDPOINT", name.to_uppercase()), format!("https://{addr}"));
        self.connector_addrs.insert(name.into(), addr);
        self.connectors.insert(name.into(), process);
        Ok(())
    }

    /// Kills connector `name` with SIGKILL.
    pub async fn kill_connector(&mut self, name: &str) -> anyhow::Result<()> {
        match self.connectors.remove(name) {
            Some(process) => process.kill().await,
            None => bail!("connector {name} is not running"),
        }
    }

    /// Starts the coordinator on the run's policy and database.
    pub async fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let args = vec![
            "--policy".to_string(),
            self.policy_path().display().to_string(),
            "--db".into(),
            self.db_path().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--max-attempts".into(),
            self.options.max_attempts.to_string(),
            "--base-backoff-ms".into(),
            self.options.base_backoff_ms.to_string(),
            "--tls-cert".into(),
            self.dir.join("certs/coordinator.pem").display().to_string(),
            "--tls-key".into(),
            self.dir.join("certs/coordinator.key").display().to_string(),
            "--tls-client-ca".into(),
            self.dir.join("certs/ca.pem").display().to_string(),
            "--callers".into(),
            self.callers_path().display().to_string(),
            "--scim-listen".into(),
            "127.0.0.1:0".into(),
        ];
        self.coordinator = Some(MeshProcess::start(&binary("coordinator")?, &args, &self.process_env()).await?);
        Ok(())
    }

    /// Kills the coordinator with SIGKILL: no chance to finish anything.
    pub async fn kill_coordinator(&mut self) -> anyhow::Result<()> {
        match self.coordinator.take() {
            Some(process) => process.kill().await,
            None => bail!("the coordinator is not running"),
        }
    }

    /// (name, everything it wrote so far) of every running mesh process.
    pub fn process_logs(&self) -> Vec<(String, String)> {
        let coordinator = self.coordinator.iter().map(|p| ("coordinator".to_string(), p));
        let connectors = self.connectors.iter().map(|(name, p)| (format!("connector-{name}"), p));
        coordinator.chain(connectors).map(|(name, p)| (name, p.output())).collect()
    }

    /// The last lines each mesh process logged, on stderr: what a failed
    /// test's output needs to be diagnosed where only its output is kept (CI).
    fn print_log_tails(&self) {
        for (name, log) in self.process_logs() {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("---- last {} lines of {name}'s log ----\n{}", tail.len(), tail.join("\n"));
        }
    }

    /// (name, pid) of every running mesh process.
    pub fn process_ids(&self) -> Vec<(String, u32)> {
        let coordinator = self.coordinator.iter().map(|p| ("coordinator".to_string(), p));
        let connectors = self.connectors.iter().map(|(name, p)| (format!("connector-{name}"), p));
        coordinator.chain(connectors).filter_map(|(name, p)| p.pid().map(|pid| (name, pid))).collect()
    }

    fn process_env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
    }

    /// Stops the coordinator, then every connector, with SIGTERM (clean
    /// shutdowns: each process flushes its spans before exiting).
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        if let Some(process) = self.coordinator.take() {
            process.terminate().await?;
        }
        for (_, process) in std::mem::take(&mut self.connectors) {
            process.terminate().await?;
        }
        Ok(())
    }

    /// Stops the coordinator with SIGTERM (a clean shutdown).
    pub async fn stop_coordinator(&mut self) -> anyhow::Result<()> {
        match self.coordinator.take() {
            Some(process) => process.terminate().await,
            None => bail!("the coordinator is not running"),
        }
    }

    /// The coordinator's endpoint (TLS; its certificate names `localhost`).
    pub fn coordinator_endpoint(&self) -> anyhow::Result<String> {
        let addr = self.coordinator.as_ref().context("the coordinator is not running")?.addr();
        Ok(format!("https://{addr}"))
    }

    /// The coordinator's SCIM 2.0 endpoint (`https://localhost:PORT`; same
    /// TLS and callers as the gRPC API).
    pub fn scim_endpoint(&self) -> anyhow::Result<String> {
        let output = self.coordinator.as_ref().context("the coordinator is not running")?.output();
        let addr = output
            .lines()
            .find_map(|line| line.strip_prefix("scim listening on "))
            .context("the coordinator printed no `scim listening on ADDR`")?;
        let addr: std::net::SocketAddr = addr.trim().parse()?;
        Ok(format!("https://localhost:{}", addr.port()))
    }

    /// The last lines the coordinator wrote on stderr.
    pub fn coordinator_log(&self) -> String {
        self.coordinator.as_ref().map(MeshProcess::stderr_tail).unwrap_or_default()
    }

    /// A client of the coordinator's lifecycle API, authenticated as the HR
    /// integration (a source: submit, status, plan).
    pub async fn client(&self) -> anyhow::Result<Client> {
        self.client_as("hr-integration").await
    }

    /// A TLS channel to the coordinator, without credentials.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let ca = std::fs::read(self.dir.join("certs/ca.pem"))?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
        Ok(Channel::from_shared(self.coordinator_endpoint()?)?.tls_config(tls)?.connect().await?)
    }

    /// A client authenticated with `principal`'s bearer token.
    pub async fn client_as(&self, principal: &str) -> anyhow::Result<Client> {
        let token = self.tokens.get(principal).with_context(|| format!("no token for {principal}"))?;
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}").parse()?;
        value.set_sensitive(true);
        Ok(LifecycleClient::with_interceptor(self.channel().await?, BearerToken(value)))
    }

    /// Submits an event as the HR integration.
    pub async fn submit(&self, event: pb::LifecycleEvent) -> anyhow::Result<pb::Receipt> {
        let request = tonic::Request::new(pb::SubmitEventRequest { event: Some(event) });
        let response = self.client().await?.submit_event(request).await?;
        response.into_inner().receipt.context("no receipt")
    }

    /// Submits events one after another on one connection, as the HR integration.
    pub async fn submit_all(&self, events: Vec<pb::LifecycleEvent>) -> anyhow::Result<Vec<pb::Receipt>> {
        let mut client = self.client().await?;
        let mut receipts = Vec::with_capacity(events.len());
        for event in events {
            let request = tonic::Request::new(pb::SubmitEventRequest { event: Some(event) });
            receipts.push(client.submit_event(request).await?.into_inner().receipt.context("no receipt")?);
        }
        Ok(receipts)
    }

    /// Approves what awaits approval for (event, target) as `approver`.
    pub async fn approve(&self, event_id: &str, target_id: &str, approver: &str) -> anyhow::Result<()> {
        let request = tonic::Request::new(pb::ApprovalRequest {
            event_id: event_id.into(),
            target_id: target_id.into(),
            comment: "end-to-end test".into(),
        });
        self.client_as(approver).await?.approve(request).await?;
        Ok(())
    }

    /// An event's status.
    pub async fn status(&self, event_id: &str) -> anyhow::Result<pb::EventStatus> {
        let request = pb::GetEventRequest { event_id: event_id.into() };
        Ok(self.client().await?.get_event(request).await?.into_inner())
    }

    /// Waits (at most `within`) until every event is terminal; returns their statuses.
    pub async fn wait_finished(
        &self,
        event_ids: &[String],
        within: Duration,
    ) -> anyhow::Result<BTreeMap<String, pb::EventStatus>> {
        let deadline = Instant::now() + within;
        let mut finished = BTreeMap::new();
        let mut client = self.client().await?;
        loop {
            for event_id in event_ids {
                if finished.contains_key(event_id) {
                    continue;
                }
                let status = client.get_event(pb::GetEventRequest { event_id: event_id.clone() }).await?.into_inner();
                if status.state != pb::EventState::InProgress as i32 {
                    finished.insert(event_id.clone(), status);
                }
            }
            if finished.len() == event_ids.len() {
                return Ok(finished);
            }
            if Instant::now() >= deadline {
                let pending: Vec<&String> = event_ids.iter().filter(|id| !finished.contains_key(*id)).collect();
                let sample = match pending.first() {
                    Some(id) => format!("{:?}", self.status(id).await?),
                    None => String::new(),
                };
                bail!(
                    "{} of {} events unfinished after {within:?} (first: {sample})\ncoordinator log:\n{}",
                    pending.len(),
                    event_ids.len(),
                    self.coordinator_log()
                );
            }
            // Poll less often while many are pending: the polls read the same database.
            let pending = (event_ids.len() - finished.len()) as u64;
            tokio::time::sleep(Duration::from_millis(200 + pending.min(1000))).await;
        }
    }

    /// Runs the real `jmlctl` against this coordinator, authenticated by its
    /// client certificate (the auditor).
    pub async fn jmlctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let certs = self.dir.join("certs");
        let output = tokio::process::Command::new(binary("jmlctl")?)
            .args(args)
            .env("JML_COORDINATOR", self.coordinator_endpoint()?)
            .env("JML_CA_FILE", certs.join("ca.pem"))
            .env("JML_TLS_SERVER_NAME", "localhost")
            .env("JML_CERT_FILE", certs.join("jmlctl.pem"))
            .env("JML_KEY_FILE", certs.join("jmlctl.key"))
            .output()
            .await?;
        Ok(output)
    }

    /// Runs the real `jmlctl` against this coordinator as `principal`,
    /// authenticated by its bearer token only (no client certificate).
    pub async fn jmlctl_as(&self, principal: &str, args: &[&str]) -> anyhow::Result<Output> {
        let output = tokio::process::Command::new(binary("jmlctl")?)
            .args(args)
            .env("JML_COORDINATOR", self.coordinator_endpoint()?)
            .env("JML_CA_FILE", self.dir.join("certs").join("ca.pem"))
            .env("JML_TLS_SERVER_NAME", "localhost")
            .env("JML_TOKEN_FILE", self.token_path(principal))
            .env_remove("JML_CERT_FILE")
            .env_remove("JML_KEY_FILE")
            .output()
            .await?;
        Ok(output)
    }

    /// `jmlctl evidence EVENT --json`, parsed.
    pub async fn evidence(&self, event_id: &str) -> anyhow::Result<serde_json::Value> {
        let output = self.jmlctl(&["evidence", event_id, "--json"]).await?;
        if !output.status.success() {
            bail!("jmlctl evidence {event_id}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// `jmlctl audit verify` online and `--db` offline; both must report an intact chain.
    pub async fn verify_audit(&self) -> anyhow::Result<String> {
        let online = self.jmlctl(&["audit", "verify"]).await?;
        let db = self.db_path();
        let offline = self.jmlctl(&["audit", "verify", "--db", path_str(&db)?]).await?;
        for (how, output) in [("online", &online), ("offline", &offline)] {
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() || !stdout.contains("audit chain intact") {
                bail!("jmlctl audit verify ({how}) failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        Ok(String::from_utf8_lossy(&online.stdout).trim().to_owned())
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a non-UTF-8 path")
}

/// The task of `target_id` in an event's status.
pub fn task<'a>(status: &'a pb::EventStatus, target_id: &str) -> &'a pb::TaskStatus {
    status
        .tasks
        .iter()
        .find(|t| t.target_id == target_id)
        .unwrap_or_else(|| panic!("event {} has no task on {target_id}: {status:?}", status.event_id))
}

/// Unix milliseconds of an RFC 3339 time of the lifecycle API; `None` when empty.
pub fn millis(rfc3339: &str) -> Option<i64> {
    if rfc3339.is_empty() {
        return None;
    }
    let at = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"));
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A task state's name, for messages.
pub fn state_name(state: i32) -> &'static str {
    pb::TaskState::try_from(state).map(|s| s.as_str_name()).unwrap_or("TASK_STATE_UNKNOWN")
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails();
        }
    }
}
