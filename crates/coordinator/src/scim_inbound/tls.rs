//! TLS of the SCIM endpoint: the coordinator's own certificate and key, and
//! its client CA (a client certificate is optional, as on the gRPC API, but
//! must chain to the CA when presented). Handshakes run off the accept loop
//! (each at most [`HANDSHAKE_TIMEOUT`]), so a slow client stalls no other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ScimServeError;
use connector_kit::tls::ServerTlsFiles;

/// Longest TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer of one connection: over TLS or not, and its verified client
/// certificate chain.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The connection is TLS.
    pub tls: bool,
    /// The verified client certificate chain, leaf first.
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Self {
        Self::default()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let certificates = stream.io().get_ref().1.peer_certificates().map(|c| Arc::new(c.to_vec()));
        Self { tls: true, certificates }
    }
}

/// The rustls server configuration from the coordinator's TLS files.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, ScimServeError> {
    let tls_error = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ScimServeError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .map_err(|e| tls_error("certificate", &files.certificate, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("certificate", &files.certificate, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|e| tls_error("private key", &files.private_key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ScimServeError::Tls(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error("client CA", ca, &e))? {
                roots
                    .add(cert.map_err(|e| tls_error("client CA", ca, &e))?)
                    .map_err(|e| tls_error("client CA", ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_error("client CA", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certificates, key).map_err(|e| tls_error("certificate", &files.certificate, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS sessions, handshaken off the
/// accept loop.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local_addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (sender, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "SCIM endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let ready = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, addr)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %addr, "SCIM endpoint: TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "SCIM endpoint: TLS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    break;
                }
            }
        });
        Self { local_addr, ready, _accepting: accepting }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
