//! Logging, distributed tracing and W3C trace-context propagation, shared by
//! every binary of the mesh.
//!
//! - [`init`] installs human-readable logs on stderr (filtered by `RUST_LOG`)
//!   and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, an OTLP/gRPC span exporter
//!   configured by the standard `OTEL_*` variables (`OTEL_SERVICE_NAME`,
//!   `OTEL_TRACES_SAMPLER`, ...). Unset means no export and no error.
//! - [`ServerTraceLayer`] and [`ClientTraceLayer`] are tower layers carrying
//!   the W3C `traceparent` in gRPC metadata: the client side injects the
//!   current span's context into every outgoing call, the server side opens
//!   each request's span as a child of the caller's. Handlers need no code.

use std::task::{Context, Poll};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The installed trace provider, kept so [`shutdown`] can flush it.
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Flushes pending spans and stops the exporter. Call once before exiting
/// (`connector_kit::cli::serve` does); harmless when nothing was installed.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    }
}

fn export_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
        && std::env::var("OTEL_TRACES_EXPORTER").map(|v| v != "none").unwrap_or(true)
}

fn tracer_provider(service_name: &str, endpoint: Option<&str>) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.to_owned());
    }
    let exporter = builder.build().map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// Installs the global subscriber and, when configured, the OTLP exporter.
/// Safe to call twice; the second call installs nothing. Call [`shutdown`]
/// before exiting to flush the last spans.
pub fn init(service_name: &str) {
    install(service_name, None);
}

/// As [`init`], exporting spans over OTLP/gRPC to `endpoint` whatever the
/// environment says (the other `OTEL_*` variables still apply). For
/// benchmarks and tests that run their own receiver.
pub fn init_with_otlp_endpoint(service_name: &str, endpoint: &str) {
    install(service_name, Some(endpoint));
}

fn install(service_name: &str, endpoint: Option<&str>) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let (provider, otel_error) = if endpoint.is_some() || export_configured() {
        match tracer_provider(service_name, endpoint) {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        }
    } else {
        (None, None)
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service_name.to_owned())));
    let installed = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init().is_ok();
    if let Some(error) = otel_error {
        tracing::warn!(%error, "OTLP trace export is configured but could not start; continuing without it");
    }
    if let (Some(provider), true) = (provider, installed) {
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = PROVIDER.set(provider);
        tracing::info!(service = service_name, "exporting traces over OTLP");
    }
}

/// The W3C trace id of the current span, if it has one (for status and evidence).
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::header::HeaderName::from_bytes(key.as_bytes()), http::header::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::header::HeaderName::as_str).collect()
    }
}

/// Injects the current span's trace context into outgoing request headers.
pub fn inject_trace_context(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The caller's trace context from incoming request headers.
pub fn extract_trace_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Server side: each request runs in a span whose parent is the caller's.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service [`ServerTraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let parent = extract_trace_context(request.headers());
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %path,
        );
        let _ = span.set_parent(parent);
        self.inner.call(request).instrument(span)
    }
}

/// Client side: injects the current span's context into every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

/// The service [`ClientTraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ClientTrace<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        inject_trace_context(request.headers_mut());
        self.inner.call(request)
    }
}
