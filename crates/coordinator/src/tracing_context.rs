//! One trace per lifecycle event, across restarts and across the mesh.
//!
//! - [`event_span`] opens the event's root span on submit (a new trace, never
//!   the caller's request trace); [`stored_trace_context`] gives the W3C
//!   `traceparent` of that span, which is stored with the event (the events
//!   table's `trace_id` column), so tasks dispatched later, even by another
//!   process after a restart, join the same trace. [`trace_id_of`] is the
//!   trace id inside it: what `jmlctl status` and the evidence show.
//! - [`DispatchSpans`] keeps one `dispatch` span per (event, target) while the
//!   task is live in this process: every attempt runs in it, retries are span
//!   events, and the span ends with the task. Its parent is the stored
//!   context of the event.
//! - [`connector_call`] runs one connector call (describe, apply, read-back)
//!   in a child span of the dispatch span. The kit's `ClientTraceLayer`
//!   injects that span's context into the gRPC metadata, so the connector's
//!   spans are its children.
//! - [`approval_wait`] records the time a task waited for approval as a span
//!   from submit to the decision.
//!
//! Span attributes are identifiers only: event id, person id, workflow names,
//! event kind, target, command id, error kinds. Never names, attribute values
//! or secrets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector_kit::ConnectorError;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer};
use opentelemetry::{Context, KeyValue};
use rand::Rng;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::event::{ValidEvent, kind_name};
use crate::store::{Store, TaskRecord, TaskState};

/// The root span of a lifecycle event: a new trace. The workflows are
/// recorded once planned ([`record_workflows`]).
pub fn event_span(event: &ValidEvent) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "lifecycle.event",
        otel.kind = "server",
        event.id = %event.event_id,
        person.id = %event.person_id,
        event.kind = kind_name(event.kind),
        workflows = tracing::field::Empty,
    )
}

/// The current span when it is the root span of `event` (a submit), else a
/// new root span for it (an event planned elsewhere, e.g. a remediation).
pub fn current_event_span(event: &ValidEvent) -> tracing::Span {
    let current = tracing::Span::current();
    if current.metadata().is_some_and(|metadata| metadata.name() == "lifecycle.event") {
        current
    } else {
        event_span(event)
    }
}

/// Records the matched workflows (their names) on the event's root span.
pub fn record_workflows(span: &tracing::Span, plan: &jml_contract::v1::Plan) {
    let names: Vec<&str> = plan.workflows.iter().map(|w| w.name.as_str()).collect();
    span.record("workflows", names.join(",").as_str());
}

/// The planning step of an event.
pub fn plan_span() -> tracing::Span {
    tracing::info_span!("lifecycle.plan")
}

/// The W3C `traceparent` of `span`, stored with the event. Without trace
/// export there is no OpenTelemetry context: a random, unsampled one is
/// made, so every event still has a trace id to quote.
pub fn stored_trace_context(span: &tracing::Span) -> String {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        return traceparent(span_context.trace_id(), span_context.span_id(), span_context.trace_flags());
    }
    let mut rng = rand::rng();
    let trace_id = TraceId::from(rng.random::<u128>().max(1));
    let span_id = SpanId::from(rng.random::<u64>().max(1));
    traceparent(trace_id, span_id, TraceFlags::default())
}

fn traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8())
}

/// The trace id in a stored trace context (the whole value when it is a
/// bare trace id, as stored before trace contexts were).
pub fn trace_id_of(stored: &str) -> &str {
    match parse(stored) {
        Some(_) => stored.get(3..35).unwrap_or(stored),
        None => stored,
    }
}

fn parse(stored: &str) -> Option<SpanContext> {
    let mut parts = stored.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    context.is_valid().then_some(context)
}

/// The OpenTelemetry parent context for a stored trace context.
pub fn parent_context(stored: &str) -> Option<Context> {
    parse(stored).map(|span_context| Context::new().with_remote_span_context(span_context))
}

/// Records the wait for approval of a task as a span from the event's
/// receipt to the decision, in the event's trace.
pub fn approval_wait(stored: &str, event_id: &str, target_id: &str, decision: &str, received_at_ms: i64) {
    let Some(parent) = parent_context(stored) else { return };
    let tracer = opentelemetry::global::tracer("coordinator");
    let start = UNIX_EPOCH + Duration::from_millis(u64::try_from(received_at_ms).unwrap_or(0));
    let mut span = tracer
        .span_builder("lifecycle.approval_wait")
        .with_start_time(start.min(SystemTime::now()))
        .with_attributes([
            KeyValue::new("event.id", event_id.to_owned()),
            KeyValue::new("target", target_id.to_owned()),
            KeyValue::new("approval.decision", decision.to_owned()),
        ])
        .start_with_context(&tracer, &parent);
    opentelemetry::trace::Span::end(&mut span);
}

/// Event trace contexts by event id (filled on submit, loaded from the store
/// after a restart) and the live dispatch span of every task.
#[derive(Debug, Default)]
pub struct DispatchSpans {
    event_contexts: Mutex<HashMap<String, String>>,
    live: Mutex<HashMap<(String, String), tracing::Span>>,
}

/// Remembered trace contexts at most; beyond it the cache starts afresh
/// (a miss costs one store read).
const REMEMBERED_EVENTS: usize = 100_000;

impl DispatchSpans {
    /// Remembers the stored trace context of a newly accepted event.
    pub fn remember(&self, event_id: &str, stored: &str) {
        if let Ok(mut contexts) = self.event_contexts.lock() {
            if contexts.len() >= REMEMBERED_EVENTS {
                contexts.clear();
            }
            contexts.insert(event_id.to_owned(), stored.to_owned());
        }
    }

    async fn event_context(&self, store: &dyn Store, event_id: &str) -> Option<String> {
        let known = self.event_contexts.lock().ok().and_then(|contexts| contexts.get(event_id).cloned());
        if known.is_some() {
            return known;
        }
        let stored = store.event(event_id).await.ok().flatten()?.trace_id;
        self.remember(event_id, &stored);
        Some(stored)
    }

    /// The dispatch span of `task`: the live one, or a new one parented to
    /// the event's stored trace context.
    pub async fn dispatch_span(&self, store: &dyn Store, task: &TaskRecord) -> tracing::Span {
        let key = (task.event_id.clone(), task.target_id.clone());
        if let Some(span) = self.live.lock().ok().and_then(|live| live.get(&key).cloned()) {
            return span;
        }
        let stored = self.event_context(store, &task.event_id).await;
        let span = tracing::info_span!(
            parent: None,
            "lifecycle.dispatch",
            otel.kind = "client",
            event.id = %task.event_id,
            person.id = %task.person_id,
            target = %task.target_id,
            workflows = %task.planned.workflows.join(","),
            command.id = %task.command_id,
            resumed = task.attempts > 0,
            outcome = tracing::field::Empty,
        );
        if let Some(parent) = stored.as_deref().and_then(parent_context) {
            let _ = span.set_parent(parent);
        }
        if let Ok(mut live) = self.live.lock() {
            live.insert(key, span.clone());
        }
        span
    }

    /// After an attempt: a retry becomes an event on the dispatch span; a
    /// finished task ends its span with the outcome.
    pub fn after_attempt(&self, task: &TaskRecord, error_kind: &str) {
        let key = (task.event_id.clone(), task.target_id.clone());
        let Some(span) = self.live.lock().ok().and_then(|live| live.get(&key).cloned()) else { return };
        if task.state.is_terminal() {
            span.record("outcome", task.state.as_str());
            if task.state == TaskState::Failed {
                span.set_status(opentelemetry::trace::Status::error(error_kind.to_owned()));
            }
            if let Ok(mut live) = self.live.lock() {
                live.remove(&key);
            }
        } else if task.next_attempt_at.is_some() {
            span.add_event(
                "retry_scheduled",
                vec![
                    KeyValue::new("attempt", i64::from(task.attempts)),
                    KeyValue::new("error.kind", error_kind.to_owned()),
                    KeyValue::new(
                        "retry.delay_ms",
                        task.next_attempt_at.map(|at| at - crate::event::now_ms()).unwrap_or_default(),
                    ),
                ],
            );
        }
    }

    /// The trace id of a remembered event (metrics exemplars).
    pub fn trace_id(&self, event_id: &str) -> Option<String> {
        let contexts = self.event_contexts.lock().ok()?;
        contexts.get(event_id).map(|stored| trace_id_of(stored).to_owned())
    }

    /// Ends the dispatch span of a task settled outside a worker (superseded).
    pub fn forget(&self, event_id: &str, target_id: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&(event_id.to_owned(), target_id.to_owned()));
        }
    }
}

/// After a worker's attempt: metrics (verification latency, retries,
/// failures, a deadline passed during the attempt) and the dispatch span.
pub fn task_settled(spans: &DispatchSpans, task: &TaskRecord, breached_before: bool, error_kind: &str) {
    let metrics = crate::metrics::CoordinatorMetrics::get();
    let now = crate::event::now_ms();
    match task.state {
        TaskState::Verified => metrics.verified(task, now, spans.trace_id(&task.event_id).as_deref()),
        TaskState::VerifiedWithResidualRisk => {
            metrics.verified_with_residual_risk(
                task,
                &task.residual_risks,
                now,
                spans.trace_id(&task.event_id).as_deref(),
            );
        }
        TaskState::Failed => metrics.failure(&task.target_id, error_kind),
        _ if task.next_attempt_at.is_some() => metrics.retry(&task.target_id, error_kind),
        _ => {}
    }
    if task.deadline_breached && !breached_before {
        metrics.deadline_breached(task);
    }
    spans.after_attempt(task, error_kind);
}

/// Runs one call to a target's connector in a child span of the current
/// (dispatch) span, named `coordinator.<operation>`, and records its latency
/// by operation.
pub async fn connector_call<T>(
    target: &str,
    operation: &'static str,
    call: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    let span = tracing::info_span!(
        "connector.call",
        otel.name = %format_args!("coordinator.{operation}"),
        otel.kind = "client",
        target = %target,
        operation = operation,
    );
    let started = Instant::now();
    let result = call.instrument(span).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.kind.as_str(),
    };
    crate::metrics::CoordinatorMetrics::get().connector_call(target, operation, outcome, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_context_gives_its_trace_id_and_a_parent() {
        let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(stored), "4bf92f3577b34da6a3ce929d0e0e4736");
        let parent = parent_context(stored).expect("a valid context");
        let span = parent.span();
        let span_context = span.span_context();
        assert_eq!(span_context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span_context.is_sampled());
    }

    #[test]
    fn a_bare_or_malformed_value_is_shown_as_is_and_parents_nothing() {
        for stored in ["4bf92f3577b34da6a3ce929d0e0e4736", "00-zz-00f067aa0ba902b7-01", ""] {
            assert_eq!(trace_id_of(stored), stored);
            assert!(parent_context(stored).is_none());
        }
    }

    #[test]
    fn without_export_a_random_unsampled_context_is_made() {
        let stored = stored_trace_context(&tracing::Span::none());
        let parsed = parse(&stored).expect("a valid traceparent");
        assert!(!parsed.is_sampled());
        assert_ne!(stored, stored_trace_context(&tracing::Span::none()));
    }
}
