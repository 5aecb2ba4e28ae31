//! `/Bulk` (RFC 7644 §3.7): the operations on `/Users` run in order, each a
//! state submit; `failOnErrors` stops after that many errors (the rest are
//! not run, and not listed); `bulkId:ID` in a path names the User an earlier
//! `POST` of the request created. Each operation's response carries the
//! derived event id (`eventId`, empty when the record changed nothing) and
//! the state submit's outcome (`outcome`).

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Ctx, ScimError, ScimState, schema, scim_json, users};

fn operation_error(error: &ScimError) -> Value {
    error.to_json()
}

/// Runs one operation.
async fn run(
    state: &ScimState,
    ctx: &Ctx,
    operation: &Value,
    created: &HashMap<String, String>,
) -> Result<users::Outcome, ScimError> {
    let method = operation
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "method: is required"))?
        .to_ascii_uppercase();
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "path: is required"))?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let data = operation.get("data");
    let need_data = || data.ok_or_else(|| ScimError::bad_request("invalidSyntax", "data: is required"));
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["Users"]) => users::create_in_bulk(state, ctx, need_data()?).await,
        (method, ["Users", id]) if method != "POST" => {
            let id = match id.strip_prefix("bulkId:") {
                Some(bulk_id) => created.get(bulk_id).cloned().ok_or_else(|| {
                    ScimError::bad_request("invalidValue", format!("bulkId:{bulk_id}: no earlier POST created it"))
                })?,
                None => super::percent_decode(id)?,
            };
            match method {
                "PUT" => users::replace(state, ctx, &id, need_data()?).await,
                "PATCH" => users::patch(state, ctx, &id, need_data()?).await,
                "DELETE" => users::delete(state, ctx, &id).await,
                _ => Err(ScimError::bad_request(
                    "invalidSyntax",
                    format!("method {method:?}: POST, PUT, PATCH or DELETE"),
                )),
            }
        }
        _ => Err(ScimError::bad_request(
            "invalidPath",
            format!(
                "{method} {:?}: only POST /Users and PUT, PATCH, DELETE /Users/ID",
                connector_kit::validate::printable(path)
            ),
        )),
    }
}

/// `POST /Bulk`.
pub async fn bulk(state: &ScimState, ctx: &Ctx, body: &Value) -> Result<Response, ScimError> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas
        .is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(schema::BULK_REQUEST))))
    {
        return Err(ScimError::bad_request("invalidSyntax", format!("schemas: must contain {}", schema::BULK_REQUEST)));
    }
    let operations = body
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "Operations: an array is required"))?;
    if operations.len() > state.options.max_bulk_operations {
        return Err(ScimError::status(
            413,
            format!("{} operations; at most {} per request", operations.len(), state.options.max_bulk_operations),
        ));
    }
    let fail_on_errors = match body.get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ScimError::bad_request("invalidValue", "failOnErrors: a positive integer"))?,
        ),
    };
    let mut created: HashMap<String, String> = HashMap::new();
    let mut responses = Vec::with_capacity(operations.len());
    let mut errors = 0u64;
    for operation in operations {
        let method = operation.get("method").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
        let bulk_id = operation.get("bulkId").and_then(Value::as_str).map(str::to_owned);
        if method == "POST" && bulk_id.is_none() {
            errors += 1;
            let error = ScimError::bad_request("invalidValue", "bulkId: is required for POST");
            responses.push(json!({ "method": method, "status": "400", "response": operation_error(&error) }));
        } else {
            match run(state, ctx, operation, &created).await {
                Ok(outcome) => {
                    if let (Some(bulk_id), Some(resource)) = (&bulk_id, &outcome.resource)
                        && let Some(id) = resource.get("id").and_then(Value::as_str)
                    {
                        created.insert(bulk_id.clone(), id.to_owned());
                    }
                    let mut response = json!({
                        "method": method,
                        "location": outcome.location,
                        "status": outcome.status.to_string(),
                        "eventId": outcome.event_id,
                        "outcome": outcome.outcome,
                    });
                    if let Some(bulk_id) = &bulk_id {
                        response["bulkId"] = Value::String(bulk_id.clone());
                    }
                    if let Some(version) = outcome.resource.as_ref().and_then(|r| r["meta"].get("version")) {
                        response["version"] = version.clone();
                    }
                    responses.push(response);
                }
                Err(error) => {
                    errors += 1;
                    let mut response = json!({
                        "method": method,
                        "status": error.status.to_string(),
                        "response": operation_error(&error),
                    });
                    if let Some(bulk_id) = &bulk_id {
                        response["bulkId"] = Value::String(bulk_id.clone());
                    }
                    // A 5xx: the operations after it are not run; the sender
                    // retries the whole request (each operation is safe to repeat).
                    let unknown = error.status >= 500;
                    responses.push(response);
                    if unknown {
                        return Err(ScimError::status(
                            error.status,
                            format!(
                                "operation {} failed with an unknown outcome ({}); nothing after it ran: send the same request again (always safe)",
                                responses.len() - 1,
                                error.detail
                            ),
                        ));
                    }
                }
            }
        }
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
    }
    Ok(scim_json(StatusCode::OK, &json!({ "schemas": [schema::BULK_RESPONSE], "Operations": responses })))
}
