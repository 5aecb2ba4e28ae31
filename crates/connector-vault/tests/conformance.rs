//! The whole conformance suite against the real server (RustyVault in CI),
//! over real gRPC on loopback.

mod support;

use std::sync::Arc;

use connector_kit::conformance::{Backdoor, ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_vault::VaultTarget;
use connector_vault::names::{PolicyName, UserName};
use connector_vault::target::UserWrite;
use futures::future::BoxFuture;

/// Grants a policy by writing the userpass user directly on the server.
struct DirectPolicyGrant {
    target: VaultTarget,
    token_ttl: u64,
    token_max_ttl: u64,
}

impl Backdoor for DirectPolicyGrant {
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let name = UserName::parse(&account.account_name).map_err(anyhow::Error::msg)?;
            let policy = PolicyName::parse(&entitlement.id).map_err(anyhow::Error::msg)?;
            let user = self.target.read_user(&name).await?.ok_or_else(|| anyhow::anyhow!("no such user"))?;
            let mut policies = user.policies.clone();
            policies.push(policy.as_str().to_owned());
            let write =
                UserWrite { password: None, policies, token_ttl: self.token_ttl, token_max_ttl: self.token_max_ttl };
            self.target.write_user(&name, &write).await?;
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, _mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let name = UserName::parse(account_name).map_err(anyhow::Error::msg)?;
            let write = UserWrite {
                password: Some(format!("Hand-made-{account_name}")),
                policies: Vec::new(),
                token_ttl: self.token_ttl,
                token_max_ttl: self.token_max_ttl,
            };
            self.target.write_user(&name, &write).await?;
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let name = UserName::parse(account_name).map_err(anyhow::Error::msg)?;
            self.target.delete_user(&name).await?;
            Ok(())
        })
    }
}

async fn target() -> ConformanceTarget {
    let config = support::config();
    let (client, server) = support::serve(&config).await;
    let fixture = Fixture {
        entitlements: support::POLICIES
            .iter()
            .map(|id| pb::Entitlement { kind: "policy".into(), id: (*id).into(), privileged: true })
            .collect(),
        list_accounts: 15,
        list_page_size: 4,
        backdoor: Some(Arc::new(DirectPolicyGrant {
            target: support::direct(&config),
            token_ttl: config.token_ttl_seconds,
            token_max_ttl: config.token_max_ttl_seconds,
        })),
        ..Fixture::default()
    };
    ConformanceTarget { client, fixture, guard: Some(Box::new(server)) }
}

connector_kit::conformance_tests!(target);
