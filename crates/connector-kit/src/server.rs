//! The one server builder every connector binary uses.
//!
//! - gRPC health (`grpc.health.v1`) reports NOT_SERVING until the connector's
//!   own preflight against its target succeeds, and follows later preflights;
//! - gRPC reflection lists the contract and health services, as v1 and
//!   v1alpha, from the one builder every binary uses ([`GrpcServer`]);
//! - every request runs in a tracing span;
//! - optional TLS or mutual TLS from PEM files;
//! - binds first and returns the bound address (port 0 works in tests);
//! - shuts down gracefully on a signal or when [`RunningServer::shutdown`] is called.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Connector;
use crate::grpc::ConnectorService;
use crate::tls::ServerTlsFiles;

/// The service name health reports under, besides the overall "" entry.
pub const CONNECTOR_SERVICE_NAME: &str = "jml.v1.Connector";

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// TLS files could not be loaded.
    #[error(transparent)]
    TlsFiles(#[from] crate::tls::TlsFileError),
    /// The TLS or reflection configuration was refused, or serving failed.
    #[error("server: {0}")]
    Transport(String),
}

/// Builds a connector server.
pub struct ConnectorServer<C> {
    connector: Arc<C>,
    tls: Option<ServerTlsFiles>,
    preflight_interval: Duration,
}

impl<C: Connector> ConnectorServer<C> {
    /// A server for `connector`, plaintext until [`Self::tls`] is called.
    pub fn new(connector: C) -> Self {
        Self::from_arc(Arc::new(connector))
    }

    /// A server for a shared connector.
    pub fn from_arc(connector: Arc<C>) -> Self {
        Self { connector, tls: None, preflight_interval: Duration::from_secs(15) }
    }

    /// Serve TLS (mutual TLS when the files name a client CA).
    pub fn tls(mut self, files: Option<ServerTlsFiles>) -> Self {
        self.tls = files;
        self
    }

    /// How often the preflight re-runs once it has succeeded.
    pub fn preflight_interval(mut self, interval: Duration) -> Self {
        self.preflight_interval = interval;
        self
    }

    /// Binds `addr` and serves in the background.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningServer, ServeError> {
        let tls = match &self.tls {
            Some(files) => Some(files.load()?),
            None => None,
        };
        let server =
            GrpcServer::new().tls(tls).add_service(ConnectorService::new(self.connector.clone()).into_server());
        let health_reporter = server.health_reporter();
        health_reporter.set_service_status("", ServingStatus::NotServing).await;
        health_reporter.set_service_status(CONNECTOR_SERVICE_NAME, ServingStatus::NotServing).await;
        let bound = server.bind(addr).await?;

        let connector = self.connector.clone();
        let interval = self.preflight_interval;
        let preflight = tokio::spawn(async move {
            let mut serving = false;
            loop {
                let status = match connector.preflight().await {
                    Ok(()) => ServingStatus::Serving,
                    Err(error) => {
                        tracing::warn!(%error, "preflight against the target failed");
                        ServingStatus::NotServing
                    }
                };
                let now_serving = status == ServingStatus::Serving;
                crate::metrics::ConnectorMetrics::get().target_up.set(i64::from(now_serving));
                crate::metrics::set_ready(now_serving);
                if now_serving != serving {
                    tracing::info!(serving = now_serving, "health changed");
                }
                serving = now_serving;
                health_reporter.set_service_status("", status).await;
                health_reporter.set_service_status(CONNECTOR_SERVICE_NAME, status).await;
                tokio::time::sleep(if serving { interval } else { Duration::from_millis(500) }).await;
            }
        });

        Ok(RunningServer { local_addr: bound.local_addr(), bound: Some(bound), preflight })
    }
}

/// The one gRPC server builder every binary uses (the connectors through
/// [`ConnectorServer`], the coordinator directly): gRPC health
/// (`grpc.health.v1`) and reflection, served as both `grpc.reflection.v1`
/// and `grpc.reflection.v1alpha` (Python's `grpc_reflection` client, Postman
/// and older `grpcurl` ask for v1alpha), over the contract and health
/// descriptors; a span per request, continuing the caller's W3C trace
/// context; optional TLS; bound first so the address is known (port 0 in
/// tests); graceful shutdown through [`BoundServer`].
pub struct GrpcServer {
    routes: tonic::service::RoutesBuilder,
    tls: Option<ServerTlsConfig>,
    health: HealthReporter,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    /// A plaintext server with health registered (every service reported
    /// under it starts SERVING unless set otherwise through
    /// [`Self::health_reporter`]).
    pub fn new() -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health_service);
        Self { routes, tls: None, health }
    }

    /// Serve TLS with this configuration; plaintext when `None`.
    pub fn tls(mut self, config: Option<ServerTlsConfig>) -> Self {
        self.tls = config;
        self
    }

    /// Adds a gRPC service.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self
    }

    /// The health reporter, to set each service's serving status.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Binds `addr` and serves in the background.
    pub async fn bind(mut self, addr: SocketAddr) -> Result<BoundServer, ServeError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(jml_contract::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let transport = |e: tonic_reflection::server::Error| ServeError::Transport(e.to_string());
        self.routes.add_service(reflection().build_v1().map_err(transport)?);
        self.routes.add_service(reflection().build_v1alpha().map_err(transport)?);

        let mut builder = Server::builder()
            .trace_fn(|request| tracing::info_span!("grpc.request", rpc.method = %request.uri().path()));
        if let Some(config) = self.tls {
            builder = builder.tls_config(config).map_err(|e| ServeError::Transport(e.to_string()))?;
        }
        let router = builder.layer(crate::telemetry::ServerTraceLayer).add_routes(self.routes.routes());

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await
                .map_err(|e| ServeError::Transport(e.to_string()))
        });
        Ok(BoundServer { local_addr, shutdown: Some(shutdown_tx), serving: Some(serving) })
    }
}

/// A [`GrpcServer`] serving in the background.
pub struct BoundServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), ServeError>>>,
}

impl BoundServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.serving.take() {
            Some(serving) => serving.await.map_err(|e| ServeError::Transport(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for BoundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A connector server running in the background.
pub struct RunningServer {
    local_addr: SocketAddr,
    bound: Option<BoundServer>,
    preflight: JoinHandle<()>,
}

impl RunningServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR`, for a plaintext client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.preflight.abort();
        match self.bound.take() {
            Some(bound) => bound.shutdown().await,
            None => Ok(()),
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn serve_until_signal(self) -> Result<(), ServeError> {
        shutdown_signal().await;
        tracing::info!("signal received, shutting down");
        self.shutdown().await
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // The bound server's own drop stops serving.
        self.preflight.abort();
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
