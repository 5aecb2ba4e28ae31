//! PATCH (RFC 7644 §3.5.2) on a kept User: `add`, `replace` and `remove`
//! with a path `attribute`, `attribute.subAttribute` or an Enterprise User
//! attribute with its schema URN, or without a path (`add`/`replace` of an
//! object's members). Value filters in paths (`emails[type eq "work"]`) are
//! refused (`invalidPath`). The result is checked as a whole User again.

use serde_json::{Map, Value};

use super::ScimError;
use super::schema::{self, Attr, ENTERPRISE, Kind, PATCH_OP, USER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// A resolved path: the holder (core or the extension object), the attribute
/// and the sub-attribute, canonical names.
struct Target {
    extension: bool,
    attr: &'static Attr,
    sub: Option<&'static str>,
}

fn invalid_path(path: &str, why: &str) -> ScimError {
    ScimError::bad_request("invalidPath", format!("{:?}: {why}", connector_kit::validate::printable(path)))
}

fn resolve(path: &str) -> Result<Target, ScimError> {
    if path.contains('[') || path.contains(' ') {
        return Err(invalid_path(path, "value filters in PATCH paths are not supported"));
    }
    let lower = path.to_ascii_lowercase();
    let enterprise = format!("{}:", ENTERPRISE.to_ascii_lowercase());
    let core = format!("{}:", USER.to_ascii_lowercase());
    let (extension, attrs, rest) = if let Some(rest) = lower.strip_prefix(&enterprise) {
        (true, schema::ENTERPRISE_ATTRS, &path[path.len() - rest.len()..])
    } else if let Some(rest) = lower.strip_prefix(&core) {
        (false, schema::USER_ATTRS, &path[path.len() - rest.len()..])
    } else if lower.starts_with("urn:") {
        return Err(invalid_path(path, "unknown schema"));
    } else {
        (false, schema::USER_ATTRS, path)
    };
    let mut parts = rest.split('.');
    let name = parts.next().unwrap_or_default();
    let attr = schema::find(attrs, name).ok_or_else(|| invalid_path(path, "no such attribute"))?;
    let sub = match (parts.next(), attr.kind) {
        (None, _) => None,
        (Some(sub), Kind::Complex(subs)) => {
            Some(schema::find(subs, sub).ok_or_else(|| invalid_path(path, "no such sub-attribute"))?.name)
        }
        (Some(_), _) => return Err(invalid_path(path, "not a complex attribute")),
    };
    if parts.next().is_some() {
        return Err(invalid_path(path, "too deep"));
    }
    Ok(Target { extension, attr, sub })
}

fn merge(into: &mut Map<String, Value>, value: &Map<String, Value>) {
    for (k, v) in value {
        into.insert(k.clone(), v.clone());
    }
}

fn apply_one(
    user: &mut Map<String, Value>,
    op: Op,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        if op == Op::Remove {
            return Err(ScimError::bad_request("noTarget", "remove needs a path"));
        }
        let Some(Value::Object(members)) = value else {
            return Err(ScimError::bad_request("invalidValue", "without a path, the value must be an object"));
        };
        for (key, member) in members {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if key.eq_ignore_ascii_case(ENTERPRISE) {
                let Value::Object(ext) = member else {
                    return Err(ScimError::bad_request("invalidValue", format!("{ENTERPRISE}: must be an object")));
                };
                for (sub_key, sub_value) in ext {
                    apply_one(user, op, Some(&format!("{ENTERPRISE}:{sub_key}")), Some(sub_value))?;
                }
            } else if key.eq_ignore_ascii_case("externalId") {
                user.insert("externalId".into(), member.clone());
            } else {
                apply_one(user, op, Some(key), Some(member))?;
            }
        }
        return Ok(());
    };
    if path.eq_ignore_ascii_case(ENTERPRISE) {
        // The whole extension: removed, or its members added / replaced.
        if op == Op::Remove {
            user.remove(ENTERPRISE);
            return Ok(());
        }
        let Some(Value::Object(members)) = value else {
            return Err(ScimError::bad_request("invalidValue", format!("{ENTERPRISE}: the value must be an object")));
        };
        for (key, member) in members.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
            apply_one(user, op, Some(&format!("{ENTERPRISE}:{key}")), Some(member))?;
        }
        return Ok(());
    }
    if path.eq_ignore_ascii_case("externalId") {
        match op {
            Op::Remove => {
                user.remove("externalId");
            }
            _ => {
                user.insert("externalId".into(), value.cloned().unwrap_or(Value::Null));
            }
        }
        return Ok(());
    }
    let target = resolve(path)?;
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::bad_request("invalidValue", format!("{path}: a value is required")));
    }
    let holder: &mut Map<String, Value> = if target.extension {
        let ext = user.entry(ENTERPRISE).or_insert_with(|| Value::Object(Map::new()));
        if !ext.is_object() {
            *ext = Value::Object(Map::new());
        }
        ext.as_object_mut().ok_or_else(|| ScimError::status(500, "extension is not an object"))?
    } else {
        user
    };
    let name = target.attr.name;
    match (op, target.sub) {
        (Op::Remove, None) => {
            holder.remove(name);
        }
        (Op::Remove, Some(sub)) => {
            if let Some(current) = holder.get_mut(name) {
                match current {
                    Value::Object(map) => {
                        map.remove(sub);
                    }
                    Value::Array(items) => {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            item.remove(sub);
                        }
                    }
                    _ => {}
                }
            }
        }
        (_, Some(sub)) => {
            let value = value.cloned().unwrap_or(Value::Null);
            let current = holder.entry(name).or_insert_with(|| {
                if target.attr.multi {
                    Value::Array(vec![Value::Object(Map::new())])
                } else {
                    Value::Object(Map::new())
                }
            });
            match current {
                Value::Object(map) => {
                    map.insert(sub.into(), value);
                }
                Value::Array(items) => {
                    if items.is_empty() {
                        items.push(Value::Object(Map::new()));
                    }
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        item.insert(sub.into(), value.clone());
                    }
                }
                other => *other = Value::Object(Map::from_iter([(sub.to_owned(), value)])),
            }
        }
        (Op::Add, None) if target.attr.multi => {
            let items = match value {
                Some(Value::Array(items)) => items.clone(),
                Some(item) => vec![item.clone()],
                None => Vec::new(),
            };
            match holder.get_mut(name) {
                Some(Value::Array(existing)) => existing.extend(items),
                _ => {
                    holder.insert(name.into(), Value::Array(items));
                }
            }
        }
        (Op::Add, None) if matches!(target.attr.kind, Kind::Complex(_)) => match (holder.get_mut(name), value) {
            (Some(Value::Object(existing)), Some(Value::Object(members))) => merge(existing, members),
            (_, Some(v)) => {
                holder.insert(name.into(), v.clone());
            }
            _ => {}
        },
        (_, None) => {
            holder.insert(name.into(), value.cloned().unwrap_or(Value::Null));
        }
    }
    Ok(())
}

/// The User after the PATCH request `body`, not yet checked.
pub fn apply(user: &Map<String, Value>, body: &Value) -> Result<Map<String, Value>, ScimError> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.len() == 1 && s[0].as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP))) {
        return Err(ScimError::bad_request("invalidSyntax", format!("schemas: must be [{PATCH_OP:?}]")));
    }
    let operations = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "Operations: a non-empty array is required"))?;
    let mut patched = user.clone();
    for (i, operation) in operations.iter().enumerate() {
        let op = match operation.get("op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            _ => {
                return Err(ScimError::bad_request(
                    "invalidSyntax",
                    format!("Operations[{i}].op: add, replace or remove"),
                ));
            }
        };
        let path = match operation.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(path.as_str()),
            Some(_) => return Err(ScimError::bad_request("invalidPath", format!("Operations[{i}].path: a string"))),
        };
        apply_one(&mut patched, op, path, operation.get("value"))?;
    }
    // The extension listed in schemas when present, dropped when emptied.
    let has_extension = patched.get(ENTERPRISE).and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    if !has_extension {
        patched.remove(ENTERPRISE);
    }
    let mut schemas = vec![Value::String(USER.into())];
    if has_extension {
        schemas.push(Value::String(ENTERPRISE.into()));
    }
    patched.insert("schemas".into(), Value::Array(schemas));
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({"schemas": [USER], "userName": "ada", "externalId": "E1", "name": {"givenName": "Ada"}})
            .as_object()
            .cloned()
            .expect("object")
    }

    #[test]
    fn add_replace_and_remove_reach_core_and_extension_attributes() {
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "name.givenName", "value": "Augusta"},
            {"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "R&D"},
            {"op": "add", "path": "emails", "value": [{"value": "a@x"}]},
            {"op": "Replace", "value": {"title": "Countess"}},
            {"op": "remove", "path": "externalId"},
        ]});
        let patched = apply(&user(), &body).expect("applied");
        assert_eq!(patched["name"]["givenName"], "Augusta");
        assert_eq!(patched[ENTERPRISE]["department"], "R&D");
        assert_eq!(patched["emails"][0]["value"], "a@x");
        assert_eq!(patched["title"], "Countess");
        assert!(!patched.contains_key("externalId"));
        assert_eq!(patched["schemas"], json!([USER, ENTERPRISE]));
    }

    #[test]
    fn bad_operations_are_typed_errors() {
        for (ops, scim_type) in [
            (json!([{"op": "remove"}]), "noTarget"),
            (json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "x"}]), "invalidPath"),
            (json!([{"op": "add", "path": "shoeSize", "value": "9"}]), "invalidPath"),
            (json!([{"op": "move", "path": "title"}]), "invalidSyntax"),
            (json!([]), "invalidSyntax"),
        ] {
            let error = apply(&user(), &json!({"schemas": [PATCH_OP], "Operations": ops})).expect_err("refused");
            assert_eq!(error.scim_type, Some(scim_type), "{}", error.detail);
        }
    }
}
