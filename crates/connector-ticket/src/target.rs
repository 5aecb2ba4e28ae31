//! The client of the real Request Tracker 5, over its REST2 API
//! (`/REST/2.0`): ticket search by TicketSQL, ticket create, comment (with a
//! status change), a ticket's attachment list, and one attachment's content.
//!
//! Every answer other than 2xx becomes a typed [`RtError`]; bodies are read up
//! to a configured limit, so a misbehaving server cannot exhaust memory; the
//! password travels in a sensitive header and is never logged. Names placed
//! in a URL path are percent-encoded; the only values placed in TicketSQL are
//! the configured queue (checked at load: no quotes) and hex digests.

use std::time::Duration;

use connector_kit::ConnectorError;
use connector_kit::validate::printable;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ConfigError, Secret, TicketConfig};

/// A failed exchange with Request Tracker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtError {
    /// It could not be reached.
    #[error("cannot reach Request Tracker: {0}")]
    Transport(String),
    /// It did not answer in time.
    #[error("Request Tracker did not answer in time")]
    Timeout,
    /// It answered with an error status.
    #[error("Request Tracker answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Its message, made printable and cut short.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from Request Tracker: {0}")]
    Decode(String),
}

impl From<RtError> for ConnectorError {
    fn from(error: RtError) -> Self {
        let message = error.to_string();
        match error {
            RtError::Transport(_) => ConnectorError::unavailable(message),
            RtError::Timeout => ConnectorError::timeout(message),
            RtError::Decode(_) => ConnectorError::internal(message),
            RtError::Status { status, .. } => match status {
                400 | 422 => ConnectorError::invalid_argument("desired", message),
                401 | 403 => ConnectorError::permission_denied(message),
                404 => ConnectorError::not_found(message),
                409 | 412 => ConnectorError::conflict(message),
                429 => ConnectorError::throttled(message, None),
                504 => ConnectorError::timeout(message),
                500..=599 => ConnectorError::unavailable(message),
                _ => ConnectorError::internal(message),
            },
        }
    }
}

/// A ticket, as far as the connector reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its id.
    pub id: u64,
    /// Its status (`new`, `open`, `stalled`, `resolved`, `rejected`, ...).
    pub status: String,
    /// The RT user who created it.
    pub creator: String,
}

impl Ticket {
    /// Whether people are still working on it.
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "new" | "open" | "stalled")
    }
}

/// One attachment of a ticket: a part of one entry (transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id.
    pub id: u64,
    /// The transaction (entry) it belongs to.
    pub transaction_id: u64,
    /// The RT user who created the entry, as RT recorded it.
    pub creator: String,
    /// When, as RT recorded it (RFC 3339).
    pub created: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its file name; empty for a message body.
    pub filename: String,
    /// Its length in bytes, as RT reports it.
    pub content_length: u64,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    count: u64,
}

fn text(item: &Value, field: &str) -> String {
    match item.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Object(o)) => o.get("id").map(|id| text(&json!({ "v": id }), "v")).unwrap_or_default(),
        _ => String::new(),
    }
}

fn number(item: &Value, field: &str) -> Result<u64, RtError> {
    text(item, field).parse().map_err(|_| RtError::Decode(format!("{field} is not a number")))
}

/// A client of one Request Tracker, signed in as the connector's user.
#[derive(Clone)]
pub struct RtClient {
    http: reqwest::Client,
    base: String,
    web: String,
    authorization: HeaderValue,
    max_response_bytes: usize,
}

impl std::fmt::Debug for RtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtClient").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Base64 (RFC 4648, padded) of `bytes`, for the Basic authorization header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, ignoring line breaks; `None` when malformed.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0u8;
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut padding = false;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            _ => return None,
        };
        if padding {
            return None;
        }
        bits = (bits << 6) | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
            bits = 0;
            count = 0;
        }
    }
    match count {
        0 => {}
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&[(bits >> 10) as u8, (bits >> 2) as u8]),
        _ => return None,
    }
    Some(out)
}

impl RtClient {
    /// A client for `config`, with its password loaded.
    pub fn new(config: &TicketConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let password: Secret = config.password.load("password")?;
        let mut authorization = HeaderValue::from_str(&format!(
            "Basic {}",
            base64(format!("{}:{}", config.username, password.expose()).as_bytes())
        ))
        .map_err(|_| ConfigError::Invalid { field: "password", message: "not a valid header value".into() })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .connect_timeout(Duration::from_secs(config.request_timeout_secs.min(10)))
            .build()
            .map_err(|e| ConfigError::Invalid { field: "base_url", message: format!("HTTP client: {e}") })?;
        let web = config.base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            base: format!("{web}/REST/2.0"),
            web,
            authorization,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Where a person opens ticket `id`.
    pub fn ticket_url(&self, id: u64) -> String {
        format!("{}/Ticket/Display.html?id={id}", self.web)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, RtError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() { RtError::Timeout } else { RtError::Transport(e.without_url().to_string()) }
        })?;
        let status = response.status();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > self.max_response_bytes {
                        return Err(RtError::Decode(format!("answer larger than {} bytes", self.max_response_bytes)));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(RtError::Timeout),
                Err(e) => return Err(RtError::Transport(e.without_url().to_string())),
            }
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let message = parsed
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(Value::as_str)
                .map(printable)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(RtError::Status { status: status.as_u16(), message });
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(Value::Null);
        }
        parsed.ok_or_else(|| RtError::Decode("the answer is not JSON".into()))
    }

    /// The queue's record: a real check that RT answers and the user may see it.
    pub async fn queue(&self, name: &str) -> Result<Value, RtError> {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.call(Method::GET, &format!("/queue/{encoded}"), &[], None).await
    }

    /// Tickets matching `ticket_sql`, newest first (at most `limit`).
    pub async fn search(&self, ticket_sql: &str, limit: u32) -> Result<Vec<Ticket>, RtError> {
        let query = [
            ("query", ticket_sql.to_owned()),
            ("fields", "Status,Creator".to_owned()),
            ("orderby", "id".to_owned()),
            ("order", "DESC".to_owned()),
            ("per_page", limit.clamp(1, 100).to_string()),
        ];
        let page: Page = serde_json::from_value(self.call(Method::GET, "/tickets", &query, None).await?)
            .map_err(|e| RtError::Decode(format!("ticket search: {e}")))?;
        page.items
            .iter()
            .map(|item| {
                Ok(Ticket { id: number(item, "id")?, status: text(item, "Status"), creator: text(item, "Creator") })
            })
            .collect()
    }

    /// One ticket.
    pub async fn ticket(&self, id: u64) -> Result<Ticket, RtError> {
        let item = self.call(Method::GET, &format!("/ticket/{id}"), &[], None).await?;
        Ok(Ticket { id: number(&item, "id")?, status: text(&item, "Status"), creator: text(&item, "Creator") })
    }

    /// Creates a ticket; its id.
    pub async fn create(&self, queue: &str, subject: &str, content: &str) -> Result<u64, RtError> {
        let body = json!({ "Queue": queue, "Subject": subject, "Content": content, "ContentType": "text/plain" });
        let answer = self.call(Method::POST, "/ticket", &[], Some(body)).await?;
        number(&answer, "id")
    }

    /// Comments on a ticket, optionally setting its status.
    pub async fn comment(&self, id: u64, content: &str, status: Option<&str>) -> Result<(), RtError> {
        let mut body = json!({ "Content": content, "ContentType": "text/plain" });
        if let Some(status) = status {
            body["Status"] = json!(status);
        }
        self.call(Method::POST, &format!("/ticket/{id}/comment"), &[], Some(body)).await.map(|_| ())
    }

    /// Every attachment of a ticket (without content), oldest first.
    pub async fn attachments(&self, id: u64) -> Result<Vec<Attachment>, RtError> {
        let mut out = Vec::new();
        for page in 1..=100u32 {
            let query = [
                ("fields", "Filename,ContentType,TransactionId,Creator,Created,ContentLength".to_owned()),
                ("per_page", "100".to_owned()),
                ("page", page.to_string()),
                ("orderby", "id".to_owned()),
                ("order", "ASC".to_owned()),
            ];
            let answer: Page = serde_json::from_value(
                self.call(Method::GET, &format!("/ticket/{id}/attachments"), &query, None).await?,
            )
            .map_err(|e| RtError::Decode(format!("attachments: {e}")))?;
            let count = answer.count;
            for item in &answer.items {
                out.push(Attachment {
                    id: number(item, "id")?,
                    transaction_id: number(item, "TransactionId")?,
                    creator: text(item, "Creator"),
                    created: text(item, "Created"),
                    content_type: text(item, "ContentType").to_lowercase(),
                    filename: text(item, "Filename"),
                    content_length: text(item, "ContentLength").parse().unwrap_or(u64::MAX),
                });
            }
            if count < 100 {
                return Ok(out);
            }
        }
        Err(RtError::Decode(format!("ticket {id} has more than 10,000 attachments")))
    }

    /// One attachment's raw content.
    pub async fn content(&self, id: u64) -> Result<Vec<u8>, RtError> {
        let item = self.call(Method::GET, &format!("/attachment/{id}"), &[], None).await?;
        let encoded = item.get("Content").and_then(Value::as_str).unwrap_or_default();
        unbase64(encoded).ok_or_else(|| RtError::Decode(format!("attachment {id}: content is not base64")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"a", b"ab", b"abc", b"user:p@ss w0rd", &[0, 255, 128, 7]] {
            assert_eq!(unbase64(&base64(input)).as_deref(), Some(input));
        }
        assert_eq!(base64(b"ab"), "YWI=");
        assert!(unbase64("YW=I").is_none());
        assert!(unbase64("Y").is_none());
        assert!(unbase64("Y$==").is_none());
    }

    #[test]
    fn status_errors_are_typed() {
        let kind = |status| ConnectorError::from(RtError::Status { status, message: "x".into() }).kind;
        use connector_kit::ErrorKind;
        assert_eq!(kind(401), ErrorKind::PermissionDenied);
        assert_eq!(kind(503), ErrorKind::Unavailable);
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(ConnectorError::from(RtError::Timeout).kind, ErrorKind::Timeout);
        assert!(ConnectorError::from(RtError::Transport("refused".into())).retryable);
    }
}
