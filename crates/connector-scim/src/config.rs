//! Configuration of the SCIM connector: which service provider, how to
//! authenticate to it (secrets from a file or an environment variable, never
//! inline), which groups are privileged, and paging and retry limits.
//!
//! ```yaml
//! target_id: scim-saas-eu
//! base_url: https://saas.example.com/scim/v2
//! auth:
//!   scheme: bearer
//!   token: { file: /run/secrets/scim-token }
//! privileged_groups: [admins, it-ops]
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
    /// A secret could not be loaded (the message never holds the secret).
    #[error("{field}: {message}")]
    Secret {
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
    /// The secret value, for building the `Authorization` header only.
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
            (Some(path), None) => std::fs::read_to_string(path).map_err(|e| ConfigError::Secret {
                field,
                message: format!("cannot read the secret file {}: {e}", path.display()),
            })?,
            (None, Some(variable)) => std::env::var(variable).map_err(|_| ConfigError::Secret {
                field,
                message: format!("the environment variable {variable} is not set or not UTF-8"),
            })?,
            _ => {
                return Err(ConfigError::Secret { field, message: "set exactly one of `file` or `env`".into() });
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(ConfigError::Secret { field, message: "the secret is empty".into() });
        }
        if value.chars().any(char::is_control) {
            return Err(ConfigError::Secret { field, message: "the secret holds a control character".into() });
        }
        Ok(Secret(value.to_owned()))
    }
}

/// How the connector authenticates to the service provider.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>` (RFC 6750), the usual SCIM scheme.
    Bearer {
        /// Where the token comes from.
        token: SecretSource,
    },
    /// HTTP Basic authentication (RFC 7617).
    Basic {
        /// The user name.
        username: String,
        /// Where the password comes from.
        password: SecretSource,
    },
}

/// The SCIM connector's configuration file (YAML).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The target instance id reported in `Describe`, e.g. `scim-saas-eu`.
    #[serde(default = "default_target_id")]
    pub target_id: String,
    /// The SCIM base URL, up to and including the version segment, e.g.
    /// `https://saas.example.com/scim/v2`. Resource endpoints are appended.
    pub base_url: String,
    /// How to authenticate.
    pub auth: AuthConfig,
    /// Accept an `http://` base URL. Credentials then travel in clear text:
    /// only for a service provider on loopback in development and tests.
    #[serde(default)]
    pub allow_plaintext_http: bool,
    /// A PEM file of extra CA certificates to trust (besides the web PKI roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Deadline of one HTTP request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Display names of the groups whose membership is privileged (compared
    /// case-insensitively, as SCIM compares `displayName`).
    #[serde(default)]
    pub privileged_groups: Vec<String>,
    /// Users per page when `List` is asked for the default page size. Capped
    /// by what the service provider announces.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How many times a PATCH refused with 412 Precondition Failed is re-read
    /// and retried with the fresh ETag before giving up with CONFLICT.
    #[serde(default = "default_precondition_retries")]
    pub precondition_retries: u32,
    /// Group-membership lookups in flight at once while listing.
    #[serde(default = "default_list_concurrency")]
    pub list_concurrency: usize,
    /// Largest response body accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_target_id() -> String {
    "scim".into()
}
fn default_request_timeout_secs() -> u64 {
    30
}
fn default_page_size() -> u32 {
    100
}
fn default_precondition_retries() -> u32 {
    3
}
fn default_list_concurrency() -> usize {
    8
}
fn default_max_response_bytes() -> usize {
    16 * 1024 * 1024
}

impl ScimConfig {
    /// A configuration with every default, for `base_url` and `auth`.
    pub fn new(base_url: impl Into<String>, auth: AuthConfig) -> Self {
        Self {
            target_id: default_target_id(),
            base_url: base_url.into(),
            auth,
            allow_plaintext_http: false,
            ca_file: None,
            request_timeout_secs: default_request_timeout_secs(),
            privileged_groups: Vec::new(),
            page_size: default_page_size(),
            precondition_retries: default_precondition_retries(),
            list_concurrency: default_list_concurrency(),
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
                    message: "plain http sends the credentials in clear text; use https or set allow_plaintext_http"
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
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::Invalid {
                field: "base_url",
                message: "must not carry a query or fragment".into(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::Invalid {
                field: "base_url",
                message: "must not carry credentials; use `auth`".into(),
            });
        }
        if self.target_id.trim().is_empty() {
            return Err(ConfigError::Invalid { field: "target_id", message: "must not be empty".into() });
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid { field: "request_timeout_secs", message: "must be positive".into() });
        }
        if self.page_size == 0 {
            return Err(ConfigError::Invalid { field: "page_size", message: "must be positive".into() });
        }
        if self.list_concurrency == 0 {
            return Err(ConfigError::Invalid { field: "list_concurrency", message: "must be positive".into() });
        }
        if self.max_response_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid { field: "max_response_bytes", message: "must be at least 65536".into() });
        }
        if let AuthConfig::Basic { username, .. } = &self.auth
            && (username.is_empty() || username.contains(':') || username.chars().any(char::is_control))
        {
            return Err(ConfigError::Invalid {
                field: "auth.username",
                message: "must be non-empty, without ':' or control characters".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_with_defaults() {
        let config = ScimConfig::parse(
            "base_url: https://saas.example.com/scim/v2\nauth:\n  scheme: bearer\n  token: { env: SCIM_TOKEN }\n",
        )
        .expect("parses");
        assert_eq!(config.target_id, "scim");
        assert_eq!(config.page_size, 100);
        assert_eq!(
            config.auth,
            AuthConfig::Bearer { token: SecretSource { file: None, env: Some("SCIM_TOKEN".into()) } }
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let error = ScimConfig::parse(
            "base_url: https://x.example/v2\nauth: { scheme: bearer, token: { env: T } }\npage_sise: 5\n",
        )
        .expect_err("unknown field");
        assert!(error.to_string().contains("page_sise"), "{error}");
        let error = ScimConfig::parse(
            "base_url: https://x.example/v2\nauth: { scheme: bearer, token: { env: T }, extra: 1 }\n",
        )
        .expect_err("unknown auth field");
        assert!(error.to_string().contains("extra"), "{error}");
    }

    #[test]
    fn plaintext_needs_an_explicit_opt_in() {
        let text = "base_url: http://127.0.0.1:8080/v2\nauth: { scheme: bearer, token: { env: T } }\n";
        assert!(matches!(ScimConfig::parse(text), Err(ConfigError::Invalid { field: "base_url", .. })));
        assert!(ScimConfig::parse(&format!("{text}allow_plaintext_http: true\n")).is_ok());
    }

    #[test]
    fn secrets_need_exactly_one_source_and_stay_out_of_debug() {
        let both = SecretSource { file: Some("/nonexistent".into()), env: Some("X".into()) };
        assert!(both.load("auth.token").is_err());
        let dir = std::env::temp_dir().join(format!("connector-scim-secret-{}", std::process::id()));
        std::fs::write(&dir, "  s3cr3t-value\n").expect("write");
        let secret = SecretSource { file: Some(dir.clone()), env: None }.load("auth.token").expect("loads");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}
