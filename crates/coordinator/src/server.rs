//! The coordinator's gRPC server: the lifecycle service on the kit's one
//! server builder ([`GrpcServer`]: gRPC health, reflection v1 and v1alpha,
//! a span per request), bound first so the address is known (port 0 in
//! tests), and shut down gracefully on a signal or on request.

use std::net::SocketAddr;

use tonic_health::ServingStatus;

use connector_kit::server::{BoundServer, GrpcServer, ServeError};
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
    /// Dropping it stops serving.
    bound: Option<BoundServer>,
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
        let server =
            GrpcServer::new().tls(tls_config).add_service(LifecycleService::new(engine, authentication).into_server());
        let health = server.health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        health.set_service_status(LIFECYCLE_SERVICE_NAME, ServingStatus::Serving).await;
        let bound = server.bind(addr).await.map_err(|error| match error {
            ServeError::Bind { addr, source } => ServerError::Bind { addr, source },
            ServeError::TlsFiles(error) => ServerError::TlsFiles(error),
            ServeError::Transport(message) => ServerError::Transport(message),
        })?;
        Ok(Self { local_addr: bound.local_addr(), bound: Some(bound) })
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
        match self.bound.take() {
            Some(bound) => bound.shutdown().await.map_err(|e| ServerError::Transport(e.to_string())),
            None => Ok(()),
        }
    }
}
