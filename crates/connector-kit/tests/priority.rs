//! Issue #21: an urgent leaver's call overtakes joiners already queued at the
//! client's concurrency limit, over real gRPC on loopback. The connector
//! holds every Apply until the test lets it go, and reports each arrival, so
//! the order is read from events, never from timing.

use std::sync::Arc;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_kit::{AccountStream, Connector, ConnectorError};
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use tokio::sync::{Semaphore, mpsc};

/// Reports each Apply as it arrives, then holds it until a permit is added.
struct Turnstile {
    inner: MemoryConnector,
    arrived: mpsc::UnboundedSender<String>,
    gate: Arc<Semaphore>,
}

impl Connector for Turnstile {
    fn describe(&self) -> pb::DescribeResponse {
        self.inner.describe()
    }
    async fn preflight(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let name = desired.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
        self.arrived.send(name).ok();
        self.gate.acquire().await.map_err(|_| ConnectorError::unavailable("closed"))?.forget();
        self.inner.apply(command_id, desired).await
    }
    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        self.inner.read(account).await
    }
    fn list(&self, page_size: u32) -> AccountStream {
        self.inner.list(page_size)
    }
}

fn desired(name: &str, present: bool) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("p-{name}"), account_name: name.into() }),
        presence: if present { pb::Presence::Present } else { pb::Presence::Absent } as i32,
        enabled: present,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    }
}

async fn until(client: &ConnectorClient, waiting: (usize, usize)) {
    while client.waiting() != waiting {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_urgent_leaver_overtakes_queued_joiners_at_the_client() {
    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let connector = Turnstile { inner: MemoryConnector::new("mem", target), arrived, gate: gate.clone() };
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let client = ConnectorClient::connect(
        &server.endpoint(),
        ClientOptions { concurrency_limit: 1, max_attempts: 1, ..ClientOptions::default() },
    )
    .expect("client");

    let apply = |client: ConnectorClient, name: &'static str, present: bool| {
        tokio::spawn(async move { client.apply(&format!("cmd-{name}"), desired(name, present)).await })
    };
    // The one slot is taken by a joiner the connector holds.
    let mut calls = vec![apply(client.clone(), "joiner-0", true)];
    assert_eq!(arrivals.recv().await.as_deref(), Some("joiner-0"));
    // Three more joiners queue at the client, then the urgent leaver.
    for name in ["joiner-1", "joiner-2", "joiner-3"] {
        calls.push(apply(client.clone(), name, true));
    }
    until(&client, (0, 3)).await;
    calls.push(apply(client.urgent(), "leaver", false));
    until(&client, (1, 3)).await;

    // Each release finishes the call in the connector and admits the next.
    let mut order = Vec::new();
    for _ in 0..4 {
        gate.add_permits(1);
        order.push(arrivals.recv().await.expect("next call arrives"));
    }
    gate.add_permits(1);
    assert_eq!(order, ["leaver", "joiner-1", "joiner-2", "joiner-3"]);
    for call in calls {
        call.await.expect("joined").expect("acknowledged");
    }
}
