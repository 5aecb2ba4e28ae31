//! TLS and mutual TLS from PEM files, for connector servers and their clients.
//! rustls underneath (through tonic's `tls-ring` feature).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A TLS file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} from {}: {source}", path.display())]
pub struct TlsFileError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError { what, path: path.to_owned(), source })
}

/// A server's TLS files. With `client_ca` set, clients must present a
/// certificate signed by it (mutual TLS).
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// The server certificate chain (PEM).
    pub certificate: PathBuf,
    /// The server private key (PEM).
    pub private_key: PathBuf,
    /// The CA that client certificates must chain to (PEM).
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// Loads the files into a tonic server TLS config.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsFileError> {
        let identity =
            Identity::from_pem(read("certificate", &self.certificate)?, read("private key", &self.private_key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?)).client_auth_optional(false);
        }
        Ok(config)
    }
}

/// A client's TLS files.
#[derive(Debug, Clone)]
pub struct ClientTlsFiles {
    /// The CA the server certificate must chain to (PEM).
    pub server_ca: PathBuf,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// The client certificate and key for mutual TLS (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// Loads the files into a tonic client TLS config.
    pub fn load(&self) -> Result<ClientTlsConfig, TlsFileError> {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("server CA", &self.server_ca)?))
            .domain_name(self.server_name.clone());
        if let Some((certificate, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read("certificate", certificate)?, read("private key", key)?));
        }
        Ok(config)
    }
}
