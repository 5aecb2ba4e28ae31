//! The HR ingestion rpcs of `jml.v1.Lifecycle`, called by
//! [`crate::api::LifecycleService`]: authorisation (role `source` for
//! submits, bound to the caller's source systems; `auditor`/`admin` to list
//! held batches; `admin` to decide), validation of every record before
//! anything is written, then [`super::Ingest`].

use jml_contract::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Request, Status, Streaming};

use super::{Batch, Ingest, MAX_BATCH_RECORDS, state};
use crate::auth::{Gate, Method};
use crate::engine::EngineError;
use crate::event::InvalidEvent;

/// `SubmitState`.
pub async fn submit_state(
    ingest: &Ingest,
    gate: &Gate,
    request: Request<pb::SubmitStateRequest>,
) -> Result<pb::SubmitStateResponse, Status> {
    let caller = gate.check(&request, Method::SubmitState).await?;
    let record = request.into_inner().record.ok_or_else(|| Status::invalid_argument("record: is required"))?;
    gate.check_source(&caller, Method::SubmitState, &record.source_system).await?;
    let record = state::parse_record(&record, ingest.engine().policy()).map_err(EngineError::from)?;
    let receipt = ingest.submit_state(record, &caller.principal).await?;
    Ok(pb::SubmitStateResponse { receipt: Some(receipt) })
}

/// `SubmitStates`: the chunks are read whole (at most
/// [`MAX_BATCH_RECORDS`]) and every record validated before anything is
/// derived; one bad record refuses the batch, naming it.
pub async fn submit_states(
    ingest: &Ingest,
    gate: &Gate,
    request: Request<Streaming<pb::SubmitStatesRequest>>,
) -> Result<pb::SubmitStatesResponse, Status> {
    let caller = gate.check(&request, Method::SubmitStates).await?;
    let mut stream = request.into_inner();
    let mut batch = Batch::default();
    let mut first = true;
    let mut index = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if first {
            first = false;
            if chunk.source_system.is_empty() {
                return Err(Status::invalid_argument("source_system: is required"));
            }
            gate.check_source(&caller, Method::SubmitStates, &chunk.source_system).await?;
            batch.source_system = chunk.source_system.clone();
            batch.full_snapshot = chunk.full_snapshot;
            batch.dry_run = chunk.dry_run;
            if chunk.label.len() > 256 || chunk.label.chars().any(char::is_control) {
                return Err(Status::invalid_argument("label: longer than 256 bytes or has control characters"));
            }
            batch.label = chunk.label.clone();
        }
        if batch.records.len() + chunk.records.len() > MAX_BATCH_RECORDS {
            return Err(Status::invalid_argument(format!("records: more than {MAX_BATCH_RECORDS} in one batch")));
        }
        for record in &chunk.records {
            let parsed = state::parse_record(record, ingest.engine().policy()).map_err(|e| {
                EngineError::from(InvalidEvent {
                    field: format!(
                        "records[{index}] ({:?}) {}",
                        connector_kit::validate::printable(&record.person_id),
                        e.field
                    ),
                    message: e.message,
                })
            })?;
            batch.records.push(parsed);
            index += 1;
        }
    }
    if first {
        return Err(Status::invalid_argument("the batch is empty (no chunk sent)"));
    }
    Ok(ingest.submit_batch(batch, &caller.principal).await?)
}

/// `ListHeldBatches`.
pub async fn list_held(
    ingest: &Ingest,
    gate: &Gate,
    request: Request<pb::ListHeldBatchesRequest>,
) -> Result<pb::ListHeldBatchesResponse, Status> {
    gate.check(&request, Method::ListHeldBatches).await?;
    let batches = ingest.held_batches(request.into_inner().all).await?;
    Ok(pb::ListHeldBatchesResponse { batches: batches.iter().map(super::HeldBatchSummary::to_proto).collect() })
}

/// `DecideHeldBatch`.
pub async fn decide(
    ingest: &Ingest,
    gate: &Gate,
    request: Request<pb::DecideHeldBatchRequest>,
) -> Result<pb::DecideHeldBatchResponse, Status> {
    let caller = gate.check(&request, Method::DecideHeldBatch).await?;
    let request = request.into_inner();
    if request.batch_id.is_empty() {
        return Err(Status::invalid_argument("batch_id: is required"));
    }
    if request.comment.len() > 1024 {
        return Err(Status::invalid_argument("comment: longer than 1024 bytes"));
    }
    let (batch, applied) =
        ingest.decide(&request.batch_id, &caller.principal, request.approve, &request.comment).await?;
    Ok(pb::DecideHeldBatchResponse { batch: Some(batch.to_proto()), applied })
}
