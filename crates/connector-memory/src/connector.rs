//! The reference implementation of the contract over [`MemoryTarget`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use connector_kit::contract as pb;
use connector_kit::{AccountStream, CONTRACT_VERSION, Connector, ConnectorError, correlation};

use crate::target::{MemoryTarget, StoredAccount};

/// Attributes the reference connector manages.
pub const ATTRIBUTES: [(&str, pb::ValueComparison); 4] = [
    ("display_name", pb::ValueComparison::Exact),
    ("mail", pb::ValueComparison::CaseInsensitive),
    ("title", pb::ValueComparison::Exact),
    ("department", pb::ValueComparison::Exact),
];

/// The in-memory reference connector.
#[derive(Clone)]
pub struct MemoryConnector {
    target_id: String,
    target: Arc<MemoryTarget>,
    credential_kinds: Vec<pb::CredentialKindSpec>,
    account_naming: Option<pb::AccountNaming>,
}

impl MemoryConnector {
    /// A connector for `target`, reporting `target_id`.
    pub fn new(target_id: impl Into<String>, target: Arc<MemoryTarget>) -> Self {
        Self {
            target_id: target_id.into(),
            target,
            credential_kinds: vec![connector_kit::credentials::kind("password", true, true, None)],
            account_naming: None,
        }
    }

    /// The same connector declaring `kinds` as its credential model (tests
    /// of what may outlive a revocation).
    pub fn with_credential_kinds(mut self, kinds: Vec<pb::CredentialKindSpec>) -> Self {
        self.credential_kinds = kinds;
        self
    }

    /// The same connector declaring `naming` as its account naming rules.
    pub fn with_account_naming(mut self, naming: pb::AccountNaming) -> Self {
        self.account_naming = Some(naming);
        self
    }

    /// The target, for tests that edit it directly or inject faults.
    pub fn target(&self) -> Arc<MemoryTarget> {
        self.target.clone()
    }

    fn owned(&self, account: &pb::AccountRef) -> Result<Option<StoredAccount>, ConnectorError> {
        match self.target.get(&account.account_name) {
            Some(stored) if stored.person_id != account.person_id => Err(ConnectorError::conflict(format!(
                "account {:?} belongs to another person",
                connector_kit::validate::printable(&account.account_name)
            ))),
            found => Ok(found),
        }
    }

    fn state(&self, stored: &StoredAccount, read_disagrees: bool) -> pb::AccountState {
        let mut entitlements: Vec<pb::Entitlement> = stored
            .entitlements
            .iter()
            .map(|(kind, id)| pb::Entitlement {
                kind: kind.clone(),
                id: id.clone(),
                privileged: self.target.entitlement(kind, id).unwrap_or(false),
            })
            .collect();
        if read_disagrees {
            entitlements.pop();
        }
        pb::AccountState {
            account: Some(pb::AccountRef {
                person_id: stored.person_id.clone(),
                account_name: stored.account_name.clone(),
            }),
            exists: true,
            enabled: stored.enabled,
            attributes: stored.attributes.clone().into_iter().collect(),
            entitlements,
            credentials: Some(pb::CredentialState {
                active: stored.credentials.iter().cloned().collect(),
                complete: self.credential_kinds.iter().all(|kind| kind.enumerable),
                residual_risks: Vec::new(),
                cutoffs: Vec::new(),
            }),
            target_native_id: stored.native_id.clone(),
            last_activity: Some(prost_types::Timestamp::from(stored.changed_at)),
            ..Default::default()
        }
    }
}

fn change(action: &str, subject: &str) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

impl Connector for MemoryConnector {
    fn describe(&self) -> pb::DescribeResponse {
        pb::DescribeResponse {
            connector_kind: "memory".into(),
            target_id: self.target_id.clone(),
            contract_version: CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: self.credential_kinds.iter().all(|kind| kind.enumerable),
                list: true,
                unmanaged_entitlements: false,
                credential_cutoff: false,
                link: true,
                scope_listing: true,
                ..Default::default()
            }),
            credential_kinds: self.credential_kinds.clone(),
            account_naming: self.account_naming.clone(),
            entitlement_kinds: ["group", "role"]
                .iter()
                .map(|kind| pb::EntitlementKind { kind: (*kind).into(), comparison: pb::ValueComparison::Exact as i32 })
                .collect(),
            attributes: ATTRIBUTES
                .iter()
                .map(|(name, comparison)| pb::AttributeSpec {
                    name: (*name).into(),
                    comparison: *comparison as i32,
                    required: false,
                })
                .collect(),
            account_name_comparison: pb::ValueComparison::Exact as i32,
            limitations: vec!["in-memory reference target: state is lost when the process stops".into()],
            correlation_attributes: ATTRIBUTES.iter().map(|(name, _)| (*name).to_owned()).collect(),
            scope: "every account in the in-memory map".into(),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let latency = self.target.faults().apply_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(fault) = self.target.take_apply_fault() {
            return Err(fault);
        }
        let account = desired.account.clone().unwrap_or_default();
        let existing = self.owned(&account)?;
        let mut changes = Vec::new();
        let name = account.account_name.as_str();
        if desired.presence == pb::Presence::Absent as i32 {
            if existing.is_some() {
                self.target.put(name, None);
                changes.push(change("delete", name));
            }
            for c in &changes {
                self.target.journal(command_id, name, &c.action, &c.subject);
            }
            return Ok(pb::ApplyResponse { changes, ..Default::default() });
        }
        for entitlement in &desired.entitlements {
            if self.target.entitlement(&entitlement.kind, &entitlement.id).is_none() {
                return Err(ConnectorError::not_found(format!(
                    "{} {:?} does not exist on this target",
                    entitlement.kind,
                    connector_kit::validate::printable(&entitlement.id)
                ))
                .with_field("desired.entitlements"));
            }
        }
        let mut stored = match existing {
            Some(stored) => stored,
            None => {
                changes.push(change("create", name));
                StoredAccount {
                    person_id: account.person_id.clone(),
                    account_name: name.to_owned(),
                    native_id: uuid::Uuid::new_v4().to_string(),
                    enabled: true,
                    attributes: Default::default(),
                    entitlements: BTreeSet::new(),
                    credentials: ["password".to_string()].into(),
                    changed_at: SystemTime::now(),
                }
            }
        };
        for (attribute, value) in &desired.attributes {
            let current = stored.attributes.get(attribute).cloned().unwrap_or_default();
            if &current != value {
                if value.is_empty() {
                    stored.attributes.remove(attribute);
                } else {
                    stored.attributes.insert(attribute.clone(), value.clone());
                }
                changes.push(change("set_attribute", attribute));
            }
        }
        if stored.enabled != desired.enabled {
            stored.enabled = desired.enabled;
            changes.push(change(if desired.enabled { "enable" } else { "disable" }, name));
        }
        let wanted: BTreeSet<(String, String)> =
            desired.entitlements.iter().map(|e| (e.kind.clone(), e.id.clone())).collect();
        for (kind, id) in stored.entitlements.difference(&wanted) {
            changes.push(change("remove_entitlement", &format!("{kind}:{id}")));
        }
        for (kind, id) in wanted.difference(&stored.entitlements) {
            changes.push(change("add_entitlement", &format!("{kind}:{id}")));
        }
        stored.entitlements = wanted;
        if desired.credentials == pb::CredentialAction::RevokeAll as i32 {
            for credential in std::mem::take(&mut stored.credentials) {
                changes.push(change("revoke_credential", &credential));
            }
        }
        if !changes.is_empty() {
            stored.changed_at = SystemTime::now();
        }
        let native_id = stored.native_id.clone();
        self.target.put(name, Some(stored));
        for c in &changes {
            self.target.journal(command_id, name, &c.action, &c.subject);
        }
        Ok(pb::ApplyResponse { changes, target_native_id: native_id, ..Default::default() })
    }

    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        Ok(self.target.get(account_name).map(|stored| {
            let mut state = self.state(&stored, false);
            state.correlation_attributes = correlation::collect(correlation_attributes, &stored.account_name, |name| {
                stored.attributes.get(name).cloned().into_iter().collect()
            });
            state
        }))
    }

    async fn link(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        let current = self.target.get(&account.account_name);
        let state = current.as_ref().map(|stored| self.state(stored, false));
        let step =
            correlation::link_step(state.as_ref(), &account.account_name, &account.person_id, expected_fingerprint)?;
        let mut changes = Vec::new();
        if let (correlation::LinkStep::WriteKey, Some(mut stored)) = (step, current) {
            stored.person_id = account.person_id.clone();
            stored.changed_at = SystemTime::now();
            self.target.put(&account.account_name, Some(stored));
            self.target.journal(command_id, &account.account_name, "link", &account.person_id);
            changes.push(change("link", &account.account_name));
        }
        let mut acknowledgement = self.apply(command_id, desired).await?;
        changes.append(&mut acknowledgement.changes);
        acknowledgement.changes = changes;
        Ok(acknowledgement)
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        Ok(match self.owned(account)? {
            Some(stored) => self.state(&stored, self.target.faults().read_disagrees),
            None => pb::AccountState { account: Some(account.clone()), exists: false, ..Default::default() },
        })
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.list_scope(page_size, &[])
    }

    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let requested: Arc<[String]> = correlation_attributes.into();
        let this = self.clone();
        let limit = page_size.max(1) as usize;
        Box::pin(futures::stream::unfold(Some(None::<String>), move |cursor| {
            let this = this.clone();
            let requested = requested.clone();
            async move {
                let after = cursor?;
                let page = this.target.page(after.as_deref(), limit);
                if page.is_empty() {
                    return None;
                }
                let next = (page.len() == limit).then(|| page.last().map(|a| a.account_name.clone())).flatten();
                let states = page
                    .iter()
                    .map(|stored| {
                        let mut state = this.state(stored, false);
                        state.correlation_attributes = correlation::collect(&requested, &stored.account_name, |name| {
                            stored.attributes.get(name).cloned().into_iter().collect()
                        });
                        state
                    })
                    .collect();
                Some((Ok(states), next.map(Some)))
            }
        }))
    }
}
