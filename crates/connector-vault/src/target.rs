//! The client of the real server: the Vault HTTP API (`/v1/...`), as spoken
//! by Vault, OpenBao and RustyVault.
//!
//! Only validated names ([`UserName`], [`PolicyName`], checked mounts and
//! prefixes) are placed in request paths. The connector's token travels in the
//! `X-Vault-Token` header marked sensitive; no token or password is ever put in
//! an error message or a log line. Error bodies from the server are shortened
//! and stripped of control characters before they reach a message.
//!
//! Endpoints the server does not implement are reported as
//! [`Support::Unsupported`] rather than as errors: Vault answers 404 or 405 for
//! an unknown route; RustyVault answers 404 under `sys/` and 500 "Logical
//! backend path not supported." elsewhere.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{ConfigError, VaultConfig, VaultToken};
use crate::names::{KvPath, PolicyName, UserName};

/// Attempts per call when the connection fails before an answer.
const ATTEMPTS: u32 = 3;

/// Longest part of a server error body copied into a message.
const MAX_ERROR_TEXT: usize = 300;

/// A failed call to the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    /// The server could not be reached.
    #[error("{path}: the server could not be reached: {message}")]
    Unreachable {
        /// The API path called.
        path: String,
        /// Why.
        message: String,
    },
    /// The request took longer than the configured deadline.
    #[error("{path}: the server did not answer in time")]
    Timeout {
        /// The API path called.
        path: String,
    },
    /// The server answered with an error status.
    #[error("{path}: HTTP {status}: {message}")]
    Status {
        /// The API path called.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The server's error text, shortened.
        message: String,
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// The server answered in a shape the connector does not understand.
    #[error("{path}: unexpected answer: {message}")]
    Unexpected {
        /// The API path called.
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl From<TargetError> for connector_kit::ConnectorError {
    fn from(error: TargetError) -> Self {
        use connector_kit::ConnectorError as E;
        let message = error.to_string();
        match error {
            TargetError::Unreachable { .. } => E::unavailable(message),
            TargetError::Timeout { .. } => E::timeout(message),
            TargetError::Unexpected { .. } => E::internal(message),
            TargetError::Status { status, retry_after, .. } => match status {
                401 | 403 => E::permission_denied(message),
                // The server gave up waiting for the request (RustyVault's
                // HTTP layer under load): transient.
                408 => E::timeout(message),
                429 => E::throttled(message, retry_after),
                // 503: sealed or standby; 502/504: a proxy in front of it.
                500..=599 => {
                    let error = E::unavailable(message);
                    match retry_after {
                        Some(after) => error.with_retry_after(after),
                        None => error,
                    }
                }
                400 | 404 | 405 | 409 | 412 => E::conflict(message).with_retryable(false),
                _ => E::internal(message),
            },
        }
    }
}

/// Whether the server implements an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The call was accepted.
    Done,
    /// The server does not implement the endpoint (or refuses it to this token).
    Unsupported,
}

/// A userpass user as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEntry {
    /// The policies a login of this user receives.
    pub policies: Vec<String>,
    /// The TTL of the user's tokens in seconds, when the server reports it.
    pub token_ttl: Option<u64>,
    /// The maximum TTL of the user's tokens in seconds, when reported.
    pub token_max_ttl: Option<u64>,
}

/// What the connector writes to a userpass user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserWrite {
    /// A new password, when one is to be set. Never logged.
    pub password: Option<String>,
    /// The complete set of policies.
    pub policies: Vec<String>,
    /// Token TTL in seconds.
    pub token_ttl: u64,
    /// Token maximum TTL in seconds.
    pub token_max_ttl: u64,
}

impl std::fmt::Debug for UserWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWrite")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("policies", &self.policies)
            .field("token_ttl", &self.token_ttl)
            .field("token_max_ttl", &self.token_max_ttl)
            .finish()
    }
}

/// The connector's record of one managed account, kept on the server in a
/// KV (version 1) mount: the correlation key and the assigned policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The person's id from the source of truth (the correlation key).
    pub person_id: String,
    /// The policies assigned to the account. While the account is enabled they
    /// are also on the userpass user; while it is disabled only here.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Whether the account should be able to log in.
    #[serde(default)]
    pub enabled: bool,
    /// Who wrote the record.
    #[serde(default)]
    pub managed_by: String,
    /// When the connector last changed the account, in Unix seconds.
    #[serde(default)]
    pub changed_at: u64,
}

/// The answer to a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The server issued a token.
    Granted {
        /// The token issued (a secret: never logged).
        token: VaultToken,
    },
    /// The server refused the login. RustyVault answers a bad password with
    /// HTTP 200 and `{"data":{"error":...}}`; that is a refusal, not a login.
    Refused {
        /// The server's reason, shortened.
        reason: String,
    },
}

/// What `lookup-self` says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    /// The token is valid.
    Valid {
        /// Its remaining or configured TTL in seconds, as the server reports it.
        ttl: Option<u64>,
        /// The path that created it, e.g. `auth/userpass/login/alice`.
        path: String,
    },
    /// The server rejected the token.
    Rejected {
        /// The HTTP status of the refusal.
        status: u16,
    },
}

/// One HTTP answer.
struct Answer {
    status: StatusCode,
    body: Option<Value>,
    retry_after: Option<Duration>,
}

impl Answer {
    fn error_text(&self) -> String {
        error_text(self.body.as_ref())
    }

    /// Whether the server does not implement the endpoint.
    fn is_unsupported(&self) -> bool {
        match self.status.as_u16() {
            404 | 405 | 501 => true,
            500 => self.error_text().to_ascii_lowercase().contains("not supported"),
            _ => false,
        }
    }

    fn into_error(self, path: &str) -> TargetError {
        TargetError::Status {
            path: path.to_owned(),
            status: self.status.as_u16(),
            message: self.error_text(),
            retry_after: self.retry_after,
        }
    }
}

/// The server's error text: Vault's `errors` list, RustyVault's `error`, or
/// the `data.error` RustyVault puts in some 200 answers; shortened, without
/// control characters.
fn error_text(body: Option<&Value>) -> String {
    let Some(body) = body else { return "no error text".into() };
    let text = if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        errors.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")
    } else if let Some(error) = body.get("error").and_then(Value::as_str) {
        error.to_owned()
    } else if let Some(error) = body.pointer("/data/error").and_then(Value::as_str) {
        error.to_owned()
    } else {
        String::new()
    };
    let clean: String = text.chars().filter(|c| !c.is_control()).take(MAX_ERROR_TEXT).collect();
    if clean.is_empty() { "no error text".into() } else { clean }
}

fn list_keys(body: Option<&Value>) -> Vec<String> {
    body.and_then(|b| b.pointer("/data/keys"))
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(text)) => {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

fn seconds(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A client of one Vault-API server.
#[derive(Clone)]
pub struct VaultTarget {
    http: reqwest::Client,
    base: String,
    token: VaultToken,
    userpass_mount: String,
    records_mount: String,
    records_prefix: KvPath,
}

impl std::fmt::Debug for VaultTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTarget").field("base", &self.base).field("userpass_mount", &self.userpass_mount).finish()
    }
}

impl VaultTarget {
    /// A client for the server `config` names, authenticating with `token`.
    pub fn new(config: &VaultConfig, token: VaultToken) -> Result<Self, ConfigError> {
        config.check()?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.request_timeout_seconds))
            .connect_timeout(Duration::from_secs(config.request_timeout_seconds.min(5)))
            .redirect(reqwest::redirect::Policy::none())
            // Below the keep-alive of common servers (actix, which RustyVault
            // uses, closes idle connections after 5 s), so a pooled connection
            // is rarely one the server has already closed.
            .pool_idle_timeout(Duration::from_secs(2))
            .user_agent(concat!("lifecycle-mesh-connector-vault/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_certificate {
            let pem = std::fs::read(path).map_err(|e| ConfigError::Invalid {
                field: "ca_certificate".into(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ConfigError::Invalid {
                field: "ca_certificate".into(),
                message: format!("not a PEM bundle: {e}"),
            })? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ConfigError::Invalid { field: "address".into(), message: format!("HTTP client: {e}") })?;
        let records_prefix = KvPath::parse(&config.records.prefix)
            .map_err(|message| ConfigError::Invalid { field: "records.prefix".into(), message })?;
        Ok(Self {
            http,
            base: format!("{}/v1/", config.address.trim_end_matches('/')),
            token,
            userpass_mount: config.userpass_mount.clone(),
            records_mount: config.records.mount.clone(),
            records_prefix,
        })
    }

    /// The userpass mount path (`auth/<this>`).
    pub fn userpass_mount(&self) -> &str {
        &self.userpass_mount
    }

    /// The target-native id of a user: its API path.
    pub fn user_native_id(&self, name: &UserName) -> String {
        format!("auth/{}/users/{name}", self.userpass_mount)
    }

    /// The login path of a user, the prefix of every lease its logins create.
    pub fn login_path(&self, name: &UserName) -> String {
        format!("auth/{}/login/{name}", self.userpass_mount)
    }

    /// One call, retried (at most [`ATTEMPTS`] times, briefly) when the
    /// connection failed before an answer or the server answered 408: a pooled
    /// connection the server closed, or a server too busy to read the request.
    /// Every call the connector makes is idempotent, so a retry is safe.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&VaultToken>,
    ) -> Result<Answer, TargetError> {
        let mut attempt = 1;
        loop {
            let result = self.call_once(method.clone(), path, body, token).await;
            let transient = match &result {
                Err(TargetError::Unreachable { .. }) => true,
                Ok(answer) => answer.status == StatusCode::REQUEST_TIMEOUT,
                Err(_) => false,
            };
            if !transient || attempt >= ATTEMPTS {
                return result;
            }
            tracing::debug!(path, attempt, "transient failure calling the server; retrying");
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            attempt += 1;
        }
    }

    #[tracing::instrument(name = "vault.request", skip_all, fields(http.method = %method))]
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&VaultToken>,
    ) -> Result<Answer, TargetError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| TargetError::Unexpected {
                path: path.to_owned(),
                message: "the token cannot be sent as a header".into(),
            })?;
            value.set_sensitive(true);
            headers.insert("X-Vault-Token", value);
        }
        let mut request = self.http.request(method, format!("{}{path}", self.base)).headers(headers);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                TargetError::Timeout { path: path.to_owned() }
            } else {
                // reqwest's message names the URL (base + validated path), never a header.
                TargetError::Unreachable { path: path.to_owned(), message: e.without_url().to_string() }
            }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                TargetError::Timeout { path: path.to_owned() }
            } else {
                TargetError::Unreachable { path: path.to_owned(), message: e.without_url().to_string() }
            }
        })?;
        let body = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
        Ok(Answer { status, body, retry_after })
    }

    async fn call_as_connector(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, TargetError> {
        self.call(method, path, body, Some(&self.token)).await
    }

    fn list_method() -> Method {
        Method::from_bytes(b"LIST").unwrap_or(Method::GET)
    }

    /// Whether the server is initialised and unsealed.
    pub async fn unsealed(&self) -> Result<bool, TargetError> {
        let path = "sys/seal-status";
        let answer = self.call(Method::GET, path, None, None).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error(path));
        }
        answer.body.as_ref().and_then(|b| b.get("sealed")).and_then(Value::as_bool).map(|sealed| !sealed).ok_or_else(
            || TargetError::Unexpected { path: path.into(), message: "seal-status has no `sealed` field".into() },
        )
    }

    /// What `auth/token/lookup-self` says about `token` (the connector's own
    /// when `None`).
    pub async fn lookup_self(&self, token: Option<&VaultToken>) -> Result<TokenStatus, TargetError> {
        let path = "auth/token/lookup-self";
        let answer = self.call(Method::GET, path, None, Some(token.unwrap_or(&self.token))).await?;
        match answer.status.as_u16() {
            200 => {
                let data = answer.body.as_ref().and_then(|b| b.get("data")).filter(|d| d.is_object());
                match data {
                    Some(data) if data.get("error").is_none() => Ok(TokenStatus::Valid {
                        ttl: seconds(data.get("ttl")),
                        path: data.get("path").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    }),
                    _ => Ok(TokenStatus::Rejected { status: 200 }),
                }
            }
            status @ (400 | 401 | 403 | 404) => Ok(TokenStatus::Rejected { status }),
            _ => Err(answer.into_error(path)),
        }
    }

    /// One userpass user, or `None` when it does not exist.
    pub async fn read_user(&self, name: &UserName) -> Result<Option<UserEntry>, TargetError> {
        let path = self.user_native_id(name);
        let answer = self.call_as_connector(Method::GET, &path, None).await?;
        match answer.status.as_u16() {
            200 => {
                let data = answer.body.as_ref().and_then(|b| b.get("data")).ok_or_else(|| TargetError::Unexpected {
                    path: path.clone(),
                    message: "a user without `data`".into(),
                })?;
                let mut policies = string_list(data.get("token_policies"));
                if policies.is_empty() {
                    policies = string_list(data.get("policies"));
                }
                policies.sort();
                policies.dedup();
                Ok(Some(UserEntry {
                    policies,
                    token_ttl: seconds(data.get("token_ttl")),
                    token_max_ttl: seconds(data.get("token_max_ttl")),
                }))
            }
            404 => Ok(None),
            _ => Err(answer.into_error(&path)),
        }
    }

    /// Creates or updates a userpass user. Without a password the existing
    /// password is kept.
    pub async fn write_user(&self, name: &UserName, write: &UserWrite) -> Result<(), TargetError> {
        let path = self.user_native_id(name);
        let mut body = json!({
            "token_policies": write.policies,
            "token_ttl": write.token_ttl,
            "token_max_ttl": write.token_max_ttl,
        });
        if let (Some(password), Some(object)) = (&write.password, body.as_object_mut()) {
            object.insert("password".into(), Value::String(password.clone()));
        }
        let answer = self.call_as_connector(Method::POST, &path, Some(&body)).await?;
        if answer.status.is_success() { Ok(()) } else { Err(answer.into_error(&path)) }
    }

    /// Sets a user's password (the out-of-band step a person or operator takes;
    /// the connector itself only ever sets random passwords it never discloses).
    pub async fn set_password(&self, name: &UserName, password: &str) -> Result<(), TargetError> {
        let path = format!("{}/password", self.user_native_id(name));
        let answer = self.call_as_connector(Method::POST, &path, Some(&json!({ "password": password }))).await?;
        if answer.status.is_success() { Ok(()) } else { Err(answer.into_error(&path)) }
    }

    /// Deletes a userpass user (idempotent).
    pub async fn delete_user(&self, name: &UserName) -> Result<(), TargetError> {
        let path = self.user_native_id(name);
        let answer = self.call_as_connector(Method::DELETE, &path, None).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(answer.into_error(&path))
        }
    }

    /// Every userpass user name.
    pub async fn list_users(&self) -> Result<Vec<String>, TargetError> {
        let path = format!("auth/{}/users", self.userpass_mount);
        let answer = self.call_as_connector(Self::list_method(), &path, None).await?;
        match answer.status.as_u16() {
            200 => Ok(list_keys(answer.body.as_ref())),
            404 => Ok(Vec::new()),
            _ => Err(answer.into_error(&path)),
        }
    }

    /// Logs in as a user. A refusal is an answer, not an error: only a 200
    /// carrying `auth.client_token` is a login.
    pub async fn login(&self, name: &UserName, password: &str) -> Result<LoginOutcome, TargetError> {
        let path = self.login_path(name);
        let answer = self.call(Method::POST, &path, Some(&json!({ "password": password })), None).await?;
        let status = answer.status.as_u16();
        if status == 200 {
            let token = answer
                .body
                .as_ref()
                .and_then(|b| b.pointer("/auth/client_token"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty());
            return Ok(match token {
                Some(token) => LoginOutcome::Granted {
                    token: VaultToken::new(token).map_err(|_| TargetError::Unexpected {
                        path: path.clone(),
                        message: "the issued token is not a header value".into(),
                    })?,
                },
                None => LoginOutcome::Refused { reason: answer.error_text() },
            });
        }
        if matches!(status, 400 | 401 | 403 | 404) {
            return Ok(LoginOutcome::Refused { reason: format!("HTTP {status}: {}", answer.error_text()) });
        }
        Err(answer.into_error(&path))
    }

    fn record_path(&self, name: &UserName) -> String {
        format!("{}/{}/{name}", self.records_mount, self.records_prefix.as_str())
    }

    /// The connector's record of an account, or `None`.
    pub async fn read_record(&self, name: &UserName) -> Result<Option<AccountRecord>, TargetError> {
        let path = self.record_path(name);
        let answer = self.call_as_connector(Method::GET, &path, None).await?;
        match answer.status.as_u16() {
            200 => {
                let data = answer.body.as_ref().and_then(|b| b.get("data")).cloned().unwrap_or(Value::Null);
                serde_json::from_value(data).map(Some).map_err(|e| TargetError::Unexpected {
                    path,
                    message: format!("the account record is not one this connector wrote: {e}"),
                })
            }
            404 => Ok(None),
            _ => Err(answer.into_error(&path)),
        }
    }

    /// Writes the connector's record of an account.
    pub async fn write_record(&self, name: &UserName, record: &AccountRecord) -> Result<(), TargetError> {
        let path = self.record_path(name);
        let body = serde_json::to_value(record)
            .map_err(|e| TargetError::Unexpected { path: path.clone(), message: e.to_string() })?;
        let answer = self.call_as_connector(Method::POST, &path, Some(&body)).await?;
        if answer.status.is_success() { Ok(()) } else { Err(answer.into_error(&path)) }
    }

    /// Deletes the connector's record of an account (idempotent).
    pub async fn delete_record(&self, name: &UserName) -> Result<(), TargetError> {
        let path = self.record_path(name);
        let answer = self.call_as_connector(Method::DELETE, &path, None).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(answer.into_error(&path))
        }
    }

    /// The names of every account with a record.
    pub async fn list_records(&self) -> Result<Vec<String>, TargetError> {
        let path = format!("{}/{}/", self.records_mount, self.records_prefix.as_str());
        let answer = self.call_as_connector(Self::list_method(), &path, None).await?;
        match answer.status.as_u16() {
            200 => Ok(list_keys(answer.body.as_ref()).into_iter().filter(|k| !k.ends_with('/')).collect()),
            404 => Ok(Vec::new()),
            _ => Err(answer.into_error(&path)),
        }
    }

    /// A KV (version 1) secret's fields, or `None` when it does not exist.
    pub async fn read_secret(&self, path: &KvPath) -> Result<Option<serde_json::Map<String, Value>>, TargetError> {
        let answer = self.call_as_connector(Method::GET, path.as_str(), None).await?;
        match answer.status.as_u16() {
            200 => Ok(Some(
                answer
                    .body
                    .as_ref()
                    .and_then(|b| b.get("data"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            )),
            404 => Ok(None),
            _ => Err(answer.into_error(path.as_str())),
        }
    }

    /// Replaces a KV (version 1) secret's fields.
    pub async fn write_secret(
        &self,
        path: &KvPath,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<(), TargetError> {
        let body = Value::Object(fields.clone());
        let answer = self.call_as_connector(Method::POST, path.as_str(), Some(&body)).await?;
        if answer.status.is_success() { Ok(()) } else { Err(answer.into_error(path.as_str())) }
    }

    /// Revokes every lease (and so every token) created by the user's logins:
    /// `sys/leases/revoke-prefix/auth/<mount>/login/<name>`.
    pub async fn revoke_login_leases(&self, name: &UserName) -> Result<Support, TargetError> {
        let path = format!("sys/leases/revoke-prefix/{}", self.login_path(name));
        let answer = self.call_as_connector(Method::PUT, &path, None).await?;
        if answer.status.is_success() {
            Ok(Support::Done)
        } else if answer.is_unsupported() || answer.status == StatusCode::FORBIDDEN {
            Ok(Support::Unsupported)
        } else {
            Err(answer.into_error(&path))
        }
    }

    /// Every token accessor (`LIST auth/token/accessors`), or `None` when the
    /// server cannot enumerate tokens (or refuses it to this token).
    pub async fn token_accessors(&self) -> Result<Option<Vec<String>>, TargetError> {
        let path = "auth/token/accessors";
        let answer = self.call_as_connector(Self::list_method(), path, None).await?;
        match answer.status.as_u16() {
            200 => Ok(Some(list_keys(answer.body.as_ref()))),
            403 => Ok(None),
            _ if answer.is_unsupported() => Ok(None),
            _ => Err(answer.into_error(path)),
        }
    }

    /// Who holds the token behind `accessor`: its creation path, gone, or
    /// unreadable (the server refuses the lookup or answers without a path).
    pub async fn accessor_path(&self, accessor: &str) -> Result<AccessorOwner, TargetError> {
        let path = "auth/token/lookup-accessor";
        let answer = self.call_as_connector(Method::POST, path, Some(&json!({ "accessor": accessor }))).await?;
        match answer.status.as_u16() {
            200 => Ok(answer
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/path"))
                .and_then(Value::as_str)
                .map_or(AccessorOwner::Unreadable, |path| AccessorOwner::Path(path.to_owned()))),
            400 | 404 => Ok(AccessorOwner::Gone),
            403 => Ok(AccessorOwner::Unreadable),
            _ => Err(answer.into_error(path)),
        }
    }

    /// Revokes the token behind `accessor`.
    pub async fn revoke_accessor(&self, accessor: &str) -> Result<(), TargetError> {
        let path = "auth/token/revoke-accessor";
        let answer = self.call_as_connector(Method::POST, path, Some(&json!({ "accessor": accessor }))).await?;
        if answer.status.is_success() || answer.status == StatusCode::BAD_REQUEST {
            Ok(())
        } else {
            Err(answer.into_error(path))
        }
    }

    /// The ACL policy names (`LIST sys/policies/acl`), or `None` when the
    /// server has no policy store this API reaches.
    pub async fn list_policies(&self) -> Result<Option<Vec<String>>, TargetError> {
        let path = "sys/policies/acl";
        let answer = self.call_as_connector(Self::list_method(), path, None).await?;
        match answer.status.as_u16() {
            200 => Ok(Some(list_keys(answer.body.as_ref()))),
            _ if answer.is_unsupported() => Ok(None),
            _ => Err(answer.into_error(path)),
        }
    }

    /// Whether an ACL policy exists.
    pub async fn policy_exists(&self, name: &PolicyName) -> Result<bool, TargetError> {
        let path = format!("sys/policies/acl/{name}");
        let answer = self.call_as_connector(Method::GET, &path, None).await?;
        match answer.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.into_error(&path)),
        }
    }

    /// Creates or replaces an ACL policy.
    pub async fn write_policy(&self, name: &PolicyName, body: &str) -> Result<(), TargetError> {
        let path = format!("sys/policies/acl/{name}");
        let answer = self.call_as_connector(Method::PUT, &path, Some(&json!({ "policy": body }))).await?;
        if answer.status.is_success() { Ok(()) } else { Err(answer.into_error(&path)) }
    }
}

/// Who holds the token behind one accessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessorOwner {
    /// The login path that created it.
    Path(String),
    /// The token no longer exists.
    Gone,
    /// The server would not say: the token may belong to anyone.
    Unreadable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_reads_every_shape_and_strips_control_characters() {
        assert_eq!(error_text(Some(&json!({"errors": ["a", "b"]}))), "a; b");
        assert_eq!(error_text(Some(&json!({"error": "bad\r\nthing"}))), "badthing");
        assert_eq!(
            error_text(Some(&json!({"data": {"error": "invalid username or password"}}))),
            "invalid username or password"
        );
        assert_eq!(error_text(None), "no error text");
        assert_eq!(error_text(Some(&json!({"error": "x".repeat(1000)}))).len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn policies_read_as_list_or_comma_string() {
        assert_eq!(string_list(Some(&json!(["a", "b"]))), vec!["a", "b"]);
        assert_eq!(string_list(Some(&json!("a, b,"))), vec!["a", "b"]);
        assert!(string_list(None).is_empty());
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        use connector_kit::ErrorKind;
        let status = |status: u16| TargetError::Status {
            path: "p".into(),
            status,
            message: "m".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let error = connector_kit::ConnectorError::from(status(429));
        assert_eq!((error.kind, error.retry_after), (ErrorKind::Throttled, Some(Duration::from_secs(3))));
        assert_eq!(connector_kit::ConnectorError::from(status(403)).kind, ErrorKind::PermissionDenied);
        let sealed = connector_kit::ConnectorError::from(status(503));
        assert!(sealed.kind == ErrorKind::Unavailable && sealed.retryable);
        let busy = connector_kit::ConnectorError::from(status(408));
        assert!(busy.kind == ErrorKind::Timeout && busy.retryable);
        let error = connector_kit::ConnectorError::from(TargetError::Timeout { path: "p".into() });
        assert_eq!(error.kind, ErrorKind::Timeout);
    }

    #[test]
    fn a_user_write_never_shows_its_password() {
        let write = UserWrite { password: Some("hunter2".into()), policies: vec![], token_ttl: 1, token_max_ttl: 1 };
        assert!(!format!("{write:?}").contains("hunter2"));
    }
}
