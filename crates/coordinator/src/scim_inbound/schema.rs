//! The SCIM schemas the service provider serves (RFC 7643 §4.1 User and §4.3
//! Enterprise User, the attributes an HR feed carries), their discovery
//! documents (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`), and
//! the check of a User body against them: unknown schemas, unknown
//! attributes and wrong types are refused with the path named; read-only
//! attributes sent by the client are ignored (RFC 7643 §2.2).

use serde_json::{Map, Value, json};

use super::ScimError;

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The Enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// A list response.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// An error response.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// A PATCH request.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// A bulk request.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// A bulk response.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// An attribute's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A boolean.
    Boolean,
    /// A complex attribute with these sub-attributes.
    Complex(&'static [Attr]),
}

/// One attribute of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Its name (canonical case).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Multi-valued.
    pub multi: bool,
    /// Required on create and replace.
    pub required: bool,
    /// What the client may do with it.
    pub mutability: &'static str,
    /// What the description says.
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr { name, kind: Kind::String, multi: false, required: false, mutability: "readWrite", description }
}

const NAME: &[Attr] = &[
    s("formatted", "The full name."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "Honorific prefix."),
    s("honorificSuffix", "Honorific suffix."),
];

const MULTI: &[Attr] = &[
    s("value", "The value."),
    s("type", "A label (work, home, other)."),
    s("display", "A human-readable name."),
    Attr {
        name: "primary",
        kind: Kind::Boolean,
        multi: false,
        required: false,
        mutability: "readWrite",
        description: "The primary value.",
    },
];

const MANAGER: &[Attr] = &[s("value", "The manager's id."), s("displayName", "The manager's name.")];

/// The core User attributes served.
pub const USER_ATTRS: &[Attr] = &[
    Attr {
        name: "userName",
        kind: Kind::String,
        multi: false,
        required: true,
        mutability: "readWrite",
        description: "The unique identifier the person signs in with.",
    },
    Attr {
        name: "name",
        kind: Kind::Complex(NAME),
        multi: false,
        required: false,
        mutability: "readWrite",
        description: "The components of the person's name.",
    },
    s("displayName", "The name to display."),
    s("nickName", "The casual name."),
    s("title", "The job title."),
    s("userType", "The relationship to the organisation (Employee, Contractor...)."),
    s("preferredLanguage", "The preferred language."),
    s("locale", "The default location."),
    s("timezone", "The time zone."),
    Attr {
        name: "active",
        kind: Kind::Boolean,
        multi: false,
        required: false,
        mutability: "readWrite",
        description: "Employed (true) or terminated (false).",
    },
    Attr {
        name: "emails",
        kind: Kind::Complex(MULTI),
        multi: true,
        required: false,
        mutability: "readWrite",
        description: "Email addresses.",
    },
    Attr {
        name: "phoneNumbers",
        kind: Kind::Complex(MULTI),
        multi: true,
        required: false,
        mutability: "readWrite",
        description: "Phone numbers.",
    },
];

/// The Enterprise User attributes served.
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "The number the organisation assigned."),
    s("costCenter", "The cost center."),
    s("organization", "The organisation."),
    s("division", "The division."),
    s("department", "The department."),
    Attr {
        name: "manager",
        kind: Kind::Complex(MANAGER),
        multi: false,
        required: false,
        mutability: "readWrite",
        description: "The person's manager.",
    },
];

/// The attribute of `attrs` named `name` (case-insensitive, RFC 7643 §2.1).
pub fn find(attrs: &'static [Attr], name: &str) -> Option<&'static Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// The attributes of a schema URN (case-insensitive).
pub fn schema_attrs(urn: &str) -> Option<&'static [Attr]> {
    if urn.eq_ignore_ascii_case(USER) {
        Some(USER_ATTRS)
    } else if urn.eq_ignore_ascii_case(ENTERPRISE) {
        Some(ENTERPRISE_ATTRS)
    } else {
        None
    }
}

fn bad(scim_type: &'static str, detail: String) -> ScimError {
    ScimError::bad_request(scim_type, detail)
}

fn check_value(attr: &Attr, value: &Value, path: &str) -> Result<Value, ScimError> {
    if attr.multi {
        let Value::Array(items) = value else {
            return Err(bad("invalidValue", format!("{path}: is multi-valued (an array)")));
        };
        let one = Attr { multi: false, ..*attr };
        let checked: Result<Vec<Value>, ScimError> =
            items.iter().enumerate().map(|(i, item)| check_value(&one, item, &format!("{path}[{i}]"))).collect();
        return Ok(Value::Array(checked?));
    }
    match (attr.kind, value) {
        (Kind::String, Value::String(_)) | (Kind::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (Kind::Complex(subs), Value::Object(map)) => {
            let mut out = Map::new();
            for (key, sub_value) in map {
                let sub = find(subs, key)
                    .ok_or_else(|| bad("invalidSyntax", format!("{path}.{key}: no such sub-attribute")))?;
                if !sub_value.is_null() {
                    out.insert(sub.name.to_owned(), check_value(sub, sub_value, &format!("{path}.{}", sub.name))?);
                }
            }
            Ok(Value::Object(out))
        }
        (Kind::String, _) => Err(bad("invalidValue", format!("{path}: must be a string"))),
        (Kind::Boolean, _) => Err(bad("invalidValue", format!("{path}: must be a boolean"))),
        (Kind::Complex(_), _) => Err(bad("invalidValue", format!("{path}: must be an object"))),
    }
}

/// Checks `attrs`' members of `object` into `out` (canonical names, nulls
/// dropped); `skip` names the members handled by the caller.
fn check_members(
    attrs: &'static [Attr],
    object: &Map<String, Value>,
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, value) in object {
        if skip(key) {
            continue;
        }
        let attr = find(attrs, key).ok_or_else(|| bad("invalidSyntax", format!("{prefix}{key}: no such attribute")))?;
        if !value.is_null() {
            out.insert(attr.name.to_owned(), check_value(attr, value, &format!("{prefix}{}", attr.name))?);
        }
    }
    Ok(())
}

/// A User as the client sent it, checked and in canonical form: `schemas`,
/// `externalId`, the core attributes and the enterprise extension object.
/// `id` and `meta` (read-only) are dropped.
pub fn check_user(body: &Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(object) = body else { return Err(bad("invalidSyntax", "the body must be a JSON object".into())) };
    let schemas = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v)
        .ok_or_else(|| bad("invalidSyntax", "schemas: is required".into()))?;
    let Value::Array(schemas) = schemas else { return Err(bad("invalidSyntax", "schemas: must be an array".into())) };
    let mut has_user = false;
    let mut has_enterprise = false;
    for (i, urn) in schemas.iter().enumerate() {
        match urn.as_str() {
            Some(u) if u.eq_ignore_ascii_case(USER) => has_user = true,
            Some(u) if u.eq_ignore_ascii_case(ENTERPRISE) => has_enterprise = true,
            Some(u) => {
                return Err(bad(
                    "invalidSyntax",
                    format!("schemas[{i}]: unknown schema {:?}", connector_kit::validate::printable(u)),
                ));
            }
            None => return Err(bad("invalidSyntax", format!("schemas[{i}]: must be a string"))),
        }
    }
    if !has_user {
        return Err(bad("invalidSyntax", format!("schemas: must contain {USER}")));
    }
    let mut out = Map::new();
    let mut listed = vec![Value::String(USER.into())];
    let is_urn = |k: &str| k.to_ascii_lowercase().starts_with("urn:");
    let skip = |k: &str| ["schemas", "id", "meta", "externalId"].iter().any(|s| s.eq_ignore_ascii_case(k)) || is_urn(k);
    check_members(USER_ATTRS, object, "", &skip, &mut out)?;
    for (key, value) in object {
        if key.eq_ignore_ascii_case("externalId") && !value.is_null() {
            let text = value.as_str().ok_or_else(|| bad("invalidValue", "externalId: must be a string".into()))?;
            out.insert("externalId".into(), Value::String(text.into()));
        } else if is_urn(key) {
            if !key.eq_ignore_ascii_case(ENTERPRISE) {
                return Err(bad(
                    "invalidSyntax",
                    format!("{}: unknown schema extension", connector_kit::validate::printable(key)),
                ));
            }
            if !has_enterprise {
                return Err(bad("invalidSyntax", format!("{ENTERPRISE}: present but not listed in schemas")));
            }
            let Value::Object(ext) = value else {
                return Err(bad("invalidSyntax", format!("{ENTERPRISE}: must be an object")));
            };
            let mut checked = Map::new();
            check_members(ENTERPRISE_ATTRS, ext, &format!("{ENTERPRISE}:"), &|_| false, &mut checked)?;
            if !checked.is_empty() {
                out.insert(ENTERPRISE.into(), Value::Object(checked));
            }
        }
    }
    if out.contains_key(ENTERPRISE) {
        listed.push(Value::String(ENTERPRISE.into()));
    }
    let user_name = out.get("userName").and_then(Value::as_str).unwrap_or_default();
    if user_name.trim().is_empty() {
        return Err(bad("invalidValue", "userName: is required".into()));
    }
    out.insert("schemas".into(), Value::Array(listed));
    Ok(out)
}

fn attr_json(attr: &Attr, person_id: bool) -> Value {
    let type_name = match attr.kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex(_) => "complex",
    };
    let mut doc = json!({
        "name": attr.name,
        "type": type_name,
        "multiValued": attr.multi,
        "description": attr.description,
        // The person id is required: nothing is submitted without it.
        "required": attr.required || person_id,
        "caseExact": false,
        // The person id is set on create (or PUT) and never changes.
        "mutability": if person_id { "immutable" } else { attr.mutability },
        "returned": "default",
        "uniqueness": if attr.name == "userName" || person_id { "server" } else { "none" },
    });
    if let Kind::Complex(subs) = attr.kind {
        doc["subAttributes"] = Value::Array(subs.iter().map(|a| attr_json(a, false)).collect());
    }
    doc
}

fn schema_doc(
    base: &str,
    id: &str,
    name: &str,
    description: &str,
    attrs: &[Attr],
    person_id: Option<&super::mapping::ScimPath>,
) -> Value {
    let extension = (id == ENTERPRISE).then_some(ENTERPRISE);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(|a| attr_json(a, person_id.is_some_and(|p| p.names(extension, a.name)))).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// The `/Schemas` resources; the attribute holding the person id (when it is
/// a schema attribute, not `externalId`) is `immutable`.
pub fn schemas(base: &str, person_id: Option<&super::mapping::ScimPath>) -> Vec<Value> {
    vec![
        schema_doc(base, USER, "User", "A person of the source of truth", USER_ATTRS, person_id),
        schema_doc(base, ENTERPRISE, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS, person_id),
    ]
}

/// The `/ResourceTypes` resources (the extension required when it holds the
/// person id).
pub fn resource_types(base: &str, person_id: Option<&super::mapping::ScimPath>) -> Vec<Value> {
    let required = person_id.is_some_and(super::mapping::ScimPath::in_extension);
    vec![json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person of the source of truth; each write is a state submit",
        "schema": USER,
        "schemaExtensions": [{ "schema": ENTERPRISE, "required": required }],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
    })]
}

/// The `/ServiceProviderConfig` resource.
pub fn service_provider_config(base: &str, max_operations: usize, max_payload: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://example.invalid/lifecycle-mesh/README.md#scim-20-inbound",
        "patch": { "supported": true },
        "bulk": { "supported": true, "maxOperations": max_operations, "maxPayloadSize": max_payload },
        "filter": { "supported": true, "maxResults": super::users::MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A bearer token of the coordinator's callers file (role source), or a client certificate",
            "primary": true,
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
    })
}

/// `resource` with only the attributes asked for (`attributes`) or without
/// those excluded (`excludedAttributes`), top-level names, RFC 7644 §3.9;
/// `id` and `schemas` are always returned.
pub fn project(resource: &Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let Value::Object(map) = resource else { return resource.clone() };
    let names = |list: &str| -> Vec<String> {
        list.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect()
    };
    let top = |name: &str| -> String {
        // `name.givenName` and `urn:...:User:department` select their top-level attribute.
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(&ENTERPRISE.to_ascii_lowercase()) {
            return ENTERPRISE.to_ascii_lowercase();
        }
        let lower = lower.strip_prefix(&format!("{}:", USER.to_ascii_lowercase())).unwrap_or(&lower).to_owned();
        lower.split('.').next().unwrap_or_default().to_owned()
    };
    let always = |k: &str| ["id", "schemas", "meta"].contains(&k.to_ascii_lowercase().as_str());
    let mut out = Map::new();
    match (attributes, excluded) {
        (Some(list), _) => {
            let wanted: Vec<String> = names(list).iter().map(|n| top(n)).collect();
            for (k, v) in map {
                if (always(k) && k != "meta") || wanted.contains(&k.to_ascii_lowercase()) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        (None, Some(list)) => {
            let unwanted: Vec<String> = names(list).iter().map(|n| top(n)).collect();
            for (k, v) in map {
                if always(k) || !unwanted.contains(&k.to_ascii_lowercase()) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        (None, None) => return resource.clone(),
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemas_attributes_and_types_are_refused_with_their_path() {
        let refused = [
            (json!({"schemas": [USER, "urn:evil"], "userName": "a"}), "schemas[1]"),
            (json!({"schemas": [USER], "userName": "a", "shoeSize": "9"}), "shoeSize"),
            (json!({"schemas": [USER], "userName": "a", "active": "yes"}), "active"),
            (json!({"schemas": [USER], "userName": "a", "name": {"nick": "x"}}), "name.nick"),
            (json!({"schemas": [USER], "userName": "a", ENTERPRISE: {"department": "x"}}), "not listed"),
            (json!({"userName": "a"}), "schemas"),
            (json!({"schemas": [USER]}), "userName"),
            (json!([1]), "object"),
        ];
        for (body, needle) in refused {
            let error = check_user(&body).expect_err("refused");
            assert!(error.detail.contains(needle), "{} should name {needle}", error.detail);
            assert_eq!(error.status, 400);
        }
    }

    #[test]
    fn a_user_is_put_in_canonical_form_without_read_only_attributes() {
        let body = json!({
            "schemas": [USER, ENTERPRISE], "id": "x", "meta": {"version": "1"},
            "USERNAME": "ada", "externalId": "E1", "emails": [{"value": "a@x", "primary": true}],
            ENTERPRISE: {"Department": "Eng", "manager": {"value": "E0"}},
        });
        let user = check_user(&body).expect("valid");
        assert_eq!(user["userName"], "ada");
        assert_eq!(user[ENTERPRISE]["department"], "Eng");
        assert!(!user.contains_key("id") && !user.contains_key("meta"));
    }
}
