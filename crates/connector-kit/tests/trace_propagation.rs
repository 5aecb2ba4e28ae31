//! W3C trace context crosses the gRPC hop: a connector's request span is a
//! child of the caller's span, in the same trace. (One test in this binary:
//! it installs the global subscriber.)

use std::sync::Arc;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_spans_are_children_of_the_callers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .try_init()
        .expect("subscriber");

    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(MemoryConnector::new("mem", target))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let desired = pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: "p1".into(), account_name: "alice".into() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    let dispatch = tracing::info_span!("dispatch", target = "mem");
    client.apply("c1", desired).instrument(dispatch.clone()).await.expect("apply");
    drop(dispatch);
    server.shutdown().await.expect("shutdown");
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().expect("spans");
    let dispatch = spans.iter().find(|s| s.name == "dispatch").expect("the caller's span was exported");
    let server_span = spans
        .iter()
        .find(|s| s.name.contains("/jml.v1.Connector/Apply"))
        .unwrap_or_else(|| panic!("no server span among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert_eq!(server_span.span_context.trace_id(), dispatch.span_context.trace_id(), "one trace");
    assert_eq!(
        server_span.parent_span_id,
        dispatch.span_context.span_id(),
        "the server span is the dispatch span's child"
    );
    let apply = spans.iter().find(|s| s.name == "connector.apply").expect("the adapter's apply span");
    assert_eq!(apply.parent_span_id, server_span.span_context.span_id());
}
