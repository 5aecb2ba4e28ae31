//! The connection to the coordinator: credentials (bearer token, client
//! certificate, TLS towards `https://`), set once from the global flags,
//! and the client every command connects with.

use jml_contract::v1::lifecycle_client::LifecycleClient;
use tonic::transport::Channel;

use crate::Cli;
use crate::failure::{Failure, bad_input};

/// How this process authenticates to the coordinator, set once from the flags.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `Bearer TOKEN`, marked sensitive so it is never logged.
    pub authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// The `x-jml-principal` header for an `--insecure-no-auth` coordinator.
    pub principal: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// TLS towards the coordinator.
    pub tls: Option<connector_kit::tls::ClientTlsFiles>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer_token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        if let Some(value) = &self.principal
            && !request.metadata().contains_key(coordinator::api::PRINCIPAL_HEADER)
        {
            request.metadata_mut().insert(coordinator::api::PRINCIPAL_HEADER, value.clone());
        }
        Ok(request)
    }
}

pub static CREDENTIALS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();

impl Credentials {
    pub fn from_cli(cli: &Cli) -> Result<Self, Failure> {
        let authorization = match &cli.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| bad_input(format!("--token-file {}: {e}", path.display())))?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(bad_input(format!("--token-file {}: the file is empty", path.display())));
                }
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {token}").parse().map_err(|_| {
                        bad_input(format!("--token-file {}: the token is not printable ASCII", path.display()))
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let principal = match &cli.principal {
            None => None,
            Some(principal) => Some(principal.parse().map_err(|_| bad_input("--principal: not a valid header value"))?),
        };
        let tls = match &cli.ca {
            None if cli.coordinator.starts_with("https://") => {
                return Err(bad_input("an https:// coordinator needs --ca (or JML_CA_FILE)"));
            }
            None => None,
            Some(ca) => {
                let uri: tonic::transport::Uri =
                    cli.coordinator.parse().map_err(|e| bad_input(format!("--coordinator: {e}")))?;
                let server_name = cli
                    .tls_server_name
                    .clone()
                    .or_else(|| uri.host().map(str::to_owned))
                    .ok_or_else(|| bad_input("--coordinator has no host; pass --tls-server-name"))?;
                Some(connector_kit::tls::ClientTlsFiles {
                    server_ca: ca.clone(),
                    server_name,
                    identity: cli.cert.clone().zip(cli.key.clone()),
                })
            }
        };
        if tls.is_none() && authorization.is_some() {
            eprintln!("jmlctl: warning: sending a bearer token without TLS");
        }
        Ok(Self { authorization, principal, tls })
    }
}

pub type Client = LifecycleClient<tonic::service::interceptor::InterceptedService<Channel, Credentials>>;

pub async fn connect(url: &str) -> Result<Client, Failure> {
    let credentials = CREDENTIALS.get().cloned().unwrap_or_default();
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad_input(format!("--coordinator {url:?}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = &credentials.tls {
        let config = tls.load().map_err(|e| bad_input(e.to_string()))?;
        endpoint = endpoint.tls_config(config).map_err(|e| bad_input(format!("TLS: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Failure { code: 3, message: format!("coordinator unreachable at {url}: {e}") })?;
    // A reconciliation report of every account of a large target is one
    // message (6 MiB for 10,000 orphans): past tonic's default 4 MiB.
    Ok(LifecycleClient::with_interceptor(channel, credentials).max_decoding_message_size(256 << 20))
}

pub fn with_principal<T>(message: T, principal: &Option<String>) -> Result<tonic::Request<T>, Failure> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = principal {
        let value = principal.parse().map_err(|_| bad_input("--principal: not a valid header value"))?;
        request.metadata_mut().insert(coordinator::api::PRINCIPAL_HEADER, value);
    }
    Ok(request)
}
