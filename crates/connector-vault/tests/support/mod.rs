//! Shared set-up of the integration tests: the real server from the
//! environment `deploy/local/rustyvault.sh start` writes, a connector served
//! over real gRPC on loopback, and a direct client of the server.

#![allow(dead_code)]

use std::collections::BTreeMap;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_vault::{VaultConfig, VaultConnector, VaultTarget};
use rand::Rng;

/// The policies the test connector may grant (and create where the server has a policy store).
pub const POLICIES: [&str; 4] = ["pam-read", "pam-ops", "pam-admin", "pam-break-glass"];

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test server with `deploy/local/rustyvault.sh start RUN_DIR` and \
             `source RUN_DIR/rustyvault.env` (or run .ci/run)"
        )
    })
}

/// A connector configuration for the server in the environment, with its
/// records under a fresh prefix.
pub fn config() -> VaultConfig {
    let mut config = VaultConfig::new(required("JML_TEST_VAULT_ADDR"));
    match std::env::var("JML_TEST_VAULT_TOKEN_FILE") {
        Ok(file) => config.token_file = Some(file.into()),
        Err(_) => {
            required("JML_TEST_VAULT_TOKEN");
            config.token_env = "JML_TEST_VAULT_TOKEN".into();
        }
    }
    config.target_id = "vault-test".into();
    config.records.prefix = format!("lifecycle-mesh/test-{:08x}/accounts", rand::rng().random::<u32>());
    config.token_ttl_seconds = 600;
    config.token_max_ttl_seconds = 900;
    config.policies = POLICIES
        .iter()
        .map(|name| (name.to_string(), format!("path \"secret/{name}/*\" {{\n  capabilities = [\"read\"]\n}}\n")))
        .collect::<BTreeMap<_, _>>();
    config
}

/// A direct client of the server, bypassing the connector.
pub fn direct(config: &VaultConfig) -> VaultTarget {
    let token = config.load_token().expect("the test token loads");
    VaultTarget::new(config, token).expect("a client of the test server")
}

/// The connector for `config`, served over gRPC on loopback, and a client of it.
pub async fn serve(config: &VaultConfig) -> (ConnectorClient, RunningServer) {
    let connector = VaultConnector::connect(config).await.expect("the connector reaches the test server");
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    (client, server)
}
