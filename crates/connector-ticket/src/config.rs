//! Configuration of the ticket connector: which Request Tracker, which queue,
//! how to sign in (password from a file or an environment variable, never
//! inline), what the manual target's accounts carry (entitlement kinds,
//! managed attributes), and the limits on what is read back.
//!
//! ```yaml
//! target_id: payroll-legacy
//! base_url: https://rt.example.com
//! queue: access-payroll
//! username: jml-connector
//! password: { file: /run/secrets/rt-password }
//! entitlement_kinds: [role]
//! attributes: [mail]
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration; the message names the field.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field's path.
        message: String,
    },
    /// A value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Where a secret comes from: exactly one of a file or an environment variable.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A file holding the secret (surrounding whitespace is trimmed).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

/// A loaded secret. Its `Debug` output is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl SecretSource {
    /// Reads the secret.
    pub fn load(&self, field: &'static str) -> Result<Secret, ConfigError> {
        let value = match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                field,
                message: format!("cannot read the secret file {}: {e}", path.display()),
            })?,
            (None, Some(variable)) => std::env::var(variable).map_err(|_| ConfigError::Invalid {
                field,
                message: format!("the environment variable {variable} is not set or not UTF-8"),
            })?,
            _ => return Err(ConfigError::Invalid { field, message: "set exactly one of `file` or `env`".into() }),
        };
        let value = value.trim();
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                field,
                message: "the secret is empty or holds a control character".into(),
            });
        }
        Ok(Secret(value.to_owned()))
    }
}

/// The ticket connector's configuration file (YAML).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// The target instance id reported in `Describe`, e.g. `payroll-legacy`.
    pub target_id: String,
    /// Request Tracker's base URL (REST2 is under `/REST/2.0`).
    pub base_url: String,
    /// The queue tickets are filed in; the connector's user must be able to
    /// create, see, comment on and modify tickets there.
    pub queue: String,
    /// The RT user the connector signs in as (HTTP Basic). Its own entries on
    /// a ticket never count as an attestation.
    pub username: String,
    /// Where that user's password comes from.
    pub password: SecretSource,
    /// Accept an `http://` base URL (credentials in clear text): only for a
    /// Request Tracker on loopback in development and tests.
    #[serde(default)]
    pub allow_plaintext_http: bool,
    /// Deadline of one HTTP request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The entitlement kinds the manual target's accounts hold (what a
    /// fulfiller attests and the export lists), e.g. `[role]`.
    #[serde(default = "default_entitlement_kinds")]
    pub entitlement_kinds: Vec<String>,
    /// The attributes the desired state may name (compared exactly).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Largest account export accepted, in bytes; a larger one makes the
    /// attestation invalid (never cut short and half-read).
    #[serde(default = "default_max_export_bytes")]
    pub max_export_bytes: u64,
    /// Largest REST2 response body accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_request_timeout_secs() -> u64 {
    30
}
fn default_entitlement_kinds() -> Vec<String> {
    vec!["role".into()]
}
fn default_max_export_bytes() -> u64 {
    1024 * 1024
}
fn default_max_response_bytes() -> usize {
    8 * 1024 * 1024
}

impl TicketConfig {
    /// A configuration with every default.
    pub fn new(
        target_id: impl Into<String>,
        base_url: impl Into<String>,
        queue: impl Into<String>,
        username: impl Into<String>,
        password: SecretSource,
    ) -> Self {
        Self {
            target_id: target_id.into(),
            base_url: base_url.into(),
            queue: queue.into(),
            username: username.into(),
            password,
            allow_plaintext_http: false,
            request_timeout_secs: default_request_timeout_secs(),
            entitlement_kinds: default_entitlement_kinds(),
            attributes: Vec::new(),
            max_export_bytes: default_max_export_bytes(),
            max_response_bytes: default_max_response_bytes(),
        }
    }

    /// Reads and checks a YAML file; errors name the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and checks YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::from("<config>"), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ConfigError::Invalid { field: "base_url", message: format!("not a URL: {e}") })?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_plaintext_http => {}
            "http" => {
                return Err(ConfigError::Invalid {
                    field: "base_url",
                    message: "plain http sends the password in clear text; use https or set allow_plaintext_http"
                        .into(),
                });
            }
            other => {
                return Err(ConfigError::Invalid {
                    field: "base_url",
                    message: format!("unsupported scheme {other:?}"),
                });
            }
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::Invalid {
                field: "base_url",
                message: "must carry no query or credentials".into(),
            });
        }
        let word = |field: &'static str, value: &str| {
            if value.trim().is_empty() || value.chars().any(|c| c.is_control() || c == '\'' || c == ':') {
                Err(ConfigError::Invalid {
                    field,
                    message: "must be non-empty, without quotes, ':' or control characters".into(),
                })
            } else {
                Ok(())
            }
        };
        word("target_id", &self.target_id)?;
        word("queue", &self.queue)?;
        word("username", &self.username)?;
        if self.entitlement_kinds.is_empty() {
            return Err(ConfigError::Invalid { field: "entitlement_kinds", message: "name at least one kind".into() });
        }
        for kind in &self.entitlement_kinds {
            word("entitlement_kinds", kind)?;
        }
        for attribute in &self.attributes {
            word("attributes", attribute)?;
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid { field: "request_timeout_secs", message: "must be positive".into() });
        }
        if self.max_export_bytes == 0 {
            return Err(ConfigError::Invalid { field: "max_export_bytes", message: "must be positive".into() });
        }
        if self.max_response_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid { field: "max_response_bytes", message: "must be at least 65536".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "target_id: payroll\nbase_url: https://rt.example\nqueue: q\nusername: jml\npassword: { env: RT_PW }\n";

    #[test]
    fn example_parses_with_defaults() {
        let config = TicketConfig::parse(BASE).expect("parses");
        assert_eq!(config.entitlement_kinds, vec!["role".to_owned()]);
        assert_eq!(config.max_export_bytes, 1024 * 1024);
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/connector-ticket.yaml");
        let config = TicketConfig::load(&path).expect("example parses");
        assert_eq!(config.target_id, "payroll-legacy");
        assert_eq!(config.attributes, vec!["mail".to_owned()]);
    }

    #[test]
    fn unknown_fields_and_plain_http_are_refused_with_their_name() {
        let error = TicketConfig::parse(&format!("{BASE}max_export_byte: 5\n")).expect_err("unknown");
        assert!(error.to_string().contains("max_export_byte"), "{error}");
        let plain = BASE.replace("https://", "http://");
        assert!(matches!(TicketConfig::parse(&plain), Err(ConfigError::Invalid { field: "base_url", .. })));
        assert!(TicketConfig::parse(&format!("{plain}allow_plaintext_http: true\n")).is_ok());
        let quoted = BASE.replace("queue: q", "queue: \"q'x\"");
        assert!(matches!(TicketConfig::parse(&quoted), Err(ConfigError::Invalid { field: "queue", .. })));
    }
}
