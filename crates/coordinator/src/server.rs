//! The coordinator's gRPC server: the lifecycle service with gRPC health and
//! reflection, bound first so the address is known (port 0 in tests), and
//! shut down gracefully on a signal or on request.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use connector_kit::tls::ServerTlsFiles;

use crate::api::LifecycleService;
use crate::auth::Authentication;
use crate::engine::Engine;

/// The service name health reports under.
pub const LIFECYCLE_SERVICE_NAME: &str = "jml.v1.Lifecycle";

/// The server could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be loaded.
    #[error(transparent)]
    TlsFiles(#[from] connector_kit::tls::TlsFileError),
    /// Reflection or serving failed.
    #[error("server: {0}")]
    Transport(String),
}

/// A coordinator serving in the background.
pub struct RunningCoordinator {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), ServerError>>>,
}

impl RunningCoordinator {
    /// Binds `addr` and serves the lifecycle API of `engine` in plaintext,
    /// trusting the `x-jml-principal` header ([`Authentication::InsecureHeader`]):
    /// for tests and benchmarks only. Deployments use [`Self::bind_with`].
    pub async fn bind(addr: SocketAddr, engine: Engine) -> Result<Self, ServerError> {
        Self::bind_with(addr, engine, None, Authentication::InsecureHeader).await
    }

    /// Binds `addr` and serves the lifecycle API of `engine`, over TLS when
    /// `tls` is given, with callers identified as `authentication` says. With
    /// a client CA in `tls`, client certificates are *optional* (a caller may
    /// use a bearer token instead) but, when presented, must chain to it.
    pub async fn bind_with(
        addr: SocketAddr,
        engine: Engine,
        tls: Option<ServerTlsFiles>,
        authentication: Authentication,
    ) -> Result<Self, ServerError> {
        let tls_config = match &tls {
            Some(files) => Some(files.load()?.client_auth_optional(true)),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_service_status("", ServingStatus::Serving).await;
        health_reporter.set_service_status(LIFECYCLE_SERVICE_NAME, ServingStatus::Serving).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(jml_contract::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServerError::Transport(e.to_string()))?;
        let mut builder = Server::builder()
            .trace_fn(|request| tracing::info_span!("grpc.request", rpc.method = %request.uri().path()));
        if let Some(config) = tls_config {
            builder = builder.tls_config(config).map_err(|e| ServerError::Transport(e.to_string()))?;
        }
        let router = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(LifecycleService::new(engine, authentication).into_server());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await
                .map_err(|e| ServerError::Transport(e.to_string()))
        });
        Ok(Self { local_addr, shutdown: Some(shutdown_tx), serving: Some(serving) })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.serving.take() {
            Some(serving) => serving.await.map_err(|e| ServerError::Transport(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningCoordinator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
