//! `/Users`: each write is a state submit of the person's record read from
//! the User through the policy's mapping; the User accepted last is kept to
//! answer `GET` and apply `PATCH` (`ingest_state`, space `scim_user`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use jml_contract::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, ScimError, ScimState, list_response, schema, scim_json};
use crate::event::{format_time, now_ms};
use crate::ingest::state;
use crate::store::IngestPut;

/// The space of the kept Users.
const SPACE: &str = "scim_user";
/// Most resources one list answers.
pub const MAX_RESULTS: usize = 200;

/// The User accepted last for a person.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    user: Map<String, Value>,
    created: i64,
    modified: i64,
    /// Deleted (terminated through `DELETE`): `GET` answers 404.
    deleted: bool,
    /// The event the last write derived (empty: none).
    event_id: String,
    /// The digest ([`digest`]) of the User as created, and the event its
    /// creation derived: a retried `/Bulk` whose `POST` was followed by a
    /// `PATCH` finds its `POST` answered as that creation, not as a 409.
    #[serde(default)]
    created_from: String,
    #[serde(default)]
    created_event: String,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The HTTP status.
    pub status: u16,
    /// The resource (none after `DELETE`).
    pub resource: Option<Value>,
    /// The derived event (empty: the record changed nothing).
    pub event_id: String,
    /// The state submit's outcome (`derived`, `duplicate`, `unchanged`, `held`...).
    pub outcome: String,
    /// The resource's location.
    pub location: String,
}

fn location(ctx: &Ctx, id: &str) -> String {
    format!("{}/Users/{}", ctx.base, super::percent_encode(id))
}

/// The hex SHA-256 of a User's JSON (the map is sorted).
fn digest(user: &Map<String, Value>) -> String {
    hex::encode(Sha256::digest(Value::Object(user.clone()).to_string().as_bytes()))
}

fn version(user: &Map<String, Value>) -> String {
    let digest = Sha256::digest(Value::Object(user.clone()).to_string().as_bytes());
    format!("W/\"{}\"", &hex::encode(digest)[..16])
}

fn resource(ctx: &Ctx, id: &str, kept: &Kept) -> Value {
    let mut out = kept.user.clone();
    out.insert("id".into(), Value::String(id.into()));
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": format_time(Some(kept.created)),
            "lastModified": format_time(Some(kept.modified)),
            "location": location(ctx, id),
            "version": version(&kept.user),
        }),
    );
    Value::Object(out)
}

async fn load(state: &ScimState, id: &str) -> Result<Option<Kept>, ScimError> {
    let text = state.engine().store().ingest_get(SPACE, id).await.map_err(crate::engine::EngineError::from)?;
    match text {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            tracing::error!(error = %e, "SCIM: a kept User is corrupt");
            ScimError::status(500, "a kept User is corrupt; see the coordinator's log")
        }),
    }
}

async fn keep(state: &ScimState, id: &str, kept: &Kept) -> Result<(), ScimError> {
    let put = IngestPut {
        space: SPACE.into(),
        key: id.into(),
        value: serde_json::to_string(kept).unwrap_or_default(),
        updated_at: kept.modified,
        expected: None,
    };
    state.engine().store().ingest_put(vec![put], Vec::new()).await.map_err(crate::engine::EngineError::from)?;
    Ok(())
}

fn mapping(state: &ScimState) -> Result<&super::mapping::Mapping, ScimError> {
    state.mapping.as_deref().ok_or_else(|| {
        ScimError::status(501, "the policy has no source_of_truth.scim mapping: the SCIM endpoint accepts no writes")
    })
}

/// Submits the record a User means; the state submit's receipt.
async fn submit(
    state: &ScimState,
    ctx: &Ctx,
    id: &str,
    user: &Map<String, Value>,
    terminated: bool,
) -> Result<pb::StateReceipt, ScimError> {
    let mapping = mapping(state)?;
    let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
    let record = pb::PersonRecord {
        person_id: id.to_owned(),
        attributes: mapping.attributes(user),
        employment_status: if active && !terminated { "active" } else { "terminated" }.into(),
        source_system: state.source_system(),
        ..Default::default()
    };
    let record = state::parse_record(&record, state.engine().policy())
        .map_err(|e| ScimError::bad_request("invalidValue", format!("{}: {}", e.field, e.message)))?;
    Ok(state.ingest.submit_state(record, &ctx.caller.principal).await?)
}

fn outcome_name(receipt: &pb::StateReceipt) -> String {
    pb::StateOutcome::try_from(receipt.outcome)
        .map(|o| o.as_str_name().trim_start_matches("STATE_OUTCOME_").to_ascii_lowercase())
        .unwrap_or_default()
}

/// The person id a User names, checked against the URL's when given.
fn person_of(state: &ScimState, user: &Map<String, Value>, url_id: Option<&str>) -> Result<String, ScimError> {
    let path = &mapping(state)?.person_id;
    match (path.read(user), url_id) {
        (Some(id), Some(url)) if id != url => Err(ScimError::bad_request(
            "mutability",
            format!("the person id ({}) cannot change: the resource is {url:?}", state_path(state)),
        )),
        (Some(id), _) => Ok(id),
        (None, Some(url)) => Ok(url.to_owned()),
        (None, None) => Err(ScimError::bad_request(
            "invalidValue",
            format!("{}: is required (it is the person id)", state_path(state)),
        )),
    }
}

fn state_path(state: &ScimState) -> String {
    state.engine().policy().file.source_of_truth.scim.as_ref().map(|m| m.person_id.clone()).unwrap_or_default()
}

async fn write(
    state: &ScimState,
    ctx: &Ctx,
    id: &str,
    user: Map<String, Value>,
    prior: Option<Kept>,
    status: u16,
) -> Result<Outcome, ScimError> {
    let receipt = submit(state, ctx, id, &user, false).await?;
    let now = now_ms();
    let (created, created_from, created_event) = match prior.filter(|p| !p.deleted) {
        Some(prior) => (prior.created, prior.created_from, prior.created_event),
        None => (now, digest(&user), receipt.event_id.clone()),
    };
    let kept = Kept {
        user,
        created,
        modified: now,
        deleted: false,
        event_id: receipt.event_id.clone(),
        created_from,
        created_event,
    };
    keep(state, id, &kept).await?;
    let outcome = outcome_name(&receipt);
    let status = if outcome == "held" { 202 } else { status };
    Ok(Outcome {
        status,
        resource: Some(resource(ctx, id, &kept)),
        event_id: receipt.event_id,
        outcome,
        location: location(ctx, id),
    })
}

/// `POST /Users`: a joiner, or a rehire of a person deleted before.
pub async fn create(state: &ScimState, ctx: &Ctx, body: &Value) -> Result<Outcome, ScimError> {
    let user = schema::check_user(body)?;
    let id = person_of(state, &user, None)?;
    let _person = state.lock(&id).lock().await;
    let prior = load(state, &id).await?;
    if prior.as_ref().is_some_and(|p| !p.deleted) {
        return Err(ScimError {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: format!("the User {id:?} exists"),
        });
    }
    write(state, ctx, &id, user, prior, 201).await
}

/// A `POST /Users` of a `/Bulk` request: as [`create`], except that a `POST`
/// of the very User kept, or of the very User the kept one was created from
/// (a retried request whose `PATCH` followed its `POST`), is answered as
/// that earlier write (200, outcome `duplicate`, its event), so that a
/// retried request keeps its `bulkId`s. A `POST` of a different User for
/// an existing one is still a 409.
pub async fn create_in_bulk(state: &ScimState, ctx: &Ctx, body: &Value) -> Result<Outcome, ScimError> {
    let user = schema::check_user(body)?;
    let id = person_of(state, &user, None)?;
    {
        let _person = state.lock(&id).lock().await;
        if let Some(kept) = load(state, &id).await?.filter(|p| !p.deleted) {
            let event_id = if kept.user == user {
                Some(kept.event_id.clone())
            } else if !kept.created_from.is_empty() && kept.created_from == digest(&user) {
                Some(kept.created_event.clone())
            } else {
                None
            };
            if let Some(event_id) = event_id {
                return Ok(Outcome {
                    status: 200,
                    resource: Some(resource(ctx, &id, &kept)),
                    event_id,
                    outcome: "duplicate".into(),
                    location: location(ctx, &id),
                });
            }
        }
    }
    create(state, ctx, body).await
}

async fn existing(state: &ScimState, id: &str) -> Result<Kept, ScimError> {
    match load(state, id).await? {
        Some(kept) if !kept.deleted => Ok(kept),
        _ => Err(ScimError::status(404, format!("no User {:?}", connector_kit::validate::printable(id)))),
    }
}

/// `PUT /Users/{id}`: the whole User replaced.
pub async fn replace(state: &ScimState, ctx: &Ctx, id: &str, body: &Value) -> Result<Outcome, ScimError> {
    let user = schema::check_user(body)?;
    person_of(state, &user, Some(id))?;
    let _person = state.lock(id).lock().await;
    let prior = existing(state, id).await?;
    write(state, ctx, id, user, Some(prior), 200).await
}

/// `PATCH /Users/{id}` (RFC 7644 §3.5.2).
pub async fn patch(state: &ScimState, ctx: &Ctx, id: &str, body: &Value) -> Result<Outcome, ScimError> {
    let _person = state.lock(id).lock().await;
    let prior = existing(state, id).await?;
    let patched = super::patch::apply(&prior.user, body)?;
    // Fail closed: a User without `active` would read as employed.
    if prior.user.contains_key("active") && !patched.contains_key("active") {
        return Err(ScimError::bad_request(
            "mutability",
            "active: may not be removed (replace it with false to end the employment)",
        ));
    }
    let user = schema::check_user(&Value::Object(patched))?;
    person_of(state, &user, Some(id))?;
    write(state, ctx, id, user, Some(prior), 200).await
}

/// `DELETE /Users/{id}`: the person's termination.
pub async fn delete(state: &ScimState, ctx: &Ctx, id: &str) -> Result<Outcome, ScimError> {
    let _person = state.lock(id).lock().await;
    let prior = existing(state, id).await?;
    let receipt = submit(state, ctx, id, &prior.user, true).await?;
    let kept = Kept { modified: now_ms(), deleted: true, event_id: receipt.event_id.clone(), ..prior };
    keep(state, id, &kept).await?;
    let outcome = outcome_name(&receipt);
    let status = if outcome == "held" { 202 } else { 204 };
    Ok(Outcome { status, resource: None, event_id: receipt.event_id, outcome, location: location(ctx, id) })
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key.eq_ignore_ascii_case(name).then(|| decode_query(value))
    })
}

fn decode_query(text: &str) -> String {
    let replaced = text.replace('+', " ");
    super::percent_decode(&replaced).unwrap_or(replaced)
}

/// A write's response.
pub fn respond(outcome: Outcome, query: &str) -> Result<Response, ScimError> {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    let mut response = match &outcome.resource {
        Some(resource) => {
            let projected = schema::project(
                resource,
                param(query, "attributes").as_deref(),
                param(query, "excludedAttributes").as_deref(),
            );
            scim_json(status, &projected)
        }
        None => axum::response::IntoResponse::into_response(status),
    };
    if let Ok(value) = HeaderValue::from_str(&outcome.event_id)
        && !outcome.event_id.is_empty()
    {
        response.headers_mut().insert("jml-event-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&outcome.outcome) {
        response.headers_mut().insert("jml-outcome", value);
    }
    if outcome.status == 201
        && let Ok(value) = HeaderValue::from_str(&outcome.location)
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /Users/{id}`.
pub async fn get(state: &ScimState, ctx: &Ctx, id: &str, query: &str) -> Result<Response, ScimError> {
    let kept = existing(state, id).await?;
    let projected = schema::project(
        &resource(ctx, id, &kept),
        param(query, "attributes").as_deref(),
        param(query, "excludedAttributes").as_deref(),
    );
    Ok(scim_json(StatusCode::OK, &projected))
}

/// `attr eq "value"` on `id`, `userName` or `externalId`.
fn parse_filter(filter: &str) -> Result<(String, String), ScimError> {
    let invalid = || {
        ScimError::bad_request(
            "invalidFilter",
            format!(
                "unsupported filter {:?}: only `id`, `userName` or `externalId` eq \"VALUE\"",
                connector_kit::validate::printable(filter)
            ),
        )
    };
    let mut parts = filter.trim().splitn(3, ' ');
    let (attr, op, value) =
        (parts.next().ok_or_else(invalid)?, parts.next().ok_or_else(invalid)?, parts.next().ok_or_else(invalid)?);
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let attr =
        ["id", "userName", "externalId"].into_iter().find(|a| a.eq_ignore_ascii_case(attr)).ok_or_else(invalid)?;
    let value: String = serde_json::from_str(value.trim()).map_err(|_| invalid())?;
    Ok((attr.to_owned(), value))
}

/// What a list or a search asks for.
#[derive(Debug, Default)]
struct Query {
    filter: Option<String>,
    start: Option<usize>,
    count: Option<usize>,
    attributes: Option<String>,
    excluded: Option<String>,
}

/// `GET /Users`.
pub async fn list(state: &ScimState, ctx: &Ctx, query: &str) -> Result<Response, ScimError> {
    let query = Query {
        filter: param(query, "filter"),
        start: param(query, "startIndex").and_then(|v| v.parse().ok()),
        count: param(query, "count").and_then(|v| v.parse().ok()),
        attributes: param(query, "attributes"),
        excluded: param(query, "excludedAttributes"),
    };
    run_query(state, ctx, query).await
}

/// `POST /Users/.search` (RFC 7644 §3.4.3).
pub async fn search(state: &ScimState, ctx: &Ctx, body: &Value) -> Result<Response, ScimError> {
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(SEARCH)))) {
        return Err(ScimError::bad_request("invalidSyntax", format!("schemas: must contain {SEARCH}")));
    }
    let list = |name: &str| -> Option<String> {
        match body.get(name)? {
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
            Value::String(text) => Some(text.clone()),
            _ => None,
        }
    };
    let number = |name: &str| body.get(name).and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
    let query = Query {
        filter: body.get("filter").and_then(Value::as_str).map(str::to_owned),
        start: number("startIndex"),
        count: number("count"),
        attributes: list("attributes"),
        excluded: list("excludedAttributes"),
    };
    run_query(state, ctx, query).await
}

async fn run_query(state: &ScimState, ctx: &Ctx, query: Query) -> Result<Response, ScimError> {
    let filter = query.filter.as_deref().map(parse_filter).transpose()?;
    let start = query.start.unwrap_or(1).max(1);
    let count = query.count.unwrap_or(MAX_RESULTS).min(MAX_RESULTS);
    let store = state.engine().store();
    let mut matched = Vec::new();
    let mut after = String::new();
    loop {
        let page = store.ingest_after(SPACE, after.clone(), 1000).await.map_err(crate::engine::EngineError::from)?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (id, text) in page {
            let Ok(kept) = serde_json::from_str::<Kept>(&text) else { continue };
            if kept.deleted {
                continue;
            }
            let keep_it = match &filter {
                None => true,
                Some((attr, value)) if attr == "id" => &id == value,
                Some((attr, value)) => kept.user.get(attr.as_str()).and_then(Value::as_str) == Some(value.as_str()),
            };
            if keep_it {
                matched.push((id, kept));
            }
        }
    }
    let total = matched.len();
    let resources: Vec<Value> = matched
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|(id, kept)| {
            schema::project(&resource(ctx, id, kept), query.attributes.as_deref(), query.excluded.as_deref())
        })
        .collect();
    let mut body = list_response(resources);
    body["totalResults"] = json!(total);
    body["startIndex"] = json!(start);
    Ok(scim_json(StatusCode::OK, &body))
}
