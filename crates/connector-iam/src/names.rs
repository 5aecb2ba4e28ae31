//! IAM's naming rules, checked before any call reaches AWS.
//!
//! Every value the connector sends to IAM as a name (user, group), an ARN, a
//! path, a tag key or a tag value is checked here first, so a bad value is a
//! typed `INVALID_ARGUMENT` naming the request field, never an AWS error
//! string, and nothing that is not a plain IAM name ever reaches the target.
//! Rules from the IAM API reference (`CreateUser`, `CreateGroup`, `TagUser`,
//! and the ARN format of managed policies).

use connector_kit::ConnectorError;
use connector_kit::validate::printable;

/// Longest IAM user name.
pub const MAX_USER_NAME: usize = 64;
/// Longest IAM group name.
pub const MAX_GROUP_NAME: usize = 128;
/// Longest IAM managed policy name.
pub const MAX_POLICY_NAME: usize = 128;
/// Longest IAM path.
pub const MAX_PATH: usize = 512;
/// Longest tag key.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE: usize = 256;

/// The characters IAM allows in user, group and policy names: ASCII letters
/// and digits and `_+=,.@-`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn check_name(field: &str, what: &str, value: &str, max: usize) -> Result<(), ConnectorError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(ConnectorError::invalid_argument(field, format!("an IAM {what} has 1 to {max} characters")));
    }
    if let Some(bad) = value.chars().find(|c| !is_name_char(*c)) {
        return Err(ConnectorError::invalid_argument(
            field,
            format!(
                "an IAM {what} may hold only ASCII letters, digits and _+=,.@- (found {:?})",
                printable(&bad.to_string())
            ),
        ));
    }
    Ok(())
}

/// An IAM user name: 1 to 64 of `[A-Za-z0-9_+=,.@-]`.
pub fn user_name(field: &str, value: &str) -> Result<(), ConnectorError> {
    check_name(field, "user name", value, MAX_USER_NAME)
}

/// An IAM group name: 1 to 128 of `[A-Za-z0-9_+=,.@-]`.
pub fn group_name(field: &str, value: &str) -> Result<(), ConnectorError> {
    check_name(field, "group name", value, MAX_GROUP_NAME)
}

/// An IAM path: `/` alone, or `/`-delimited segments starting and ending with
/// `/`, at most 512 printable ASCII characters (`!` to `~`); stricter than
/// IAM, no `.` or `..` segment.
pub fn path(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.is_empty() || value.len() > MAX_PATH {
        return Err(ConnectorError::invalid_argument(field, format!("an IAM path has 1 to {MAX_PATH} characters")));
    }
    if !value.starts_with('/') || !value.ends_with('/') {
        return Err(ConnectorError::invalid_argument(field, "an IAM path starts and ends with '/'"));
    }
    if value.contains("//") {
        return Err(ConnectorError::invalid_argument(field, "an IAM path has no empty segment"));
    }
    if !value.chars().all(|c| ('!'..='~').contains(&c)) {
        return Err(ConnectorError::invalid_argument(field, "an IAM path holds only printable ASCII characters"));
    }
    // IAM would accept them, but a "." or ".." segment only ever confuses.
    if value.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(ConnectorError::invalid_argument(field, "an IAM path here has no \".\" or \"..\" segment"));
    }
    Ok(())
}

/// A managed policy ARN: `arn:PARTITION:iam::ACCOUNT:policy/PATH/NAME`, where
/// PARTITION is `aws` or `aws-*`, ACCOUNT is twelve digits or `aws` (AWS
/// managed policies), PATH follows [`path`] and NAME follows the name rules.
pub fn policy_arn(field: &str, value: &str) -> Result<(), ConnectorError> {
    let invalid = |why: &str| {
        ConnectorError::invalid_argument(
            field,
            format!(
                "{:?} is not a managed policy ARN (arn:aws:iam::ACCOUNT:policy/PATH/NAME): {why}",
                printable(value)
            ),
        )
    };
    let mut parts = value.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("wrong shape"));
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !partition_ok {
        return Err(invalid("unknown partition"));
    }
    if !(account == "aws" || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))) {
        return Err(invalid("the account is twelve digits or \"aws\""));
    }
    let Some(path_and_name) = resource.strip_prefix("policy/") else {
        return Err(invalid("the resource is policy/PATH/NAME"));
    };
    let (policy_path, name) = match path_and_name.rfind('/') {
        Some(at) => (&path_and_name[..=at], &path_and_name[at + 1..]),
        None => ("", path_and_name),
    };
    if !policy_path.is_empty() {
        path(field, &format!("/{policy_path}")).map_err(|_| invalid("bad path"))?;
    }
    check_name(field, "policy name", name, MAX_POLICY_NAME).map_err(|_| invalid("bad policy name"))?;
    Ok(())
}

/// The characters IAM allows in tag keys and values: Unicode letters, digits
/// and spaces, and `_.:/=+-@`.
fn is_tag_char(c: char) -> bool {
    (c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)) && !c.is_control()
}

/// A tag key: 1 to 128 tag characters, not starting with the reserved `aws:`.
pub fn tag_key(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.is_empty() || value.chars().count() > MAX_TAG_KEY {
        return Err(ConnectorError::invalid_argument(field, format!("a tag key has 1 to {MAX_TAG_KEY} characters")));
    }
    if value.to_ascii_lowercase().starts_with("aws:") {
        return Err(ConnectorError::invalid_argument(field, "tag keys starting with \"aws:\" are reserved"));
    }
    if !value.chars().all(is_tag_char) {
        return Err(ConnectorError::invalid_argument(
            field,
            "a tag key may hold only letters, digits, spaces and _.:/=+-@",
        ));
    }
    Ok(())
}

/// A tag value: 0 to 256 tag characters (letters, digits, spaces, `_.:/=+-@`).
pub fn tag_value(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.chars().count() > MAX_TAG_VALUE {
        return Err(ConnectorError::invalid_argument(
            field,
            format!("an IAM tag value has at most {MAX_TAG_VALUE} characters"),
        ));
    }
    if let Some(bad) = value.chars().find(|c| !is_tag_char(*c)) {
        return Err(ConnectorError::invalid_argument(
            field,
            format!(
                "an IAM tag value may hold only letters, digits, spaces and _.:/=+-@ (found {:?})",
                printable(&bad.to_string())
            ),
        ));
    }
    Ok(())
}

/// A person id, stored as the value of the correlation tag: a non-empty tag value.
pub fn person_id(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.is_empty() {
        return Err(ConnectorError::invalid_argument(field, "must not be empty"));
    }
    tag_value(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_iam_rules() {
        for ok in ["alice", "a.b-c_d+e=f,g@h", &"x".repeat(64)] {
            assert!(user_name("f", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a*", "a\\b", "é", "a;b", "../x", &"x".repeat(65)] {
            let error = user_name("desired.account.account_name", bad).expect_err(bad);
            assert_eq!(error.kind, connector_kit::ErrorKind::InvalidArgument);
            assert_eq!(error.field.as_deref(), Some("desired.account.account_name"));
            assert!(!error.retryable);
        }
    }

    #[test]
    fn group_names_follow_iam_rules() {
        assert!(group_name("f", &"g".repeat(128)).is_ok());
        assert!(group_name("f", &"g".repeat(129)).is_err());
        assert!(group_name("f", "admins*").is_err());
    }

    #[test]
    fn paths_follow_iam_rules() {
        for ok in ["/", "/lifecycle-mesh/", "/a/b/"] {
            assert!(path("f", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/", "/a", "//", "/a b/", "/é/", "/../", "/a/./"] {
            assert!(path("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_arns_are_checked() {
        for ok in [
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::123456789012:policy/lifecycle-mesh/staff-read",
            "arn:aws-us-gov:iam::123456789012:policy/x",
            "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
        ] {
            assert!(policy_arn("f", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ReadOnlyAccess",
            "arn:aws:iam::aws:role/x",
            "arn:aws:iam::12345:policy/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::aws:policy/",
            "arn:aws:iam::aws:policy/a b",
            "arn:aws:iam::aws:policy/../x",
            "arn:evil:iam::aws:policy/x",
            "arn:aws:iam::aws:policy//x",
        ] {
            assert!(policy_arn("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_iam_rules() {
        assert!(tag_key("f", "jml:person-id").is_ok());
        assert!(tag_key("f", "aws:x").is_err());
        assert!(tag_key("f", "").is_err());
        assert!(tag_value("f", "").is_ok());
        assert!(tag_value("f", "Zoë Ünïcødé 名前").is_ok());
        assert!(tag_value("f", " leading").is_ok());
        for bad in ["*", "(", "\\", ",", "\"", "#", ";", "<", "x\ty", "x\r\ny", "\0"] {
            assert!(tag_value("f", bad).is_err(), "{bad:?}");
        }
        assert!(tag_value("f", &"x".repeat(257)).is_err());
        assert!(person_id("f", "").is_err());
    }
}
