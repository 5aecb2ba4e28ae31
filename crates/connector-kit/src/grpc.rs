//! The gRPC adapter: serves any [`Connector`] as `jml.v1.Connector`.
//!
//! It validates every request against the connector's `Describe` (see
//! [`crate::validate`]), remembers recent command ids so that a command id
//! reused with a different desired state is refused, fills the command id into
//! each acknowledgement, and maps [`ConnectorError`] to `tonic::Status` through
//! its one mapping ([`ConnectorError::to_status`]). It fences stale lease
//! epochs ([`crate::fence`]) and says so in `Describe`
//! (`capabilities.lease_epoch_fencing`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jml_contract::v1 as pb;
use jml_contract::v1::connector_server::{self, ConnectorServer as GeneratedServer};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::fence::FenceBook;
use crate::metrics::ConnectorMetrics;
use crate::{Connector, ConnectorError, correlation, validate};

/// How many recent command ids the adapter remembers per process.
const REMEMBERED_COMMANDS: usize = 65_536;
/// Default and largest `List` page size.
const DEFAULT_PAGE_SIZE: u32 = 500;
const MAX_PAGE_SIZE: u32 = 5_000;

/// Recent command ids and the digest of the desired state each carried.
#[derive(Default)]
struct CommandLedger {
    digests: HashMap<String, [u8; 32]>,
    order: VecDeque<String>,
}

impl CommandLedger {
    /// Records `command_id` with `digest`; refuses a known id with another digest.
    fn admit(&mut self, command_id: &str, digest: [u8; 32]) -> Result<(), ConnectorError> {
        if let Some(known) = self.digests.get(command_id) {
            if *known != digest {
                return Err(ConnectorError::invalid_argument(
                    "command_id",
                    "this command id was already used with a different desired state",
                ));
            }
            return Ok(());
        }
        if self.order.len() >= REMEMBERED_COMMANDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.digests.remove(&oldest);
        }
        self.digests.insert(command_id.to_owned(), digest);
        self.order.push_back(command_id.to_owned());
        Ok(())
    }

    fn forget(&mut self, command_id: &str) {
        if self.digests.remove(command_id).is_some() {
            self.order.retain(|id| id != command_id);
        }
    }
}

/// The gRPC service for one connector.
pub struct ConnectorService<C> {
    connector: Arc<C>,
    description: pb::DescribeResponse,
    ledger: Mutex<CommandLedger>,
    fence: FenceBook,
}

impl<C: Connector> ConnectorService<C> {
    /// Wraps a connector.
    pub fn new(connector: Arc<C>) -> Self {
        let mut description = connector.describe();
        // Every connector served here fences stale lease epochs (crate::fence).
        description.capabilities.get_or_insert_default().lease_epoch_fencing = true;
        Self { connector, description, ledger: Mutex::new(CommandLedger::default()), fence: FenceBook::default() }
    }

    /// The tonic server for this service, with generous message limits for `List` pages.
    pub fn into_server(self) -> GeneratedServer<Self> {
        GeneratedServer::new(self).max_decoding_message_size(1 << 20).max_encoding_message_size(64 << 20)
    }

    fn admit(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        link: Option<&pb::LinkAccount>,
    ) -> Result<(), ConnectorError> {
        let mut hasher = Sha256::new();
        hasher.update(desired.encode_to_vec());
        if let Some(link) = link {
            hasher.update(b"link");
            hasher.update(link.encode_to_vec());
        }
        let digest: [u8; 32] = hasher.finalize().into();
        self.ledger.lock().map_err(|_| ConnectorError::internal("command ledger poisoned"))?.admit(command_id, digest)
    }
}

#[tonic::async_trait]
impl<C: Connector> connector_server::Connector for ConnectorService<C> {
    async fn describe(&self, _request: Request<pb::DescribeRequest>) -> Result<Response<pb::DescribeResponse>, Status> {
        ConnectorMetrics::get().observe("describe", "ok", Duration::ZERO);
        Ok(Response::new(self.description.clone()))
    }

    #[tracing::instrument(name = "connector.apply", skip_all, fields(command_id, person_id))]
    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let request = request.into_inner();
        validate::command_id(&request.command_id)?;
        validate::desired_account(&self.description, request.desired.as_ref())?;
        let desired = request.desired.unwrap_or_default();
        let span = tracing::Span::current();
        span.record("command_id", request.command_id.as_str());
        let person_id = desired.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
        span.record("person_id", person_id);
        // Held until the command finished: one command per account at a time.
        let _fenced = self.fence.admit(person_id, request.lease_epoch).await.inspect_err(|error| {
            observe("apply", Instant::now(), Err(error));
            tracing::warn!(lease_epoch = request.lease_epoch, "apply refused: {}", error.message);
        })?;
        if let Some(link) = &request.link {
            if !self.description.capabilities.unwrap_or_default().link {
                return Err(ConnectorError::unsupported("this connector cannot link existing accounts")
                    .with_field("link")
                    .to_status());
            }
            if link.expected_fingerprint.is_empty() {
                return Err(
                    ConnectorError::invalid_argument("link.expected_fingerprint", "must not be empty").to_status()
                );
            }
            if desired.presence != pb::Presence::Present as i32 {
                return Err(
                    ConnectorError::invalid_argument("desired.presence", "a link needs a present account").to_status()
                );
            }
        }
        self.admit(&request.command_id, &desired, request.link.as_ref())?;
        let started = Instant::now();
        let result = match &request.link {
            Some(link) => self.connector.link(&request.command_id, &desired, &link.expected_fingerprint).await,
            None => self.connector.apply(&request.command_id, &desired).await,
        };
        observe("apply", started, result.as_ref().map(|_| ()));
        match result {
            Ok(mut acknowledgement) => {
                ConnectorMetrics::get().changes.inc_by(acknowledgement.changes.len() as u64);
                acknowledgement.command_id = request.command_id;
                Ok(Response::new(acknowledgement))
            }
            Err(error) => {
                // A failed command may be retried with the same id and state;
                // forgetting it also lets a corrected state reuse the id.
                if let Ok(mut ledger) = self.ledger.lock() {
                    ledger.forget(&request.command_id);
                }
                tracing::warn!(kind = %error.kind, retryable = error.retryable, "apply failed: {}", error.message);
                Err(error.to_status())
            }
        }
    }

    #[tracing::instrument(name = "connector.read", skip_all, fields(person_id))]
    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let request = request.into_inner();
        validate::account_ref("account", request.account.as_ref())?;
        let account = request.account.unwrap_or_default();
        tracing::Span::current().record("person_id", account.person_id.as_str());
        let started = Instant::now();
        let result = self.connector.read(&account).await;
        observe("read", started, result.as_ref().map(|_| ()));
        let mut state = result?;
        state.fingerprint = correlation::fingerprint(&state);
        Ok(Response::new(pb::ReadResponse { state: Some(state) }))
    }

    type ListStream = futures::stream::BoxStream<'static, Result<pb::ListResponse, Status>>;

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<Self::ListStream>, Status> {
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        correlation::check_requested(&self.description, &request.correlation_attributes)?;
        if !request.account_name.is_empty() {
            return self.find_in_scope(&request.account_name, &request.correlation_attributes).await;
        }
        let started = Instant::now();
        let pages = self.connector.list_scope(page_size, &request.correlation_attributes).map(move |page| {
            if let Err(error) = &page {
                observe("list", started, Err(error));
            }
            page.map(|mut accounts| {
                for state in &mut accounts {
                    state.fingerprint = correlation::fingerprint(state);
                }
                pb::ListResponse { accounts }
            })
            .map_err(|error| error.to_status())
        });
        Ok(Response::new(pages.boxed()))
    }
}

impl<C: Connector> ConnectorService<C> {
    /// `List` of one account by name (`ListRequest.account_name`).
    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Response<<Self as connector_server::Connector>::ListStream>, Status> {
        if !self.description.capabilities.unwrap_or_default().scope_listing {
            return Err(ConnectorError::unsupported("this connector does not list its scope")
                .with_field("account_name")
                .to_status());
        }
        validate::account_name("account_name", account_name)?;
        let started = Instant::now();
        let result = self.connector.find_in_scope(account_name, correlation_attributes).await;
        observe("list", started, result.as_ref().map(|_| ()));
        let accounts: Vec<pb::AccountState> = result?
            .into_iter()
            .map(|mut state| {
                state.fingerprint = correlation::fingerprint(&state);
                state
            })
            .collect();
        let page = Ok(pb::ListResponse { accounts });
        Ok(Response::new(futures::stream::iter([page]).boxed()))
    }
}

fn observe(operation: &'static str, started: Instant, result: Result<(), &ConnectorError>) {
    let outcome = match result {
        Ok(()) => "ok",
        Err(error) => error.kind.as_str(),
    };
    ConnectorMetrics::get().observe(operation, outcome, started.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_refuses_reuse_with_other_state_and_forgets_oldest() {
        let mut ledger = CommandLedger::default();
        assert!(ledger.admit("c1", [1; 32]).is_ok());
        assert!(ledger.admit("c1", [1; 32]).is_ok());
        assert!(ledger.admit("c1", [2; 32]).is_err());
        ledger.forget("c1");
        assert!(ledger.admit("c1", [2; 32]).is_ok());
    }
}
