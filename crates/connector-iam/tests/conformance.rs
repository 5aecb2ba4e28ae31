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

/// Grants an entitlement straight on IAM.
struct IamGrant<'c>(&'c Client);

impl<'c> IamGrant<'c> {
    fn grant<'a>(
        self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>>
    where
        'c: 'a,
    {
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
}

impl IamBackdoor {
    async fn tag(&self, user: &str, key: &str, value: &str) -> anyhow::Result<()> {
        let tag = aws_sdk_iam::types::Tag::builder().key(key).value(value).build()?;
        self.0.tag_user().user_name(user).tags(tag).send().await?;
        Ok(())
    }
}

impl Backdoor for IamBackdoor {
    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let tag = aws_sdk_iam::types::Tag::builder().key("lifecycle-mesh:mail").value(mail).build()?;
            self.0.create_user().user_name(account_name).path(&self.1).tags(tag).send().await?;
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if self.0.get_user().user_name(account_name).send().await.is_ok() {
                self.0.delete_user().user_name(account_name).send().await?;
            }
            Ok(())
        })
    }

    fn set_attribute_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let tags = connector_iam::config::default_attribute_tags();
            let key = tags.get(attribute).ok_or_else(|| anyhow::anyhow!("attribute {attribute} has no tag"))?;
            self.tag(&account.account_name, key, value).await
        })
    }

    fn set_enabled_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        enabled: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let key = connector_iam::IamConfig::default().disabled_tag_key;
            if enabled {
                self.0.untag_user().user_name(&account.account_name).tag_keys(key).send().await?;
                Ok(())
            } else {
                self.tag(&account.account_name, &key, "true").await
            }
        })
    }

    fn add_credential_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let created = self.0.create_access_key().user_name(&account.account_name).send().await?;
            let id = created.access_key().map(|k| k.access_key_id().to_owned()).unwrap_or_default();
            Ok(format!("access_key:{id}"))
        })
    }

    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let key = connector_iam::IamConfig::default().person_tag_key;
            self.tag(&account.account_name, &key, person_id).await
        })
    }

    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            // What IAM requires before DeleteUser, for what the suite grants.
            let user = account.account_name.as_str();
            let groups = self.0.list_groups_for_user().user_name(user).send().await?;
            for group in groups.groups() {
                self.0.remove_user_from_group().user_name(user).group_name(group.group_name()).send().await?;
            }
            let policies = self.0.list_attached_user_policies().user_name(user).send().await?;
            for policy in policies.attached_policies() {
                if let Some(arn) = policy.policy_arn() {
                    self.0.detach_user_policy().user_name(user).policy_arn(arn).send().await?;
                }
            }
            let keys = self.0.list_access_keys().user_name(user).send().await?;
            for key in keys.access_key_metadata() {
                if let Some(id) = key.access_key_id() {
                    self.0.delete_access_key().user_name(user).access_key_id(id).send().await?;
                }
            }
            self.0.delete_user().user_name(user).send().await?;
            Ok(())
        })
    }

    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        IamGrant(&self.0).grant(account, entitlement)
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
