//! The `jml.v1.Lifecycle` gRPC service over the [`Engine`], with the one
//! mapping from [`EngineError`] to `tonic::Status`.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_server::{Lifecycle, LifecycleServer};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::auth::{Authentication, Gate, Method};
use crate::engine::{Engine, EngineError};
use crate::event::{format_time, now_ms, validate};
use crate::evidence::{event_status, evidence_json, in_plan_order, task_status};
use crate::store::{EventRecord, verify_audit};

pub use crate::auth::PRINCIPAL_HEADER;

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        match &error {
            EngineError::InvalidArgument(_) => Status::invalid_argument(error.to_string()),
            EngineError::NotFound(_) => Status::not_found(error.to_string()),
            EngineError::PermissionDenied(_) => Status::permission_denied(error.to_string()),
            EngineError::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
            EngineError::NameCollision(_) => Status::already_exists(error.to_string()),
            EngineError::Target { .. } => Status::unavailable(error.to_string()),
            EngineError::Store(inner) => {
                tracing::error!(error = %inner, "storage failure");
                Status::internal("storage failure; see the coordinator's log")
            }
        }
    }
}

/// The receipt of an accepted event.
pub(crate) fn receipt(event: &EventRecord, duplicate: bool) -> pb::Receipt {
    pb::Receipt {
        event_id: event.event_id.clone(),
        duplicate,
        received_at: format_time(Some(event.received_at)),
        policy_hash: event.policy_hash.clone(),
        plan_hash: event.plan_hash.clone(),
        targets: event.plan.targets.iter().map(|t| t.target_id.clone()).collect(),
        initiator: event.initiator.clone(),
        trace_id: crate::tracing_context::trace_id_of(&event.trace_id).to_owned(),
    }
}

/// The lifecycle service.
#[derive(Debug, Clone)]
pub struct LifecycleService {
    engine: Engine,
    gate: Gate,
    ingest: crate::ingest::Ingest,
}

impl LifecycleService {
    /// A service over `engine`, its callers identified as `authentication`
    /// says (see [`crate::auth`]).
    pub fn new(engine: Engine, authentication: Authentication) -> Self {
        let gate = Gate::new(authentication, engine.store().clone());
        Self { ingest: crate::ingest::Ingest::new(engine.clone()), engine, gate }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> LifecycleServer<Self> {
        LifecycleServer::new(self)
    }

    async fn status(&self, event_id: &str) -> Result<pb::EventStatus, Status> {
        let store = self.engine.store();
        let event = store
            .event(event_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| Status::not_found(format!("event {event_id:?} not found")))?;
        let tasks = store.tasks(event_id).await.map_err(EngineError::from)?;
        let approvals = store.approvals(event_id).await.map_err(EngineError::from)?;
        let mut status = event_status(&event, &in_plan_order(&event, tasks), &approvals);
        crate::calendar::fill_status(store.as_ref(), &event, &mut status).await.map_err(EngineError::from)?;
        Ok(status)
    }

    async fn decide(
        &self,
        request: Request<pb::ApprovalRequest>,
        approve: bool,
    ) -> Result<pb::ApprovalResponse, Status> {
        let principal =
            self.gate.check(&request, if approve { Method::Approve } else { Method::Reject }).await?.principal;
        let request = request.into_inner();
        if request.event_id.is_empty() {
            return Err(Status::invalid_argument("event_id: is required"));
        }
        if request.target_id.is_empty() {
            return Err(Status::invalid_argument("target_id: is required"));
        }
        if request.comment.len() > 1024 {
            return Err(Status::invalid_argument("comment: longer than 1024 bytes"));
        }
        let (task, approvals) =
            self.engine.decide(&request.event_id, &request.target_id, &principal, approve, &request.comment).await?;
        let recorded = self.engine.store().approvals(&request.event_id).await.map_err(EngineError::from)?;
        Ok(pb::ApprovalResponse {
            required: task.planned.approvals_required,
            task: Some(task_status(&task, &recorded)),
            approvals,
        })
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::EventStatus, Status>> + Send + 'static>>;
type ReconcileStream = Pin<Box<dyn Stream<Item = Result<pb::ReconcileProgress, Status>> + Send + 'static>>;

fn terminal(status: &pb::EventStatus) -> bool {
    status.state != pb::EventState::InProgress as i32 && status.state != pb::EventState::Unspecified as i32
}

#[tonic::async_trait]
impl Lifecycle for LifecycleService {
    async fn submit_event(
        &self,
        request: Request<pb::SubmitEventRequest>,
    ) -> Result<Response<pb::SubmitEventResponse>, Status> {
        let caller = self.gate.check(&request, Method::SubmitEvent).await?;
        let request = request.into_inner();
        let source_system = request.event.as_ref().map(|e| e.source_system.as_str()).unwrap_or_default();
        self.gate.check_source(&caller, Method::SubmitEvent, source_system).await?;
        let event = validate(request.event.as_ref(), self.engine.policy()).map_err(EngineError::from)?;
        let outcome = self.engine.submit(event, caller.principal).await?;
        Ok(Response::new(pb::SubmitEventResponse { receipt: Some(receipt(&outcome.event, outcome.duplicate)) }))
    }

    async fn get_event(&self, request: Request<pb::GetEventRequest>) -> Result<Response<pb::EventStatus>, Status> {
        self.gate.check(&request, Method::GetEvent).await?;
        let event_id = request.into_inner().event_id;
        if event_id.is_empty() {
            return Err(Status::invalid_argument("event_id: is required"));
        }
        Ok(Response::new(self.status(&event_id).await?))
    }

    type WatchEventStream = StatusStream;

    async fn watch_event(&self, request: Request<pb::GetEventRequest>) -> Result<Response<StatusStream>, Status> {
        self.gate.check(&request, Method::WatchEvent).await?;
        let event_id = request.into_inner().event_id;
        if event_id.is_empty() {
            return Err(Status::invalid_argument("event_id: is required"));
        }
        let mut updates = self.engine.subscribe();
        let first = self.status(&event_id).await?;
        let service = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first.encode_to_vec();
            let done = terminal(&first);
            if tx.send(Ok(first)).await.is_err() || done {
                return;
            }
            loop {
                // Wake on a change to this event, or poll now and then.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        match updates.recv().await {
                            Ok(id) if id == event_id => break,
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                })
                .await;
                let status = match service.status(&event_id).await {
                    Ok(status) => status,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                };
                let encoded = status.encode_to_vec();
                if encoded == last {
                    continue;
                }
                last = encoded;
                let done = terminal(&status);
                if tx.send(Ok(status)).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn plan(&self, request: Request<pb::PlanRequest>) -> Result<Response<pb::PlanResponse>, Status> {
        self.gate.check(&request, Method::Plan).await?;
        let request = request.into_inner();
        let event = validate(request.event.as_ref(), self.engine.policy()).map_err(EngineError::from)?;
        let dry_run = self.engine.dry_run(&event).await?;
        Ok(Response::new(pb::PlanResponse {
            plan: Some(dry_run.plan),
            plan_hash: dry_run.plan_hash,
            policy_hash: dry_run.policy_hash,
        }))
    }

    async fn approve(&self, request: Request<pb::ApprovalRequest>) -> Result<Response<pb::ApprovalResponse>, Status> {
        Ok(Response::new(self.decide(request, true).await?))
    }

    async fn reject(&self, request: Request<pb::ApprovalRequest>) -> Result<Response<pb::ApprovalResponse>, Status> {
        Ok(Response::new(self.decide(request, false).await?))
    }

    async fn export_evidence(
        &self,
        request: Request<pb::ExportEvidenceRequest>,
    ) -> Result<Response<pb::ExportEvidenceResponse>, Status> {
        self.gate.check(&request, Method::ExportEvidence).await?;
        let event_id = request.into_inner().event_id;
        if event_id.is_empty() {
            return Err(Status::invalid_argument("event_id: is required"));
        }
        let store = self.engine.store();
        let event = store
            .event(&event_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| Status::not_found(format!("event {event_id:?} not found")))?;
        let tasks = in_plan_order(&event, store.tasks(&event_id).await.map_err(EngineError::from)?);
        let approvals = store.approvals(&event_id).await.map_err(EngineError::from)?;
        let audit = store.event_audit(&event_id).await.map_err(EngineError::from)?;
        let mut document = evidence_json(&event, &tasks, &approvals, &audit);
        let scheduled = crate::calendar::entries(store.as_ref(), &event).await.map_err(EngineError::from)?;
        document["calendar"] = crate::calendar::evidence_json(&event, &scheduled);
        document["leave"] = crate::leave::evidence_json(store.as_ref(), &event).await.map_err(EngineError::from)?;
        let json = serde_json::to_string_pretty(&document).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ExportEvidenceResponse { json }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.gate.check(&request, Method::VerifyAudit).await?;
        let verdict = verify_audit(self.engine.store().as_ref()).await.map_err(EngineError::from)?;
        let (first_broken_seq, reason) = verdict.broken.clone().unwrap_or_default();
        Ok(Response::new(pb::VerifyAuditResponse {
            intact: verdict.broken.is_none(),
            records: verdict.records,
            first_broken_seq: u64::try_from(first_broken_seq).unwrap_or_default(),
            reason,
        }))
    }

    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::ListOverdueResponse>, Status> {
        self.gate.check(&request, Method::ListOverdue).await?;
        let now = now_ms();
        let store = self.engine.store();
        let policy = self.engine.policy();
        let mut tasks = Vec::new();
        for record in store.overdue(now).await.map_err(EngineError::from)? {
            // The workflows that planned the task; their owners are who to
            // ask about a late task.
            let mut owners: Vec<String> = Vec::new();
            for workflow in &record.workflows {
                if let Some(owner) = policy.file.workflows.iter().find(|w| &w.name == workflow).map(|w| &w.owner) {
                    if !owners.contains(owner) {
                        owners.push(owner.clone());
                    }
                }
            }
            let late_until = record.finished_at.unwrap_or(now);
            tasks.push(pb::OverdueTask {
                event_id: record.event_id,
                person_id: record.person_id,
                target_id: record.target_id,
                state: record.state.to_proto() as i32,
                deadline_at: format_time(Some(record.deadline_at)),
                late_by_seconds: u64::try_from(late_until.saturating_sub(record.deadline_at) / 1000).unwrap_or(0),
                workflows: record.workflows,
                owners,
            });
        }
        Ok(Response::new(pb::ListOverdueResponse { tasks }))
    }

    type ReconcileStream = ReconcileStream;

    /// Thin: checks the caller (a report-only run needs `auditor` or
    /// `admin`, a remediating run `admin`), then streams what
    /// [`crate::reconcile::reconcile`] reports.
    async fn reconcile(&self, request: Request<pb::ReconcileRequest>) -> Result<Response<ReconcileStream>, Status> {
        let changes =
            request.get_ref().remediate || request.get_ref().link_unlinked || !request.get_ref().links.is_empty();
        let method = if changes { Method::Reconcile } else { Method::ReconcileReport };
        let caller = self.gate.check(&request, method).await?;
        let request = request.into_inner();
        let reconcile_request = crate::reconcile::ReconcileRequest {
            target_id: (!request.target_id.is_empty()).then_some(request.target_id),
            remediate: request.remediate,
            person_id_prefix: request.person_id_prefix,
            trigger: crate::reconcile::Trigger::OnDemand { principal: caller.principal },
            link_unlinked: request.link_unlinked,
            links: request.links,
            account_name_prefix: request.account_name_prefix,
        };
        let engine = self.engine.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel::<crate::reconcile::Progress>(64);
            let forward = tx.clone();
            let forwarder = tokio::spawn(async move {
                while let Some(progress) = progress_rx.recv().await {
                    let message = pb::ReconcileProgress {
                        target_id: progress.target_id,
                        phase: progress.phase.into(),
                        done: progress.done,
                        ..Default::default()
                    };
                    if forward.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            });
            let outcome = crate::reconcile::reconcile(&engine, &reconcile_request, &progress_tx).await;
            drop(progress_tx);
            let _ = forwarder.await;
            match outcome {
                Ok(reports) => {
                    for report in reports {
                        let message = match serde_json::to_string_pretty(&report) {
                            Ok(json) => Ok(pb::ReconcileProgress {
                                target_id: report.target_id.clone(),
                                phase: "report".into(),
                                done: report.counts.accounts_listed,
                                report_json: json,
                                drift_found: !report.clean,
                            }),
                            Err(error) => Err(Status::internal(error.to_string())),
                        };
                        if tx.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    let _ = tx.send(Err(Status::from(error))).await;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    /// Thin: `admin` only; see [`crate::baseline`].
    async fn load_identities(
        &self,
        request: Request<pb::LoadIdentitiesRequest>,
    ) -> Result<Response<pb::LoadIdentitiesResponse>, Status> {
        let caller = self.gate.check(&request, Method::LoadIdentities).await?;
        let response = crate::baseline::load(&self.engine, request.get_ref(), &caller.principal).await?;
        Ok(Response::new(response))
    }

    async fn submit_state(
        &self,
        request: Request<pb::SubmitStateRequest>,
    ) -> Result<Response<pb::SubmitStateResponse>, Status> {
        Ok(Response::new(crate::ingest::rpc::submit_state(&self.ingest, &self.gate, request).await?))
    }

    async fn submit_states(
        &self,
        request: Request<tonic::Streaming<pb::SubmitStatesRequest>>,
    ) -> Result<Response<pb::SubmitStatesResponse>, Status> {
        Ok(Response::new(crate::ingest::rpc::submit_states(&self.ingest, &self.gate, request).await?))
    }

    async fn list_held_batches(
        &self,
        request: Request<pb::ListHeldBatchesRequest>,
    ) -> Result<Response<pb::ListHeldBatchesResponse>, Status> {
        Ok(Response::new(crate::ingest::rpc::list_held(&self.ingest, &self.gate, request).await?))
    }

    async fn decide_held_batch(
        &self,
        request: Request<pb::DecideHeldBatchRequest>,
    ) -> Result<Response<pb::DecideHeldBatchResponse>, Status> {
        Ok(Response::new(crate::ingest::rpc::decide(&self.ingest, &self.gate, request).await?))
    }

    async fn start_campaign(
        &self,
        request: Request<pb::StartCampaignRequest>,
    ) -> Result<Response<pb::CampaignStatus>, Status> {
        let caller = self.gate.check(&request, Method::StartCampaign).await?;
        Ok(Response::new(crate::campaign::start(&self.engine, request.get_ref(), &caller.principal).await?))
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::CampaignStatus>, Status> {
        self.gate.check(&request, Method::GetCampaign).await?;
        Ok(Response::new(crate::campaign::status(&self.engine, &request.get_ref().campaign_id).await?))
    }

    async fn decide_campaign_item(
        &self,
        request: Request<pb::CampaignDecisionRequest>,
    ) -> Result<Response<pb::CampaignStatus>, Status> {
        let caller = self.gate.check(&request, Method::DecideCampaignItem).await?;
        Ok(Response::new(crate::campaign::decide(&self.engine, request.get_ref(), &caller.principal).await?))
    }

    async fn control_report(
        &self,
        request: Request<pb::ControlReportRequest>,
    ) -> Result<Response<pb::ControlReportResponse>, Status> {
        self.gate.check(&request, Method::ControlReport).await?;
        let report = crate::report::control_report(&self.engine, request.get_ref()).await?;
        Ok(Response::new(pb::ControlReportResponse { json: report.to_string() }))
    }
}
