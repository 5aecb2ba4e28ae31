//! Mutual TLS between the coordinator's client and a connector, over real
//! gRPC on loopback with certificates from throwaway CAs: the connector
//! refuses a client without a certificate or with one from another CA, and
//! the client refuses a connector whose certificate does not carry the
//! expected name.

use std::path::{Path, PathBuf};

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_kit::tls::{ClientTlsFiles, ServerTlsFiles};
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `<ca>.pem`, and for each (leaf, CN and DNS name) `<leaf>.pem` + `<leaf>.key`.
fn make_ca(dir: &Path, ca: &str, leaves: &[(&str, &str)]) {
    mesh_harness::test_pki::write_ca(dir, ca, leaves).expect("test certificates");
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(
        dir.path(),
        "mesh-ca",
        &[("connector", "connector-memory.mesh.test"), ("coordinator", "coordinator.mesh.test")],
    );
    make_ca(dir.path(), "rogue-ca", &[("rogue", "coordinator.mesh.test")]);
    Pki { dir }
}

async fn mtls_server(pki: &Pki) -> RunningServer {
    let target = std::sync::Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    ConnectorServer::new(MemoryConnector::new("mem", target))
        .tls(Some(ServerTlsFiles {
            certificate: pki.path("connector.pem"),
            private_key: pki.path("connector.key"),
            client_ca: Some(pki.path("mesh-ca.pem")),
        }))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds")
}

fn client(server: &RunningServer, name: &str, identity: Option<(&PathBuf, &PathBuf)>, ca: &Path) -> ConnectorClient {
    let options = ClientOptions {
        max_attempts: 1,
        tls: Some(ClientTlsFiles {
            server_ca: ca.to_owned(),
            server_name: name.to_owned(),
            identity: identity.map(|(c, k)| (c.clone(), k.clone())),
        }),
        ..ClientOptions::default()
    };
    ConnectorClient::connect(&format!("https://{}", server.local_addr()), options).expect("client")
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_mesh_ca_is_served() {
    let pki = pki();
    let server = mtls_server(&pki).await;
    let (cert, key) = (pki.path("coordinator.pem"), pki.path("coordinator.key"));
    let description = client(&server, "connector-memory.mesh.test", Some((&cert, &key)), &pki.path("mesh-ca.pem"))
        .describe()
        .await
        .expect("mutual TLS works");
    assert_eq!(description.connector_kind, "memory");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = pki();
    let server = mtls_server(&pki).await;
    let result = client(&server, "connector-memory.mesh.test", None, &pki.path("mesh-ca.pem")).describe().await;
    assert!(result.is_err(), "a client without a certificate was served");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let server = mtls_server(&pki).await;
    let (cert, key) = (pki.path("rogue.pem"), pki.path("rogue.key"));
    let result =
        client(&server, "connector-memory.mesh.test", Some((&cert, &key)), &pki.path("mesh-ca.pem")).describe().await;
    assert!(result.is_err(), "a client certificate from another CA was accepted");
}

#[tokio::test]
async fn a_connector_with_the_wrong_name_is_refused() {
    let pki = pki();
    let server = mtls_server(&pki).await;
    let (cert, key) = (pki.path("coordinator.pem"), pki.path("coordinator.key"));
    let result =
        client(&server, "connector-ldap.mesh.test", Some((&cert, &key)), &pki.path("mesh-ca.pem")).describe().await;
    assert!(result.is_err(), "the client accepted a connector certificate for another name");
}

#[tokio::test]
async fn a_connector_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let server = mtls_server(&pki).await;
    let (cert, key) = (pki.path("coordinator.pem"), pki.path("coordinator.key"));
    let result =
        client(&server, "connector-memory.mesh.test", Some((&cert, &key)), &pki.path("rogue-ca.pem")).describe().await;
    assert!(result.is_err(), "the client trusted a connector certificate from a CA it was not given");
}
