//! The whole conformance suite against the IAM connector served over real
//! gRPC on loopback, driving a real moto server (`deploy/local/moto.sh`).
//! Each case runs in a fresh IAM path; the backdoor edits IAM directly with
//! the tests' own SDK client.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_iam::Client;
use connector_iam::{KIND_GROUP, KIND_POLICY};
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::conformance::{Backdoor, ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use futures::future::BoxFuture;

/// Grants entitlements and creates users straight on IAM (in the
/// connector's path), bypassing the connector.
struct IamBackdoor(Client, String);

impl Backdoor for IamBackdoor {
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match entitlement.kind.as_str() {
                KIND_GROUP => {
                    self.0
                        .add_user_to_group()
                        .user_name(&account.account_name)
                        .group_name(&entitlement.id)
                        .send()
                        .await?;
                }
                KIND_POLICY => {
                    self.0
                        .attach_user_policy()
                        .user_name(&account.account_name)
                        .policy_arn(&entitlement.id)
                        .send()
                        .await?;
                }
                other => anyhow::bail!("no direct grant for kind {other}"),
            }
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let tag = aws_sdk_iam::types::Tag::builder().key("lifecycle-mesh:mail").value(mail).build()?;
            self.0.create_user().user_name(account_name).path(&self.1).tags(tag).send().await?;
            Ok(true)
        })
    }

    fn delete_directly<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if self.0.get_user().user_name(account_name).send().await.is_ok() {
                self.0.delete_user().user_name(account_name).send().await?;
            }
            Ok(())
        })
    }
}

fn entitlement(kind: &str, id: &str, privileged: bool) -> pb::Entitlement {
    pb::Entitlement { kind: kind.into(), id: id.into(), privileged }
}

async fn target() -> ConformanceTarget {
    let (connector, client, catalogue) = support::connector("cf").await;
    let path = connector.config().user_path.clone();
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let grpc = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let fixture = Fixture {
        attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Person {name}")),
                ("mail".into(), format!("{name}@example.org")),
            ])
        }),
        changed_attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Moved {name}")),
                ("title".into(), "Engineer".into()),
                ("mail".into(), String::new()),
            ])
        }),
        entitlements: vec![
            entitlement(KIND_GROUP, "staff", false),
            entitlement(KIND_POLICY, &support::policy_arn(&catalogue, "lm-staff-read"), false),
            entitlement(KIND_GROUP, "engineering", false),
            entitlement(KIND_POLICY, &support::policy_arn(&catalogue, "lm-admin"), true),
        ],
        hostile_attribute: Some("display_name".into()),
        list_accounts: 25,
        list_page_size: 7,
        backdoor: Some(Arc::new(IamBackdoor(client, path))),
        ..Fixture::default()
    };
    ConformanceTarget { client: grpc, fixture, guard: Some(Box::new(server)) }
}

connector_kit::conformance_tests!(target);
