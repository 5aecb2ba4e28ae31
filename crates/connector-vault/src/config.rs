//! Configuration of the Vault connector (YAML), and where its own token comes from.
//!
//! The connector's token is read from a file (`token_file`) or, failing that,
//! from an environment variable (`token_env`); it is never part of the YAML,
//! never logged, and redacted from `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{KvPath, PolicyName, is_mount_path};

/// The connector's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The target instance id reported in `Describe`, e.g. `vault-eu`.
    #[serde(default = "default_target_id")]
    pub target_id: String,
    /// The server's address, e.g. `https://vault.example.org:8200` (no `/v1`).
    pub address: String,
    /// A file holding the connector's own token (read at start, trimmed).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the connector's token when
    /// `token_file` is not set.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// A PEM file of CA certificates to trust for an `https` address, in
    /// addition to the public web roots.
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// The path the userpass auth method is mounted at (`auth/<this>`).
    #[serde(default = "default_userpass_mount")]
    pub userpass_mount: String,
    /// Where the connector keeps its per-account records on the server: the
    /// correlation key (person id) and the account's assigned policies.
    #[serde(default)]
    pub records: RecordsConfig,
    /// Policies this connector may create: policy name -> policy body (HCL or
    /// JSON). Written to the server's policy store when it has one; on a
    /// server without one they are the catalogue of policies that may be granted.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// TTL (seconds) set on every token a managed user's login issues
    /// (`token_ttl`). Bounds how long a token can outlive a leaver where the
    /// server cannot revoke it.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_seconds: u64,
    /// Maximum lifetime (seconds) of a managed user's token, renewals included
    /// (`token_max_ttl`).
    #[serde(default = "default_token_ttl")]
    pub token_max_ttl_seconds: u64,
    /// Deadline of one HTTP request to the server, in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Shared secrets (KV version 1) rotated when a leaver's credentials are
    /// revoked and the leaver held a policy that could read them.
    #[serde(default)]
    pub shared_secrets: Vec<SharedSecret>,
}

/// A shared secret a leaver may have read, rotated on their departure.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SharedSecret {
    /// The secret's API path, mount included, e.g. `secret/shared/db` (KV version 1).
    pub path: String,
    /// The fields replaced with fresh random values; other fields are kept.
    pub fields: Vec<String>,
    /// The policies whose holders could read the secret.
    pub readable_by: Vec<String>,
}

/// Where account records live: a KV version 1 mount and a key prefix in it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    /// The KV (version 1) secrets engine mount, e.g. `secret`.
    #[serde(default = "default_records_mount")]
    pub mount: String,
    /// The key prefix under the mount, e.g. `lifecycle-mesh/vault-eu/accounts`.
    #[serde(default = "default_records_prefix")]
    pub prefix: String,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self { mount: default_records_mount(), prefix: default_records_prefix() }
    }
}

fn default_target_id() -> String {
    "vault".into()
}

fn default_token_env() -> String {
    "JML_VAULT_TOKEN".into()
}

fn default_userpass_mount() -> String {
    "userpass".into()
}

fn default_records_mount() -> String {
    "secret".into()
}

fn default_records_prefix() -> String {
    "lifecycle-mesh/accounts".into()
}

fn default_token_ttl() -> u64 {
    3600
}

fn default_request_timeout() -> u64 {
    10
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, naming the field.
        message: String,
    },
    /// A field holds a value the connector refuses.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path.
        field: String,
        /// Why.
        message: String,
    },
    /// The connector's token could not be loaded.
    #[error("connector token: {0}")]
    Token(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

impl VaultConfig {
    /// A configuration with defaults for everything but the address.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            target_id: default_target_id(),
            address: address.into(),
            token_file: None,
            token_env: default_token_env(),
            ca_certificate: None,
            userpass_mount: default_userpass_mount(),
            records: RecordsConfig::default(),
            policies: BTreeMap::new(),
            token_ttl_seconds: default_token_ttl(),
            token_max_ttl_seconds: default_token_ttl(),
            request_timeout_seconds: default_request_timeout(),
            shared_secrets: Vec::new(),
        }
    }

    /// Reads and checks a YAML file; errors name the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let config: Self = serde_yaml_ng::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    /// Checks every field that reaches a URL path or a request.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.target_id.trim().is_empty() {
            return Err(invalid("target_id", "must not be empty"));
        }
        let address = self.address.trim_end_matches('/');
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(invalid("address", "must start with http:// or https://"));
        }
        if address.ends_with("/v1") {
            return Err(invalid("address", "must not end with /v1: the connector adds it"));
        }
        if !is_mount_path(&self.userpass_mount) {
            return Err(invalid("userpass_mount", "must be path segments of letters, digits, '-' and '_'"));
        }
        if !is_mount_path(&self.records.mount) {
            return Err(invalid("records.mount", "must be path segments of letters, digits, '-' and '_'"));
        }
        KvPath::parse(&self.records.prefix).map_err(|message| invalid("records.prefix", message))?;
        for (name, body) in &self.policies {
            PolicyName::parse(name).map_err(|message| invalid(format!("policies.{name}"), message))?;
            if body.trim().is_empty() {
                return Err(invalid(format!("policies.{name}"), "the policy body must not be empty"));
            }
        }
        if self.token_ttl_seconds == 0 || self.token_max_ttl_seconds == 0 {
            return Err(invalid(
                "token_ttl_seconds",
                "token TTLs must be positive: a zero TTL means the server default",
            ));
        }
        if self.token_ttl_seconds > self.token_max_ttl_seconds {
            return Err(invalid("token_ttl_seconds", "must not exceed token_max_ttl_seconds"));
        }
        for (index, secret) in self.shared_secrets.iter().enumerate() {
            let field = format!("shared_secrets[{index}]");
            KvPath::parse(&secret.path).map_err(|message| invalid(format!("{field}.path"), message))?;
            if secret.fields.is_empty()
                || !secret
                    .fields
                    .iter()
                    .all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            {
                return Err(invalid(format!("{field}.fields"), "name one or more fields of letters, digits, '_', '-'"));
            }
            if secret.readable_by.is_empty() {
                return Err(invalid(format!("{field}.readable_by"), "name the policies that can read the secret"));
            }
            for policy in &secret.readable_by {
                PolicyName::parse(policy).map_err(|message| invalid(format!("{field}.readable_by"), message))?;
            }
        }
        if self.request_timeout_seconds == 0 {
            return Err(invalid("request_timeout_seconds", "must be positive"));
        }
        Ok(())
    }

    /// Loads the connector's own token: from `token_file` when set, else from
    /// the environment variable `token_env`.
    pub fn load_token(&self) -> Result<VaultToken, ConfigError> {
        let raw = match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Token(format!("cannot read token_file {}: {e}", path.display())))?,
            None => std::env::var(&self.token_env).map_err(|_| {
                ConfigError::Token(format!("set token_file, or the environment variable {}", self.token_env))
            })?,
        };
        VaultToken::new(raw.trim())
    }
}

/// A Vault token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultToken(String);

impl VaultToken {
    /// Wraps a token value; refuses empty values and values that cannot be an
    /// HTTP header.
    pub fn new(value: &str) -> Result<Self, ConfigError> {
        if value.is_empty() {
            return Err(ConfigError::Token("the token is empty".into()));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Token("the token holds characters that cannot be sent in a header".into()));
        }
        Ok(Self(value.to_owned()))
    }

    /// The secret value, for the request header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_checks() {
        assert!(VaultConfig::new("http://127.0.0.1:8200").check().is_ok());
    }

    #[test]
    fn unsafe_values_are_refused_with_their_field() {
        let mut config = VaultConfig::new("http://127.0.0.1:8200");
        config.userpass_mount = "../sys".into();
        assert!(matches!(config.check(), Err(ConfigError::Invalid { field, .. }) if field == "userpass_mount"));
        let mut config = VaultConfig::new("http://127.0.0.1:8200");
        config.policies.insert("a,b".into(), "path \"x\" {}".into());
        assert!(matches!(config.check(), Err(ConfigError::Invalid { field, .. }) if field == "policies.a,b"));
        let mut config = VaultConfig::new("ftp://x");
        config.records.prefix = "a/../b".into();
        assert!(config.check().is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_yaml_ng::from_str::<VaultConfig>("address: http://x\ntoken: s.abc\n").err();
        assert!(error.is_some_and(|e| e.to_string().contains("token")));
    }

    #[test]
    fn the_deployed_example_is_valid() {
        let example = include_str!("../../../deploy/examples/connector-vault.yaml");
        let config: VaultConfig = serde_yaml_ng::from_str(example).expect("the example parses");
        config.check().expect("the example passes the checks");
        assert_eq!(config.policies.len(), 3);
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let token = VaultToken::new("s.very-secret").expect("token");
        assert_eq!(format!("{token:?}"), "VaultToken(<redacted>)");
        let config = VaultConfig::new("http://x");
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
