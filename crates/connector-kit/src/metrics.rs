//! Prometheus metrics for every binary of the mesh, in the text exposition
//! format on an HTTP endpoint (`GET /metrics`).
//!
//! One process-wide [`registry`]; each binary registers its own families into
//! it (the coordinator its propagation metrics, connectors get
//! [`ConnectorMetrics`] from the gRPC adapter for free) and calls [`serve`].

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The process-wide registry.
pub fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// Registers a metric family in the process-wide registry.
pub fn register<M: prometheus_client::registry::Metric + Clone>(name: &str, help: &str, metric: &M) {
    if let Ok(mut registry) = registry().lock() {
        registry.register(name, help, metric.clone());
    }
}

/// The whole registry in the Prometheus text format.
pub fn encode() -> String {
    let mut text = String::new();
    if let Ok(registry) = registry().lock() {
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    }
    text
}

/// Latency buckets from 1 ms to about 65 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

/// Labels of a connector call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `describe`, `apply`, `read` or `list`.
    pub operation: &'static str,
    /// `ok` or the error kind.
    pub outcome: &'static str,
}

/// Labels naming an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `describe`, `apply`, `read` or `list`.
    pub operation: &'static str,
}

/// What every connector exports.
#[derive(Clone)]
pub struct ConnectorMetrics {
    /// `jml_connector_calls_total{operation,outcome}`.
    pub calls: Family<CallLabels, Counter>,
    /// `jml_connector_call_duration_seconds{operation}`.
    pub duration: Family<OperationLabels, Histogram>,
    /// `jml_connector_changes_total`: changes made on the target.
    pub changes: Counter,
    /// `jml_connector_target_up`: 1 while the last preflight succeeded.
    pub target_up: Gauge,
}

impl ConnectorMetrics {
    /// The process-wide connector metrics, registered on first use.
    pub fn get() -> &'static Self {
        static METRICS: OnceLock<ConnectorMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let metrics = Self {
                calls: Family::default(),
                duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
                changes: Counter::default(),
                target_up: Gauge::default(),
            };
            register("jml_connector_calls", "Connector calls by operation and outcome", &metrics.calls);
            register("jml_connector_call_duration_seconds", "Connector call latency by operation", &metrics.duration);
            register("jml_connector_changes", "Changes made on the target", &metrics.changes);
            register(
                "jml_connector_target_up",
                "1 while the last preflight against the target succeeded",
                &metrics.target_up,
            );
            metrics
        })
    }

    /// Records one call.
    pub fn observe(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.calls.get_or_create(&CallLabels { operation, outcome }).inc();
        self.duration.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
    }
}

static READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets what `GET /readyz` answers. The connector server sets it from every
/// preflight, so it mirrors the gRPC health status.
pub fn set_ready(ready: bool) {
    READY.store(ready, std::sync::atomic::Ordering::SeqCst);
}

/// Serves, in the background, on `addr`:
/// - `GET /metrics`: the registry in the Prometheus text format;
/// - `GET /healthz`: 200 while the process runs (liveness);
/// - `GET /readyz`: 200 while ready (for a connector: the last preflight
///   against its target succeeded, as gRPC health says), else 503.
///
/// The HTTP probes exist because kubelet's gRPC probes cannot present the
/// client certificate that mutual TLS on the gRPC port demands.
///
/// Returns the bound address.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async {
                ([(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], encode())
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(|| async {
                if READY.load(std::sync::atomic::Ordering::SeqCst) {
                    (http::StatusCode::OK, "ready")
                } else {
                    (http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    Ok(local)
}
