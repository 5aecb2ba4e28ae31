//! The coordinator's side of the contract: a connector client built as a
//! tower stack.
//!
//! ```text
//! Admission (urgent first) -> Retry(jittered exponential backoff, honours retry-after)
//!                          -> MapErr(typed) -> Timeout(per call) -> gRPC call
//! ```
//!
//! The concurrency limit is [`crate::admission`]: a call of a client made
//! with [`ConnectorClient::urgent`] waits for a slot ahead of every ordinary
//! call (an urgent leaver never queues behind joiners here).
//!
//! Only errors the connector marked retryable (or transport failures) are
//! retried, and `Apply` is safe to retry because it is idempotent by command id.
//! A retry-after longer than [`ClientOptions::max_retry_after`] is not waited
//! for here: the error is returned so the caller's durable queue can park the
//! task instead of holding a connection.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use jml_contract::v1 as pb;
use jml_contract::v1::connector_client::ConnectorClient as GeneratedClient;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::admission::{Admission, Priority};
use crate::telemetry::{ClientTrace, ClientTraceLayer};
use crate::tls::ClientTlsFiles;

/// The channel every call goes through: W3C trace context injected.
type TracedChannel = ClientTrace<Channel>;
use crate::{ConnectorError, ErrorKind};

/// How the client calls a connector.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline of one attempt.
    pub call_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub base_backoff: Duration,
    /// Largest backoff between attempts.
    pub max_backoff: Duration,
    /// Longest retry-after waited for in the client.
    pub max_retry_after: Duration,
    /// Calls in flight to this connector at most; waiting calls are
    /// admitted urgent first.
    pub concurrency_limit: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// TLS towards the connector; plaintext when `None`.
    pub tls: Option<ClientTlsFiles>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            max_attempts: 4,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
            concurrency_limit: 64,
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Call {
    Describe,
    Apply(pb::ApplyRequest),
    Read(pb::ReadRequest),
}

#[derive(Debug)]
enum Reply {
    Describe(pb::DescribeResponse),
    Apply(pb::ApplyResponse),
    Read(pb::AccountState),
}

/// The innermost service: one gRPC call.
#[derive(Clone)]
struct GrpcCall {
    client: GeneratedClient<TracedChannel>,
}

impl Service<Call> for GrpcCall {
    type Response = Reply;
    type Error = ConnectorError;
    type Future = BoxFuture<'static, Result<Reply, ConnectorError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let mut client = self.client.clone();
        Box::pin(async move {
            let status = |s: tonic::Status| ConnectorError::from_status(&s);
            Ok(match call {
                Call::Describe => {
                    Reply::Describe(client.describe(pb::DescribeRequest {}).await.map_err(status)?.into_inner())
                }
                Call::Apply(request) => Reply::Apply(client.apply(request).await.map_err(status)?.into_inner()),
                Call::Read(request) => Reply::Read(
                    client
                        .read(request)
                        .await
                        .map_err(status)?
                        .into_inner()
                        .state
                        .ok_or_else(|| ConnectorError::internal("connector answered Read without a state"))?,
                ),
            })
        })
    }
}

/// Retry policy: jittered exponential backoff, honouring retry-after.
#[derive(Clone)]
struct Backoff {
    attempt: u32,
    options: Arc<ClientOptions>,
}

impl Backoff {
    fn delay(&self, error: &ConnectorError) -> Option<Duration> {
        if let Some(retry_after) = error.retry_after {
            return (retry_after <= self.options.max_retry_after).then_some(retry_after);
        }
        let exponential = self.options.base_backoff.saturating_mul(1u32 << self.attempt.min(16));
        let ceiling = exponential.min(self.options.max_backoff);
        // "Equal jitter": half fixed, half random, so no retry is immediate.
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        Some(half + Duration::from_micros(jitter))
    }
}

impl tower::retry::Policy<Call, Reply, ConnectorError> for Backoff {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _request: &mut Call, result: &mut Result<Reply, ConnectorError>) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if !error.retryable || self.attempt + 1 >= self.options.max_attempts {
            return None;
        }
        let delay = self.delay(error)?;
        self.attempt += 1;
        tracing::info!(attempt = self.attempt, delay_ms = delay.as_millis() as u64, kind = %error.kind, "retrying connector call");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Call) -> Option<Call> {
        Some(request.clone())
    }
}

fn typed(error: BoxError) -> ConnectorError {
    match error.downcast::<ConnectorError>() {
        Ok(error) => *error,
        Err(error) if error.is::<tower::timeout::error::Elapsed>() => {
            ConnectorError::timeout("the connector did not answer within the call timeout")
        }
        Err(error) => ConnectorError::unavailable(error.to_string()),
    }
}

/// A client of one connector, cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct ConnectorClient {
    stack: BoxCloneSyncService<Call, Reply, ConnectorError>,
    raw: GeneratedClient<TracedChannel>,
    endpoint: String,
    admission: Arc<Admission>,
    priority: Priority,
}

impl std::fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorClient").field("endpoint", &self.endpoint).finish()
    }
}

impl ConnectorClient {
    /// A client of the connector at `endpoint` (`http://host:port` or
    /// `https://host:port`). Connects lazily: an unreachable connector shows
    /// as retryable `Unavailable` errors on calls, not here.
    pub fn connect(endpoint: &str, options: ClientOptions) -> Result<Self, ConnectorError> {
        let mut builder = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| ConnectorError::invalid_argument("endpoint", e.to_string()))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if let Some(tls) = &options.tls {
            let config = tls.load().map_err(|e| ConnectorError::invalid_argument("tls", e.to_string()))?;
            builder = builder.tls_config(config).map_err(|e| ConnectorError::invalid_argument("tls", e.to_string()))?;
        }
        Ok(Self::from_channel(endpoint, builder.connect_lazy(), options))
    }

    /// A client over an existing channel (e.g. one wrapped in more tower layers).
    pub fn from_channel(endpoint: &str, channel: Channel, options: ClientOptions) -> Self {
        let raw = GeneratedClient::new(ClientTraceLayer.layer(channel)).max_decoding_message_size(64 << 20);
        let options = Arc::new(options);
        let admission = Admission::new(options.concurrency_limit);
        let stack = ServiceBuilder::new()
            .retry(Backoff { attempt: 0, options: options.clone() })
            .map_err(typed)
            .timeout(options.call_timeout)
            .service(GrpcCall { client: raw.clone() });
        Self {
            stack: BoxCloneSyncService::new(stack),
            raw,
            endpoint: endpoint.to_owned(),
            admission,
            priority: Priority::Ordinary,
        }
    }

    /// This client, its calls admitted ahead of every ordinary call waiting
    /// for the concurrency limit (an urgent leaver's). Shares the limit.
    pub fn urgent(&self) -> Self {
        Self { priority: Priority::Urgent, ..self.clone() }
    }

    /// Calls waiting for the concurrency limit: (urgent, ordinary).
    pub fn waiting(&self) -> (usize, usize) {
        self.admission.waiting()
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call(&self, call: Call) -> Result<Reply, ConnectorError> {
        let _slot = self.admission.admit(self.priority).await;
        self.stack.clone().oneshot(call).await
    }

    /// `Describe`.
    pub async fn describe(&self) -> Result<pb::DescribeResponse, ConnectorError> {
        match self.call(Call::Describe).await? {
            Reply::Describe(description) => Ok(description),
            _ => Err(ConnectorError::internal("mismatched reply")),
        }
    }

    /// `Apply`: converge one account; the answer is the acknowledgement.
    pub async fn apply(
        &self,
        command_id: &str,
        desired: pb::DesiredAccount,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        self.apply_fenced(command_id, desired, 0).await
    }

    /// `Apply` under a lane lease of epoch `lease_epoch` (a coordinator
    /// replica): the connector refuses it with [`ErrorKind::StaleLease`] once
    /// it has seen a higher epoch for the account (`crate::fence`).
    pub async fn apply_fenced(
        &self,
        command_id: &str,
        desired: pb::DesiredAccount,
        lease_epoch: u64,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let request = pb::ApplyRequest {
            command_id: command_id.to_owned(),
            desired: Some(desired),
            lease_epoch,
            ..Default::default()
        };
        match self.call(Call::Apply(request)).await? {
            Reply::Apply(acknowledgement) => Ok(acknowledgement),
            _ => Err(ConnectorError::internal("mismatched reply")),
        }
    }

    /// `Apply` with a raw request, as it is sent (for tests of validation).
    pub async fn apply_request(&self, request: pb::ApplyRequest) -> Result<pb::ApplyResponse, ConnectorError> {
        match self.call(Call::Apply(request)).await? {
            Reply::Apply(acknowledgement) => Ok(acknowledgement),
            _ => Err(ConnectorError::internal("mismatched reply")),
        }
    }

    /// `Read`: the account fresh from the target.
    pub async fn read(&self, account: pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        match self.call(Call::Read(pb::ReadRequest { account: Some(account) })).await? {
            Reply::Read(state) => Ok(state),
            _ => Err(ConnectorError::internal("mismatched reply")),
        }
    }

    /// `List`: a stream of pages. Not retried: a broken stream is restarted
    /// by the caller.
    pub async fn list(&self, page_size: u32) -> Result<tonic::Streaming<pb::ListResponse>, ConnectorError> {
        self.list_request(pb::ListRequest { page_size, ..Default::default() }).await
    }

    /// `List` with every field of the request (correlation attributes).
    pub async fn list_request(
        &self,
        request: pb::ListRequest,
    ) -> Result<tonic::Streaming<pb::ListResponse>, ConnectorError> {
        let mut raw = self.raw.clone();
        raw.list(request).await.map(tonic::Response::into_inner).map_err(|s| ConnectorError::from_status(&s))
    }

    /// Whether an error is worth retrying later (for durable queues).
    pub fn is_retryable(error: &ConnectorError) -> bool {
        error.retryable || matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled)
    }
}
