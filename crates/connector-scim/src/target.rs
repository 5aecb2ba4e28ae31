//! The client of the real SCIM 2.0 service provider (RFC 7643 / RFC 7644).
//!
//! It speaks only what the connector needs: `/ServiceProviderConfig`,
//! filtered and paged searches of `/Users` and `/Groups`, `POST`, RFC-strict
//! `PATCH` (optionally with `If-Match`) and `DELETE`. It never sends `PUT`.
//! Every filter value goes through [`filter_string`], every id placed in a
//! path through [`path_segment`]; every non-2xx answer becomes a typed
//! [`ScimError`] built from the SCIM error body (`status`, `scimType`,
//! `detail`) and the `Retry-After` header. Bodies are read up to a configured
//! limit, so a misbehaving server cannot exhaust memory. The credentials are
//! in a sensitive header value and never logged.

use std::time::{Duration, SystemTime};

use connector_kit::ConnectorError;
use connector_kit::validate::printable;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{AuthConfig, ConfigError, ScimConfig};

/// The SCIM core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The SCIM enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The SCIM PATCH message schema.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The SCIM media type.
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A value percent-encoded for one URL path segment (`/` and `%` included).
pub fn path_segment(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

/// A SCIM filter string literal (RFC 7644 §3.4.2.2: a JSON string): quoted,
/// with `"` and `\` escaped, and control characters as `\uXXXX`.
pub fn filter_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A failed exchange with the service provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimError {
    /// The service provider could not be reached.
    #[error("cannot reach the SCIM service provider: {0}")]
    Transport(String),
    /// The request took longer than the configured deadline.
    #[error("the SCIM service provider did not answer in time")]
    Timeout,
    /// The service provider answered with an error status.
    #[error("SCIM service provider answered {status}{}: {detail}", scim_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The SCIM `scimType` of the error body, if any.
        scim_type: Option<String>,
        /// The SCIM `detail`, made printable and cut short.
        detail: String,
        /// The `Retry-After` the service provider asked for.
        retry_after: Option<Duration>,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from the SCIM service provider: {0}")]
    Decode(String),
}

impl ScimError {
    /// The HTTP status, for an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<ScimError> for ConnectorError {
    fn from(error: ScimError) -> Self {
        let message = error.to_string();
        match error {
            ScimError::Transport(_) => ConnectorError::unavailable(message),
            ScimError::Timeout => ConnectorError::timeout(message),
            ScimError::Decode(_) => ConnectorError::internal(message),
            ScimError::Status { status, scim_type, retry_after, .. } => {
                let error = match status {
                    400 if scim_type.as_deref() == Some("invalidVers") => ConnectorError::conflict(message),
                    400 | 413 | 422 => ConnectorError::invalid_argument("desired", message),
                    401 | 403 => ConnectorError::permission_denied(message),
                    404 => ConnectorError::not_found(message),
                    409 | 412 => ConnectorError::conflict(message),
                    429 => ConnectorError::throttled(message, retry_after),
                    501 => ConnectorError::unsupported(message),
                    504 => ConnectorError::timeout(message),
                    500..=599 => ConnectorError::unavailable(message),
                    _ => ConnectorError::internal(message),
                };
                match retry_after {
                    Some(after) if error.retry_after.is_none() => error.with_retry_after(after),
                    _ => error,
                }
            }
        }
    }
}

/// What `/ServiceProviderConfig` announces, as far as the connector adapts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceProvider {
    /// PATCH is supported (the connector changes nothing without it: it never PUTs).
    pub patch: bool,
    /// ETags are supported: PATCHes of users carry `If-Match`.
    pub etag: bool,
    /// Filters are supported (lookups by `userName` and `displayName` need them).
    pub filter: bool,
    /// Most resources a filtered search answers with.
    pub max_results: Option<u32>,
    /// The password can be changed (credential revocation replaces it).
    pub change_password: bool,
    /// RFC 9865 cursor pagination is supported: `List` uses it, which stays
    /// stable while other clients create and delete users.
    pub cursor_pagination: bool,
    /// Largest page the provider serves.
    pub max_page_size: Option<u32>,
}

impl ServiceProvider {
    /// The largest `count` worth asking for.
    pub fn page_cap(&self) -> u32 {
        [self.max_results, self.max_page_size].into_iter().flatten().filter(|n| *n > 0).min().unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Supported {
    #[serde(default)]
    supported: bool,
    #[serde(default)]
    max_results: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaginationDocument {
    #[serde(default)]
    cursor: bool,
    #[serde(default)]
    max_page_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceProviderDocument {
    #[serde(default)]
    patch: Supported,
    #[serde(default)]
    filter: Supported,
    #[serde(default)]
    change_password: Supported,
    #[serde(default)]
    etag: Supported,
    #[serde(default)]
    pagination: Option<PaginationDocument>,
}

/// A SCIM `meta` object, as far as it is used.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// The resource version (its ETag).
    #[serde(default)]
    pub version: Option<String>,
    /// When the resource last changed (RFC 3339).
    #[serde(default)]
    pub last_modified: Option<String>,
}

/// A SCIM `name` complex attribute, as far as it is managed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    /// `name.givenName`.
    #[serde(default)]
    pub given_name: Option<String>,
    /// `name.familyName`.
    #[serde(default)]
    pub family_name: Option<String>,
}

/// One value of the multi-valued `emails` attribute.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Email {
    /// The address.
    #[serde(default)]
    pub value: Option<String>,
    /// Its type (`work`, `home`, ...).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// The enterprise User extension, as far as it is managed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Enterprise {
    /// `department`.
    #[serde(default)]
    pub department: Option<String>,
    /// `employeeNumber`.
    #[serde(default)]
    pub employee_number: Option<String>,
}

/// A SCIM User as the connector reads it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScimUser {
    /// The service provider's id.
    pub id: String,
    /// The correlation key: the person id from the source of truth.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The account name.
    pub user_name: String,
    /// Whether the account may be used; absent is read as enabled (fails closed
    /// for a leaver's verification).
    #[serde(default)]
    pub active: Option<bool>,
    /// `displayName`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `title`.
    #[serde(default)]
    pub title: Option<String>,
    /// `name`.
    #[serde(default)]
    pub name: Option<Name>,
    /// `emails`.
    #[serde(default)]
    pub emails: Option<Vec<Email>>,
    /// The enterprise extension.
    #[serde(default, rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")]
    pub enterprise: Option<Enterprise>,
    /// `meta`.
    #[serde(default)]
    pub meta: Option<Meta>,
}

impl ScimUser {
    /// The ETag to send in `If-Match`.
    pub fn version(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.version.as_deref())
    }

    /// The `work` email, the one the connector manages as `mail`.
    pub fn work_email(&self) -> Option<&str> {
        self.emails.as_ref()?.iter().find(|e| e.kind.as_deref() == Some("work"))?.value.as_deref()
    }
}

/// A SCIM Group, reduced to what identifies it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroup {
    /// The service provider's id.
    pub id: String,
    /// The group's name: the entitlement id.
    #[serde(default)]
    pub display_name: String,
    /// The members, when the search asked for them (`attributes=members`).
    #[serde(default)]
    pub members: Option<Vec<GroupMember>>,
}

/// One member of a SCIM Group.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's id.
    #[serde(default)]
    pub value: String,
}

/// One page of a search.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T> {
    /// Matching resources in all pages.
    #[serde(default)]
    pub total_results: u64,
    /// This page's resources.
    #[serde(default = "Vec::new", rename = "Resources")]
    pub resources: Vec<T>,
    /// The cursor of the next page (RFC 9865), when paging by cursor.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// RFC 7644 index paging, 1-based.
    Index(u64),
    /// RFC 9865 cursor paging; empty for the first page.
    Cursor(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    scim_type: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// An HTTP answer with a success status.
#[derive(Debug)]
struct Answer {
    etag: Option<String>,
    body: Vec<u8>,
}

/// The SCIM client.
#[derive(Clone)]
pub struct ScimTarget {
    http: reqwest::Client,
    base: String,
    max_response_bytes: usize,
}

impl std::fmt::Debug for ScimTarget {
    /// Names the service provider only: the client's headers hold the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimTarget").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ScimTarget {
    /// A client for the configured service provider; loads the secret.
    pub fn new(config: &ScimConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let authorization = match &config.auth {
            AuthConfig::Bearer { token } => format!("Bearer {}", token.load("auth.token")?.expose()),
            AuthConfig::Basic { username, password } => {
                let pair = format!("{username}:{}", password.load("auth.password")?.expose());
                format!("Basic {}", base64_encode(pair.as_bytes()))
            }
        };
        let mut authorization = HeaderValue::from_str(&authorization).map_err(|_| ConfigError::Secret {
            field: "auth",
            message: "the credentials are not a valid header value".into(),
        })?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization);
        headers.insert(header::ACCEPT, HeaderValue::from_static(SCIM_MEDIA_TYPE));
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .connect_timeout(Duration::from_secs(config.request_timeout_secs.min(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lifecycle-mesh-connector-scim/", env!("CARGO_PKG_VERSION")));
        if !config.allow_plaintext_http {
            builder = builder.https_only(true);
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| ConfigError::Invalid {
                field: "ca_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ConfigError::Invalid { field: "ca_file", message: format!("not PEM certificates: {e}") })?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| ConfigError::Invalid {
            field: "base_url",
            message: format!("cannot build the client: {e}"),
        })?;
        Ok(Self {
            http,
            base: config.base_url.trim_end_matches('/').to_owned(),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Sends one request and reads the answer, turning error statuses into [`ScimError`].
    #[tracing::instrument(name = "scim.request", skip_all, fields(http.method = %method))]
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let url = format!("{}{path}", self.base);
        let span = tracing::debug_span!("scim.request", http.method = %method, url.path = path);
        let _entered = span.enter();
        let mut request = self.http.request(method, &url);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| ScimError::Decode(e.to_string()))?;
            request = request.header(header::CONTENT_TYPE, SCIM_MEDIA_TYPE).body(bytes);
        }
        if let Some(tag) = if_match {
            let value = HeaderValue::from_str(tag).map_err(|_| ScimError::Decode("an unusable ETag".into()))?;
            request = request.header(header::IF_MATCH, value);
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after =
            response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(ScimError::Decode(format!("answer larger than {} bytes", self.max_response_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            tracing::debug!(status = status.as_u16(), "scim answer");
            return Ok(Answer { etag, body });
        }
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let detail = parsed
            .detail
            .map(|d| printable(&d))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let error = ScimError::Status {
            status: status.as_u16(),
            scim_type: parsed.scim_type.map(|t| printable(&t)),
            detail,
            retry_after: retry_after
                .filter(|_| matches!(status, StatusCode::TOO_MANY_REQUESTS) || status.is_server_error()),
        };
        tracing::debug!(status = status.as_u16(), %error, "scim error answer");
        Err(error)
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(T, Option<String>), ScimError> {
        let answer = self.send(method, path, query, body, None).await?;
        let value = serde_json::from_slice(&answer.body).map_err(|e| ScimError::Decode(e.to_string()))?;
        Ok((value, answer.etag))
    }

    /// Reads `/ServiceProviderConfig`.
    pub async fn service_provider(&self) -> Result<ServiceProvider, ScimError> {
        let (document, _): (ServiceProviderDocument, _) =
            self.send_json(Method::GET, "/ServiceProviderConfig", &[], None).await?;
        let pagination = document.pagination.unwrap_or_default();
        Ok(ServiceProvider {
            patch: document.patch.supported,
            etag: document.etag.supported,
            filter: document.filter.supported,
            max_results: document.filter.max_results,
            change_password: document.change_password.supported,
            cursor_pagination: pagination.cursor,
            max_page_size: pagination.max_page_size,
        })
    }

    /// Checks that the credentials are accepted, with a one-resource search.
    pub async fn check_access(&self) -> Result<(), ScimError> {
        let query = [("count", "1".to_string()), ("attributes", "id".to_string())];
        let _: (ListPage<Value>, _) = self.send_json(Method::GET, "/Users", &query, None).await?;
        Ok(())
    }

    /// One page of a search of `endpoint` (`/Users` or `/Groups`).
    pub async fn search<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        filter: Option<&str>,
        attributes: Option<&str>,
        start: &PageStart,
        count: u32,
    ) -> Result<ListPage<T>, ScimError> {
        let mut query = Vec::with_capacity(4);
        if let Some(filter) = filter {
            query.push(("filter", filter.to_owned()));
        }
        if let Some(attributes) = attributes {
            query.push(("attributes", attributes.to_owned()));
        }
        match start {
            PageStart::Index(index) => query.push(("startIndex", index.to_string())),
            PageStart::Cursor(cursor) => query.push(("cursor", cursor.clone())),
        }
        query.push(("count", count.to_string()));
        let (page, _) = self.send_json(Method::GET, endpoint, &query, None).await?;
        Ok(page)
    }

    /// One user by id, with its ETag (the header, else `meta.version`).
    pub async fn get_user(&self, id: &str) -> Result<ScimUser, ScimError> {
        let path = format!("/Users/{}", path_segment(id));
        let (mut user, etag): (ScimUser, _) = self.send_json(Method::GET, &path, &[], None).await?;
        if let Some(etag) = etag {
            user.meta.get_or_insert_with(Meta::default).version = Some(etag);
        }
        Ok(user)
    }

    /// Creates a user; answers the created resource.
    pub async fn create_user(&self, body: &Value) -> Result<ScimUser, ScimError> {
        let (user, _) = self.send_json(Method::POST, "/Users", &[], Some(body)).await?;
        Ok(user)
    }

    /// Applies RFC 7644 §3.5.2 PATCH operations to one resource.
    pub async fn patch(
        &self,
        endpoint: &str,
        id: &str,
        operations: Vec<Value>,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        let path = format!("{endpoint}/{}", path_segment(id));
        let body = serde_json::json!({ "schemas": [PATCH_SCHEMA], "Operations": operations });
        self.send(Method::PATCH, &path, &[], Some(&body), if_match).await.map(|_| ())
    }

    /// Deletes one resource.
    pub async fn delete(&self, endpoint: &str, id: &str) -> Result<(), ScimError> {
        let path = format!("{endpoint}/{}", path_segment(id));
        self.send(Method::DELETE, &path, &[], None, None).await.map(|_| ())
    }
}

fn transport_error(error: reqwest::Error) -> ScimError {
    if error.is_timeout() {
        ScimError::Timeout
    } else if error.is_decode() || error.is_body() {
        ScimError::Decode(error.without_url().to_string())
    } else {
        ScimError::Transport(error.without_url().to_string())
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(filter_string("alice"), "\"alice\"");
        assert_eq!(filter_string("\" or userName pr or \""), "\"\\\" or userName pr or \\\"\"");
        assert_eq!(filter_string("a\\2a"), "\"a\\\\2a\"");
        assert_eq!(filter_string("tail\\"), "\"tail\\\\\"");
        assert_eq!(filter_string("x\u{1}y"), "\"x\\u0001y\"");
        assert_eq!(filter_string("Zoë 名前"), "\"Zoë 名前\"");
    }

    #[test]
    fn path_segments_encode_separators() {
        assert_eq!(path_segment("2819c223-7f76"), "2819c223-7f76");
        assert_eq!(path_segment("../x"), "..%2Fx");
        assert_eq!(path_segment("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = retry_after(&later).expect("a date");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(base64_encode(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b""), "");
    }

    #[test]
    fn status_errors_map_to_typed_connector_errors() {
        let status = |status, scim_type: Option<&str>, retry_after| ScimError::Status {
            status,
            scim_type: scim_type.map(str::to_owned),
            detail: "d".into(),
            retry_after,
        };
        let error = ConnectorError::from(status(429, None, Some(Duration::from_secs(3))));
        assert_eq!(error.kind, connector_kit::ErrorKind::Throttled);
        assert!(error.retryable);
        assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        let error = ConnectorError::from(status(503, None, Some(Duration::from_secs(9))));
        assert_eq!(error.kind, connector_kit::ErrorKind::Unavailable);
        assert_eq!(error.retry_after, Some(Duration::from_secs(9)));
        let error = ConnectorError::from(status(400, Some("invalidValue"), None));
        assert_eq!(error.kind, connector_kit::ErrorKind::InvalidArgument);
        assert!(!error.retryable);
        assert!(error.message.contains("invalidValue"));
        assert_eq!(
            ConnectorError::from(status(409, Some("uniqueness"), None)).kind,
            connector_kit::ErrorKind::Conflict
        );
        assert_eq!(ConnectorError::from(status(401, None, None)).kind, connector_kit::ErrorKind::PermissionDenied);
        assert_eq!(ConnectorError::from(status(404, None, None)).kind, connector_kit::ErrorKind::NotFound);
    }

    #[test]
    fn service_provider_page_cap_is_the_smallest_limit() {
        let provider = ServiceProvider {
            patch: true,
            etag: true,
            filter: true,
            max_results: Some(1000),
            change_password: true,
            cursor_pagination: false,
            max_page_size: Some(200),
        };
        assert_eq!(provider.page_cap(), 200);
    }
}
