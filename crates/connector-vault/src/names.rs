//! Validated names: the only values that reach a URL path on the server.
//!
//! Every user name, policy name, mount path and record prefix is checked
//! against a strict allow-list before it is placed in a request path, so no
//! value from a desired state can traverse (`..`), add a query (`?`), a
//! fragment (`#`), an escape (`%`) or another path segment (`/`).

use std::fmt;

/// Longest user name accepted, in bytes.
pub const MAX_USER_NAME: usize = 64;
/// Longest policy name accepted, in bytes.
pub const MAX_POLICY_NAME: usize = 128;

/// A userpass user name: 3 to 64 ASCII letters, digits, `_` or `-`, starting
/// and ending with a letter, digit or `_` (what the Vault and RustyVault
/// userpass path patterns accept), lower-cased as the server stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    /// Checks and lower-cases `value`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() < 3 || value.len() > MAX_USER_NAME {
            return Err(format!("a user name is 3 to {MAX_USER_NAME} characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("a user name may hold only ASCII letters, digits, '_' and '-'".into());
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err("a user name must not start or end with '-'".into());
        }
        Ok(Self(value.to_ascii_lowercase()))
    }

    /// The name as the server stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A policy name: 1 to 128 ASCII letters, digits, `_`, `-` or `.`, starting
/// with a letter or digit, lower-cased as Vault stores it. `root` is refused:
/// the connector never grants it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName(String);

impl PolicyName {
    /// Checks and lower-cases `value`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > MAX_POLICY_NAME {
            return Err(format!("a policy name is 1 to {MAX_POLICY_NAME} characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
            return Err("a policy name may hold only ASCII letters, digits, '_', '-' and '.'".into());
        }
        if !value.as_bytes()[0].is_ascii_alphanumeric() {
            return Err("a policy name must start with a letter or digit".into());
        }
        let lower = value.to_ascii_lowercase();
        if lower == "root" {
            return Err("the root policy is never granted by this connector".into());
        }
        Ok(Self(lower))
    }

    /// The name as the server stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 64
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `value` is a mount path: one to four segments of ASCII letters,
/// digits, `_` and `-`, separated by `/`, without leading or trailing `/`.
pub fn is_mount_path(value: &str) -> bool {
    let segments: Vec<&str> = value.split('/').collect();
    segments.len() <= 4 && segments.iter().all(|s| is_segment(s))
}

/// A key path in a KV mount, mount included where the caller says so: the
/// records prefix or a shared secret's path (1 to 8 segments as in a mount path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPath(String);

impl KvPath {
    /// Checks `value`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let segments: Vec<&str> = value.split('/').collect();
        if segments.len() > 8 || !segments.iter().all(|s| is_segment(s)) {
            return Err("must be 1 to 8 '/'-separated segments of ASCII letters, digits, '_' and '-'".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_kit::conformance::hostile_values;

    #[test]
    fn ordinary_names_pass_and_are_lower_cased() {
        assert_eq!(UserName::parse("Alice_Smith-2").map(|n| n.0), Ok("alice_smith-2".into()));
        assert_eq!(PolicyName::parse("PAM.Admins-eu").map(|n| n.0), Ok("pam.admins-eu".into()));
    }

    #[test]
    fn hostile_values_never_become_names() {
        for value in hostile_values() {
            let user = format!("abc{value}");
            assert!(UserName::parse(&user).is_err(), "user name {user:?} accepted");
            let policy = format!("p{value}");
            assert!(PolicyName::parse(&policy).is_err(), "policy name {policy:?} accepted");
        }
        for value in ["..", ".", "a/b", "a?b", "a#b", "a%2e", "-ab", "ab-", "ab"] {
            assert!(UserName::parse(value).is_err(), "{value:?}");
        }
        for value in ["..", ".x", "a/b", "root", "ROOT", "a,b", ""] {
            assert!(PolicyName::parse(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn mount_paths_and_prefixes_are_segments() {
        assert!(is_mount_path("userpass"));
        assert!(is_mount_path("team/userpass"));
        assert!(!is_mount_path("../sys"));
        assert!(!is_mount_path("/userpass"));
        assert!(!is_mount_path("userpass/"));
        assert!(KvPath::parse("lifecycle-mesh/accounts").is_ok());
        assert!(KvPath::parse("a//b").is_err());
        assert!(KvPath::parse("a/./b").is_err());
    }
}
