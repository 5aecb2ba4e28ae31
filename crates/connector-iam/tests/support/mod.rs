//! What the IAM connector's tests and benchmark share: the moto endpoint from
//! the environment (written by `deploy/local/moto.sh start`), a connector
//! configured for it, a direct SDK client (the tests' own view of the
//! target), and the catalogue of groups and managed policies the fixtures use,
//! created idempotently on the real moto server.
#![allow(dead_code)]

use std::collections::BTreeSet;

use aws_sdk_iam::Client;
use aws_sdk_iam::error::ProvideErrorMetadata;
use connector_iam::{IamConfig, IamConnector};
use rand::Rng;

/// Groups every fixture may grant.
pub const GROUPS: [&str; 4] = ["staff", "engineering", "sales", "admins"];
/// Customer managed policies every fixture may attach, in this IAM path.
pub const POLICIES: [&str; 2] = ["lm-staff-read", "lm-admin"];
/// The IAM path of the fixture policies.
pub const POLICY_PATH: &str = "/lifecycle-mesh-fixture/";
/// A policy document that allows nothing harmful.
const POLICY_DOCUMENT: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:GetUser","Resource":"*"}]}"#;

/// A self-signed X.509 certificate (public material only) for signing
/// certificate uploads.
pub const SIGNING_CERTIFICATE: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDJzCCAg+gAwIBAgIUIwKq8GfPm2Vs5QDwAgioaVizkq8wDQYJKoZIhvcNAQEL\n\
BQAwIjEgMB4GA1UEAwwXbGlmZWN5Y2xlLW1lc2gtaWFtLXRlc3QwIBcNMjYxMTI3\n\
MjAwMzIyWhgPMjEyNjExMDMyMDAzMjJaMCIxIDAeBgNVBAMMF2xpZmVjeWNsZS1t\n\
ZXNoLWlhbS10ZXN0MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAs7gY\n\
3/yXJ3SmSJ2so/Z0O3kkQOEAnwwVo97GTAjWtHmYU8kN2aeOTyDqtZjdxQQf8tBj\n\
8fHDBzHlD5hBCieZaUbrg9v5q+LxVlh8NOeyQbbG9hbVaDkoLGJEN8MccEP5zcG4\n\
Ztep0eUbXqANmtiD8dETHNAlnJ6+3nqPRYqOGY1g8RaDqNSNG4Zec6UV9KP5QS29\n\
tEu/QZnqHmqDu473eXGhSSV3YcjAOqtdEsyGysIbg+52mMXws4CoSlZDibP18VqI\n\
RYaOTpfLG426pFedWZFfHsmybzhMRJEvGCPk/rx59dpzI4jxYSBOpGl/0jiEM1aw\n\
6IGenBcpTMxxKVWZ9QIDAQABo1MwUTAdBgNVHQ4EFgQUk5IwjM59Qg2X+2uMaiND\n\
AGBbKIAwHwYDVR0jBBgwFoAUk5IwjM59Qg2X+2uMaiNDAGBbKIAwDwYDVR0TAQH/\n\
BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAQD4j0eIlQxc4v2+m9qZ7jdE3sMXQ\n\
hvnQL+cQ5d9sFWoQjmGlaCy7OjGOWsTwq/XZSWMmfCjphsu7Cv4sSN8PQkN+0t19\n\
uErAkB4ZC6PMNM4x9hje9+KnXnujCVgk+89hgI20MS/bFKFmqCYHpZBdkZXnHtOi\n\
f/beG6B2ndGGWGrQDHV6p3Q+sHcBpogjZfz7rpoTTdvWneZyvx3q6zYXKW3inTUn\n\
NLfHH73Ep7FOb/nevXEn8ozs/P1QXWbRhJhD8kOVw5kkeCJfEZKJP3TfosdrW4VM\n\
Mwl9H6FZ73VrThfvhqqH542OL0ZdoHB8B+zNAzO48Gi27m4LM3CI3EJ1ww==\n\
-----END CERTIFICATE-----\n\
";

/// An SSH public key (public material only) for SSH key uploads.
pub const SSH_PUBLIC_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDYOg8BvLMEtTJy5v7KskAFC+ymoazG10oiQBpZt6SFhAQ7UE3b6PeRz8hJLNiDpifYIiAZPLR7VQf300/83CtnyGcVOMOGn4C4lI5VsgdDfd/sbNRbLW7ZHf3IsLH8NiO6tct9S2V5TD3XPN8xj8QyPiVLJtdLII3yoZcsBaxhiE2MkXgcbblry9M+nFxr+oLr9fvGfVExmUEH0QJDXS5xyRTjIep2Ksy4iDBxBMR4wyhEzj32zgWhuFIoeEYYnXXo1SkybrjPcvAHZ1qSr9vKwCXTHB7/arT3OqHsfuBS/LYYpz8Y3msZ66D9KGlJLLqMMV62rZJHaqiFbAet+nzP lifecycle-mesh-test";

/// The moto endpoint, or a failure telling how to start moto.
pub fn moto_url() -> String {
    let url = std::env::var("JML_TEST_MOTO_URL").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "JML_TEST_MOTO_URL is not set: run `deploy/local/moto.sh install && deploy/local/moto.sh start RUN_DIR` \
         and `source RUN_DIR/moto.env` (or use .ci/run)"
    );
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_some() && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some(),
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set: `source RUN_DIR/moto.env` written by \
         `deploy/local/moto.sh start RUN_DIR` (dummy credentials for moto)"
    );
    url
}

/// A fresh random IAM path for one test, so tests never see each other's users.
pub fn fresh_path(label: &str) -> String {
    format!("/lifecycle-mesh-{label}-{:08x}/", rand::rng().random::<u32>())
}

/// A connector configuration for moto, managing `user_path`.
pub fn config(user_path: &str, ssc_supported: bool, admin_policy_arn: &str) -> IamConfig {
    IamConfig {
        target_id: "aws-iam-moto".into(),
        endpoint_url: Some(moto_url()),
        user_path: user_path.into(),
        privileged_groups: BTreeSet::from(["admins".to_string()]),
        privileged_policies: BTreeSet::from([admin_policy_arn.to_string()]),
        target_lacks_service_specific_credentials: !ssc_supported,
        max_attempts: 3,
        initial_backoff_ms: 50,
        ..IamConfig::default()
    }
}

/// The tests' own SDK client of moto (not the connector).
pub async fn direct_client() -> Client {
    let config = IamConfig { endpoint_url: Some(moto_url()), ..IamConfig::default() };
    connector_iam::IamTarget::connect(&config).await.client().clone()
}

/// Whether this moto implements the service-specific credential API: a
/// listing for a user that does not exist answers `NoSuchEntity` where it is
/// implemented.
pub async fn supports_service_specific_credentials(client: &Client) -> bool {
    match client.list_service_specific_credentials().user_name("lifecycle-mesh-probe-absent").send().await {
        Ok(_) => true,
        Err(error) => error.code() == Some("NoSuchEntity"),
    }
}

/// The fixture catalogue on moto: every group in [`GROUPS`] and policy in
/// [`POLICIES`] exists afterwards. Answers the policy ARNs by name.
pub async fn ensure_catalogue(client: &Client) -> Vec<(String, String)> {
    for group in GROUPS {
        if let Err(error) = client.create_group().group_name(group).send().await {
            assert_eq!(error.code(), Some("EntityAlreadyExists"), "CreateGroup {group}: {error:?}");
        }
    }
    for policy in POLICIES {
        if let Err(error) =
            client.create_policy().policy_name(policy).path(POLICY_PATH).policy_document(POLICY_DOCUMENT).send().await
        {
            assert_eq!(error.code(), Some("EntityAlreadyExists"), "CreatePolicy {policy}: {error:?}");
        }
    }
    let listed = client
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .path_prefix(POLICY_PATH)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListPolicies");
    POLICIES
        .iter()
        .map(|name| {
            let arn = listed
                .iter()
                .find(|p| p.policy_name() == Some(*name))
                .and_then(|p| p.arn())
                .unwrap_or_else(|| panic!("policy {name} missing after creation"));
            (name.to_string(), arn.to_string())
        })
        .collect()
}

/// The ARN of fixture policy `name`.
pub fn policy_arn(catalogue: &[(String, String)], name: &str) -> String {
    catalogue.iter().find(|(n, _)| n == name).map(|(_, arn)| arn.clone()).expect("fixture policy")
}

/// A connector for moto managing a fresh path, with its catalogue in place.
pub async fn connector(label: &str) -> (IamConnector, Client, Vec<(String, String)>) {
    let client = direct_client().await;
    let catalogue = ensure_catalogue(&client).await;
    let ssc = supports_service_specific_credentials(&client).await;
    let config = config(&fresh_path(label), ssc, &policy_arn(&catalogue, "lm-admin"));
    let connector = IamConnector::connect(config).await.expect("valid config");
    (connector, client, catalogue)
}
