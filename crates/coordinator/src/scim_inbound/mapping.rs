//! `source_of_truth.scim` in the policy: how a SCIM User becomes a person's
//! record. Each source attribute is read from one SCIM attribute path
//! (RFC 7644 §3.10 without filters): `userName`, `name.givenName`,
//! `emails.value` (the primary value, else the first), `externalId`, or an
//! Enterprise User attribute with its schema URN
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`,
//! `...:manager.value`). Paths are checked when the policy loads: an unknown
//! path, a path to a complex or boolean attribute, or a source attribute the
//! source of truth does not declare is refused with its policy path.
//!
//! ```yaml
//! source_of_truth:
//!   system: workday
//!   attributes: [username, display_name, email, department]
//!   scim:
//!     person_id: externalId
//!     attributes:
//!       username: userName
//!       display_name: displayName
//!       email: emails.value
//!       department: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{self, Attr, ENTERPRISE, Kind, USER};
use crate::policy::SourceOfTruth;

/// `source_of_truth.scim`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScimMapping {
    /// The SCIM path holding the person id (also the resource's `id`).
    pub person_id: String,
    /// Source attribute -> SCIM path.
    pub attributes: BTreeMap<String, String>,
}

/// A checked SCIM path: the schema's extension key (None: core), the
/// attribute and the sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimPath {
    extension: Option<&'static str>,
    attr: &'static str,
    multi: bool,
    sub: Option<&'static str>,
}

impl ScimPath {
    /// Parses a path; only string leaves are readable.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("externalId") {
            return Ok(Self { extension: None, attr: "externalId", multi: false, sub: None });
        }
        let lower = text.to_ascii_lowercase();
        let (extension, attrs, rest) =
            if let Some(rest) = lower.strip_prefix(&format!("{}:", ENTERPRISE.to_ascii_lowercase())) {
                (Some(ENTERPRISE), schema::ENTERPRISE_ATTRS, &text[text.len() - rest.len()..])
            } else if let Some(rest) = lower.strip_prefix(&format!("{}:", USER.to_ascii_lowercase())) {
                (None, schema::USER_ATTRS, &text[text.len() - rest.len()..])
            } else if lower.starts_with("urn:") {
                return Err(format!("{text:?}: unknown schema (core User or Enterprise User)"));
            } else {
                (None, schema::USER_ATTRS, text)
            };
        let mut parts = rest.split('.');
        let name = parts.next().unwrap_or_default();
        let attr: &Attr = schema::find(attrs, name).ok_or_else(|| format!("{text:?}: no attribute {name:?}"))?;
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(format!("{text:?}: too deep (attribute.subAttribute at most)"));
        }
        match (attr.kind, sub) {
            (Kind::String, None) => Ok(Self { extension, attr: attr.name, multi: attr.multi, sub: None }),
            (Kind::Complex(subs), Some(sub)) => {
                let sub = schema::find(subs, sub).ok_or_else(|| format!("{text:?}: no sub-attribute {sub:?}"))?;
                if sub.kind != Kind::String {
                    return Err(format!("{text:?}: not a string"));
                }
                Ok(Self { extension, attr: attr.name, multi: attr.multi, sub: Some(sub.name) })
            }
            (Kind::Complex(_), None) => Err(format!("{text:?}: a complex attribute; name a sub-attribute")),
            _ => Err(format!("{text:?}: not a string")),
        }
    }

    /// Whether it is the top-level attribute `attr` of the schema
    /// (`extension`: the Enterprise User; `None`: core).
    pub fn names(&self, extension: Option<&str>, attr: &str) -> bool {
        self.extension == extension && self.attr == attr && self.sub.is_none()
    }

    /// Whether it is in the Enterprise User extension.
    pub fn in_extension(&self) -> bool {
        self.extension.is_some()
    }

    /// The value in a checked User (canonical form), when present and not empty.
    pub fn read(&self, user: &Map<String, Value>) -> Option<String> {
        let holder = match self.extension {
            Some(ext) => user.get(ext)?.as_object()?,
            None => user,
        };
        let value = holder.get(self.attr)?;
        let value = match (self.multi, self.sub) {
            (true, Some(sub)) => {
                let items = value.as_array()?;
                let item = items.iter().find(|i| i.get("primary") == Some(&Value::Bool(true))).or(items.first())?;
                item.get(sub)?
            }
            (false, Some(sub)) => value.get(sub)?,
            (_, None) => value,
        };
        value.as_str().filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

/// The mapping, paths parsed.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The person id's path.
    pub person_id: ScimPath,
    /// Source attribute -> path.
    pub attributes: Vec<(String, ScimPath)>,
}

impl Mapping {
    /// The policy's mapping. It was checked at load ([`check_policy`]), so
    /// parsing cannot fail here; were a path not to parse, there is no
    /// mapping at all (the endpoint then accepts no writes) rather than one
    /// that silently drops an attribute.
    pub fn from_policy(mapping: &ScimMapping) -> Option<Self> {
        let parse = |at: &str, path: &str| {
            ScimPath::parse(path)
                .inspect_err(|error| tracing::error!(at, %error, "SCIM mapping path does not parse: no writes"))
                .ok()
        };
        let person_id = parse("source_of_truth.scim.person_id", &mapping.person_id)?;
        let mut attributes = Vec::with_capacity(mapping.attributes.len());
        for (name, path) in &mapping.attributes {
            attributes.push((name.clone(), parse(&format!("source_of_truth.scim.attributes.{name}"), path)?));
        }
        Some(Self { person_id, attributes })
    }

    /// The source attributes of a checked User.
    pub fn attributes(&self, user: &Map<String, Value>) -> BTreeMap<String, String> {
        self.attributes.iter().filter_map(|(name, path)| path.read(user).map(|v| (name.clone(), v))).collect()
    }
}

/// The load-time check of `source_of_truth.scim`.
pub fn check_policy(source: &SourceOfTruth, issue: &mut dyn FnMut(String, String)) {
    let Some(mapping) = &source.scim else { return };
    if let Err(message) = ScimPath::parse(&mapping.person_id) {
        issue("source_of_truth.scim.person_id".into(), message);
    }
    if mapping.attributes.is_empty() {
        issue("source_of_truth.scim.attributes".into(), "map at least one source attribute".into());
    }
    for (name, path) in &mapping.attributes {
        let at = format!("source_of_truth.scim.attributes.{name}");
        if !source.attributes.iter().any(|a| a == name) {
            issue(at.clone(), format!("{name:?} is not one of source_of_truth.attributes"));
        }
        if let Err(message) = ScimPath::parse(path) {
            issue(at, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_only_to_string_leaves_of_the_served_schemas() {
        for good in [
            "userName",
            "name.givenName",
            "emails.value",
            "externalId",
            format!("{ENTERPRISE}:department").as_str(),
            format!("{ENTERPRISE}:manager.value").as_str(),
            format!("{USER}:title").as_str(),
        ] {
            assert!(ScimPath::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "shoeSize",
            "name",
            "active",
            "emails",
            "name.givenName.x",
            "urn:x:y",
            format!("{ENTERPRISE}:nope").as_str(),
        ] {
            assert!(ScimPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_policy_refuses_unknown_paths_and_undeclared_attributes_with_their_path() {
        let text = "version: 1\nsource_of_truth:\n  system: workday\n  attributes: [username]\n  scim:\n    person_id: shoe\n    attributes: { username: userName, office: name.nope }\n    colour: blue\ntargets: []\n";
        let error = crate::Policy::parse(text).expect_err("refused").to_string();
        assert!(error.contains("colour"), "{error}");
        let text = text.replace("    colour: blue\n", "");
        let error = crate::Policy::parse(&text).expect_err("refused").to_string();
        assert!(error.contains("source_of_truth.scim.person_id"), "{error}");
        assert!(error.contains("source_of_truth.scim.attributes.office"), "{error}");
    }

    #[test]
    fn emails_value_reads_the_primary_else_the_first() {
        let path = ScimPath::parse("emails.value").expect("path");
        let user = serde_json::json!({"emails": [{"value": "a@x"}, {"value": "b@x", "primary": true}]});
        assert_eq!(path.read(user.as_object().expect("object")).as_deref(), Some("b@x"));
    }
}
