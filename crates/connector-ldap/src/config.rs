//! Configuration of the LDAP / Active Directory connector (YAML, `deny_unknown_fields`).
//!
//! Everything that differs between directories is named here: where users and
//! groups live, which attribute is the RDN, which holds the account name and
//! which the correlation key (the person id), how contract attributes map to
//! LDAP attributes, which groups are privileged, which attributes count as
//! credentials. Secrets (the bind password) come from a file or an environment
//! variable, never from the file itself, and never show in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which kind of directory the connector drives.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryMode {
    /// OpenLDAP (or any RFC directory): `inetOrgPerson` accounts, disabled by a
    /// permanent ppolicy lock (`pwdAccountLockedTime: 000001010000Z`),
    /// passwords revoked by an unusable `userPassword` value.
    #[default]
    Openldap,
    /// Active Directory (or Samba AD): `user` accounts named by
    /// `sAMAccountName` with a `userPrincipalName`, disabled by bit 0x2 of
    /// `userAccountControl` (read-modify-write, other bits kept), passwords
    /// revoked by a random `unicodePwd` plus `pwdLastSet: 0`.
    ActiveDirectory,
}

/// How a mapped attribute's values compare on read-back.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttributeComparison {
    /// Byte for byte.
    #[default]
    Exact,
    /// Unicode lower-case of both sides.
    CaseInsensitive,
}

/// One contract attribute and the LDAP attribute that holds it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MappedAttribute {
    /// The LDAP attribute type, e.g. `displayName`.
    pub ldap: String,
    /// How values compare on read-back.
    #[serde(default)]
    pub comparison: AttributeComparison,
}

/// TLS towards the directory (rustls).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA(s) the directory's certificate must chain to. When
    /// unset, the system's trust store is used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A secret value read from a file or the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the bind password comes from: exactly one of `file` and `env`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PasswordSource {
    /// A file holding the password (one trailing newline is ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub env: Option<String>,
}

/// The connector's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// The target instance id reported in `Describe`, e.g. `ldap-eu`.
    pub target_id: String,
    /// OpenLDAP or Active Directory behaviour.
    #[serde(default)]
    pub mode: DirectoryMode,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// TLS settings (LDAPS or StartTLS).
    #[serde(default)]
    pub tls: TlsConfig,
    /// The DN the connector binds as.
    pub bind_dn: String,
    /// Where the bind password comes from.
    pub bind_password: PasswordSource,
    /// The subtree holding the managed accounts; new accounts are created
    /// directly below it.
    pub users_base_dn: String,
    /// The subtree holding the groups granted as entitlements.
    pub groups_base_dn: String,
    /// The attribute naming an account in its DN (`uid`; AD: `cn`).
    #[serde(default)]
    pub rdn_attribute: Option<String>,
    /// The attribute holding the account name (`uid`; AD: `sAMAccountName`).
    #[serde(default)]
    pub account_name_attribute: Option<String>,
    /// The attribute holding the person id, the correlation key. Only entries
    /// carrying it are read, listed, changed or deleted.
    #[serde(default = "default_person_id_attribute")]
    pub person_id_attribute: String,
    /// Object classes of a new account (`inetOrgPerson`; AD: `top`, `person`,
    /// `organizationalPerson`, `user`). The last one is the one searched for.
    #[serde(default)]
    pub account_object_classes: Option<Vec<String>>,
    /// Contract attribute name -> LDAP attribute. Unset: `display_name`,
    /// `mail`, `title`, `department`, `given_name`.
    #[serde(default = "default_attributes")]
    pub attributes: BTreeMap<String, MappedAttribute>,
    /// The group object class (`groupOfNames`; AD: `group`).
    #[serde(default)]
    pub group_object_class: Option<String>,
    /// The group attribute holding member DNs.
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
    /// The group attribute whose value is the entitlement id.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Group names (entitlement ids, compared case-insensitively) whose
    /// membership is privileged. A group outside `groups_base_dn` is
    /// privileged when its name or its whole DN is listed here (or, in AD
    /// mode, when the directory marks it with `adminCount: 1`).
    #[serde(default)]
    pub privileged_groups: Vec<String>,
    /// The subtree `Read` searches for every group the account belongs to,
    /// managed or not (by `member`, `uniqueMember` or `memberUid`, and the
    /// account's own `memberOf`); groups outside `groups_base_dn` are reported
    /// as unmanaged entitlements. Unset: the `dc=` suffix of `users_base_dn`.
    #[serde(default)]
    pub membership_search_base: Option<String>,
    /// A member DN kept in a group that would otherwise become empty
    /// (`groupOfNames` requires a member). Never reported as an account.
    /// Unset: the bind DN. AD groups may be empty and do not need it.
    #[serde(default)]
    pub empty_group_member: Option<String>,
    /// Attributes that hold credentials besides the password (certificates,
    /// keys); revocation removes them and read-back reports them.
    #[serde(default)]
    pub credential_attributes: Option<Vec<String>>,
    /// AD only: the suffix of `userPrincipalName` (`name@SUFFIX`).
    #[serde(default)]
    pub upn_suffix: Option<String>,
    /// Connections kept open to the directory.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Timeout of one LDAP operation and of connecting, in seconds.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Per-account reads in flight at once while listing (memberships, when
    /// a page falls back to reading them per account; password compares).
    #[serde(default = "default_list_concurrency")]
    pub list_concurrency: usize,
    /// LDAP attributes `List` may report for correlation besides the mapped
    /// attributes and the account name attribute (e.g. `employeeID`).
    #[serde(default)]
    pub correlation_attributes: Vec<String>,
}

fn default_person_id_attribute() -> String {
    "employeeNumber".into()
}

fn default_member_attribute() -> String {
    "member".into()
}

fn default_group_name_attribute() -> String {
    "cn".into()
}

fn default_pool_size() -> usize {
    4
}

fn default_timeout_seconds() -> u64 {
    10
}

fn default_list_concurrency() -> usize {
    16
}

/// The default attribute mapping.
pub fn default_attributes() -> BTreeMap<String, MappedAttribute> {
    [
        ("display_name", "displayName", AttributeComparison::Exact),
        ("mail", "mail", AttributeComparison::CaseInsensitive),
        ("title", "title", AttributeComparison::Exact),
        ("department", "departmentNumber", AttributeComparison::Exact),
        ("given_name", "givenName", AttributeComparison::Exact),
    ]
    .into_iter()
    .map(|(name, ldap, comparison)| (name.to_owned(), MappedAttribute { ldap: ldap.to_owned(), comparison }))
    .collect()
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not a valid configuration (the message names the field).
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The bind password could not be read.
    #[error("cannot read the bind password: {0}")]
    Password(String),
}

impl LdapConfig {
    /// Reads and checks a YAML file; errors name the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: Self = serde_yaml_ng::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return Err(ConfigError::Invalid("url: must start with ldap:// or ldaps://".into()));
        }
        if self.tls.starttls && self.url.starts_with("ldaps://") {
            return Err(ConfigError::Invalid("tls.starttls: not with an ldaps:// url".into()));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(ConfigError::Invalid("pool_size: must be 1 to 64".into()));
        }
        if self.timeout_seconds == 0 {
            return Err(ConfigError::Invalid("timeout_seconds: must be at least 1".into()));
        }
        if self.list_concurrency == 0 {
            return Err(ConfigError::Invalid("list_concurrency: must be at least 1".into()));
        }
        let attribute_type = |field: &str, value: &str| -> Result<(), ConfigError> {
            let valid = !value.is_empty()
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
                && value.starts_with(|c: char| c.is_ascii_alphabetic());
            if valid {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!("{field}: {value:?} is not an attribute type")))
            }
        };
        attribute_type("person_id_attribute", &self.person_id_attribute)?;
        attribute_type("member_attribute", &self.member_attribute)?;
        attribute_type("group_name_attribute", &self.group_name_attribute)?;
        attribute_type("rdn_attribute", &self.rdn_attribute())?;
        attribute_type("account_name_attribute", &self.account_name_attribute())?;
        attribute_type("group_object_class", &self.group_object_class())?;
        for class in self.account_object_classes() {
            attribute_type("account_object_classes", &class)?;
        }
        for attribute in self.credential_attributes() {
            attribute_type("credential_attributes", &attribute)?;
        }
        for (name, mapped) in &self.attributes {
            attribute_type(&format!("attributes.{name}.ldap"), &mapped.ldap)?;
        }
        for (index, attribute) in self.correlation_attributes.iter().enumerate() {
            attribute_type(&format!("correlation_attributes[{index}]"), attribute)?;
        }
        if self.bind_password.file.is_some() == self.bind_password.env.is_some() {
            return Err(ConfigError::Invalid("bind_password: set exactly one of file and env".into()));
        }
        if self.mode == DirectoryMode::ActiveDirectory && self.upn_suffix.is_none() {
            return Err(ConfigError::Invalid("upn_suffix: required in active_directory mode".into()));
        }
        Ok(())
    }

    /// The RDN attribute, by mode when unset.
    pub fn rdn_attribute(&self) -> String {
        self.rdn_attribute.clone().unwrap_or_else(|| match self.mode {
            DirectoryMode::Openldap => "uid".into(),
            DirectoryMode::ActiveDirectory => "cn".into(),
        })
    }

    /// The account name attribute, by mode when unset.
    pub fn account_name_attribute(&self) -> String {
        self.account_name_attribute.clone().unwrap_or_else(|| match self.mode {
            DirectoryMode::Openldap => "uid".into(),
            DirectoryMode::ActiveDirectory => "sAMAccountName".into(),
        })
    }

    /// The object classes of a new account, by mode when unset.
    pub fn account_object_classes(&self) -> Vec<String> {
        self.account_object_classes.clone().unwrap_or_else(|| match self.mode {
            DirectoryMode::Openldap => vec!["inetOrgPerson".into()],
            DirectoryMode::ActiveDirectory => {
                ["top", "person", "organizationalPerson", "user"].iter().map(|c| (*c).to_owned()).collect()
            }
        })
    }

    /// Where every membership is searched for, by the `dc=` suffix of
    /// `users_base_dn` when unset.
    pub fn membership_search_base(&self) -> String {
        self.membership_search_base.clone().unwrap_or_else(|| {
            let rdns: Vec<&str> = self.users_base_dn.split(',').collect();
            let first_dc = rdns.iter().position(|rdn| rdn.trim().to_ascii_lowercase().starts_with("dc="));
            match first_dc {
                Some(index) => rdns[index..].iter().map(|rdn| rdn.trim()).collect::<Vec<_>>().join(","),
                None => self.users_base_dn.clone(),
            }
        })
    }

    /// The LDAP attributes `List` can report for correlation: the account
    /// name attribute, every mapped attribute and `correlation_attributes`,
    /// each once (case-insensitively), never the person id attribute.
    pub fn correlation_attributes(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let candidates = std::iter::once(self.account_name_attribute())
            .chain(self.attributes.values().map(|m| m.ldap.clone()))
            .chain(self.correlation_attributes.iter().cloned());
        for name in candidates {
            if !name.eq_ignore_ascii_case(&self.person_id_attribute)
                && !names.iter().any(|n| n.eq_ignore_ascii_case(&name))
            {
                names.push(name);
            }
        }
        names
    }

    /// The filter of the declared scope: every account-class entry (AD:
    /// computers excluded) under `users_base_dn`.
    pub fn scope_filter(&self, account_class: &str) -> String {
        match self.mode {
            DirectoryMode::Openldap => format!("(objectClass={account_class})"),
            DirectoryMode::ActiveDirectory => format!("(&(objectClass={account_class})(!(objectClass=computer)))"),
        }
    }

    /// The group object class, by mode when unset.
    pub fn group_object_class(&self) -> String {
        self.group_object_class.clone().unwrap_or_else(|| match self.mode {
            DirectoryMode::Openldap => "groupOfNames".into(),
            DirectoryMode::ActiveDirectory => "group".into(),
        })
    }

    /// The credential attributes, by mode when unset.
    pub fn credential_attributes(&self) -> Vec<String> {
        self.credential_attributes.clone().unwrap_or_else(|| match self.mode {
            DirectoryMode::Openldap => {
                ["userCertificate", "userSMIMECertificate", "userPKCS12"].iter().map(|c| (*c).to_owned()).collect()
            }
            DirectoryMode::ActiveDirectory => {
                ["userCertificate", "altSecurityIdentities"].iter().map(|c| (*c).to_owned()).collect()
            }
        })
    }

    /// The operation timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    /// Reads the bind password from its source.
    pub fn bind_password(&self) -> Result<Secret, ConfigError> {
        match (&self.bind_password.file, &self.bind_password.env) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Password(format!("file {}: {e}", path.display())))?;
                Ok(Secret::new(text.strip_suffix('\n').unwrap_or(&text)))
            }
            (None, Some(name)) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| ConfigError::Password(format!("environment variable {name} is not set"))),
            _ => Err(ConfigError::Invalid("bind_password: set exactly one of file and env".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
target_id: ldap-test
url: ldap://127.0.0.1:389
bind_dn: cn=admin,dc=example,dc=org
bind_password: { env: JML_LDAP_TEST_PASSWORD_UNSET }
users_base_dn: ou=people,dc=example,dc=org
groups_base_dn: ou=groups,dc=example,dc=org
";

    #[test]
    fn minimal_config_takes_openldap_defaults() {
        let config: LdapConfig = serde_yaml_ng::from_str(MINIMAL).expect("parses");
        config.check().expect("valid");
        assert_eq!(config.rdn_attribute(), "uid");
        assert_eq!(config.account_name_attribute(), "uid");
        assert_eq!(config.group_object_class(), "groupOfNames");
        assert_eq!(config.person_id_attribute, "employeeNumber");
        assert_eq!(config.attributes["department"].ldap, "departmentNumber");
        assert!(config.bind_password().is_err());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let text = format!("{MINIMAL}\nbind_pasword: x\n");
        let error = serde_yaml_ng::from_str::<LdapConfig>(&text).expect_err("refused").to_string();
        assert!(error.contains("bind_pasword"), "{error}");
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let mut config: LdapConfig = serde_yaml_ng::from_str(MINIMAL).expect("parses");
        config.person_id_attribute = "employeeNumber)(x".into();
        assert!(config.check().is_err());
        let mut config: LdapConfig = serde_yaml_ng::from_str(MINIMAL).expect("parses");
        config.url = "ldaps://h".into();
        config.tls.starttls = true;
        assert!(config.check().is_err());
        let mut config: LdapConfig = serde_yaml_ng::from_str(MINIMAL).expect("parses");
        config.mode = DirectoryMode::ActiveDirectory;
        assert!(config.check().is_err(), "AD mode needs upn_suffix");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn the_shipped_examples_load() {
        for example in ["connector-ldap.yaml", "connector-ad.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples").join(example);
            LdapConfig::load(&path).unwrap_or_else(|e| panic!("{example}: {e}"));
        }
    }
}
