//! The client of the real directory: a small pool of bound LDAP connections
//! that reconnects after the server went away, TLS through rustls (LDAPS or
//! StartTLS, with a configurable CA), the handful of operations the connector
//! uses, and the one mapping from LDAP result codes to typed errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connector_kit::{ConnectorError, ErrorKind};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, Scope, SearchEntry, SearchStream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::Mutex;

use crate::config::{LdapConfig, Secret};

/// LDAP result codes the connector acts on (RFC 4511 appendix A).
pub mod code {
    /// The operation succeeded.
    pub const SUCCESS: u32 = 0;
    /// The base or target entry does not exist.
    pub const NO_SUCH_OBJECT: u32 = 32;
    /// The value to delete is not there.
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    /// The value to add is already there.
    pub const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    /// The change would break the entry's object classes (e.g. an empty groupOfNames).
    pub const OBJECT_CLASS_VIOLATION: u32 = 65;
    /// An entry with that DN already exists.
    pub const ENTRY_ALREADY_EXISTS: u32 = 68;
    /// A compare found the attribute without the value.
    pub const COMPARE_FALSE: u32 = 5;
    /// A compare found the value.
    pub const COMPARE_TRUE: u32 = 6;
    /// The answer would hold more entries than the server allows this bind.
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
}

/// A failed directory call: the typed error, and whether the connection it
/// used must be dropped (the server went away or the transport broke).
#[derive(Debug, Clone)]
pub struct TargetError {
    /// What the contract reports.
    pub error: ConnectorError,
    /// The connection is unusable; the call may succeed on a new one.
    pub transport: bool,
}

impl TargetError {
    fn transport(error: ConnectorError) -> Self {
        Self { error, transport: true }
    }

    /// Wraps a typed error that is not a transport failure.
    pub fn typed(error: ConnectorError) -> Self {
        Self { error, transport: false }
    }
}

impl From<ConnectorError> for TargetError {
    fn from(error: ConnectorError) -> Self {
        Self::typed(error)
    }
}

/// The typed error for a non-success LDAP result. `what` says which
/// operation failed; the server's diagnostic text is kept short.
pub fn result_error(what: &str, result: &LdapResult) -> ConnectorError {
    let text = connector_kit::validate::printable(&result.text);
    let message = format!("{what}: LDAP result {} ({}){}", result.rc, code_name(result.rc), suffix(&text));
    let kind = match result.rc {
        // invalidAttributeSyntax, undefinedAttributeType, inappropriateMatching,
        // constraintViolation, invalidDNSyntax, namingViolation,
        // objectClassViolation, notAllowedOnNonLeaf, notAllowedOnRDN,
        // objectClassModsProhibited, filterError-ish protocol errors.
        2 | 17 | 18 | 19 | 21 | 34 | 64 | 65 | 66 | 67 | 69 => ErrorKind::InvalidArgument,
        code::NO_SUCH_OBJECT => ErrorKind::NotFound,
        code::ENTRY_ALREADY_EXISTS => ErrorKind::Conflict,
        // noSuchAttribute / attributeOrValueExists: a concurrent change.
        code::NO_SUCH_ATTRIBUTE | code::ATTRIBUTE_OR_VALUE_EXISTS => {
            return ConnectorError::conflict(message).with_retryable(true);
        }
        // strongerAuthRequired, inappropriateAuthentication, invalidCredentials, insufficientAccessRights.
        8 | 48 | 49 | 50 => ErrorKind::PermissionDenied,
        3 => ErrorKind::Timeout,
        11 => ErrorKind::Throttled,
        51 | 52 | 1 => ErrorKind::Unavailable,
        53 => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    };
    ConnectorError::new(kind, message)
}

fn suffix(text: &str) -> String {
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

fn code_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        8 => "strongerAuthRequired",
        11 => "adminLimitExceeded",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        _ => "other",
    }
}

fn ldap_error(what: &str, error: LdapError) -> TargetError {
    match error {
        LdapError::LdapResult { result } => TargetError::typed(result_error(what, &result)),
        LdapError::Timeout { .. } => TargetError::transport(ConnectorError::timeout(format!("{what}: timed out"))),
        LdapError::FilterParsing => {
            TargetError::typed(ConnectorError::internal(format!("{what}: the connector built an invalid filter")))
        }
        LdapError::Rustls { source } => {
            TargetError::transport(ConnectorError::unavailable(format!("{what}: TLS: {source}")).with_retryable(false))
        }
        other => TargetError::transport(ConnectorError::unavailable(format!("{what}: {other}"))),
    }
}

/// How to reach and bind to the directory.
struct ConnectSettings {
    url: String,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind_dn: String,
    password: Secret,
    timeout: Duration,
}

/// TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("tls.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(String),
}

/// A rustls client configuration trusting the PEM CAs in `ca_file`.
pub fn rustls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let ca_error = |message: String| TlsSetupError::CaFile { path: ca_file.display().to_string(), message };
    let pem = std::fs::read(ca_file).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| ca_error(e.to_string()))?;
        roots.add(certificate).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("holds no PEM certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A pool of bound connections. Each slot holds one connection (on which
/// `ldap3` multiplexes concurrent operations); a slot whose connection closed
/// is reconnected and re-bound on next use.
pub struct DirectoryPool {
    settings: ConnectSettings,
    slots: Vec<Mutex<Option<Ldap>>>,
    next: AtomicUsize,
}

impl DirectoryPool {
    /// A pool for `config`; connects lazily.
    pub fn new(config: &LdapConfig, password: Secret) -> Result<Self, TlsSetupError> {
        let tls = config.tls.ca_file.as_deref().map(rustls_config).transpose()?;
        Ok(Self {
            settings: ConnectSettings {
                url: config.url.clone(),
                starttls: config.tls.starttls,
                tls,
                bind_dn: config.bind_dn.clone(),
                password,
                timeout: config.timeout(),
            },
            slots: (0..config.pool_size).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The operation timeout.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// A bound connection handle, reconnecting its slot if needed.
    pub async fn handle(&self) -> Result<Directory, TargetError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(ldap) = slot.as_mut()
            && !ldap.is_closed()
        {
            return Ok(Directory { ldap: ldap.clone(), timeout: self.settings.timeout });
        }
        *slot = None;
        let ldap = self.connect().await?;
        *slot = Some(ldap.clone());
        Ok(Directory { ldap, timeout: self.settings.timeout })
    }

    /// Drops every pooled connection, so the next calls reconnect.
    pub async fn reset(&self) {
        for slot in &self.slots {
            if let Some(mut ldap) = slot.lock().await.take() {
                let _ = ldap.unbind().await;
            }
        }
    }

    async fn connect(&self) -> Result<Ldap, TargetError> {
        let settings = &self.settings;
        let mut connection = LdapConnSettings::new().set_conn_timeout(settings.timeout).set_starttls(settings.starttls);
        if let Some(tls) = &settings.tls {
            connection = connection.set_config(tls.clone());
        }
        let (driver, mut ldap) = LdapConnAsync::with_settings(connection, &settings.url)
            .await
            .map_err(|e| ldap_error("connect to the directory", e))?;
        tokio::spawn(async move {
            if let Err(error) = driver.drive().await {
                tracing::debug!(%error, "directory connection ended");
            }
        });
        let result = ldap
            .with_timeout(settings.timeout)
            .simple_bind(&settings.bind_dn, settings.password.expose())
            .await
            .map_err(|e| ldap_error("bind", e))?;
        if result.rc != code::SUCCESS {
            return Err(TargetError::typed(result_error("bind as the connector's account", &result)));
        }
        Ok(ldap)
    }
}

/// One entry as read: its DN and attributes keyed by lower-cased type
/// (options such as `;binary` removed). Binary values are kept as bytes.
#[derive(Debug, Clone, Default)]
pub struct DirectoryEntry {
    /// The DN as the server spells it.
    pub dn: String,
    /// Text values by lower-cased attribute type.
    pub text: HashMap<String, Vec<String>>,
    /// Attribute types (lower-cased) that have at least one non-UTF-8 value.
    pub binary: HashSet<String>,
}

impl DirectoryEntry {
    fn from_search(entry: SearchEntry) -> Self {
        let key = |name: &str| name.split(';').next().unwrap_or(name).to_ascii_lowercase();
        let mut text: HashMap<String, Vec<String>> = HashMap::new();
        for (name, values) in entry.attrs {
            text.entry(key(&name)).or_default().extend(values);
        }
        let binary = entry.bin_attrs.keys().map(|name| key(name)).collect();
        Self { dn: entry.dn, text, binary }
    }

    /// The text values of `attribute` (case-insensitive type).
    pub fn values(&self, attribute: &str) -> &[String] {
        self.text.get(&attribute.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or_default()
    }

    /// The first text value of `attribute`.
    pub fn first(&self, attribute: &str) -> Option<&str> {
        self.values(attribute).first().map(String::as_str)
    }

    /// Whether `attribute` has any value, text or binary.
    pub fn has(&self, attribute: &str) -> bool {
        let key = attribute.to_ascii_lowercase();
        !self.values(&key).is_empty() || self.binary.contains(&key)
    }
}

/// A bound connection handle with the operations the connector uses.
#[derive(Clone)]
pub struct Directory {
    ldap: Ldap,
    timeout: Duration,
}

impl Directory {
    /// Every entry matching `filter` under `base` (at most a few expected).
    /// A missing base is an empty answer.
    #[tracing::instrument(name = "ldap.search", skip_all)]
    pub async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[String],
    ) -> Result<Vec<DirectoryEntry>, TargetError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, attributes.to_vec())
            .await
            .map_err(|e| ldap_error("search", e))?;
        let (entries, status) = (result.0, result.1);
        match status.rc {
            code::SUCCESS => {}
            code::NO_SUCH_OBJECT => return Ok(Vec::new()),
            _ => return Err(TargetError::typed(result_error("search", &status))),
        }
        Ok(entries
            .into_iter()
            .filter(|entry| !entry.is_ref() && !entry.is_intermediate())
            .map(|entry| DirectoryEntry::from_search(SearchEntry::construct(entry)))
            .collect())
    }

    /// Every entry matching `filter` under `base`, with the values of the
    /// attributes `matched_values` names cut down to those it matches (the
    /// RFC 3876 matched-values control, sent non-critical: a server without
    /// it answers every value, which callers must accept). `None` when the
    /// answer would exceed the server's size limit for this bind, or when
    /// either filter does not parse (the caller then reads another way).
    #[tracing::instrument(name = "ldap.search_matched", skip_all)]
    pub async fn search_matched(
        &mut self,
        base: &str,
        filter: &str,
        attributes: &[String],
        matched_values: &str,
    ) -> Result<Option<Vec<DirectoryEntry>>, TargetError> {
        // `MatchedValues::new` panics on a filter it cannot parse; its item
        // grammar is the search filter's, so an OR of the same items checks it.
        let items = matched_values.strip_prefix('(').and_then(|v| v.strip_suffix(')')).unwrap_or_default();
        if ldap3::parse_filter(filter).is_err() || ldap3::parse_filter(format!("(|{items})")).is_err() {
            return Ok(None);
        }
        let control = ldap3::controls::MatchedValues::new(matched_values);
        let result = self
            .ldap
            .with_controls(vec![control])
            .with_timeout(self.timeout)
            .search(base, Scope::Subtree, filter, attributes.to_vec())
            .await
            .map_err(|e| ldap_error("search", e))?;
        let (entries, status) = (result.0, result.1);
        match status.rc {
            code::SUCCESS => {}
            code::NO_SUCH_OBJECT => return Ok(Some(Vec::new())),
            code::SIZE_LIMIT_EXCEEDED => return Ok(None),
            _ => return Err(TargetError::typed(result_error("search", &status))),
        }
        Ok(Some(
            entries
                .into_iter()
                .filter(|entry| !entry.is_ref() && !entry.is_intermediate())
                .map(|entry| DirectoryEntry::from_search(SearchEntry::construct(entry)))
                .collect(),
        ))
    }

    /// Starts a paged (RFC 2696) streaming search; entries are pulled with
    /// [`PagedSearch::next`], one server page fetched at a time.
    #[tracing::instrument(name = "ldap.paged_search", skip_all)]
    pub async fn paged_search(
        &mut self,
        base: &str,
        filter: &str,
        attributes: Vec<String>,
        page_size: u32,
    ) -> Result<PagedSearch, TargetError> {
        let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(page_size.clamp(1, i32::MAX as u32) as i32))];
        let stream = self
            .ldap
            .with_timeout(self.timeout)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attributes)
            .await
            .map_err(|e| ldap_error("paged search", e))?;
        Ok(PagedSearch { stream, done: false })
    }

    /// Adds an entry.
    #[tracing::instrument(name = "ldap.add", skip_all)]
    pub async fn add(&mut self, dn: &str, attributes: EntryAttributes) -> Result<(), TargetError> {
        let result =
            self.ldap.with_timeout(self.timeout).add(dn, attributes).await.map_err(|e| ldap_error("add", e))?;
        if result.rc == code::SUCCESS { Ok(()) } else { Err(TargetError::typed(result_error("add", &result))) }
    }

    /// Modifies an entry; answers the raw result code so callers can act on
    /// codes such as objectClassViolation.
    #[tracing::instrument(name = "ldap.modify", skip_all)]
    pub async fn modify(&mut self, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<LdapResult, TargetError> {
        self.ldap.with_timeout(self.timeout).modify(dn, mods).await.map_err(|e| ldap_error("modify", e))
    }

    /// Renames an entry in place (modifyDN, the old RDN value removed).
    #[tracing::instrument(name = "ldap.modifydn", skip_all)]
    pub async fn rename(&mut self, dn: &str, new_rdn: &str) -> Result<(), TargetError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .modifydn(dn, new_rdn, true, None)
            .await
            .map_err(|e| ldap_error("modifydn", e))?;
        if result.rc == code::SUCCESS { Ok(()) } else { Err(TargetError::typed(result_error("modifydn", &result))) }
    }

    /// Compares one value of an attribute (RFC 4511 4.10); answers the raw
    /// result code: compareTrue, compareFalse, noSuchAttribute when the entry
    /// has no such attribute, or a refusal.
    #[tracing::instrument(name = "ldap.compare", skip_all)]
    pub async fn compare(&mut self, dn: &str, attribute: &str, value: &[u8]) -> Result<u32, TargetError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .compare(dn, attribute, value)
            .await
            .map_err(|e| ldap_error("compare", e))?;
        Ok(result.0.rc)
    }

    /// Deletes an entry; a missing entry is not an error.
    #[tracing::instrument(name = "ldap.delete", skip_all)]
    pub async fn delete(&mut self, dn: &str) -> Result<bool, TargetError> {
        let result = self.ldap.with_timeout(self.timeout).delete(dn).await.map_err(|e| ldap_error("delete", e))?;
        match result.rc {
            code::SUCCESS => Ok(true),
            code::NO_SUCH_OBJECT => Ok(false),
            _ => Err(TargetError::typed(result_error("delete", &result))),
        }
    }
}

/// A paged streaming search in progress.
pub struct PagedSearch {
    stream: SearchStream<'static, String, Vec<String>>,
    done: bool,
}

impl PagedSearch {
    /// The next entry, or `None` once the search is complete.
    pub async fn next(&mut self) -> Result<Option<DirectoryEntry>, TargetError> {
        if self.done {
            return Ok(None);
        }
        match self.stream.next().await.map_err(|e| ldap_error("paged search", e))? {
            Some(entry) => Ok(Some(DirectoryEntry::from_search(SearchEntry::construct(entry)))),
            None => {
                self.done = true;
                let result = self.stream.finish().await;
                match result.rc {
                    code::SUCCESS | code::NO_SUCH_OBJECT => Ok(None),
                    _ => Err(TargetError::typed(result_error("paged search", &result))),
                }
            }
        }
    }
}

/// The attributes of an entry to add: type and values, as bytes.
pub type EntryAttributes = Vec<(Vec<u8>, HashSet<Vec<u8>>)>;

/// A modification replacing `attribute` with one value.
pub fn replace(attribute: &str, value: impl Into<Vec<u8>>) -> Mod<Vec<u8>> {
    Mod::Replace(attribute.as_bytes().to_vec(), HashSet::from([value.into()]))
}

/// A modification removing every value of `attribute`.
pub fn remove_all(attribute: &str) -> Mod<Vec<u8>> {
    Mod::Delete(attribute.as_bytes().to_vec(), HashSet::new())
}

/// A modification removing one value of `attribute`.
pub fn remove_value(attribute: &str, value: impl Into<Vec<u8>>) -> Mod<Vec<u8>> {
    Mod::Delete(attribute.as_bytes().to_vec(), HashSet::from([value.into()]))
}

/// A modification adding one value to `attribute`.
pub fn add_value(attribute: &str, value: impl Into<Vec<u8>>) -> Mod<Vec<u8>> {
    Mod::Add(attribute.as_bytes().to_vec(), HashSet::from([value.into()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: u32) -> LdapResult {
        LdapResult { rc, matched: String::new(), text: "detail".into(), refs: vec![], ctrls: vec![] }
    }

    #[test]
    fn result_codes_map_to_stable_kinds() {
        assert_eq!(result_error("add", &result(21)).kind, ErrorKind::InvalidArgument);
        assert!(!result_error("add", &result(21)).retryable);
        assert_eq!(result_error("add", &result(68)).kind, ErrorKind::Conflict);
        assert_eq!(result_error("bind", &result(49)).kind, ErrorKind::PermissionDenied);
        assert_eq!(result_error("x", &result(52)).kind, ErrorKind::Unavailable);
        assert!(result_error("x", &result(52)).retryable);
        assert!(result_error("x", &result(20)).retryable);
        assert_eq!(result_error("x", &result(80)).kind, ErrorKind::Internal);
    }

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let error = rustls_config(std::path::Path::new("/nonexistent/ca.pem")).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/ca.pem"));
    }
}
