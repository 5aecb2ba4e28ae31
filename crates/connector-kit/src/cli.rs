//! The command line every connector binary shares, and the few lines of
//! `main` it leaves to each connector.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::Connector;
use crate::server::{ConnectorServer, ServeError};
use crate::tls::ServerTlsFiles;

/// How a gRPC server is secured: the flags the connectors and the
/// coordinator's lifecycle API share (flattened into their parsers).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsServerArgs {
    /// Server certificate chain (PEM).
    #[arg(long, env = "JML_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "JML_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA that client certificates must chain to: mutual TLS for a
    /// connector (the coordinator's certificate), an optional
    /// authentication method for the lifecycle API.
    #[arg(long, env = "JML_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve without TLS. Only for local development; logs a warning.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
}

/// Neither TLS files nor `--insecure-plaintext` were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no TLS configured: pass --tls-cert and --tls-key (and --tls-client-ca for client certificates), or --insecure-plaintext"
)]
pub struct NoTlsChosen;

impl TlsServerArgs {
    /// The TLS files; `None` when plaintext was chosen (the caller logs its
    /// own warning); an error when neither was.
    pub fn files(&self) -> Result<Option<ServerTlsFiles>, NoTlsChosen> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(certificate), Some(private_key)) => Ok(Some(ServerTlsFiles {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            _ if self.insecure_plaintext => Ok(None),
            _ => Err(NoTlsChosen),
        }
    }
}

/// Flags every connector binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The connector's configuration file.
    #[arg(long, env = "JML_CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "JML_CONNECTOR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// TLS of the connector's gRPC server.
    #[command(flatten)]
    pub tls: TlsServerArgs,
    /// Address to serve Prometheus metrics on (`GET /metrics`); off when unset.
    #[arg(long, env = "JML_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeArgs {
    /// The TLS files, or an error when neither TLS nor plaintext was chosen.
    pub fn tls_files(&self) -> Result<Option<ServerTlsFiles>, ServeError> {
        let files = self.tls.files().map_err(|error| ServeError::Transport(error.to_string()))?;
        if files.is_none() {
            tracing::warn!("serving plaintext gRPC (--insecure-plaintext): do not use outside local development");
        }
        Ok(files)
    }
}

/// Serves `connector` as the flags say, prints `listening on ADDR` on stdout
/// once bound (scripts and tests read it to find a port-0 address), and runs
/// until SIGTERM or SIGINT.
pub async fn serve<C: Connector>(args: &ServeArgs, connector: C) -> Result<(), ServeError> {
    let running = ConnectorServer::new(connector).tls(args.tls_files()?).bind(args.listen).await?;
    if let Some(addr) = args.metrics_listen {
        let bound = crate::metrics::serve(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", running.local_addr());
    let _ = stdout.flush();
    tracing::info!(addr = %running.local_addr(), "connector serving");
    let result = running.serve_until_signal().await;
    crate::telemetry::shutdown();
    result
}
