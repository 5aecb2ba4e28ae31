//! An OTLP/gRPC trace receiver (the `opentelemetry-proto` service
//! definitions): what the tracing test (`tests/e2e/tracing.rs`) exports to
//! in-process, and, as the `otlp-receiver` binary, the trace backend of
//! `docker-compose.yml` (no Jaeger image can be pulled where this project is
//! built). It keeps every span, flattened to [`ReceivedSpan`]; the binary
//! prints each as one JSON line (service, name, ids, attributes) on stdout,
//! which `docker compose logs otlp-receiver` shows.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One exported span, flattened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedSpan {
    /// The exporting service (`service.name` of its resource).
    pub service: String,
    /// The span name.
    pub name: String,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; empty for a root.
    pub parent_span_id: String,
    /// The span's attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// Every string value anywhere in the span, its events and its resource.
    #[serde(skip)]
    pub values: Vec<String>,
}

/// The receiver: keeps every span it was sent, and prints each as one JSON
/// line on stdout when asked ([`Receiver::printing`]).
#[derive(Debug, Default, Clone)]
pub struct Receiver {
    /// Every span received, in arrival order.
    pub spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    print: bool,
}

impl Receiver {
    /// A receiver that also prints each span as a JSON line on stdout.
    pub fn printing() -> Self {
        Self { print: true, ..Self::default() }
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn flatten(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| flatten(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = flatten(&span.attributes);
                    let mut values: Vec<String> = attributes.values().cloned().collect();
                    values.extend(resource.values().cloned());
                    values.push(span.name.clone());
                    for event in &span.events {
                        values.push(event.name.clone());
                        values.extend(flatten(&event.attributes).into_values());
                    }
                    if let Some(status) = &span.status {
                        values.push(status.message.clone());
                    }
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes,
                        values,
                    });
                }
            }
        }
        if self.print {
            let mut out = std::io::stdout().lock();
            for span in &received {
                if let Ok(line) = serde_json::to_string(span) {
                    let _ = writeln!(out, "{line}");
                }
            }
            let _ = out.flush();
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(received);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the receiver on a free loopback port; answers its endpoint.
///
/// # Panics
/// When no loopback port can be bound (tests only).
pub async fn serve_receiver(receiver: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("receiver binds");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(serve(listener, receiver));
    format!("http://{addr}")
}

/// Serves the receiver on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, receiver: Receiver) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
}
