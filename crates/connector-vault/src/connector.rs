//! The contract over a Vault-API server: userpass users, policies as
//! privileged entitlements, disable by removing the login, and credential
//! revocation as far as the server allows, stated in `Describe` and in every
//! acknowledgement that relies on it.
//!
//! # Model
//!
//! - An **account** is a userpass user plus the connector's **record** of it,
//!   a KV (version 1) entry at `<records.mount>/<records.prefix>/<user>` on the
//!   same server holding the person id (the correlation key: userpass users
//!   carry no metadata), the assigned policies and whether the account is
//!   enabled. A user without a record is not managed and never touched; a
//!   record naming another person is a conflict.
//! - **Entitlements** are policies (kind `policy`, all privileged). Read
//!   reports as held only what the server shows in force: the user's
//!   `token_policies`. A disabled account has no user, so it holds none; the
//!   policies enabling it would restore are only in the record and are
//!   reported apart (`AccountState.dormant_entitlements`), so a leaver is
//!   proven by the server (no user) and by an emptied record, and a policy
//!   kept on leave is never mistaken for one in force.
//! - **Disable** deletes the userpass user: no password login is possible,
//!   provably (the user reads back as absent), and no policy is attached to any
//!   login. **Enable** recreates it with a random password that is never
//!   disclosed; people set their password out of band.
//! - **Credential revocation**: the password is made unusable (user deleted,
//!   or replaced by a random value when the account stays enabled); tokens are
//!   revoked through `sys/leases/revoke-prefix` on the login path and, where
//!   tokens can be enumerated (`auth/token/accessors`), one by one. Where the
//!   server implements neither (RustyVault 0.2.1), live tokens cannot be
//!   revoked: the acknowledgement warns, read-back says the credential listing
//!   is incomplete, and the coordinator does not mark revocation verified.
//!   Every managed user gets `token_ttl` / `token_max_ttl`, which bound how
//!   long such a token can live.
//! - **Scope** (#17): every userpass user of the mount, and every record.
//!   `List` shows a user without a record with an empty key (its policies,
//!   its password); a link writes the record (person id, the user's current
//!   policies, enabled) once the user is as the caller listed it, then
//!   converges it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use connector_kit::contract as pb;
use connector_kit::validate::printable;
use connector_kit::{AccountStream, CONTRACT_VERSION, Connector, ConnectorError, correlation};
use rand::Rng;
use tokio::sync::Mutex;

use crate::config::VaultConfig;
use crate::names::{KvPath, PolicyName, UserName};
use crate::target::{AccountRecord, Support, TargetError, UserEntry, UserWrite, VaultTarget};

/// The one entitlement kind this connector manages.
pub const POLICY_KIND: &str = "policy";
/// The `managed_by` value of every record this connector writes.
pub const MANAGED_BY: &str = "lifecycle-mesh";

/// What the server implements, found by probing it once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerProfile {
    /// `sys/leases/revoke-prefix` is implemented and allowed to this token.
    pub revoke_prefix: bool,
    /// Tokens can be enumerated through `auth/token/accessors`.
    pub token_enumeration: bool,
    /// ACL policies can be listed, read and written through `sys/policies/acl`.
    pub policy_store: bool,
}

impl ServerProfile {
    /// Probes the server. The revoke-prefix probe names a login path no user
    /// can have (a random name), so it revokes nothing.
    pub async fn probe(target: &VaultTarget) -> Result<Self, TargetError> {
        let probe_name = UserName::parse(&format!("jml-probe-{:016x}", rand::rng().random::<u64>()))
            .map_err(|message| TargetError::Unexpected { path: "probe".into(), message })?;
        let revoke_prefix = target.revoke_login_leases(&probe_name).await? == Support::Done;
        let token_enumeration = target.token_accessors().await?.is_some();
        let policy_store = target.list_policies().await?.is_some();
        Ok(Self { revoke_prefix, token_enumeration, policy_store })
    }
}

/// A shared secret rotated on a leaver's departure (from the configuration).
#[derive(Debug, Clone)]
struct RotatedSecret {
    path: KvPath,
    fields: Vec<String>,
    readable_by: BTreeSet<PolicyName>,
}

/// The Vault connector. Cheap to clone: clones share the record of which
/// configured policies were already written.
#[derive(Clone)]
pub struct VaultConnector {
    target_id: String,
    target: VaultTarget,
    profile: ServerProfile,
    catalogue: BTreeMap<PolicyName, String>,
    token_ttl: u64,
    token_max_ttl: u64,
    records_location: String,
    shared_secrets: Vec<RotatedSecret>,
    written_policies: Arc<Mutex<BTreeSet<PolicyName>>>,
}

impl std::fmt::Debug for VaultConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConnector")
            .field("target_id", &self.target_id)
            .field("target", &self.target)
            .field("profile", &self.profile)
            .finish()
    }
}

fn change(action: &str, subject: impl Into<String>) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// A random password nobody is told: 256 bits, hex.
fn undisclosed_password() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

fn policy_entitlement(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: POLICY_KIND.into(), id: id.into(), privileged: true }
}

impl VaultConnector {
    /// Loads the token, builds the client and probes the server once.
    pub async fn connect(config: &VaultConfig) -> Result<Self, ConnectorError> {
        let token = config.load_token().map_err(|e| ConnectorError::invalid_argument("config", e.to_string()))?;
        let target =
            VaultTarget::new(config, token).map_err(|e| ConnectorError::invalid_argument("config", e.to_string()))?;
        let profile = ServerProfile::probe(&target).await?;
        Self::with_profile(config, target, profile)
    }

    /// A connector over `target` whose server implements what `profile` says.
    pub fn with_profile(
        config: &VaultConfig,
        target: VaultTarget,
        profile: ServerProfile,
    ) -> Result<Self, ConnectorError> {
        let mut catalogue = BTreeMap::new();
        for (name, body) in &config.policies {
            let policy = PolicyName::parse(name)
                .map_err(|message| ConnectorError::invalid_argument(format!("config.policies.{name}"), message))?;
            catalogue.insert(policy, body.clone());
        }
        let mut shared_secrets = Vec::new();
        for (index, secret) in config.shared_secrets.iter().enumerate() {
            let field = format!("config.shared_secrets[{index}]");
            let path = KvPath::parse(&secret.path)
                .map_err(|message| ConnectorError::invalid_argument(format!("{field}.path"), message))?;
            let readable_by = secret
                .readable_by
                .iter()
                .map(|p| PolicyName::parse(p))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|message| ConnectorError::invalid_argument(format!("{field}.readable_by"), message))?;
            shared_secrets.push(RotatedSecret { path, fields: secret.fields.clone(), readable_by });
        }
        Ok(Self {
            target_id: config.target_id.clone(),
            target,
            profile,
            catalogue,
            token_ttl: config.token_ttl_seconds,
            token_max_ttl: config.token_max_ttl_seconds,
            records_location: format!("{}/{}", config.records.mount, config.records.prefix),
            shared_secrets,
            written_policies: Arc::new(Mutex::new(BTreeSet::new())),
        })
    }

    /// What the server was found to implement.
    pub fn profile(&self) -> ServerProfile {
        self.profile
    }

    /// The client of the server.
    pub fn target(&self) -> &VaultTarget {
        &self.target
    }

    fn limitations(&self) -> Vec<String> {
        let mut limitations = vec![
            format!(
                "userpass users carry no metadata: the person id and the assigned policies are kept in a record \
                 per account at {}/<user> (KV version 1) on the same server; a userpass user without a record is \
                 not managed and is never changed",
                self.records_location
            ),
            "disable deletes the userpass user, so no password login is possible (read-back proves it by the \
             user's absence) and no login carries a policy; the assigned policies stay in the record and are \
             restored on enable"
                .into(),
            "the connector sets only random passwords it never discloses (on create and enable): a person's \
             password is set out of band (auth/<mount>/users/<user>/password)"
                .into(),
            "account names are 3 to 64 ASCII letters, digits, '_' and '-', compared case-insensitively (the \
             server lower-cases them); policy names are ASCII letters, digits, '_', '-' and '.', lower-cased; \
             `root` is never granted"
                .into(),
            format!(
                "removing a policy affects new logins only: tokens already issued keep the policies they were \
                 issued with until revoked or expired (every managed user's tokens have token_ttl {} s and \
                 token_max_ttl {} s)",
                self.token_ttl, self.token_max_ttl
            ),
            "REVOKE_ALL on an account that stays enabled replaces its password with a new random value on every \
             apply that asks for it"
                .into(),
            "owned non-human identities (#20) are not supported (Capabilities.owned_identities is false): AppRole \
             roles carry no metadata where an owner could be held (RustyVault 0.2.1 keeps metadata only on a \
             secret id, fixed when it is issued), there is no identity store with entity metadata, and this \
             connector keeps no owner record for them; a policy asking to transfer, disable or report a leaver's \
             AppRoles on this target is refused at load"
                .into(),
        ];
        if !self.shared_secrets.is_empty() {
            let paths: Vec<&str> = self.shared_secrets.iter().map(|s| s.path.as_str()).collect();
            limitations.push(format!(
                "REVOKE_ALL rotates the configured shared secrets [{}] readable by a policy the command removes; \
                 which policy can read which secret is what the configuration says, not what the server \
                 enforces; consumers of a rotated secret must fetch it again",
                paths.join(", ")
            ));
        }
        if self.profile.revoke_prefix {
            limitations.push(
                "tokens from a user's logins are revoked with sys/leases/revoke-prefix/auth/<mount>/login/<user> on \
                 disable, revocation and delete"
                    .into(),
            );
        } else {
            limitations.push(format!(
                "this server does not implement sys/leases/revoke-prefix: tokens a user obtained before being \
                 disabled, revoked or deleted CANNOT be revoked by this connector and stay valid until they expire, \
                 at most {} s after issue (token_max_ttl set on every managed user)",
                self.token_max_ttl
            ));
        }
        if self.profile.token_enumeration {
            limitations.push(
                "live tokens are found by enumerating every token accessor (auth/token/accessors): cost grows with \
                 the number of tokens on the server"
                    .into(),
            );
        } else {
            limitations.push(
                "live tokens cannot be enumerated on this server (no token accessors): read-back cannot prove that \
                 no token remains (credentials.complete is false), so revocation is never reported as verified"
                    .into(),
            );
        }
        if !self.profile.policy_store {
            let names: Vec<&str> = self.catalogue.keys().map(PolicyName::as_str).collect();
            limitations.push(format!(
                "this server has no ACL policy store reachable through sys/policies/acl: policies can neither be \
                 created nor checked on it, and it does not enforce them (RustyVault 0.2.1 lets every valid token \
                 reach every path); only the configured policies [{}] may be granted, as names on the user",
                names.join(", ")
            ));
        }
        limitations
    }

    /// The warning that goes with any operation meant to end a user's tokens,
    /// when the server cannot revoke or enumerate them.
    fn token_warning(&self, name: &UserName) -> Option<String> {
        match (self.profile.revoke_prefix, self.profile.token_enumeration) {
            (_, true) => None,
            (true, false) => Some(format!(
                "tokens from {name}'s logins were revoked by prefix, but this server cannot enumerate tokens, so \
                 read-back cannot prove none remain"
            )),
            (false, false) => Some(format!(
                "tokens {name} obtained before this command were NOT revoked: this server implements neither \
                 sys/leases/revoke-prefix nor token accessors; they stay valid until they expire, at most {} s \
                 after issue",
                self.token_max_ttl
            )),
        }
    }

    /// Checks every wanted policy before anything is written: configured
    /// (written to the policy store on first use where there is one) or, on a
    /// server with a policy store, existing there.
    async fn check_policies(&self, desired: &pb::DesiredAccount) -> Result<BTreeSet<PolicyName>, ConnectorError> {
        let mut wanted = BTreeSet::new();
        for (index, entitlement) in desired.entitlements.iter().enumerate() {
            let field = format!("desired.entitlements[{index}].id");
            let policy = PolicyName::parse(&entitlement.id)
                .map_err(|message| ConnectorError::invalid_argument(field.clone(), message))?;
            if let Some(body) = self.catalogue.get(&policy) {
                if self.profile.policy_store {
                    let mut written = self.written_policies.lock().await;
                    if !written.contains(&policy) {
                        self.target.write_policy(&policy, body).await?;
                        written.insert(policy.clone());
                    }
                }
            } else if !(self.profile.policy_store && self.target.policy_exists(&policy).await?) {
                return Err(ConnectorError::not_found(format!(
                    "policy {:?} does not exist on this target and is not configured to be created",
                    printable(&entitlement.id)
                ))
                .with_field(field));
            }
            wanted.insert(policy);
        }
        Ok(wanted)
    }

    fn user_name(field: &str, account: &pb::AccountRef) -> Result<UserName, ConnectorError> {
        UserName::parse(&account.account_name).map_err(|message| ConnectorError::invalid_argument(field, message))
    }

    /// The record and the user, checked to belong to `person_id`.
    async fn owned(
        &self,
        name: &UserName,
        person_id: &str,
    ) -> Result<(Option<AccountRecord>, Option<UserEntry>), ConnectorError> {
        let (record, user) = tokio::try_join!(self.target.read_record(name), self.target.read_user(name))?;
        match &record {
            Some(record) if record.person_id != person_id => {
                Err(ConnectorError::conflict(format!("account {name} belongs to another person")))
            }
            None if user.is_some() => Err(ConnectorError::conflict(format!(
                "userpass user {name} exists but has no record of this connector: it is not managed here"
            ))),
            _ => Ok((record, user)),
        }
    }

    /// Live tokens of every user, as login path -> accessors, where the server
    /// can enumerate them.
    async fn live_tokens(&self) -> Result<Option<LiveTokens>, ConnectorError> {
        if !self.profile.token_enumeration {
            return Ok(None);
        }
        let Some(accessors) = self.target.token_accessors().await? else { return Ok(None) };
        let mut live = LiveTokens::default();
        for accessor in accessors {
            match self.target.accessor_path(&accessor).await? {
                crate::target::AccessorOwner::Path(path) => live.holders.entry(path).or_default().push(accessor),
                crate::target::AccessorOwner::Gone => {}
                crate::target::AccessorOwner::Unreadable => live.unreadable += 1,
            }
        }
        Ok(Some(live))
    }

    /// Ends every token of `name` the server lets the connector end; the
    /// changes name each token revoked by accessor.
    async fn revoke_tokens(
        &self,
        name: &UserName,
        changes: &mut Vec<pb::Change>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConnectorError> {
        if let Some(live) = self.live_tokens().await? {
            for accessor in live.holders.get(&self.target.login_path(name)).into_iter().flatten() {
                self.target.revoke_accessor(accessor).await?;
                changes.push(change("revoke_credential", format!("token:{accessor}")));
            }
        }
        if self.profile.revoke_prefix {
            self.target.revoke_login_leases(name).await?;
        }
        warnings.extend(self.token_warning(name));
        Ok(())
    }

    /// Rotates every configured shared secret readable by a policy the leaver
    /// held: the named fields get fresh random values (never reported), the
    /// change names the path.
    async fn rotate_shared_secrets(
        &self,
        held: &BTreeSet<String>,
        changes: &mut Vec<pb::Change>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConnectorError> {
        for secret in &self.shared_secrets {
            if !secret.readable_by.iter().any(|p| held.contains(p.as_str())) {
                continue;
            }
            let Some(mut fields) = self.target.read_secret(&secret.path).await? else {
                warnings.push(format!("shared secret {} does not exist: not rotated", secret.path.as_str()));
                continue;
            };
            for field in &secret.fields {
                fields.insert(field.clone(), serde_json::Value::String(undisclosed_password()));
            }
            self.target.write_secret(&secret.path, &fields).await?;
            changes.push(change("rotate_secret", secret.path.as_str()));
        }
        Ok(())
    }

    fn user_write(&self, password: Option<String>, policies: &BTreeSet<PolicyName>) -> UserWrite {
        UserWrite {
            password,
            policies: policies.iter().map(|p| p.as_str().to_owned()).collect(),
            token_ttl: self.token_ttl,
            token_max_ttl: self.token_max_ttl,
        }
    }

    async fn apply_absent(&self, name: &UserName, person_id: &str) -> Result<pb::ApplyResponse, ConnectorError> {
        let (record, user) = self.owned(name, person_id).await?;
        let mut changes = Vec::new();
        let mut warnings = Vec::new();
        if user.is_some() {
            self.revoke_tokens(name, &mut changes, &mut warnings).await?;
            self.target.delete_user(name).await?;
        }
        if record.is_some() {
            self.target.delete_record(name).await?;
        }
        if user.is_some() || record.is_some() {
            changes.push(change("delete", name.as_str()));
        }
        Ok(pb::ApplyResponse { changes, warnings, ..Default::default() })
    }

    async fn apply_present(
        &self,
        name: &UserName,
        desired: &pb::DesiredAccount,
        person_id: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let wanted = self.check_policies(desired).await?;
        let wanted_names: Vec<String> = wanted.iter().map(|p| p.as_str().to_owned()).collect();
        let (record, user) = self.owned(name, person_id).await?;
        let revoke_all = desired.credentials == pb::CredentialAction::RevokeAll as i32;
        let mut changes = Vec::new();
        let mut warnings = Vec::new();
        let held: BTreeSet<String> = match (&record, &user) {
            (None, _) => {
                changes.push(change("create", name.as_str()));
                BTreeSet::new()
            }
            (Some(_), Some(user)) => user.policies.iter().cloned().collect(),
            (Some(record), None) => record.policies.iter().cloned().collect(),
        };
        let wanted_set: BTreeSet<String> = wanted_names.iter().cloned().collect();
        // Policies this command takes away: what a leaver could read until now.
        let lost: BTreeSet<String> = held.difference(&wanted_set).cloned().collect();
        for removed in held.difference(&wanted_set) {
            changes.push(change("remove_entitlement", format!("{POLICY_KIND}:{removed}")));
        }
        for added in wanted_set.difference(&held) {
            changes.push(change("add_entitlement", format!("{POLICY_KIND}:{added}")));
        }
        let record_wanted = AccountRecord {
            person_id: person_id.to_owned(),
            policies: wanted_names.clone(),
            enabled: desired.enabled,
            managed_by: MANAGED_BY.into(),
            changed_at: now_seconds(),
        };
        let record_changed = record.as_ref().is_none_or(|r| {
            r.policies != record_wanted.policies || r.enabled != record_wanted.enabled || r.managed_by != MANAGED_BY
        });
        if desired.enabled {
            // The record first: a crash before the user is written leaves a
            // disabled account, never an unmanaged user.
            if record_changed {
                self.target.write_record(name, &record_wanted).await?;
            }
            match &user {
                None => {
                    self.target.write_user(name, &self.user_write(Some(undisclosed_password()), &wanted)).await?;
                    if record.is_some() {
                        changes.push(change("enable", name.as_str()));
                    }
                }
                Some(existing) => {
                    let ttl_drift = existing.token_ttl.is_some_and(|t| t != self.token_ttl)
                        || existing.token_max_ttl.is_some_and(|t| t != self.token_max_ttl);
                    let password = revoke_all.then(undisclosed_password);
                    if password.is_some() {
                        changes.push(change("revoke_credential", "password"));
                    }
                    if ttl_drift {
                        changes.push(change("set_token_ttl", name.as_str()));
                    }
                    if held != wanted_set || ttl_drift || password.is_some() {
                        self.target.write_user(name, &self.user_write(password, &wanted)).await?;
                    }
                }
            }
            if revoke_all {
                self.revoke_tokens(name, &mut changes, &mut warnings).await?;
                self.rotate_shared_secrets(&lost, &mut changes, &mut warnings).await?;
            }
        } else {
            // Disable: tokens first, then the login, then the record.
            if user.is_some() {
                self.revoke_tokens(name, &mut changes, &mut warnings).await?;
                self.target.delete_user(name).await?;
                changes.push(change("disable", name.as_str()));
                if revoke_all {
                    changes.push(change("revoke_credential", "password"));
                }
            } else if revoke_all {
                self.revoke_tokens(name, &mut changes, &mut warnings).await?;
            }
            if revoke_all {
                // After the login is gone and before the record forgets the
                // policies: a retry after a failure here rotates again, a
                // repeat after success has lost nothing and rotates nothing.
                self.rotate_shared_secrets(&lost, &mut changes, &mut warnings).await?;
            }
            if record_changed {
                self.target.write_record(name, &record_wanted).await?;
            }
        }
        Ok(pb::ApplyResponse {
            changes,
            target_native_id: self.target.user_native_id(name),
            warnings,
            ..Default::default()
        })
    }

    /// A userpass user without a record, as `List` shows it (empty key).
    fn untagged_state(&self, name: &UserName, user: &UserEntry, holders: Option<&LiveTokens>) -> pb::AccountState {
        let unmanaged = AccountRecord {
            person_id: String::new(),
            policies: user.policies.clone(),
            enabled: true,
            managed_by: String::new(),
            changed_at: 0,
        };
        self.state(name, &unmanaged, Some(user), holders)
    }

    /// The account named `name` in the scope (a record, a user, or both),
    /// whoever's it is, as `List` shows it; with the user.
    async fn scope_account(
        &self,
        name: &UserName,
        requested: &[String],
    ) -> Result<Option<(Option<UserEntry>, pb::AccountState)>, ConnectorError> {
        let (record, user) = tokio::try_join!(self.target.read_record(name), self.target.read_user(name))?;
        let holders = self.live_tokens().await?;
        let mut state = match (&record, &user) {
            (Some(record), user) => self.state(name, record, user.as_ref(), holders.as_ref()),
            (None, Some(user)) => self.untagged_state(name, user, holders.as_ref()),
            (None, None) => return Ok(None),
        };
        state.correlation_attributes = correlation::collect(requested, name.as_str(), |_| Vec::new());
        Ok(Some((user, state)))
    }

    /// Writes the record of the userpass user `desired` names, which has
    /// none, as the caller listed it, then converges it.
    async fn link_user(
        &self,
        name: &UserName,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        let found = self.scope_account(name, &[]).await?;
        let (user, state) = found.map_or((None, None), |(user, state)| (user, Some(state)));
        let step =
            correlation::link_step(state.as_ref(), &account.account_name, &account.person_id, expected_fingerprint)?;
        let mut changes = Vec::new();
        if let (correlation::LinkStep::WriteKey, Some(user)) = (step, &user) {
            let record = AccountRecord {
                person_id: account.person_id.clone(),
                policies: user.policies.clone(),
                enabled: true,
                managed_by: MANAGED_BY.into(),
                changed_at: now_seconds(),
            };
            self.target.write_record(name, &record).await?;
            changes.push(change("link", name.as_str()));
        }
        let mut acknowledgement = self.apply_present(name, desired, &account.person_id).await?;
        changes.append(&mut acknowledgement.changes);
        acknowledgement.changes = changes;
        Ok(acknowledgement)
    }

    /// The account as the server shows it; `holders` are the live tokens by
    /// login path where they can be enumerated.
    fn state(
        &self,
        name: &UserName,
        record: &AccountRecord,
        user: Option<&UserEntry>,
        holders: Option<&LiveTokens>,
    ) -> pb::AccountState {
        // In force: the server's own userpass user (`token_policies`). A
        // disabled account has no user, so no login carries any policy; what
        // enabling it would restore is only in the record, reported apart as
        // dormant, never as held.
        let (policies, dormant): (BTreeSet<&String>, BTreeSet<&String>) = match user {
            Some(user) => (user.policies.iter().collect(), BTreeSet::new()),
            None => (BTreeSet::new(), record.policies.iter().collect()),
        };
        let mut active = Vec::new();
        if user.is_some() {
            active.push("password".to_owned());
        }
        let mut residual_risks = Vec::new();
        if let Some(live) = holders {
            for accessor in live.holders.get(&self.target.login_path(name)).into_iter().flatten() {
                active.push(format!("token:{accessor}"));
            }
            if live.unreadable > 0 {
                residual_risks.push(connector_kit::credentials::outlives_for(
                    "token",
                    &format!(
                        "{} token(s) on the server whose owner the server would not show: any may be this user's",
                        live.unreadable
                    ),
                    std::time::Duration::from_secs(self.token_max_ttl),
                ));
            }
        }
        pb::AccountState {
            account: Some(pb::AccountRef { person_id: record.person_id.clone(), account_name: name.as_str().into() }),
            exists: true,
            enabled: user.is_some(),
            attributes: Default::default(),
            entitlements: policies.into_iter().map(|p| policy_entitlement(p)).collect(),
            dormant_entitlements: dormant.into_iter().map(|p| policy_entitlement(p)).collect(),
            credentials: Some(pb::CredentialState {
                active,
                complete: holders.is_some_and(|live| live.unreadable == 0),
                residual_risks,
                cutoffs: Vec::new(),
            }),
            target_native_id: self.target.user_native_id(name),
            last_activity: (record.changed_at > 0).then(|| prost_types::Timestamp {
                seconds: i64::try_from(record.changed_at).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            ..Default::default()
        }
    }
}

/// Every token the server listed, by the login path that created it; tokens
/// whose owner the server would not show are counted, never dropped.
#[derive(Debug, Default)]
struct LiveTokens {
    holders: BTreeMap<String, Vec<String>>,
    unreadable: usize,
}

impl VaultConnector {
    /// The server's credential kinds: the userpass password (the user's
    /// existence) always; tokens as far as this server lets them be listed
    /// and revoked, bounded by `token_max_ttl` otherwise.
    fn credential_kinds(&self) -> Vec<pb::CredentialKindSpec> {
        use connector_kit::credentials::{kind, outlives_for};
        let tokens = if self.profile.token_enumeration {
            kind("token", true, true, None)
        } else {
            let description = if self.profile.revoke_prefix {
                "tokens from the user's logins, revoked by prefix; this server cannot list tokens, so the read-back \
                 cannot show them gone"
            } else {
                "tokens from the user's logins before the revocation: this server can neither list nor revoke them; \
                 they live until token_max_ttl"
            };
            kind(
                "token",
                false,
                self.profile.revoke_prefix,
                Some(outlives_for("token", description, std::time::Duration::from_secs(self.token_max_ttl))),
            )
        };
        vec![kind("password", true, true, None), tokens]
    }
}

impl Connector for VaultConnector {
    fn describe(&self) -> pb::DescribeResponse {
        pb::DescribeResponse {
            connector_kind: "vault".into(),
            target_id: self.target_id.clone(),
            contract_version: CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: self.profile.token_enumeration,
                list: true,
                unmanaged_entitlements: false,
                credential_cutoff: false,
                link: true,
                scope_listing: true,
                ..Default::default()
            }),
            credential_kinds: self.credential_kinds(),
            account_naming: Some(connector_kit::naming::rule(
                &[('a', 'z'), ('A', 'Z'), ('0', '9')]
                    .into_iter()
                    .chain(connector_kit::naming::singles("_-"))
                    .collect::<Vec<_>>(),
                (3, u32::try_from(crate::names::MAX_USER_NAME).unwrap_or(u32::MAX)),
                pb::ValueComparison::CaseInsensitive,
                false,
                "-",
                "userpass user name: 3 to 64 of A-Z a-z 0-9 _ -, not starting or ending with '-' (stored lower-cased)",
            )),
            entitlement_kinds: vec![pb::EntitlementKind {
                kind: POLICY_KIND.into(),
                comparison: pb::ValueComparison::CaseInsensitive as i32,
            }],
            attributes: Vec::new(),
            account_name_comparison: pb::ValueComparison::CaseInsensitive as i32,
            limitations: self.limitations(),
            scope: format!("every user of the userpass mount {}", self.target.userpass_mount()),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        if !self.target.unsealed().await? {
            return Err(ConnectorError::unavailable("the server is sealed"));
        }
        match self.target.lookup_self(None).await? {
            crate::target::TokenStatus::Valid { .. } => {}
            crate::target::TokenStatus::Rejected { status } => {
                return Err(ConnectorError::permission_denied(format!(
                    "the server rejects the connector's token (HTTP {status})"
                )));
            }
        }
        self.target.list_users().await?;
        self.target.list_records().await?;
        Ok(())
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        let name = Self::user_name("desired.account.account_name", &account)?;
        let result = if desired.presence == pb::Presence::Absent as i32 {
            self.apply_absent(&name, &account.person_id).await
        } else {
            self.apply_present(&name, desired, &account.person_id).await
        };
        if let Ok(acknowledgement) = &result {
            for warning in &acknowledgement.warnings {
                tracing::warn!(command_id, user = %name, "{warning}");
            }
        }
        result
    }

    async fn link(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        let name = Self::user_name("desired.account.account_name", &account)?;
        tracing::debug!(command_id, user = %name, "linking an existing userpass user");
        self.link_user(&name, desired, expected_fingerprint).await
    }

    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        let name = UserName::parse(account_name)
            .map_err(|message| ConnectorError::invalid_argument("account_name", message))?;
        Ok(self.scope_account(&name, correlation_attributes).await?.map(|(_, state)| state))
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        let name = Self::user_name("account.account_name", account)?;
        let (record, user) = self.owned(&name, &account.person_id).await?;
        let Some(record) = record else {
            return Ok(pb::AccountState { account: Some(account.clone()), exists: false, ..Default::default() });
        };
        let holders = self.live_tokens().await?;
        Ok(self.state(&name, &record, user.as_ref(), holders.as_ref()))
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.list_scope(page_size, &[])
    }

    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let requested: Arc<[String]> = correlation_attributes.into();
        let limit = page_size.max(1) as usize;
        let this = self.clone();
        Box::pin(futures::stream::unfold(
            (this, None::<std::vec::IntoIter<String>>, false),
            move |(this, names, done)| {
                let requested = requested.clone();
                async move {
                    if done {
                        return None;
                    }
                    let mut names = match names {
                        Some(names) => names,
                        None => match tokio::try_join!(this.target.list_records(), this.target.list_users()) {
                            Ok((records, users)) => {
                                // Every record and every user, each name once.
                                let all: BTreeSet<String> = records.into_iter().chain(users).collect();
                                all.into_iter().collect::<Vec<_>>().into_iter()
                            }
                            Err(error) => return Some((Err(error.into()), (this, None, true))),
                        },
                    };
                    let batch: Vec<String> = names.by_ref().take(limit).collect();
                    if batch.is_empty() {
                        return None;
                    }
                    let page = this.page(&batch, &requested).await;
                    let failed = page.is_err();
                    Some((page, (this, Some(names), failed)))
                }
            },
        ))
    }
}

impl VaultConnector {
    /// One page of `List`: the states of the accounts named by `names`.
    async fn page(&self, names: &[String], requested: &[String]) -> Result<Vec<pb::AccountState>, ConnectorError> {
        let holders = self.live_tokens().await?;
        let mut states = Vec::with_capacity(names.len());
        for raw in names {
            let Ok(name) = UserName::parse(raw) else {
                tracing::warn!(key = %printable(raw), "skipping a record whose key is not a valid user name");
                continue;
            };
            let (record, user) = tokio::try_join!(self.target.read_record(&name), self.target.read_user(&name))?;
            let mut state = match (&record, &user) {
                (Some(record), user) => self.state(&name, record, user.as_ref(), holders.as_ref()),
                (None, Some(user)) => self.untagged_state(&name, user, holders.as_ref()),
                (None, None) => continue,
            };
            state.correlation_attributes = correlation::collect(requested, name.as_str(), |_| Vec::new());
            states.push(state);
        }
        Ok(states)
    }
}
