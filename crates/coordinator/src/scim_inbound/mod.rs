//! The SCIM 2.0 service provider for inbound HR data (RFC 7643, RFC 7644):
//! an HR system or its middleware (Microsoft Entra's API-driven inbound
//! provisioning, a Workday integration) sends Users, and every write becomes
//! a state submit ([`crate::ingest::Ingest::submit_state`]) that derives
//! joiner, mover, leaver or rehire with an idempotent event id.
//!
//! Served on its own port beside the gRPC API (`--scim-listen`), with the
//! same TLS files and the same callers: a bearer token or a client
//! certificate of the callers file, role `source` bound to the policy's
//! source system (or `admin`), checked by the same [`Gate`] (refusals
//! audited as method `SCIM`).
//!
//! - `/Users`: `POST` (a joiner, or a rehire of a person deleted before),
//!   `PUT` and `PATCH` (a mover when a mapped attribute changes; `active:
//!   false` is a termination), `GET` (one, or a list with `filter` on `id`,
//!   `userName` or `externalId`, `startIndex`, `count`, `attributes`,
//!   `excludedAttributes`), `DELETE` (the person's termination: a leaver);
//! - `/Bulk` with `failOnErrors` and `bulkId` references; each operation's
//!   response carries the derived event id (`eventId`);
//! - `/ServiceProviderConfig`, `/Schemas`, `/ResourceTypes`.
//!
//! The resource `id` is the person id, read from the path
//! `source_of_truth.scim.person_id` names; the source attributes are read
//! from the paths of `source_of_truth.scim.attributes` ([`mapping`]). The
//! last User accepted per person is kept (table `ingest_state`, space
//! `scim_user`) to answer `GET` and apply `PATCH`.
//!
//! Errors are RFC 7644 §3.12 documents with `scimType`. Bodies are capped
//! ([`ScimOptions::max_body`]: `413`). Unknown schemas and attributes are
//! refused (`400 invalidSyntax`, the path named). When the outcome is unknown
//! (storage failed, a target cannot be reached), the answer is a `5xx`:
//! sending the same User again is always safe (the event id is derived from
//! the record).

pub mod bulk;
pub mod mapping;
mod patch;
pub mod schema;
mod tls;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::auth::{Authentication, Caller, Credentials, Gate, Method};
use crate::engine::{Engine, EngineError};
use crate::ingest::Ingest;
use connector_kit::tls::ServerTlsFiles;

pub use tls::Peer;

/// The media type of SCIM bodies.
pub const SCIM_JSON: &str = "application/scim+json";

/// Limits of the SCIM endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ScimOptions {
    /// The largest request body accepted (bytes).
    pub max_body: usize,
    /// The most operations one `/Bulk` request may carry.
    pub max_bulk_operations: usize,
}

impl Default for ScimOptions {
    fn default() -> Self {
        Self { max_body: 4 * 1024 * 1024, max_bulk_operations: 1000 }
    }
}

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug, Clone)]
pub struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// The `scimType`, for 400s and 409s.
    pub scim_type: Option<&'static str>,
    /// What went wrong.
    pub detail: String,
}

impl ScimError {
    /// A 400 with this `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// Another status.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self { status, scim_type: None, detail: detail.into() }
    }

    /// The error document.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({ "schemas": [schema::ERROR], "status": self.status.to_string(), "detail": self.detail });
        if let Some(scim_type) = self.scim_type {
            doc["scimType"] = Value::String(scim_type.into());
        }
        doc
    }
}

impl From<EngineError> for ScimError {
    fn from(error: EngineError) -> Self {
        match &error {
            EngineError::InvalidArgument(_) => Self::bad_request("invalidValue", error.to_string()),
            EngineError::NotFound(_) => Self::status(404, error.to_string()),
            EngineError::PermissionDenied(_) => Self::status(403, error.to_string()),
            EngineError::FailedPrecondition(_) => Self::status(409, error.to_string()),
            // RFC 7644 §3.12: a value that collides with an existing one.
            EngineError::NameCollision(_) => {
                Self { scim_type: Some("uniqueness"), ..Self::status(409, error.to_string()) }
            }
            EngineError::Target { .. } => {
                Self::status(503, format!("{error}; the outcome is unknown: send the same request again (always safe)"))
            }
            EngineError::Store(inner) => {
                tracing::error!(error = %inner, "SCIM: storage failure");
                Self::status(500, "storage failure, the outcome is unknown: send the same request again (always safe)")
            }
        }
    }
}

impl From<tonic::Status> for ScimError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unauthenticated => Self::status(401, status.message()),
            tonic::Code::PermissionDenied => Self::status(403, status.message()),
            tonic::Code::InvalidArgument => Self::bad_request("invalidValue", status.message()),
            tonic::Code::AlreadyExists => Self { scim_type: Some("uniqueness"), ..Self::status(409, status.message()) },
            _ => Self::status(500, status.message()),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = scim_json(status, &self.to_json());
        if self.status == 401 {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A SCIM JSON response.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// What every handler shares.
#[derive(Clone)]
pub struct ScimState {
    ingest: Ingest,
    gate: Gate,
    mapping: Option<Arc<mapping::Mapping>>,
    options: ScimOptions,
    /// Serialises the read-modify-write of one person's User.
    locks: Arc<Vec<Mutex<()>>>,
}

impl std::fmt::Debug for ScimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimState").field("options", &self.options).finish_non_exhaustive()
    }
}

impl ScimState {
    /// The SCIM endpoint over `engine`, callers identified as `authentication` says.
    pub fn new(engine: Engine, authentication: Authentication, options: ScimOptions) -> Self {
        let gate = Gate::new(authentication, engine.store().clone());
        let mapping = engine.policy().file.source_of_truth.scim.as_ref().and_then(mapping::Mapping::from_policy);
        Self {
            ingest: Ingest::new(engine),
            gate,
            mapping: mapping.map(Arc::new),
            options,
            locks: Arc::new((0..64).map(|_| Mutex::new(())).collect()),
        }
    }

    fn lock(&self, person: &str) -> &Mutex<()> {
        let hash = person.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        &self.locks[hash % self.locks.len()]
    }

    fn engine(&self) -> &Engine {
        self.ingest.engine()
    }

    fn source_system(&self) -> String {
        self.engine().policy().file.source_of_truth.system.clone()
    }
}

/// One authenticated request's context.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller.
    pub caller: Caller,
    /// `scheme://host` for `meta.location`.
    pub base: String,
}

fn credentials(headers: &HeaderMap, peer: &Peer) -> Credentials {
    Credentials {
        authorization: headers.get(header::AUTHORIZATION).map(|v| v.to_str().map(str::to_owned).ok()),
        principal_header: headers.get(crate::auth::PRINCIPAL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
        certificate_names: crate::auth::client_certificate_names(peer.certificates.as_deref().map(Vec::as_slice)),
    }
}

fn base_url(headers: &HeaderMap, peer: &Peer) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    format!("{}://{host}", if peer.tls { "https" } else { "http" })
}

/// Every request: authentication, the size limit, then the route.
async fn handle(
    State(state): State<ScimState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let caller = match state.gate.check_credentials(&credentials(&parts.headers, &peer), Method::Scim).await {
        Ok(caller) => caller,
        Err(status) => return ScimError::from(status).into_response(),
    };
    // Admins may submit for any source; a source only for the policy's.
    if let Err(status) = state.gate.check_source(&caller, Method::Scim, &state.source_system()).await {
        return ScimError::from(status).into_response();
    }
    let body = match read_body(body, state.options.max_body).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let ctx = Ctx { caller, base: base_url(&parts.headers, &peer) };
    let path = parts.uri.path().trim_end_matches('/');
    let query = parts.uri.query().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match route(&state, &ctx, &parts.method, &segments, query, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The body, at most `max` bytes. A larger one is read on and discarded up
/// to four times the limit, so the client reads the `413` instead of a
/// broken connection; past that the connection is dropped.
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ScimError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ScimError::bad_request("invalidSyntax", format!("reading the body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total <= max {
            bytes.extend_from_slice(&chunk);
        } else if total > max.saturating_mul(4) {
            break;
        }
    }
    if total > max {
        return Err(ScimError::status(413, format!("the body is larger than {max} bytes")));
    }
    Ok(bytes)
}

fn parse_body(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::bad_request("invalidSyntax", format!("the body is not JSON: {e}")))
}

fn method_not_allowed(allowed: &str) -> ScimError {
    ScimError::status(405, format!("method not allowed here; allowed: {allowed}"))
}

fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

fn discovery(state: &ScimState, segments: &[&str], base: &str) -> Result<Value, ScimError> {
    let options = state.options;
    let person_id = state.mapping.as_deref().map(|m| &m.person_id);
    let pick = |all: Vec<Value>, id: Option<&&str>| match id {
        None => Ok(list_response(all)),
        Some(id) => {
            all.into_iter().find(|r| r["id"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(id))).ok_or_else(|| {
                ScimError::status(404, format!("no such resource {:?}", connector_kit::validate::printable(id)))
            })
        }
    };
    match segments {
        ["ServiceProviderConfig"] => {
            Ok(schema::service_provider_config(base, options.max_bulk_operations, options.max_body))
        }
        ["Schemas", rest @ ..] if rest.len() <= 1 => pick(schema::schemas(base, person_id), rest.first()),
        ["ResourceTypes", rest @ ..] if rest.len() <= 1 => pick(schema::resource_types(base, person_id), rest.first()),
        _ => Err(ScimError::status(404, "no such endpoint")),
    }
}

async fn route(
    state: &ScimState,
    ctx: &Ctx,
    method: &HttpMethod,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Result<Response, ScimError> {
    match segments {
        ["ServiceProviderConfig"] | ["Schemas", ..] | ["ResourceTypes", ..] => {
            if method != HttpMethod::GET {
                return Err(method_not_allowed("GET"));
            }
            Ok(scim_json(StatusCode::OK, &discovery(state, segments, &ctx.base)?))
        }
        ["Users"] => match *method {
            HttpMethod::GET => users::list(state, ctx, query).await,
            HttpMethod::POST => users::respond(users::create(state, ctx, &parse_body(body)?).await?, query),
            _ => Err(method_not_allowed("GET, POST")),
        },
        // Users are the only resource type: a search at the root is a search of Users.
        ["Users", ".search"] | [".search"] => {
            if method != HttpMethod::POST {
                return Err(method_not_allowed("POST"));
            }
            users::search(state, ctx, &parse_body(body)?).await
        }
        ["Users", id] => {
            let id = percent_decode(id)?;
            match *method {
                HttpMethod::GET => users::get(state, ctx, &id, query).await,
                HttpMethod::PUT => users::respond(users::replace(state, ctx, &id, &parse_body(body)?).await?, query),
                HttpMethod::PATCH => users::respond(users::patch(state, ctx, &id, &parse_body(body)?).await?, query),
                HttpMethod::DELETE => users::respond(users::delete(state, ctx, &id).await?, query),
                _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
            }
        }
        ["Bulk"] => {
            if method != HttpMethod::POST {
                return Err(method_not_allowed("POST"));
            }
            bulk::bulk(state, ctx, &parse_body(body)?).await
        }
        _ => Err(ScimError::status(404, "no such endpoint")),
    }
}

/// Decodes `%XX` escapes of a path segment (UTF-8).
fn percent_decode(text: &str) -> Result<String, ScimError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or_else(|| ScimError::status(404, "malformed %-escape in the path"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ScimError::status(404, "the path is not UTF-8"))
}

/// Encodes a path segment: every byte but RFC 3986's unreserved characters
/// as `%XX` (the inverse of [`percent_decode`]).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The SCIM server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScimServeError {
    /// The address could not be bound.
    #[error("cannot bind the SCIM endpoint {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be used.
    #[error("SCIM endpoint TLS: {0}")]
    Tls(String),
}

/// The SCIM endpoint serving in the background.
pub struct RunningScim {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RunningScim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningScim").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl RunningScim {
    /// Binds `addr` and serves SCIM over `engine`: over TLS when `tls` is
    /// given (with a client CA, client certificates are optional but must
    /// chain to it when presented), plaintext otherwise (tests).
    pub async fn bind(
        addr: SocketAddr,
        engine: Engine,
        tls: Option<&ServerTlsFiles>,
        authentication: Authentication,
        options: ScimOptions,
    ) -> Result<Self, ScimServeError> {
        let state = ScimState::new(engine, authentication, options);
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ScimServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ScimServeError::Bind { addr, source })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match tls {
            Some(files) => {
                let listener = tls::TlsListener::new(listener, tls::server_config(files)?);
                let service = app.into_make_service_with_connect_info::<Peer>();
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
                        tracing::error!(%error, "SCIM endpoint stopped");
                    }
                })
            }
            None => {
                let service = app.into_make_service_with_connect_info::<Peer>();
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
                        tracing::error!(%error, "SCIM endpoint stopped");
                    }
                })
            }
        };
        Ok(Self { local_addr, stop: Some(stop), task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_segment_round_trips_through_its_encoding() {
        for id in ["P1", "a b/c?d#e%f", "é-ü_~.", "x\u{1f}y"] {
            let encoded = super::percent_encode(id);
            assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{encoded}");
            assert_eq!(super::percent_decode(&encoded).expect("decodes"), id);
        }
    }
}
