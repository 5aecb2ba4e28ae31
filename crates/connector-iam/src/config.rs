//! Configuration of the AWS IAM connector (YAML).
//!
//! The file names no secret: AWS credentials come from the standard AWS
//! provider chain (environment, shared config and credentials files, web
//! identity, ECS and EC2 instance roles), exactly as the AWS CLI finds them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::names;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not match the schema (the message names the field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the field's path.
        message: String,
    },
    /// A value breaks a rule.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The AWS IAM connector's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IamConfig {
    /// The target instance id reported in `Describe`, e.g. `aws-iam-prod`.
    #[serde(default = "default_target_id")]
    pub target_id: String,
    /// The IAM endpoint. Unset means the AWS default endpoint. Must be
    /// `https://`, except `http://` on a loopback host (an emulator such as
    /// moto in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Accept an `http://` `endpoint_url` on a host that is not loopback (an
    /// emulator on a container network, as moto in docker-compose.yml).
    /// Requests are signed but travel in clear text: development and tests only.
    #[serde(default)]
    pub allow_plaintext_http: bool,
    /// The signing region. IAM is a global service; `us-east-1` signs for the
    /// `aws` partition.
    #[serde(default = "default_region")]
    pub region: String,
    /// The IAM path of every user this connector manages. Users in any other
    /// path (sub-paths included) are never read, listed or changed.
    #[serde(default = "default_user_path")]
    pub user_path: String,
    /// The tag key holding the person id (the correlation key). A user without
    /// this tag is never read or changed, even in the managed path.
    #[serde(default = "default_person_tag_key")]
    pub person_tag_key: String,
    /// The tag key that marks a user disabled. See the crate docs for what
    /// `enabled` means on IAM.
    #[serde(default = "default_disabled_tag_key")]
    pub disabled_tag_key: String,
    /// Managed attributes: attribute name (as in the desired state) to the tag
    /// key that stores it on the user.
    #[serde(default = "default_attribute_tags")]
    pub attribute_tags: BTreeMap<String, String>,
    /// Tag keys `List` may report for correlation besides the attribute tags
    /// (e.g. `email` on users made by hand); never written.
    #[serde(default)]
    pub correlation_tags: BTreeSet<String>,
    /// Group names whose membership is privileged (compared case-insensitively,
    /// as IAM compares names).
    #[serde(default)]
    pub privileged_groups: BTreeSet<String>,
    /// Managed policy ARNs whose attachment is privileged.
    #[serde(default)]
    pub privileged_policies: BTreeSet<String>,
    /// Set ONLY for an emulator that does not implement the service-specific
    /// credential API (moto): the connector then neither lists nor deletes
    /// service-specific credentials, and says so in `Describe`. On real AWS
    /// this would hide CodeCommit, Keyspaces and Bedrock credentials from the
    /// leaver's clean-up (and make `DeleteUser` fail with `DeleteConflict`).
    #[serde(default)]
    pub target_lacks_service_specific_credentials: bool,
    /// Attempts per AWS call, the first included. Throttling (`Throttling`,
    /// HTTP 429) and transient errors are retried with jittered exponential
    /// backoff by the SDK's standard retry strategy.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay, in milliseconds; doubles per attempt up to 20 s.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Time limit for one AWS call including its retries, in seconds.
    #[serde(default = "default_operation_timeout_secs")]
    pub operation_timeout_secs: u64,
    /// Default page size of `List` when the caller asks for none (IAM allows
    /// at most 1000).
    #[serde(default = "default_list_page_size")]
    pub list_page_size: u32,
    /// How many users' details `List` and `Read` fetch at once.
    #[serde(default = "default_read_concurrency")]
    pub read_concurrency: usize,
    /// Non-human identities a person owns (#20): IAM users (service users)
    /// tagged with an owner's person id. Absent: `Describe` declares no
    /// owned identities and a directive is refused.
    #[serde(default)]
    pub owned_identities: Option<OwnedIdentitiesConfig>,
}

/// Where owned service users are and how their owner is tagged.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OwnedIdentitiesConfig {
    /// The tag key holding the owner's person id on a service user.
    #[serde(default = "default_owner_tag_key")]
    pub owner_tag_key: String,
    /// The tag key the connector writes on a transfer, holding the person
    /// id of the owner it was transferred from.
    #[serde(default = "default_previous_owner_tag_key")]
    pub previous_owner_tag_key: String,
    /// The IAM path prefix searched for service users (`/` for the whole
    /// account). Users carrying the person tag (people's own accounts) are
    /// never taken for service users.
    #[serde(default = "default_service_path_prefix")]
    pub path_prefix: String,
}

fn default_owner_tag_key() -> String {
    "owner".into()
}
fn default_previous_owner_tag_key() -> String {
    "lifecycle-mesh:previous-owner".into()
}
fn default_service_path_prefix() -> String {
    "/".into()
}

impl Default for OwnedIdentitiesConfig {
    fn default() -> Self {
        Self {
            owner_tag_key: default_owner_tag_key(),
            previous_owner_tag_key: default_previous_owner_tag_key(),
            path_prefix: default_service_path_prefix(),
        }
    }
}

fn default_target_id() -> String {
    "aws-iam".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_user_path() -> String {
    "/lifecycle-mesh/".into()
}
fn default_person_tag_key() -> String {
    "lifecycle-mesh:person-id".into()
}
fn default_disabled_tag_key() -> String {
    "lifecycle-mesh:disabled".into()
}
/// The attributes managed by default and the tags that store them.
pub fn default_attribute_tags() -> BTreeMap<String, String> {
    [
        ("display_name", "lifecycle-mesh:display-name"),
        ("mail", "lifecycle-mesh:mail"),
        ("department", "lifecycle-mesh:department"),
        ("title", "lifecycle-mesh:title"),
    ]
    .into_iter()
    .map(|(name, key)| (name.to_owned(), key.to_owned()))
    .collect()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_operation_timeout_secs() -> u64 {
    60
}
fn default_list_page_size() -> u32 {
    100
}
fn default_read_concurrency() -> usize {
    8
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            target_id: default_target_id(),
            endpoint_url: None,
            allow_plaintext_http: false,
            region: default_region(),
            user_path: default_user_path(),
            person_tag_key: default_person_tag_key(),
            disabled_tag_key: default_disabled_tag_key(),
            attribute_tags: default_attribute_tags(),
            correlation_tags: BTreeSet::new(),
            privileged_groups: BTreeSet::new(),
            privileged_policies: BTreeSet::new(),
            target_lacks_service_specific_credentials: false,
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            operation_timeout_secs: default_operation_timeout_secs(),
            list_page_size: default_list_page_size(),
            read_concurrency: default_read_concurrency(),
            owned_identities: None,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.to_owned(), message: message.into() }
}

fn from_rule(field: &str, result: Result<(), connector_kit::ConnectorError>) -> Result<(), ConfigError> {
    result.map_err(|e| invalid(field, e.message))
}

/// Whether `url` is `https://`, or `http://` to a loopback host (to any host
/// with `plaintext`).
fn endpoint_allowed(url: &str, plaintext: bool) -> Result<(), String> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if let Some(rest) = url.strip_prefix("https://") {
        return if rest.is_empty() { Err("names no host".into()) } else { Ok(()) };
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("must start with https:// (or http:// for a loopback emulator)".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry user information".into());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback || (plaintext && !host.is_empty()) {
        Ok(())
    } else {
        Err("plain http:// is only allowed to a loopback host (or with allow_plaintext_http); use https://".into())
    }
}

impl IamConfig {
    /// Reads and checks a YAML file; errors name the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_yaml(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.display().to_string(), message },
            other => other,
        })
    }

    /// Parses and checks YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Parse { path: "<config>".into(), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    /// Checks every rule a value must follow.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.target_id.trim().is_empty() || self.target_id.chars().any(char::is_control) {
            return Err(invalid("target_id", "must be a non-empty printable name"));
        }
        if let Some(url) = &self.endpoint_url {
            endpoint_allowed(url, self.allow_plaintext_http).map_err(|m| invalid("endpoint_url", m))?;
        }
        if self.region.is_empty()
            || !self.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid("region", "must be an AWS region name such as us-east-1"));
        }
        from_rule("user_path", names::path("user_path", &self.user_path))?;
        if self.user_path == "/" {
            return Err(invalid("user_path", "must be a dedicated path, not \"/\" (every user in the account)"));
        }
        from_rule("person_tag_key", names::tag_key("person_tag_key", &self.person_tag_key))?;
        from_rule("disabled_tag_key", names::tag_key("disabled_tag_key", &self.disabled_tag_key))?;
        let mut keys = BTreeSet::from([self.person_tag_key.to_lowercase()]);
        if !keys.insert(self.disabled_tag_key.to_lowercase()) {
            return Err(invalid("disabled_tag_key", "must differ from person_tag_key"));
        }
        for (name, key) in &self.attribute_tags {
            let field = format!("attribute_tags.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(&field, "attribute names hold only ASCII letters, digits and _"));
            }
            from_rule(&field, names::tag_key(&field, key))?;
            if !keys.insert(key.to_lowercase()) {
                return Err(invalid(&field, "each tag key may be used once (IAM tag keys ignore case)"));
            }
        }
        for key in &self.correlation_tags {
            from_rule("correlation_tags", names::tag_key("correlation_tags", key))?;
            if key.eq_ignore_ascii_case(&self.person_tag_key) {
                return Err(invalid("correlation_tags", "must not name the person tag (the key itself)"));
            }
        }
        for group in &self.privileged_groups {
            from_rule("privileged_groups", names::group_name("privileged_groups", group))?;
        }
        for arn in &self.privileged_policies {
            from_rule("privileged_policies", names::policy_arn("privileged_policies", arn))?;
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err(invalid("max_attempts", "must be 1 to 20"));
        }
        if self.operation_timeout_secs == 0 {
            return Err(invalid("operation_timeout_secs", "must be positive"));
        }
        if !(1..=1000).contains(&self.list_page_size) {
            return Err(invalid("list_page_size", "must be 1 to 1000"));
        }
        if !(1..=64).contains(&self.read_concurrency) {
            return Err(invalid("read_concurrency", "must be 1 to 64"));
        }
        if let Some(owned) = &self.owned_identities {
            let field = "owned_identities.owner_tag_key";
            from_rule(field, names::tag_key(field, &owned.owner_tag_key))?;
            let field = "owned_identities.previous_owner_tag_key";
            from_rule(field, names::tag_key(field, &owned.previous_owner_tag_key))?;
            from_rule("owned_identities.path_prefix", names::path("owned_identities.path_prefix", &owned.path_prefix))?;
            if !keys.insert(owned.owner_tag_key.to_lowercase()) {
                return Err(invalid("owned_identities.owner_tag_key", "must differ from every other tag key"));
            }
            if !keys.insert(owned.previous_owner_tag_key.to_lowercase()) {
                return Err(invalid("owned_identities.previous_owner_tag_key", "must differ from every other tag key"));
            }
        }
        Ok(())
    }

    /// The first retry delay.
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.initial_backoff_ms)
    }

    /// The time limit of one AWS call with its retries.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }

    /// Whether `group` is configured as privileged.
    pub fn group_is_privileged(&self, group: &str) -> bool {
        self.privileged_groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    /// Whether the policy `arn` is configured as privileged.
    pub fn policy_is_privileged(&self, arn: &str) -> bool {
        self.privileged_policies.contains(arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(IamConfig::default().check().is_ok());
        let config = IamConfig::from_yaml("target_id: iam-test\n").expect("minimal config");
        assert_eq!(config.user_path, "/lifecycle-mesh/");
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let error = IamConfig::from_yaml("target_idd: x\n").expect_err("unknown field");
        assert!(error.to_string().contains("target_idd"), "{error}");
        for (yaml, field) in [
            ("user_path: lifecycle\n", "user_path"),
            ("user_path: /\n", "user_path"),
            ("person_tag_key: 'aws:x'\n", "person_tag_key"),
            ("endpoint_url: http://iam.example.org\n", "endpoint_url"),
            ("endpoint_url: ftp://127.0.0.1\n", "endpoint_url"),
            ("privileged_policies: [AdministratorAccess]\n", "privileged_policies"),
            ("privileged_groups: ['adm ins']\n", "privileged_groups"),
            ("attribute_tags: {mail: 'lifecycle-mesh:person-id'}\n", "attribute_tags.mail"),
            ("max_attempts: 0\n", "max_attempts"),
            ("owned_identities: { owner_tag_key: 'lifecycle-mesh:person-id' }\n", "owned_identities.owner_tag_key"),
            ("owned_identities: { path_prefix: svc }\n", "owned_identities.path_prefix"),
            ("owned_identities: { owner: x }\n", "owner"),
        ] {
            let error = IamConfig::from_yaml(yaml).expect_err(yaml);
            assert!(error.to_string().contains(field), "{yaml}: {error}");
        }
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let config = IamConfig::from_yaml(include_str!("../../../deploy/examples/connector-iam.yaml"))
            .expect("deploy/examples/connector-iam.yaml");
        assert_eq!(config.target_id, "aws-iam-prod");
        assert!(!config.target_lacks_service_specific_credentials);
        assert!(config.policy_is_privileged("arn:aws:iam::aws:policy/AdministratorAccess"));
        assert_eq!(config.owned_identities.map(|o| o.path_prefix).as_deref(), Some("/service-accounts/"));
    }

    #[test]
    fn loopback_http_is_allowed_for_emulators() {
        for ok in ["http://127.0.0.1:5000", "http://localhost:5000/", "http://[::1]:5000", "https://iam.amazonaws.com"]
        {
            assert!(endpoint_allowed(ok, false).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1", "http://127.0.0.1.evil.org", "http://user@127.0.0.1", "iam.amazonaws.com"] {
            assert!(endpoint_allowed(bad, false).is_err(), "{bad}");
        }
        assert!(endpoint_allowed("http://moto:5000", true).is_ok(), "an emulator on a container network, by choice");
        assert!(endpoint_allowed("http://user@moto:5000", true).is_err(), "user information never");
    }
}
