//! The command line every connector binary shares, and the few lines of
//! `main` it leaves to each connector.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::Connector;
use crate::server::{ConnectorServer, ServeError};
use crate::tls::ServerTlsFiles;

/// Flags every connector binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The connector's configuration file.
    #[arg(long, env = "JML_CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "JML_CONNECTOR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long, env = "JML_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "JML_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA that the coordinator's client certificate must chain to (mutual TLS).
    #[arg(long, env = "JML_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address to serve Prometheus metrics on (`GET /metrics`); off when unset.
    #[arg(long, env = "JML_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve without TLS. Only for local development; logs a warning.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
}

impl ServeArgs {
    /// The TLS files, or an error when neither TLS nor plaintext was chosen.
    pub fn tls_files(&self) -> Result<Option<ServerTlsFiles>, ServeError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(certificate), Some(private_key)) => Ok(Some(ServerTlsFiles {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            _ if self.insecure_plaintext => {
                tracing::warn!("serving plaintext gRPC (--insecure-plaintext): do not use outside local development");
                Ok(None)
            }
            _ => Err(ServeError::Transport(
                "no TLS configured: pass --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or --insecure-plaintext"
                    .into(),
            )),
        }
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
