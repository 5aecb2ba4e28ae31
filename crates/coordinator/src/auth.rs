//! Who may call the lifecycle API, and what each caller may do.
//!
//! A caller authenticates with a bearer token (`authorization: Bearer ...`)
//! or a client certificate the TLS layer has already verified against the
//! configured client CA. The callers file ([`CallersFile`], YAML) maps each
//! credential to a principal and roles:
//!
//! | role | may call |
//! |---|---|
//! | `source` | `SubmitEvent`, `SubmitState(s)` and the SCIM endpoint (only for the source systems it is bound to), `GetEvent`, `WatchEvent`, `Plan` |
//! | `approver` | `Approve`, `Reject`, `GetEvent`, `WatchEvent` |
//! | `auditor` | `GetEvent`, `WatchEvent`, `Plan`, `ExportEvidence`, `VerifyAudit`, `ListOverdue`, reconciliation reports |
//! | `admin` | everything |
//!
//! The file holds only the SHA-256 of each token; a presented token is
//! hashed and compared with every stored digest in constant time. Every
//! refusal (UNAUTHENTICATED or PERMISSION_DENIED) is appended to the audit
//! chain with the principal (or `anonymous`), the method and the reason;
//! never the token. Under a flood, each (principal, method, code) gets its
//! first 20 refusals per minute recorded one by one and the rest as one
//! `access.refused.suppressed` record with their count ([`RefusalLimit`]).
//! Roles say what a caller may *call*; the engine still
//! enforces separation of duties (an approver is never the initiator or the
//! subject, and must be in the task's approver group) and the policy's
//! source of truth.
//!
//! [`Authentication::InsecureHeader`] is the development mode: it trusts the
//! `x-jml-principal` header and grants every role. The coordinator binary
//! only runs it with `--insecure-no-auth`, and says so in its log.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::event::now_ms;
use crate::store::{AuditEntry, Store};

/// The request metadata header naming the calling principal in the
/// development mode ([`Authentication::InsecureHeader`]). Ignored otherwise.
pub const PRINCIPAL_HEADER: &str = "x-jml-principal";

/// The principal recorded for a caller that could not be authenticated.
pub const ANONYMOUS: &str = "anonymous";

/// The audit action of a refused call.
pub const ACCESS_REFUSED: &str = "access.refused";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits lifecycle events for the source systems it is bound to, and
    /// follows them.
    Source,
    /// Approves or rejects grants awaiting approval.
    Approver,
    /// Reads status, evidence, the audit verdict, overdue tasks, plans and
    /// reconciliation reports.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

/// A lifecycle API method, with the roles allowed to call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `SubmitEvent`.
    SubmitEvent,
    /// `GetEvent`.
    GetEvent,
    /// `WatchEvent`.
    WatchEvent,
    /// `Plan`.
    Plan,
    /// `Approve`.
    Approve,
    /// `Reject`.
    Reject,
    /// `ExportEvidence`.
    ExportEvidence,
    /// `VerifyAudit`.
    VerifyAudit,
    /// `ListOverdue`.
    ListOverdue,
    /// Running a reconciliation (which may remediate).
    Reconcile,
    /// Reading reconciliation reports.
    ReconcileReport,
    /// `LoadIdentities` (the baseline).
    LoadIdentities,
    /// `SubmitState` (HR ingestion).
    SubmitState,
    /// `SubmitStates` (HR ingestion).
    SubmitStates,
    /// `ListHeldBatches`.
    ListHeldBatches,
    /// `DecideHeldBatch`.
    DecideHeldBatch,
    /// `StartCampaign`.
    StartCampaign,
    /// `GetCampaign`.
    GetCampaign,
    /// `DecideCampaignItem` (the engine checks the caller is the item's reviewer).
    DecideCampaignItem,
    /// `ControlReport`.
    ControlReport,
    /// A request to the SCIM 2.0 service provider (`crate::scim_inbound`):
    /// state submits, as `SubmitState`.
    Scim,
}

impl Method {
    /// The gRPC method name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SubmitEvent => "SubmitEvent",
            Self::GetEvent => "GetEvent",
            Self::WatchEvent => "WatchEvent",
            Self::Plan => "Plan",
            Self::Approve => "Approve",
            Self::Reject => "Reject",
            Self::ExportEvidence => "ExportEvidence",
            Self::VerifyAudit => "VerifyAudit",
            Self::ListOverdue => "ListOverdue",
            Self::Reconcile => "Reconcile",
            Self::ReconcileReport => "ReconcileReport",
            Self::LoadIdentities => "LoadIdentities",
            Self::SubmitState => "SubmitState",
            Self::SubmitStates => "SubmitStates",
            Self::ListHeldBatches => "ListHeldBatches",
            Self::DecideHeldBatch => "DecideHeldBatch",
            Self::StartCampaign => "StartCampaign",
            Self::GetCampaign => "GetCampaign",
            Self::DecideCampaignItem => "DecideCampaignItem",
            Self::ControlReport => "ControlReport",
            Self::Scim => "SCIM",
        }
    }

    /// The roles that may call it (admin may call everything).
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Self::SubmitEvent | Self::SubmitState | Self::SubmitStates | Self::Scim => &[Source, Admin],
            Self::ListHeldBatches => &[Auditor, Admin],
            Self::DecideHeldBatch => &[Admin],
            Self::GetEvent | Self::WatchEvent => &[Source, Approver, Auditor, Admin],
            Self::Plan => &[Source, Auditor, Admin],
            Self::Approve | Self::Reject => &[Approver, Admin],
            Self::ExportEvidence | Self::VerifyAudit | Self::ListOverdue | Self::ReconcileReport => &[Auditor, Admin],
            Self::Reconcile | Self::LoadIdentities | Self::StartCampaign => &[Admin],
            Self::GetCampaign | Self::ControlReport => &[Approver, Auditor, Admin],
            Self::DecideCampaignItem => &[Approver, Admin],
        }
    }
}

/// The callers file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CallersError {
    /// The file could not be read.
    #[error("cannot read callers file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse; the message names the field's path.
    #[error("callers file: {0}")]
    Parse(String),
    /// The file parses but is inconsistent; every problem is listed.
    #[error("callers file has {} error(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
}

/// The callers file: who may call the lifecycle API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallersFile {
    /// Every caller.
    pub callers: Vec<CallerEntry>,
}

/// One caller.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerEntry {
    /// The principal recorded in audit records and matched against approver
    /// groups: ASCII letters, digits and `-_.@:`, at most 256 bytes.
    pub principal: String,
    /// What it may do (at least one role).
    pub roles: Vec<Role>,
    /// For the `source` role: the source systems it may submit events for
    /// (the policy's source of truth check still applies).
    #[serde(default)]
    pub source_systems: Vec<String>,
    /// Lowercase hex SHA-256 digests of the bearer tokens that authenticate
    /// as this caller (several allow rotation). The tokens themselves are
    /// never stored: `printf %s "$TOKEN" | sha256sum`.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Client certificate names (the subject CN, or a DNS or email SAN) that
    /// authenticate as this caller. The certificate must chain to the
    /// coordinator's `--tls-client-ca`.
    #[serde(default)]
    pub certificate_names: Vec<String>,
}

impl fmt::Debug for CallerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerEntry")
            .field("principal", &self.principal)
            .field("roles", &self.roles)
            .field("source_systems", &self.source_systems)
            .field("token_sha256", &format_args!("[{} digest(s)]", self.token_sha256.len()))
            .field("certificate_names", &self.certificate_names)
            .finish()
    }
}

/// A principal name is safe to record and to compare.
pub fn valid_principal(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal every audit record of this call names.
    pub principal: String,
    /// Its roles.
    pub roles: BTreeSet<Role>,
    /// The source systems it may submit for (empty for admin: any).
    pub source_systems: BTreeSet<String>,
}

impl Caller {
    fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// The checked callers, indexed by credential.
#[derive(Clone)]
pub struct CallerRegistry {
    tokens: Vec<([u8; 32], usize)>,
    certificate_names: Vec<(String, usize)>,
    callers: Vec<Caller>,
}

impl fmt::Debug for CallerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerRegistry")
            .field("callers", &self.callers)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl CallerRegistry {
    /// Reads and checks a callers file.
    pub fn load(path: &Path) -> Result<Self, CallersError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CallersError::Read { path: path.to_owned(), source })?;
        Self::parse(&text)
    }

    /// Parses and checks a callers file, reporting every problem with its path.
    pub fn parse(text: &str) -> Result<Self, CallersError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let file: CallersFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            CallersError::Parse(if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            })
        })?;
        Self::from_file(file)
    }

    /// Checks a parsed callers file.
    pub fn from_file(file: CallersFile) -> Result<Self, CallersError> {
        let mut issues = Vec::new();
        let mut registry = Self { tokens: Vec::new(), certificate_names: Vec::new(), callers: Vec::new() };
        let mut principals = BTreeSet::new();
        for (i, entry) in file.callers.into_iter().enumerate() {
            let at = format!("callers[{i}]");
            if !valid_principal(&entry.principal) {
                issues.push(format!("{at}.principal: must be 1-256 ASCII letters, digits or -_.@:"));
            } else if !principals.insert(entry.principal.clone()) {
                issues.push(format!("{at}.principal: {:?} appears twice", entry.principal));
            }
            if entry.roles.is_empty() {
                issues.push(format!("{at}.roles: at least one role is required"));
            }
            let roles: BTreeSet<Role> = entry.roles.iter().copied().collect();
            if roles.contains(&Role::Source) && !roles.contains(&Role::Admin) && entry.source_systems.is_empty() {
                issues.push(format!("{at}.source_systems: a source must be bound to at least one source system"));
            }
            if !roles.contains(&Role::Source) && !entry.source_systems.is_empty() {
                issues.push(format!("{at}.source_systems: only a caller with the source role is bound to systems"));
            }
            if entry.token_sha256.is_empty() && entry.certificate_names.is_empty() {
                issues.push(format!("{at}: needs token_sha256 or certificate_names (no way to authenticate)"));
            }
            let index = registry.callers.len();
            for (j, digest) in entry.token_sha256.iter().enumerate() {
                let decoded = (digest.len() == 64
                    && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                .then(|| hex::decode(digest).ok())
                .flatten()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                match decoded {
                    None => {
                        issues.push(format!("{at}.token_sha256[{j}]: not 64 lowercase hex digits (a SHA-256 digest)"))
                    }
                    Some(bytes) if registry.tokens.iter().any(|(known, _)| *known == bytes) => {
                        issues.push(format!("{at}.token_sha256[{j}]: the same token digest is given to another caller"))
                    }
                    Some(bytes) => registry.tokens.push((bytes, index)),
                }
            }
            for (j, name) in entry.certificate_names.iter().enumerate() {
                let name = name.trim().to_ascii_lowercase();
                if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                    issues.push(format!("{at}.certificate_names[{j}]: must be 1-256 printable characters"));
                } else if registry.certificate_names.iter().any(|(known, _)| *known == name) {
                    issues.push(format!("{at}.certificate_names[{j}]: {name:?} is given to another caller"));
                } else {
                    registry.certificate_names.push((name, index));
                }
            }
            registry.callers.push(Caller {
                principal: entry.principal,
                roles,
                source_systems: entry.source_systems.into_iter().collect(),
            });
        }
        if registry.callers.is_empty() {
            issues.push("callers: at least one caller is required".into());
        }
        if issues.is_empty() { Ok(registry) } else { Err(CallersError::Invalid(issues)) }
    }

    /// The caller a bearer token authenticates, comparing its digest with
    /// every stored digest in constant time.
    fn by_token(&self, token: &str) -> Option<&Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (digest, index) in &self.tokens {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(*index);
            }
        }
        found.and_then(|index| self.callers.get(index))
    }

    /// The caller a verified client certificate's names authenticate.
    fn by_certificate_names(&self, names: &[String]) -> Option<&Caller> {
        names.iter().find_map(|name| {
            let name = name.to_ascii_lowercase();
            self.certificate_names.iter().find(|(known, _)| *known == name).and_then(|(_, i)| self.callers.get(*i))
        })
    }
}

/// How callers are identified.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// Bearer tokens and client certificates from a callers file.
    Callers(Arc<CallerRegistry>),
    /// Development only: the `x-jml-principal` header is trusted and every
    /// caller is an admin.
    InsecureHeader,
}

/// A refusal, before it is audited.
struct Refusal {
    principal: String,
    status: Status,
}

/// The audit action summarising the refusals of one caller, method and
/// code left out of the chain in one window ([`RefusalLimit`]).
pub const ACCESS_REFUSED_SUPPRESSED: &str = "access.refused.suppressed";

/// How many refused calls of one (principal, method, code) are recorded one
/// by one per window; the rest of the window is recorded as one
/// [`ACCESS_REFUSED_SUPPRESSED`] record with their count when the window
/// ends. Keeps a flood of bad calls (every unauthenticated caller is
/// `anonymous`) from growing the audit chain without bound while losing no
/// refusal from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimit {
    /// Refusals recorded one by one per window and key.
    pub recorded_per_window: u32,
    /// The window.
    pub window: std::time::Duration,
}

impl Default for RefusalLimit {
    fn default() -> Self {
        Self { recorded_per_window: 20, window: std::time::Duration::from_secs(60) }
    }
}

/// The clock a [`Gate`] counts refusal windows by: the system clock in a
/// coordinator, a clock the test moves in tests (so no test depends on how
/// fast a loaded machine runs).
pub trait RefusalClock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Resolves once the clock reads `at_ms` or later.
    fn wait_until(&self, at_ms: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl RefusalClock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn wait_until(&self, at_ms: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let wait = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// Most (principal, method, code) windows remembered; beyond it, keys share
/// one window per method and code (principal `*`).
const MAX_REFUSAL_KEYS: usize = 10_000;

type RefusalKey = (String, &'static str, &'static str);

struct RefusalWindow {
    started: i64,
    recorded: u32,
    suppressed: Arc<std::sync::atomic::AtomicU64>,
}

/// The check every lifecycle API method runs first.
#[derive(Clone)]
pub struct Gate {
    authentication: Authentication,
    store: Arc<dyn Store>,
    limit: RefusalLimit,
    clock: Arc<dyn RefusalClock>,
    windows: Arc<std::sync::Mutex<std::collections::HashMap<RefusalKey, RefusalWindow>>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("authentication", &self.authentication).finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate recording refusals in `store`'s audit chain, at most as many
    /// one by one as [`RefusalLimit::default`] allows.
    pub fn new(authentication: Authentication, store: Arc<dyn Store>) -> Self {
        Self {
            authentication,
            store,
            limit: RefusalLimit::default(),
            clock: Arc::new(SystemClock),
            windows: Arc::default(),
        }
    }

    /// The same gate counting refusal windows by `clock`.
    pub fn with_refusal_clock(mut self, clock: Arc<dyn RefusalClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same gate with another refusal limit.
    pub fn with_refusal_limit(mut self, limit: RefusalLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Whether this refusal is recorded on its own; if not, counts it, and
    /// the first one suppressed in a window schedules the window's summary.
    fn admit_refusal(&self, key: RefusalKey, now: i64) -> bool {
        use std::sync::atomic::Ordering;
        let window_ms = i64::try_from(self.limit.window.as_millis()).unwrap_or(i64::MAX).max(1);
        let Ok(mut windows) = self.windows.lock() else { return true };
        if windows.len() >= MAX_REFUSAL_KEYS && !windows.contains_key(&key) {
            windows.retain(|_, window| now - window.started < window_ms);
        }
        let key = if windows.len() >= MAX_REFUSAL_KEYS && !windows.contains_key(&key) {
            ("*".to_owned(), key.1, key.2)
        } else {
            key
        };
        let window = windows.entry(key.clone()).or_insert_with(|| RefusalWindow {
            started: now,
            recorded: 0,
            suppressed: Arc::default(),
        });
        if now - window.started >= window_ms {
            *window = RefusalWindow { started: now, recorded: 0, suppressed: Arc::default() };
        }
        if window.recorded < self.limit.recorded_per_window {
            window.recorded += 1;
            return true;
        }
        if window.suppressed.fetch_add(1, Ordering::Relaxed) == 0 {
            let suppressed = window.suppressed.clone();
            let (started, ends) = (window.started, window.started.saturating_add(window_ms));
            let store = self.store.clone();
            let window_end = self.clock.wait_until(ends);
            tokio::spawn(async move {
                window_end.await;
                let (principal, method, code) = key;
                let count = suppressed.load(Ordering::Relaxed);
                let entry = AuditEntry {
                    at: now_ms(),
                    principal,
                    event_id: String::new(),
                    action: ACCESS_REFUSED_SUPPRESSED.into(),
                    payload: serde_json::json!({
                        "method": method,
                        "code": code,
                        "refusals": count,
                        "window_start": crate::event::format_time(Some(started)),
                        "window_end": crate::event::format_time(Some(ends)),
                    }),
                };
                if let Err(error) = store.append_audit(vec![entry]).await {
                    tracing::error!(%error, "could not record suppressed refusals in the audit chain");
                }
            });
        }
        false
    }

    /// Authenticates the caller of `method` and checks its role; refusals are
    /// audited and returned as UNAUTHENTICATED or PERMISSION_DENIED.
    pub async fn check<T>(&self, request: &Request<T>, method: Method) -> Result<Caller, Status> {
        let credentials = Credentials {
            authorization: request.metadata().get("authorization").map(|v| v.to_str().map(str::to_owned).ok()),
            principal_header: request.metadata().get(PRINCIPAL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
            certificate_names: client_certificate_names(request.peer_certs().as_deref().map(Vec::as_slice)),
        };
        self.check_credentials(&credentials, method).await
    }

    /// As [`Self::check`], for a caller of another protocol on the same
    /// credentials (the SCIM endpoint: HTTP headers and the TLS session's
    /// verified client certificate).
    pub async fn check_credentials(&self, credentials: &Credentials, method: Method) -> Result<Caller, Status> {
        let result = self.authenticate(credentials).and_then(|caller| {
            if caller.roles.iter().any(|role| method.roles().contains(role)) {
                Ok(caller)
            } else {
                let roles: Vec<&str> = caller.roles.iter().map(|r| r.name()).collect();
                let allowed: Vec<&str> = method.roles().iter().map(|r| r.name()).collect();
                Err(Refusal {
                    status: Status::permission_denied(format!(
                        "{} (roles: {}) may not call {}; it needs one of: {}",
                        caller.principal,
                        roles.join(", "),
                        method.name(),
                        allowed.join(", ")
                    )),
                    principal: caller.principal,
                })
            }
        });
        match result {
            Ok(caller) => Ok(caller),
            Err(refusal) => Err(self.refuse(method, refusal).await),
        }
    }

    /// A source may submit only for the source systems it is bound to
    /// (admins for any); a refusal is audited as PERMISSION_DENIED.
    pub async fn check_source(&self, caller: &Caller, method: Method, source_system: &str) -> Result<(), Status> {
        if caller.is_admin() || caller.source_systems.contains(source_system) {
            return Ok(());
        }
        let status = Status::permission_denied(format!(
            "{} may submit events only for {}, not for source system \"{}\"",
            caller.principal,
            caller.source_systems.iter().cloned().collect::<Vec<_>>().join(", "),
            connector_kit::validate::printable(source_system)
        ));
        Err(self.refuse(method, Refusal { principal: caller.principal.clone(), status }).await)
    }

    async fn refuse(&self, method: Method, refusal: Refusal) -> Status {
        let code = match refusal.status.code() {
            tonic::Code::Unauthenticated => "UNAUTHENTICATED",
            _ => "PERMISSION_DENIED",
        };
        if !self.admit_refusal((refusal.principal.clone(), method.name(), code), self.clock.now_ms()) {
            tracing::debug!(principal = %refusal.principal, method = method.name(), code, "lifecycle API call refused (counted)");
            return refusal.status;
        }
        tracing::warn!(principal = %refusal.principal, method = method.name(), code, reason = %refusal.status.message(), "lifecycle API call refused");
        let entry = AuditEntry {
            at: now_ms(),
            principal: refusal.principal,
            event_id: String::new(),
            action: ACCESS_REFUSED.into(),
            payload: serde_json::json!({
                "method": method.name(),
                "code": code,
                "reason": refusal.status.message(),
            }),
        };
        if let Err(error) = self.store.append_audit(vec![entry]).await {
            tracing::error!(%error, "could not record a refused call in the audit chain");
        }
        refusal.status
    }

    fn authenticate(&self, credentials: &Credentials) -> Result<Caller, Refusal> {
        match &self.authentication {
            Authentication::InsecureHeader => {
                let principal = credentials
                    .principal_header
                    .as_deref()
                    .map(str::trim)
                    .filter(|v| valid_principal(v))
                    .unwrap_or(ANONYMOUS)
                    .to_owned();
                Ok(Caller { principal, roles: BTreeSet::from([Role::Admin]), source_systems: BTreeSet::new() })
            }
            Authentication::Callers(registry) => authenticate_with(registry, credentials),
        }
    }
}

/// What a caller presented: the `authorization` header (`Some(None)`: present
/// but not text), the development mode's principal header, and the names of
/// the verified client certificate (`None`: no certificate).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The `authorization` header.
    pub authorization: Option<Option<String>>,
    /// The [`PRINCIPAL_HEADER`] (development mode only).
    pub principal_header: Option<String>,
    /// The verified client certificate's subject CN and DNS / email SANs.
    pub certificate_names: Option<Vec<String>>,
}

fn unauthenticated(principal: &str, message: impl Into<String>) -> Refusal {
    Refusal { principal: principal.to_owned(), status: Status::unauthenticated(message.into()) }
}

fn authenticate_with(registry: &CallerRegistry, credentials: &Credentials) -> Result<Caller, Refusal> {
    let by_token = match &credentials.authorization {
        None => None,
        Some(value) => {
            let token = value
                .as_deref()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| unauthenticated(ANONYMOUS, "malformed authorization header: expected `Bearer TOKEN`"))?;
            Some(registry.by_token(token).ok_or_else(|| unauthenticated(ANONYMOUS, "unknown bearer token"))?)
        }
    };
    let names = &credentials.certificate_names;
    let by_certificate = match &names {
        None => None,
        Some(names) => registry.by_certificate_names(names),
    };
    match (by_token, by_certificate, names) {
        (Some(token), Some(certificate), _) if token.principal != certificate.principal => Err(unauthenticated(
            ANONYMOUS,
            "the bearer token and the client certificate authenticate different principals",
        )),
        (Some(caller), _, _) | (None, Some(caller), _) => Ok(caller.clone()),
        (None, None, Some(names)) => Err(unauthenticated(
            ANONYMOUS,
            format!(
                "the client certificate ({}) names no known caller",
                names.iter().map(|n| connector_kit::validate::printable(n)).take(4).collect::<Vec<_>>().join(", ")
            ),
        )),
        (None, None, None) => Err(unauthenticated(
            ANONYMOUS,
            "no credentials: send `authorization: Bearer TOKEN` or a client certificate",
        )),
    }
}

/// The subject CN and DNS / email SANs of the verified client certificate,
/// or `None` when the caller presented none.
pub fn client_certificate_names(
    certificates: Option<&[tonic::transport::CertificateDer<'static>]>,
) -> Option<Vec<String>> {
    let leaf = certificates?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let mut names = Vec::new();
    for cn in certificate.subject().iter_common_name() {
        if let Ok(value) = cn.as_str() {
            names.push(value.to_owned());
        }
    }
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(value)
                | x509_parser::extensions::GeneralName::RFC822Name(value) => names.push((*value).to_owned()),
                _ => {}
            }
        }
    }
    Some(names)
}

/// The coordinator binary's flags for TLS and caller authentication.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiAccessArgs {
    /// TLS of the lifecycle API (with `--tls-client-ca`, a verified client
    /// certificate is an authentication method, optional per caller).
    #[command(flatten)]
    pub tls: connector_kit::cli::TlsServerArgs,
    /// The callers file (YAML): bearer token digests and client certificate
    /// names mapped to principals and roles.
    #[arg(long, env = "JML_CALLERS")]
    pub callers: Option<PathBuf>,
    /// Trust the `x-jml-principal` header and treat every caller as admin.
    /// Local development only; logs a warning.
    #[arg(long, conflicts_with = "callers")]
    pub insecure_no_auth: bool,
}

/// The flags are incomplete or a file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AccessConfigError {
    /// Neither TLS nor `--insecure-plaintext`.
    #[error(transparent)]
    NoTls(#[from] connector_kit::cli::NoTlsChosen),
    /// Neither a callers file nor `--insecure-no-auth`.
    #[error("no callers configured: pass --callers FILE, or --insecure-no-auth")]
    NoCallers,
    /// The callers file is unusable.
    #[error(transparent)]
    Callers(#[from] CallersError),
}

impl ApiAccessArgs {
    /// The TLS files and the authentication the flags ask for; the insecure
    /// choices log a warning.
    pub fn resolve(&self) -> Result<(Option<connector_kit::tls::ServerTlsFiles>, Authentication), AccessConfigError> {
        let tls = self.tls.files()?;
        if tls.is_none() {
            tracing::warn!(
                "serving the lifecycle API in plaintext (--insecure-plaintext): bearer tokens cross the network in clear; local development only"
            );
        }
        let authentication = match &self.callers {
            Some(path) => Authentication::Callers(Arc::new(CallerRegistry::load(path)?)),
            None if self.insecure_no_auth => {
                tracing::warn!(
                    "lifecycle API callers are NOT authenticated (--insecure-no-auth): the x-jml-principal header is trusted and every caller is admin; local development only"
                );
                Authentication::InsecureHeader
            }
            None => return Err(AccessConfigError::NoCallers),
        };
        Ok((tls, authentication))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn a_callers_file_maps_tokens_and_certificate_names_to_principals() {
        let text = format!(
            "callers:\n  - {{ principal: hr, roles: [source], source_systems: [workday], token_sha256: [\"{}\"] }}\n  - {{ principal: alice, roles: [approver], certificate_names: [Alice.Example.Org] }}\n",
            digest("s3cret-token")
        );
        let registry = CallerRegistry::parse(&text).expect("valid");
        assert_eq!(registry.by_token("s3cret-token").map(|c| c.principal.as_str()), Some("hr"));
        assert!(registry.by_token("s3cret-tokex").is_none());
        assert_eq!(
            registry.by_certificate_names(&["alice.example.org".into()]).map(|c| c.principal.as_str()),
            Some("alice")
        );
    }

    #[test]
    fn a_bad_callers_file_names_every_problem() {
        let text = "callers:\n  - { principal: \"bad name\", roles: [], token_sha256: [abc] }\n  - { principal: s, roles: [source], token_sha256: [] }\n";
        let Err(CallersError::Invalid(issues)) = CallerRegistry::parse(text) else { panic!("must be refused") };
        let all = issues.join("\n");
        for expected in [
            "callers[0].principal",
            "callers[0].roles",
            "callers[0].token_sha256[0]",
            "callers[1].source_systems",
            "callers[1]: needs",
        ] {
            assert!(all.contains(expected), "{expected} missing from {all}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let text = "callers:\n  - { principal: a, roles: [admin], token: plain }\n";
        let error = CallerRegistry::parse(text).expect_err("unknown field").to_string();
        assert!(error.contains("callers[0]") && error.contains("token"), "{error}");
    }

    #[test]
    fn the_debug_output_holds_no_digest() {
        let text = format!("callers:\n  - {{ principal: a, roles: [admin], token_sha256: [\"{}\"] }}\n", digest("t"));
        let registry = CallerRegistry::parse(&text).expect("valid");
        assert!(!format!("{registry:?}").contains(&digest("t")));
    }
}
