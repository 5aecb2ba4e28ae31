//! The provisioning contract over IAM: [`IamConnector`].
//!
//! Apply converges one IAM user in four phases, so a refused request writes
//! nothing: (1) every name is checked against IAM's rules; (2) the user is
//! read and its ownership checked (managed path and correlation tag); (3)
//! every entitlement the desired state adds is checked to exist; (4) only then
//! are changes made, in this order: create, attributes (tags), the disabled
//! marker, credential revocation or deactivation, entitlement removals (inline
//! policies, attached policies, group memberships), entitlement additions.
//! A leaver's deletion removes everything AWS requires before `DeleteUser`, in
//! AWS's order (see [`IamConnector::clean_up_and_delete`]).
//!
//! Scope (#17): `List` enumerates every user whose path is the managed
//! `user_path`, those without the correlation tag with an empty key; a link
//! tags such a user with the person id once its fingerprint is as the caller
//! listed it, then converges it.
//!
//! Owned identities (#20, [`crate::owned`]): when configured, Read lists the
//! service users the person owns and Apply acts on a leaver's directive
//! after converging the account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use connector_kit::contract as pb;
use connector_kit::validate::printable;
use connector_kit::{AccountStream, CONTRACT_VERSION, Connector, ConnectorError, ErrorKind, correlation};
use futures::StreamExt;

use crate::config::{ConfigError, IamConfig};
use crate::names;
use crate::target::{HeldCredentials, IamTarget, IamUser, SESSION_CUTOFF_POLICY, UserHoldings};

/// The entitlement kind of group memberships (id: the group name).
pub const KIND_GROUP: &str = "group";
/// The entitlement kind of attached managed policies (id: the policy ARN).
pub const KIND_POLICY: &str = "policy";
/// The entitlement kind of inline user policies (id: the policy name). Only
/// ever read and removed: the desired state cannot grant one.
pub const KIND_INLINE_POLICY: &str = "inline_policy";

/// The value of the disabled marker tag.
const DISABLED_MARKER: &str = "true";

/// The AWS IAM connector.
#[derive(Clone)]
pub struct IamConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: IamConfig,
    target: IamTarget,
}

fn change(action: &str, subject: impl Into<String>) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

/// Whether a list of IAM names holds `name`, as IAM compares names (ignoring case).
fn holds_name(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

impl IamConnector {
    /// Checks the configuration and builds the SDK client (no call is made).
    pub async fn connect(config: IamConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let target = IamTarget::connect(&config).await;
        Ok(Self::new(config, target))
    }

    /// A connector over an already built target client.
    pub fn new(config: IamConfig, target: IamTarget) -> Self {
        Self { inner: Arc::new(Inner { config, target }) }
    }

    /// The IAM client (for tests that inspect the target directly).
    pub fn target(&self) -> &IamTarget {
        &self.inner.target
    }

    /// The configuration in force.
    pub fn config(&self) -> &IamConfig {
        &self.inner.config
    }

    fn check_account(account: &pb::AccountRef) -> Result<(), ConnectorError> {
        names::user_name("desired.account.account_name", &account.account_name)?;
        names::person_id("desired.account.person_id", &account.person_id)?;
        Ok(())
    }

    fn check_desired(&self, desired: &pb::DesiredAccount) -> Result<(), ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        Self::check_account(&account)?;
        if desired.presence != pb::Presence::Present as i32 {
            return Ok(());
        }
        if let Some(directive) = desired.owned_identities.as_ref().filter(|d| !d.new_owner.is_empty()) {
            names::tag_value("desired.owned_identities.new_owner", &directive.new_owner)?;
        }
        for (name, value) in &desired.attributes {
            names::tag_value(&format!("desired.attributes.{}", printable(name)), value)?;
        }
        let mut groups = BTreeSet::new();
        for (index, entitlement) in desired.entitlements.iter().enumerate() {
            let field = format!("desired.entitlements[{index}].id");
            match entitlement.kind.as_str() {
                KIND_GROUP => {
                    names::group_name(&field, &entitlement.id)?;
                    if !groups.insert(entitlement.id.to_ascii_lowercase()) {
                        return Err(ConnectorError::invalid_argument(
                            field,
                            "duplicate group (IAM group names ignore case)",
                        ));
                    }
                }
                KIND_POLICY => names::policy_arn(&field, &entitlement.id)?,
                KIND_INLINE_POLICY => {
                    return Err(ConnectorError::invalid_argument(
                        format!("desired.entitlements[{index}].kind"),
                        "inline policies cannot be granted by this connector, only removed: grant a group or a managed policy",
                    ));
                }
                other => {
                    return Err(ConnectorError::invalid_argument(
                        format!("desired.entitlements[{index}].kind"),
                        format!("{:?} is not an entitlement kind this connector manages", printable(other)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses a user this connector must not touch: outside the managed
    /// path, without the correlation tag, or tagged with another person.
    fn check_owned(&self, user: &IamUser, account: &pb::AccountRef) -> Result<(), ConnectorError> {
        let config = &self.inner.config;
        let name = printable(&account.account_name);
        if user.path != config.user_path {
            return Err(ConnectorError::conflict(format!(
                "IAM user {name:?} exists outside the managed path {}: this connector does not touch it",
                config.user_path
            )));
        }
        match user.tags.get(&config.person_tag_key) {
            None => Err(ConnectorError::conflict(format!(
                "IAM user {name:?} exists without the {} tag: this connector does not touch it",
                config.person_tag_key
            ))),
            Some(person_id) if person_id != &account.person_id => {
                Err(ConnectorError::conflict(format!("IAM user {name:?} belongs to another person")))
            }
            Some(_) => Ok(()),
        }
    }

    fn is_disabled(&self, user: &IamUser) -> bool {
        user.tags.get(&self.inner.config.disabled_tag_key).is_some_and(|v| v == DISABLED_MARKER)
    }

    /// The account as the contract shows it.
    fn state(&self, user: &IamUser, person_id: &str, holdings: &UserHoldings) -> pb::AccountState {
        let config = &self.inner.config;
        let credentials = &holdings.credentials;
        let mut entitlements: Vec<pb::Entitlement> = Vec::new();
        entitlements.extend(holdings.groups.iter().map(|group| pb::Entitlement {
            kind: KIND_GROUP.into(),
            id: group.clone(),
            privileged: config.group_is_privileged(group),
        }));
        entitlements.extend(holdings.policies.iter().map(|arn| pb::Entitlement {
            kind: KIND_POLICY.into(),
            id: arn.clone(),
            privileged: config.policy_is_privileged(arn),
        }));
        // An inline policy can grant anything: counted as privileged.
        entitlements.extend(holdings.inline_policies.iter().map(|name| pb::Entitlement {
            kind: KIND_INLINE_POLICY.into(),
            id: name.clone(),
            privileged: true,
        }));
        let attributes = config
            .attribute_tags
            .iter()
            .filter_map(|(name, key)| user.tags.get(key).map(|value| (name.clone(), value.clone())))
            .collect();
        pb::AccountState {
            account: Some(pb::AccountRef { person_id: person_id.to_owned(), account_name: user.user_name.clone() }),
            exists: true,
            enabled: !self.is_disabled(user) || usable(credentials),
            attributes,
            entitlements,
            credentials: Some(pb::CredentialState {
                active: credential_labels(credentials),
                complete: !config.target_lacks_service_specific_credentials,
                residual_risks: Vec::new(),
                cutoffs: holdings.session_cutoff.iter().flat_map(session_cutoffs).collect(),
            }),
            target_native_id: user.user_id.clone(),
            last_activity: user.password_last_used.or(user.created).map(prost_types::Timestamp::from),
            ..Default::default()
        }
    }

    /// Reads one managed user; `None` when it does not exist (or vanished
    /// while being read).
    async fn read_owned(&self, account: &pb::AccountRef) -> Result<Option<(IamUser, UserHoldings)>, ConnectorError> {
        let target = &self.inner.target;
        let Some(user) = target.get_user(&account.account_name).await? else {
            return Ok(None);
        };
        self.check_owned(&user, account)?;
        match target.holdings(&user.user_name).await {
            Ok(holdings) => Ok(Some((user, holdings))),
            Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Checks that one entitlement to be added exists.
    async fn check_entitlement_exists(&self, index: usize, entitlement: pb::Entitlement) -> Result<(), ConnectorError> {
        let target = &self.inner.target;
        let exists = match entitlement.kind.as_str() {
            KIND_GROUP => target.group(&entitlement.id).await?.is_some(),
            KIND_POLICY => target.policy_exists(&entitlement.id).await?,
            _ => false,
        };
        if exists {
            Ok(())
        } else {
            Err(ConnectorError::not_found(format!(
                "{} {:?} does not exist in this AWS account",
                entitlement.kind,
                printable(&entitlement.id)
            ))
            .with_field(format!("desired.entitlements[{index}].id")))
        }
    }

    /// Checks that every entitlement to be added exists, before any write.
    async fn check_entitlements_exist(&self, to_add: &[(usize, &pb::Entitlement)]) -> Result<(), ConnectorError> {
        let checks: Vec<_> = to_add
            .iter()
            .map(|(index, entitlement)| self.check_entitlement_exists(*index, (*entitlement).clone()))
            .collect();
        futures::future::try_join_all(checks).await.map(|_| ())
    }

    /// Revokes every credential, in the order AWS requires before
    /// `DeleteUser`: login profile, access keys, signing certificates, SSH
    /// public keys, service-specific credentials, MFA devices (deactivated,
    /// virtual ones deleted). Each step is idempotent.
    async fn revoke_all(
        &self,
        user_name: &str,
        held: &HeldCredentials,
        changes: &mut Vec<pb::Change>,
    ) -> Result<(), ConnectorError> {
        let target = &self.inner.target;
        if held.login_profile {
            target.delete_login_profile(user_name).await?;
            changes.push(change("revoke_credential", "login_profile"));
        }
        for key in &held.access_keys {
            target.delete_access_key(user_name, &key.id).await?;
            changes.push(change("revoke_credential", format!("access_key:{}", key.id)));
        }
        for certificate in &held.signing_certificates {
            target.delete_signing_certificate(user_name, &certificate.id).await?;
            changes.push(change("revoke_credential", format!("signing_certificate:{}", certificate.id)));
        }
        for key in &held.ssh_public_keys {
            target.delete_ssh_public_key(user_name, &key.id).await?;
            changes.push(change("revoke_credential", format!("ssh_public_key:{}", key.id)));
        }
        for credential in &held.service_specific_credentials {
            target.delete_service_specific_credential(user_name, &credential.id).await?;
            changes.push(change("revoke_credential", format!("service_specific_credential:{}", credential.id)));
        }
        for serial in &held.mfa_devices {
            target.remove_mfa_device(user_name, serial).await?;
            changes.push(change("revoke_credential", format!("mfa_device:{serial}")));
        }
        Ok(())
    }

    /// Makes every credential unusable while keeping it: the login profile
    /// is deleted (IAM cannot deactivate one) and every active access key,
    /// signing certificate, SSH public key and service-specific credential is
    /// set `Inactive`.
    pub(crate) async fn deactivate_all(
        &self,
        user_name: &str,
        held: &HeldCredentials,
        changes: &mut Vec<pb::Change>,
    ) -> Result<(), ConnectorError> {
        let target = &self.inner.target;
        if held.login_profile {
            target.delete_login_profile(user_name).await?;
            changes.push(change("revoke_credential", "login_profile"));
        }
        for key in held.access_keys.iter().filter(|k| k.active) {
            target.deactivate_access_key(user_name, &key.id).await?;
            changes.push(change("deactivate_credential", format!("access_key:{}", key.id)));
        }
        for certificate in held.signing_certificates.iter().filter(|c| c.active) {
            target.deactivate_signing_certificate(user_name, &certificate.id).await?;
            changes.push(change("deactivate_credential", format!("signing_certificate:{}", certificate.id)));
        }
        for key in held.ssh_public_keys.iter().filter(|k| k.active) {
            target.deactivate_ssh_public_key(user_name, &key.id).await?;
            changes.push(change("deactivate_credential", format!("ssh_public_key:{}", key.id)));
        }
        for credential in held.service_specific_credentials.iter().filter(|c| c.active) {
            target.deactivate_service_specific_credential(user_name, &credential.id).await?;
            changes.push(change("deactivate_credential", format!("service_specific_credential:{}", credential.id)));
        }
        Ok(())
    }

    /// Removes the entitlements the desired state lacks, in AWS's clean-up
    /// order: inline policies, attached managed policies, group memberships.
    async fn remove_excess(
        &self,
        user_name: &str,
        holdings: &UserHoldings,
        wanted_groups: &[String],
        wanted_policies: &[String],
        changes: &mut Vec<pb::Change>,
    ) -> Result<(), ConnectorError> {
        let target = &self.inner.target;
        for name in &holdings.inline_policies {
            target.delete_inline_policy(user_name, name).await?;
            changes.push(change("remove_entitlement", format!("{KIND_INLINE_POLICY}:{name}")));
        }
        for arn in holdings.policies.iter().filter(|arn| !wanted_policies.contains(arn)) {
            target.detach_policy(user_name, arn).await?;
            changes.push(change("remove_entitlement", format!("{KIND_POLICY}:{arn}")));
        }
        for group in holdings.groups.iter().filter(|group| !holds_name(wanted_groups, group)) {
            target.remove_from_group(user_name, group).await?;
            changes.push(change("remove_entitlement", format!("{KIND_GROUP}:{group}")));
        }
        Ok(())
    }

    /// A leaver's deletion: every credential (see [`Self::revoke_all`]),
    /// inline policies, attached policies and group memberships removed, then
    /// `DeleteUser`.
    async fn clean_up_and_delete(
        &self,
        user: &IamUser,
        holdings: &UserHoldings,
    ) -> Result<Vec<pb::Change>, ConnectorError> {
        let mut changes = Vec::new();
        self.revoke_all(&user.user_name, &holdings.credentials, &mut changes).await?;
        self.remove_excess(&user.user_name, holdings, &[], &[], &mut changes).await?;
        if holdings.session_cutoff.is_some() {
            self.inner.target.delete_inline_policy(&user.user_name, SESSION_CUTOFF_POLICY).await?;
        }
        self.inner.target.delete_user(&user.user_name).await?;
        changes.push(change("delete", user.user_name.clone()));
        Ok(changes)
    }

    async fn apply_absent(&self, account: &pb::AccountRef) -> Result<pb::ApplyResponse, ConnectorError> {
        let Some((user, holdings)) = self.read_owned(account).await? else {
            return Ok(pb::ApplyResponse::default());
        };
        let changes = self.clean_up_and_delete(&user, &holdings).await?;
        tracing::info!(changes = changes.len(), "IAM user deleted after clean-up");
        Ok(pb::ApplyResponse { changes, ..Default::default() })
    }

    async fn apply_present(&self, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let config = &self.inner.config;
        let target = &self.inner.target;
        let account = desired.account.clone().unwrap_or_default();
        let existing = self.read_owned(&account).await?;

        let wanted_groups: Vec<String> =
            desired.entitlements.iter().filter(|e| e.kind == KIND_GROUP).map(|e| e.id.clone()).collect();
        let wanted_policies: Vec<String> =
            desired.entitlements.iter().filter(|e| e.kind == KIND_POLICY).map(|e| e.id.clone()).collect();
        let held = existing.as_ref().map(|(_, holdings)| holdings.clone()).unwrap_or_default();
        let to_add: Vec<(usize, &pb::Entitlement)> = desired
            .entitlements
            .iter()
            .enumerate()
            .filter(|(_, e)| match e.kind.as_str() {
                KIND_GROUP => !holds_name(&held.groups, &e.id),
                KIND_POLICY => !held.policies.contains(&e.id),
                _ => false,
            })
            .collect();
        self.check_entitlements_exist(&to_add).await?;

        let mut changes = Vec::new();
        let wanted_tags: BTreeMap<String, String> = desired
            .attributes
            .iter()
            .filter_map(|(name, value)| config.attribute_tags.get(name).map(|key| (key.clone(), value.clone())))
            .collect();
        let (user, holdings) = match existing {
            Some(found) => found,
            None => {
                let mut tags: BTreeMap<String, String> = wanted_tags
                    .iter()
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                tags.insert(config.person_tag_key.clone(), account.person_id.clone());
                if !desired.enabled {
                    tags.insert(config.disabled_tag_key.clone(), DISABLED_MARKER.into());
                }
                let user = target.create_user(&account.account_name, &config.user_path, &tags).await?;
                changes.push(change("create", user.user_name.clone()));
                for (name, value) in &desired.attributes {
                    if !value.is_empty() {
                        changes.push(change("set_attribute", name.clone()));
                    }
                }
                if !desired.enabled {
                    changes.push(change("disable", user.user_name.clone()));
                }
                (user, UserHoldings::default())
            }
        };
        let user_name = user.user_name.clone();

        // Attributes, stored as tags; an empty value removes the tag.
        let mut set_tags = BTreeMap::new();
        let mut remove_tags = Vec::new();
        for (name, value) in &desired.attributes {
            let Some(key) = config.attribute_tags.get(name) else { continue };
            let current = user.tags.get(key);
            if value.is_empty() {
                if current.is_some() {
                    remove_tags.push(key.clone());
                    changes.push(change("set_attribute", name.clone()));
                }
            } else if current != Some(value) {
                set_tags.insert(key.clone(), value.clone());
                changes.push(change("set_attribute", name.clone()));
            }
        }
        // Enabled: the disabled marker tag.
        let disabled = self.is_disabled(&user);
        if desired.enabled && disabled {
            remove_tags.push(config.disabled_tag_key.clone());
            changes.push(change("enable", user_name.clone()));
        } else if !desired.enabled && !disabled {
            set_tags.insert(config.disabled_tag_key.clone(), DISABLED_MARKER.into());
            changes.push(change("disable", user_name.clone()));
        }
        target.tag_user(&user_name, &set_tags).await?;
        target.untag_user(&user_name, &remove_tags).await?;

        // Credentials: revoked (deleted) on request; made unusable when disabled.
        let mut cutoffs = Vec::new();
        if desired.credentials == pb::CredentialAction::RevokeAll as i32 {
            let before = changes.len();
            self.revoke_all(&user_name, &holdings.credentials, &mut changes).await?;
            // Sessions issued before now are cut off: written when this
            // command revoked anything or no cut-off is in place yet, so a
            // re-applied revocation changes nothing.
            if changes.len() > before || holdings.session_cutoff.is_none() {
                let now = std::time::SystemTime::now();
                let seconds = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() + 1).unwrap_or_default();
                let cutoff = aws_sdk_iam::primitives::DateTime::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
                let document = crate::target::session_cutoff_document(&cutoff);
                target.put_inline_policy(&user_name, SESSION_CUTOFF_POLICY, &document).await?;
                changes.push(change("cut_off_sessions", SESSION_CUTOFF_POLICY));
                cutoffs = session_cutoffs(&cutoff);
            }
        } else if !desired.enabled {
            self.deactivate_all(&user_name, &holdings.credentials, &mut changes).await?;
        }

        // Entitlements: what is no longer granted goes first, then additions.
        self.remove_excess(&user_name, &holdings, &wanted_groups, &wanted_policies, &mut changes).await?;
        for (_, entitlement) in &to_add {
            match entitlement.kind.as_str() {
                KIND_GROUP => target.add_to_group(&user_name, &entitlement.id).await?,
                KIND_POLICY => target.attach_policy(&user_name, &entitlement.id).await?,
                _ => continue,
            }
            changes.push(change("add_entitlement", format!("{}:{}", entitlement.kind, entitlement.id)));
        }
        if let Some(directive) = &desired.owned_identities {
            self.act_on_owned(&account.person_id, directive, &mut changes).await?;
        }
        if !changes.is_empty() {
            tracing::info!(changes = changes.len(), "IAM user converged");
        }
        Ok(pb::ApplyResponse { changes, target_native_id: user.user_id, cutoffs, ..Default::default() })
    }

    /// The state of one listed user (an empty key without the correlation
    /// tag), with the requested correlation tags, or `None` when it vanished
    /// while being read.
    async fn listed_state(
        &self,
        user: IamUser,
        requested: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        let target = &self.inner.target;
        let tags = match target.user_tags(&user.user_name).await {
            Ok(tags) => tags,
            Err(error) if error.kind == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let person_id = tags.get(&self.inner.config.person_tag_key).cloned().unwrap_or_default();
        let user = IamUser { tags, ..user };
        match target.holdings(&user.user_name).await {
            Ok(holdings) => {
                let mut state = self.state(&user, &person_id, &holdings);
                state.correlation_attributes = correlation::collect(requested, &user.user_name, |key| {
                    user.tags.get(key).cloned().into_iter().collect()
                });
                Ok(Some(state))
            }
            Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The user named `account_name` in the managed path, whoever's it is,
    /// and its state as `List` shows it with the requested correlation tags.
    async fn scope_user(
        &self,
        account_name: &str,
        requested: &[String],
    ) -> Result<Option<(IamUser, pb::AccountState)>, ConnectorError> {
        let config = &self.inner.config;
        let target = &self.inner.target;
        let Some(user) = target.get_user(account_name).await?.filter(|user| user.path == config.user_path) else {
            return Ok(None);
        };
        let person_id = user.tags.get(&config.person_tag_key).cloned().unwrap_or_default();
        let mut state = self.state(&user, &person_id, &target.holdings(&user.user_name).await?);
        state.correlation_attributes =
            correlation::collect(requested, &user.user_name, |key| user.tags.get(key).cloned().into_iter().collect());
        Ok(Some((user, state)))
    }

    /// Tags the untagged user `desired` names with the person id, as the
    /// caller listed it, then converges it.
    async fn link_user(
        &self,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let config = &self.inner.config;
        let target = &self.inner.target;
        let account = desired.account.clone().unwrap_or_default();
        Self::check_account(&account)?;
        let found = self.scope_user(&account.account_name, &[]).await?;
        let (user, state) = found.map_or((None, None), |(user, state)| (Some(user), Some(state)));
        let step =
            correlation::link_step(state.as_ref(), &account.account_name, &account.person_id, expected_fingerprint)?;
        let mut changes = Vec::new();
        if let (correlation::LinkStep::WriteKey, Some(user)) = (step, &user) {
            let key = BTreeMap::from([(config.person_tag_key.clone(), account.person_id.clone())]);
            target.tag_user(&user.user_name, &key).await?;
            changes.push(change("link", user.user_name.clone()));
        }
        let mut acknowledgement = self.apply_present(desired).await?;
        changes.append(&mut acknowledgement.changes);
        acknowledgement.changes = changes;
        Ok(acknowledgement)
    }

    async fn page_states(
        &self,
        users: Vec<IamUser>,
        requested: &[String],
    ) -> Result<Vec<pb::AccountState>, ConnectorError> {
        let results: Vec<Result<Option<pb::AccountState>, ConnectorError>> = futures::stream::iter(users)
            .map(|user| self.listed_state(user, requested))
            .buffered(self.inner.config.read_concurrency)
            .collect()
            .await;
        let mut states = Vec::with_capacity(results.len());
        for result in results {
            if let Some(state) = result? {
                states.push(state);
            }
        }
        Ok(states)
    }
}

/// Whether any credential lets the user in: a console password, or an active
/// access key, signing certificate, SSH public key or service-specific
/// credential.
pub(crate) fn usable(credentials: &HeldCredentials) -> bool {
    credentials.login_profile
        || credentials.access_keys.iter().any(|c| c.active)
        || credentials.signing_certificates.iter().any(|c| c.active)
        || credentials.ssh_public_keys.iter().any(|c| c.active)
        || credentials.service_specific_credentials.iter().any(|c| c.active)
}

/// The session kinds one cut-off policy (read back) refuses.
fn session_cutoffs(before: &aws_sdk_iam::primitives::DateTime) -> Vec<pb::CredentialCutoff> {
    ["sts_session", "console_session"]
        .into_iter()
        .map(|kind| pb::CredentialCutoff {
            credential_kind: kind.into(),
            issued_before: Some(prost_types::Timestamp { seconds: before.secs(), nanos: 0 }),
            proof: format!(
                "inline policy {SESSION_CUTOFF_POLICY}: Deny * on * when aws:TokenIssueTime < {}",
                before.fmt(aws_sdk_iam::primitives::DateTimeFormat::DateTime).unwrap_or_default()
            ),
        })
        .collect()
}

/// IAM's credential kinds: long-term credentials are enumerated and deleted;
/// session credentials cannot be listed, and are cut off by an inline
/// deny-all on `aws:TokenIssueTime` that the read-back shows.
fn credential_kinds(config: &IamConfig) -> Vec<pb::CredentialKindSpec> {
    use connector_kit::credentials::{kind, outlives_for};
    let mut kinds = vec![
        kind("login_profile", true, true, None),
        kind("access_key", true, true, None),
        kind("signing_certificate", true, true, None),
        kind("ssh_public_key", true, true, None),
        kind("mfa_device", true, true, None),
    ];
    kinds.push(kind(
        "service_specific_credential",
        !config.target_lacks_service_specific_credentials,
        !config.target_lacks_service_specific_credentials,
        None,
    ));
    kinds.push(kind(
        "sts_session",
        false,
        true,
        Some(outlives_for(
            "sts_session",
            "temporary credentials from GetSessionToken or GetFederationToken issued before the revocation \
             (cut off by the session cut-off policy when the read-back shows it)",
            std::time::Duration::from_secs(36 * 3600),
        )),
    ));
    kinds.push(kind(
        "console_session",
        false,
        true,
        Some(outlives_for(
            "console_session",
            "AWS console sessions signed in before the revocation (cut off by the session cut-off policy when the \
             read-back shows it)",
            std::time::Duration::from_secs(12 * 3600),
        )),
    ));
    kinds
}

/// Every credential the user holds, as `kind:id` (never a secret); inactive
/// ones end in `:inactive` (IAM lets an administrator reactivate them, so a
/// revocation is only proven when they are gone).
pub(crate) fn credential_labels(credentials: &HeldCredentials) -> Vec<String> {
    let mut labels = Vec::new();
    if credentials.login_profile {
        labels.push("login_profile".to_owned());
    }
    for (kind, held) in [
        ("access_key", &credentials.access_keys),
        ("signing_certificate", &credentials.signing_certificates),
        ("ssh_public_key", &credentials.ssh_public_keys),
        ("service_specific_credential", &credentials.service_specific_credentials),
    ] {
        for credential in held {
            let suffix = if credential.active { "" } else { ":inactive" };
            labels.push(format!("{kind}:{}{suffix}", credential.id));
        }
    }
    labels.extend(credentials.mfa_devices.iter().map(|serial| format!("mfa_device:{serial}")));
    labels
}

impl Connector for IamConnector {
    fn describe(&self) -> pb::DescribeResponse {
        let config = &self.inner.config;
        let mut limitations = vec![
            "enabled means: no disabled-marker tag, or a credential still usable; disabling deletes the login \
             profile and deactivates every key, enabling removes the marker and restores no credential"
                .to_owned(),
            "inline policies are reported (kind inline_policy) and removed, never granted".to_owned(),
            "a joiner gets no credential: passwords and keys are issued outside the connector".to_owned(),
        ];
        if config.target_lacks_service_specific_credentials {
            limitations.push(
                "configured for a target without the service-specific credential API: such credentials are \
                 neither listed nor deleted"
                    .to_owned(),
            );
        }
        pb::DescribeResponse {
            connector_kind: "aws_iam".into(),
            target_id: config.target_id.clone(),
            contract_version: CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: !config.target_lacks_service_specific_credentials,
                list: true,
                unmanaged_entitlements: false,
                credential_cutoff: true,
                link: true,
                scope_listing: true,
                owned_identities: config.owned_identities.is_some(),
                ..Default::default()
            }),
            owned_identities: crate::owned::support(config.owned_identities.as_ref()),
            credential_kinds: credential_kinds(config),
            account_naming: Some(connector_kit::naming::rule(
                &[('a', 'z'), ('A', 'Z'), ('0', '9')]
                    .into_iter()
                    .chain(connector_kit::naming::singles("_+=,.@-"))
                    .collect::<Vec<_>>(),
                (1, u32::try_from(names::MAX_USER_NAME).unwrap_or(u32::MAX)),
                pb::ValueComparison::CaseInsensitive,
                false,
                "",
                "IAM user name: 1 to 64 of A-Z a-z 0-9 _+=,.@- (unique case-insensitively)",
            )),
            entitlement_kinds: vec![
                pb::EntitlementKind {
                    kind: KIND_GROUP.into(),
                    comparison: pb::ValueComparison::CaseInsensitive as i32,
                },
                pb::EntitlementKind { kind: KIND_POLICY.into(), comparison: pb::ValueComparison::Exact as i32 },
                pb::EntitlementKind { kind: KIND_INLINE_POLICY.into(), comparison: pb::ValueComparison::Exact as i32 },
            ],
            attributes: config
                .attribute_tags
                .keys()
                .map(|name| pb::AttributeSpec {
                    name: name.clone(),
                    comparison: pb::ValueComparison::Exact as i32,
                    required: false,
                })
                .collect(),
            account_name_comparison: pb::ValueComparison::CaseInsensitive as i32,
            limitations,
            correlation_attributes: config
                .attribute_tags
                .values()
                .chain(config.correlation_tags.iter())
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect(),
            scope: format!("every IAM user whose path is {} (sub-paths excluded)", config.user_path),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        self.inner.target.preflight(&self.inner.config.user_path).await
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        self.check_desired(desired)?;
        tracing::debug!(command_id, "applying desired state to IAM");
        if desired.presence == pb::Presence::Absent as i32 {
            let account = desired.account.clone().unwrap_or_default();
            self.apply_absent(&account).await
        } else {
            self.apply_present(desired).await
        }
    }

    async fn link(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        self.check_desired(desired)?;
        tracing::debug!(command_id, "linking an existing IAM user");
        self.link_user(desired, expected_fingerprint).await
    }

    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        names::user_name("account_name", account_name)?;
        Ok(self.scope_user(account_name, correlation_attributes).await?.map(|(_, state)| state))
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        Self::check_account(account)?;
        Ok(match self.read_owned(account).await? {
            Some((user, holdings)) => {
                let mut state = self.state(&user, &account.person_id, &holdings);
                (state.owned_identities, state.owned_identities_complete) =
                    self.owned_identities(&account.person_id).await?;
                state
            }
            None => pb::AccountState { account: Some(account.clone()), exists: false, ..Default::default() },
        })
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.list_scope(page_size, &[])
    }

    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let requested: Arc<[String]> = correlation_attributes.into();
        let this = self.clone();
        let page_size = if page_size == 0 { this.inner.config.list_page_size } else { page_size.min(1000) };
        let users = this.inner.target.list_users(&this.inner.config.user_path, page_size);
        let limit = page_size as usize;
        Box::pin(futures::stream::unfold(Some(users), move |users| {
            let this = this.clone();
            let requested = requested.clone();
            async move {
                let mut users = users?;
                let mut batch = Vec::with_capacity(limit);
                let mut more = true;
                while batch.len() < limit {
                    match users.next().await {
                        // Only the managed path itself: sub-paths are not ours.
                        Some(Ok(user)) if user.path == this.inner.config.user_path => batch.push(user),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Some((Err(error), None)),
                        None => {
                            more = false;
                            break;
                        }
                    }
                }
                if batch.is_empty() && !more {
                    return None;
                }
                let page = this.page_states(batch, &requested).await;
                let next = if more && page.is_ok() { Some(users) } else { None };
                Some((page, next))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::HeldCredential;

    #[test]
    fn credential_labels_name_every_kind_and_no_secret() {
        let held = HeldCredentials {
            login_profile: true,
            access_keys: vec![
                HeldCredential { id: "AKIA1".into(), active: true },
                HeldCredential { id: "AKIA2".into(), active: false },
            ],
            signing_certificates: vec![HeldCredential { id: "CERT".into(), active: true }],
            ssh_public_keys: vec![HeldCredential { id: "APKA".into(), active: false }],
            service_specific_credentials: vec![HeldCredential { id: "ACCA".into(), active: true }],
            mfa_devices: vec!["arn:aws:iam::123456789012:mfa/alice".into()],
        };
        assert_eq!(
            credential_labels(&held),
            vec![
                "login_profile",
                "access_key:AKIA1",
                "access_key:AKIA2:inactive",
                "signing_certificate:CERT",
                "ssh_public_key:APKA:inactive",
                "service_specific_credential:ACCA",
                "mfa_device:arn:aws:iam::123456789012:mfa/alice",
            ]
        );
        assert!(usable(&held));
    }

    #[test]
    fn inactive_credentials_and_mfa_alone_are_not_usable() {
        let held = HeldCredentials {
            access_keys: vec![HeldCredential { id: "AKIA2".into(), active: false }],
            mfa_devices: vec!["GAHT1".into()],
            ..Default::default()
        };
        assert!(!usable(&held));
        assert!(!usable(&HeldCredentials::default()));
    }
}
