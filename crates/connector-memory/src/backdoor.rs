//! Direct access to the in-memory target, bypassing the connector: the
//! conformance suite's [`Backdoor`] for the reference connector.

use std::sync::Arc;

use connector_kit::conformance::Backdoor;
use connector_kit::contract as pb;
use futures::future::BoxFuture;

use crate::target::{MemoryTarget, StoredAccount};

/// Edits the in-memory target directly, as an administrator of a real target would.
pub struct MemoryBackdoor(pub Arc<MemoryTarget>);

impl MemoryBackdoor {
    fn edit<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        change: impl FnOnce(&mut StoredAccount) + Send + 'a,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut stored =
                self.0.get(&account.account_name).ok_or_else(|| anyhow::anyhow!("no such account on the target"))?;
            change(&mut stored);
            self.0.put(&account.account_name, Some(stored));
            Ok(())
        })
    }
}

impl Backdoor for MemoryBackdoor {
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.edit(account, move |stored| {
            stored.entitlements.insert((entitlement.kind.clone(), entitlement.id.clone()));
        })
    }

    fn set_attribute_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.edit(account, move |stored| {
            stored.attributes.insert(attribute.to_owned(), value.to_owned());
        })
    }

    fn set_enabled_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        enabled: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.edit(account, move |stored| stored.enabled = enabled)
    }

    fn add_credential_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let credential = "api_key:direct".to_owned();
            let added = credential.clone();
            self.edit(account, move |stored| {
                stored.credentials.insert(added);
            })
            .await?;
            Ok(credential)
        })
    }

    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.edit(account, move |stored| stored.person_id = person_id.to_owned())
    }

    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            anyhow::ensure!(self.0.get(&account.account_name).is_some(), "no such account on the target");
            self.0.put(&account.account_name, None);
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            anyhow::ensure!(self.0.get(account_name).is_none(), "an account {account_name:?} already exists");
            let mut attributes = std::collections::BTreeMap::new();
            attributes.insert("mail".to_owned(), mail.to_owned());
            attributes.insert("display_name".to_owned(), format!("Made by hand {account_name}"));
            let stored = StoredAccount {
                person_id: String::new(),
                account_name: account_name.to_owned(),
                native_id: format!("hand-{account_name}"),
                enabled: true,
                attributes,
                entitlements: Default::default(),
                credentials: Default::default(),
                changed_at: std::time::SystemTime::now(),
            };
            self.0.put(account_name, Some(stored));
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.0.put(account_name, None);
            Ok(())
        })
    }
}
