//! The provisioning contract over a directory.
//!
//! - An account is an entry under `users_base_dn` found by its account-name
//!   attribute (an escaped equality filter); it is managed only when it carries
//!   the person id (the correlation key) in `person_id_attribute`, and touched
//!   only when that id is the requested one.
//! - Entitlements of kind `group` are memberships (`member` holding the
//!   account's DN) in groups under `groups_base_dn`, identified by the group's
//!   `cn` and compared case-insensitively. Every requested group is resolved
//!   before anything is written, so an unknown group leaves nothing behind.
//! - Disable: OpenLDAP mode sets `pwdAccountLockedTime: 000001010000Z` (the
//!   ppolicy overlay's permanent lock, which refuses binds); AD mode sets bit
//!   0x2 of `userAccountControl` by a read-modify-write that keeps every other
//!   bit (delete the old value and add the new one in one modify, so a
//!   concurrent change fails instead of being overwritten). Read-back reports
//!   exactly that lock or that bit.
//! - Credential revocation: OpenLDAP mode replaces `userPassword` with a
//!   random value under the `{REVOKED}` scheme, which no server accepts for a
//!   bind and which read-back recognises; AD mode sets a random `unicodePwd`
//!   and `pwdLastSet: 0`. Both remove every configured credential attribute.
//! - Reads fail closed: in AD mode a `userAccountControl` the bind cannot
//!   read (every AD account has one) or a missing `pwdLastSet`, and in
//!   OpenLDAP mode a `userPassword` that is not returned although a compare
//!   does not say "no such attribute", are reported in
//!   `AccountState.unreadable` (the enabled flag then reads as the unsafe
//!   `true`, credentials as not `complete`), never as disabled or revoked.
//!   Apply refuses to set the disable bit it cannot read.
//! - Read also reports every group the directory says the account belongs
//!   to outside the managed ones (by `member`, `uniqueMember`, `memberUid` or
//!   `memberOf` anywhere under `membership_search_base`; in AD mode nested
//!   groups too, by the in-chain matching rule, and a primary group other
//!   than Domain Users) as unmanaged entitlements, privileged by
//!   configuration or by AD's own `adminCount: 1`.
//! - Delete removes the account from every group, then the entry.
//! - `List` is a paged (RFC 2696) search streamed page by page over the
//!   declared scope: every entry of the account class under `users_base_dn`
//!   (AD: computers excluded), accounts without a person id included with an
//!   empty key (#17).
//! - Link (#17): an entry found by its account name without a person id, as
//!   the caller listed it (same fingerprint), gets the person id *added*
//!   (an add, so a concurrent link by someone else fails), then converges.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use connector_kit::contract as pb;
use connector_kit::validate::printable;
use connector_kit::{AccountStream, CONTRACT_VERSION, Connector, ConnectorError, correlation};
use ldap3::Scope;
use rand::Rng;

use crate::config::{AttributeComparison, DirectoryMode, LdapConfig, Secret};
use crate::escape;
use crate::target::EntryAttributes;
use membership::PageMemberships;

use crate::target::{
    Directory, DirectoryEntry, DirectoryPool, PagedSearch, TargetError, add_value, code, remove_all, remove_value,
    replace, result_error,
};

mod credentials;
mod listing;
mod membership;

/// The entitlement kind this connector manages.
pub const GROUP: &str = "group";
/// `pwdAccountLockedTime` value that locks an account until an administrator unlocks it.
pub const PERMANENT_LOCK: &str = "000001010000Z";
/// The password scheme of a revoked OpenLDAP password. No server implements
/// it, so a bind with any password fails against it.
pub const REVOKED_SCHEME: &str = "{REVOKED}";
/// `userAccountControl` bit: the account is disabled.
pub const ACCOUNTDISABLE: u32 = 0x2;
/// `userAccountControl` bit: a normal user account.
pub const NORMAL_ACCOUNT: u32 = 0x200;

const PWD_ACCOUNT_LOCKED_TIME: &str = "pwdAccountLockedTime";
const USER_PASSWORD: &str = "userPassword";
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
const PWD_LAST_SET: &str = "pwdLastSet";
const UNICODE_PWD: &str = "unicodePwd";
const MEMBER_OF: &str = "memberOf";
const PRIMARY_GROUP_ID: &str = "primaryGroupID";
const ADMIN_COUNT: &str = "adminCount";
/// AD's `LDAP_MATCHING_RULE_IN_CHAIN`: membership through nested groups.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// The RID of AD's Domain Users, every account's default primary group.
const DOMAIN_USERS_RID: &str = "513";
/// RIDs of AD's built-in privileged domain groups: Domain Admins, Domain
/// Controllers, Schema Admins, Enterprise Admins, Read-only Domain Controllers.
const PRIVILEGED_RIDS: [&str; 5] = ["512", "516", "518", "519", "521"];

/// Whether the password can still be used to log in, as far as the bind can see.
enum PasswordState {
    Usable,
    Unusable,
    /// Not visible to the connector's bind: (the attribute, why).
    Unknown(&'static str, String),
}

fn unreadable(field: &str, target_attribute: &str, reason: impl Into<String>) -> pb::UnreadableField {
    pb::UnreadableField { field: field.into(), target_attribute: target_attribute.into(), reason: reason.into() }
}

/// The LDAP / AD connector.
#[derive(Clone)]
pub struct LdapConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: LdapConfig,
    pool: DirectoryPool,
    account_class: String,
    read_attributes: Vec<String>,
    privileged: HashSet<String>,
    empty_group_member: String,
}

fn change(action: &str, subject: &str) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

/// A random string for unusable passwords.
fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LdapConnector {
    /// A connector for `config`, binding with `password`. Connects lazily.
    pub fn new(config: LdapConfig, password: Secret) -> Result<Self, crate::target::TlsSetupError> {
        let pool = DirectoryPool::new(&config, password)?;
        let account_class = config.account_object_classes().last().cloned().unwrap_or_else(|| "top".into());
        let mut read_attributes =
            vec![config.person_id_attribute.clone(), config.account_name_attribute(), config.rdn_attribute()];
        read_attributes.extend(config.attributes.values().map(|m| m.ldap.clone()));
        read_attributes.extend(config.credential_attributes());
        read_attributes.push(MEMBER_OF.into());
        read_attributes.extend(config.correlation_attributes());
        match config.mode {
            DirectoryMode::Openldap => {
                read_attributes.extend([PWD_ACCOUNT_LOCKED_TIME, USER_PASSWORD, "modifyTimestamp"].map(String::from))
            }
            DirectoryMode::ActiveDirectory => read_attributes
                .extend([USER_ACCOUNT_CONTROL, PWD_LAST_SET, "whenChanged", PRIMARY_GROUP_ID].map(String::from)),
        }
        let privileged = config
            .privileged_groups
            .iter()
            .flat_map(|g| [g.to_lowercase(), connector_kit::readback::normalise_dn(g)])
            .collect();
        let empty_group_member = config.empty_group_member.clone().unwrap_or_else(|| config.bind_dn.clone());
        Ok(Self {
            inner: Arc::new(Inner { config, pool, account_class, read_attributes, privileged, empty_group_member }),
        })
    }

    fn config(&self) -> &LdapConfig {
        &self.inner.config
    }

    /// Runs `operation` on a pooled connection; when the connection turns
    /// out to be broken (the server restarted), drops the pool and runs it
    /// once more on a fresh one. Safe because every operation converges.
    async fn with_directory<T, F, Fut>(&self, operation: F) -> Result<T, ConnectorError>
    where
        F: Fn(Directory) -> Fut,
        Fut: Future<Output = Result<T, TargetError>>,
    {
        let mut retried = false;
        loop {
            let result = match self.inner.pool.handle().await {
                Ok(directory) => operation(directory).await,
                Err(error) => Err(error),
            };
            match result {
                Err(error) if error.transport && !retried => {
                    tracing::info!(error = %error.error, "directory connection lost; reconnecting");
                    self.inner.pool.reset().await;
                    retried = true;
                }
                other => return other.map_err(|e| e.error),
            }
        }
    }

    /// The managed account named `account_name`, if any.
    async fn find_account(
        &self,
        directory: &mut Directory,
        account_name: &str,
    ) -> Result<Option<DirectoryEntry>, TargetError> {
        let config = self.config();
        let filter =
            escape::class_and_equality(&self.inner.account_class, &config.account_name_attribute(), account_name);
        let mut entries =
            directory.search(&config.users_base_dn, Scope::Subtree, &filter, &self.inner.read_attributes).await?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.pop()),
            n => Err(TargetError::typed(ConnectorError::conflict(format!(
                "{n} entries carry the account name {:?}",
                printable(account_name)
            )))),
        }
    }

    /// The managed account of `account`: the entry named as asked, else the
    /// one entry carrying the person's correlation key under another name
    /// (renamed on the directory after it was created or linked: the key
    /// travels with the entry, so it is still this person's account, never
    /// an orphan beside a missing one).
    async fn find_managed(
        &self,
        directory: &mut Directory,
        account: &pb::AccountRef,
    ) -> Result<Option<DirectoryEntry>, TargetError> {
        if let Some(entry) = self.find_account(directory, &account.account_name).await? {
            return Ok(Some(entry));
        }
        if account.person_id.is_empty() {
            return Ok(None);
        }
        let config = self.config();
        let filter =
            escape::class_and_equality(&self.inner.account_class, &config.person_id_attribute, &account.person_id);
        let mut entries =
            directory.search(&config.users_base_dn, Scope::Subtree, &filter, &self.inner.read_attributes).await?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.pop()),
            n => Err(TargetError::typed(ConnectorError::conflict(format!(
                "{n} entries carry the correlation key of the person of account {:?}",
                printable(&account.account_name)
            )))),
        }
    }

    /// Gives a renamed account its planned name back: a new RDN where the
    /// name is the RDN (OpenLDAP's `uid`), else the name attribute replaced
    /// (AD's `sAMAccountName`). Answers the entry as it is now.
    async fn rename_back(
        &self,
        directory: &mut Directory,
        entry: &DirectoryEntry,
        name: &str,
    ) -> Result<DirectoryEntry, TargetError> {
        let config = self.config();
        let name_attribute = config.account_name_attribute();
        if config.rdn_attribute().eq_ignore_ascii_case(&name_attribute) {
            let rdn = format!("{}={}", config.rdn_attribute(), escape::dn_value(name));
            directory.rename(&entry.dn, &rdn).await?;
        } else {
            let result = directory.modify(&entry.dn, vec![replace(&name_attribute, name)]).await?;
            if result.rc != code::SUCCESS {
                return Err(TargetError::typed(result_error("rename the account back", &result)));
            }
        }
        self.find_account(directory, name).await?.ok_or_else(|| {
            TargetError::typed(ConnectorError::internal("the account renamed back cannot be found by its name"))
        })
    }

    /// Refuses an entry that is not this person's managed account.
    fn check_owner(&self, entry: &DirectoryEntry, account: &pb::AccountRef) -> Result<(), TargetError> {
        let attribute = &self.config().person_id_attribute;
        match entry.first(attribute) {
            Some(person_id) if person_id == account.person_id => Ok(()),
            Some(_) => Err(TargetError::typed(ConnectorError::conflict(format!(
                "account {:?} belongs to another person",
                printable(&account.account_name)
            )))),
            None => Err(TargetError::typed(ConnectorError::conflict(format!(
                "account {:?} exists without a {attribute}: it is not managed by this connector",
                printable(&account.account_name)
            )))),
        }
    }

    /// The DN of the group named `id`; NOT_FOUND when there is none.
    async fn resolve_group(&self, directory: &mut Directory, index: usize, id: &str) -> Result<String, TargetError> {
        let config = self.config();
        let filter = escape::class_and_equality(&config.group_object_class(), &config.group_name_attribute, id);
        let mut entries = directory
            .search(&config.groups_base_dn, Scope::Subtree, &filter, std::slice::from_ref(&config.group_name_attribute))
            .await?;
        let field = format!("desired.entitlements[{index}].id");
        match entries.len() {
            0 => Err(TargetError::typed(
                ConnectorError::not_found(format!("group {:?} does not exist on this directory", printable(id)))
                    .with_field(field),
            )),
            1 => Ok(entries.pop().map(|e| e.dn).unwrap_or_default()),
            n => Err(TargetError::typed(
                ConnectorError::conflict(format!("{n} groups are named {:?}", printable(id))).with_field(field),
            )),
        }
    }

    /// Whether the account can be used; `None` when the bind cannot see
    /// what decides it (AD: `userAccountControl`, which every account has).
    fn is_enabled(&self, entry: &DirectoryEntry) -> Option<bool> {
        match self.config().mode {
            DirectoryMode::Openldap => Some(!entry.values(PWD_ACCOUNT_LOCKED_TIME).iter().any(|v| v == PERMANENT_LOCK)),
            DirectoryMode::ActiveDirectory => user_account_control(entry).map(|uac| uac & ACCOUNTDISABLE == 0),
        }
    }

    /// The read-back of one entry.
    async fn account_state(
        &self,
        directory: &mut Directory,
        entry: &DirectoryEntry,
        requested_name: Option<&str>,
        page: Option<&PageMemberships>,
        passwords_absent: Option<&HashSet<String>>,
    ) -> Result<pb::AccountState, TargetError> {
        let config = self.config();
        let names = entry.values(&config.account_name_attribute());
        let account_name = requested_name
            .and_then(|wanted| names.iter().find(|n| n.to_lowercase() == wanted.to_lowercase()))
            .or_else(|| names.first())
            .cloned()
            .unwrap_or_default();
        let attributes = config
            .attributes
            .iter()
            .filter_map(|(name, mapped)| {
                let values = entry.values(&mapped.ldap);
                // Several values never equal one desired value: a newline
                // cannot be in a desired value, so the drift shows.
                (!values.is_empty()).then(|| (name.clone(), values.join("\n")))
            })
            .collect();
        let memberships = match page {
            Some(page) => page.managed_of(&entry.dn),
            None => self.memberships(directory, &entry.dn).await?,
        };
        let managed: HashSet<String> =
            memberships.iter().map(|(_, dn)| connector_kit::readback::normalise_dn(dn)).collect();
        let entitlements = memberships
            .into_iter()
            .map(|(name, _)| pb::Entitlement {
                kind: GROUP.into(),
                privileged: self.inner.privileged.contains(&name.to_lowercase()),
                id: name,
            })
            .collect();
        let groups = match page.and_then(|page| page.unmanaged_of(&entry.dn, &account_name)) {
            Some(groups) => groups,
            None => self.unmanaged_groups(directory, entry, &account_name).await?,
        };
        let unmanaged_entitlements = self.unmanaged_entitlements(&groups, entry, &managed);
        let timestamp = match config.mode {
            DirectoryMode::Openldap => entry.first("modifyTimestamp"),
            DirectoryMode::ActiveDirectory => entry.first("whenChanged"),
        };
        let mut unreadable_fields = Vec::new();
        let enabled = self.is_enabled(entry).unwrap_or_else(|| {
            unreadable_fields.push(unreadable(
                "enabled",
                USER_ACCOUNT_CONTROL,
                "not returned to the connector's bind (or not a number), although every Active Directory account has one",
            ));
            // Unknown reads as the unsafe value.
            true
        });
        let credentials = self.credential_state(directory, entry, passwords_absent, &mut unreadable_fields).await?;
        Ok(pb::AccountState {
            account: Some(pb::AccountRef {
                person_id: entry.first(&config.person_id_attribute).unwrap_or_default().to_owned(),
                account_name,
            }),
            exists: true,
            enabled,
            attributes,
            entitlements,
            credentials: Some(credentials),
            target_native_id: entry.dn.clone(),
            last_activity: timestamp.and_then(generalized_time),
            unreadable: unreadable_fields,
            unmanaged_entitlements,
            ..Default::default()
        })
    }

    /// The attributes of a new entry.
    fn new_entry(&self, desired: &pb::DesiredAccount) -> (String, EntryAttributes) {
        let config = self.config();
        let account = desired.account.clone().unwrap_or_default();
        let name = account.account_name.as_str();
        // Keyed by lower-cased attribute type; later inserts win.
        let mut attributes: BTreeMap<String, (String, Vec<Vec<u8>>)> = BTreeMap::new();
        let mut set = |attribute: &str, values: Vec<Vec<u8>>| {
            attributes.insert(attribute.to_ascii_lowercase(), (attribute.to_owned(), values));
        };
        set("objectClass", config.account_object_classes().into_iter().map(String::into_bytes).collect());
        match config.mode {
            DirectoryMode::Openldap => {
                set("cn", vec![name.as_bytes().to_vec()]);
                set("sn", vec![name.as_bytes().to_vec()]);
            }
            DirectoryMode::ActiveDirectory => {
                let suffix = config.upn_suffix.clone().unwrap_or_default();
                set("userPrincipalName", vec![format!("{name}@{suffix}").into_bytes()]);
                let uac = NORMAL_ACCOUNT | if desired.enabled { 0 } else { ACCOUNTDISABLE };
                set(USER_ACCOUNT_CONTROL, vec![uac.to_string().into_bytes()]);
                set(UNICODE_PWD, vec![ad_password(&format!("R{}!a", random_token()))]);
            }
        }
        for (contract_name, value) in &desired.attributes {
            if let Some(mapped) = config.attributes.get(contract_name)
                && !value.is_empty()
            {
                set(&mapped.ldap, vec![value.as_bytes().to_vec()]);
            }
        }
        set(&config.rdn_attribute(), vec![name.as_bytes().to_vec()]);
        set(&config.account_name_attribute(), vec![name.as_bytes().to_vec()]);
        set(&config.person_id_attribute, vec![account.person_id.as_bytes().to_vec()]);
        let dn = escape::child_dn(&config.rdn_attribute(), name, &config.users_base_dn);
        let attributes = attributes
            .into_values()
            .map(|(attribute, values)| (attribute.into_bytes(), values.into_iter().collect()))
            .collect();
        (dn, attributes)
    }

    async fn apply_present(
        &self,
        mut directory: Directory,
        desired: &pb::DesiredAccount,
    ) -> Result<pb::ApplyResponse, TargetError> {
        let config = self.config();
        let account = desired.account.clone().unwrap_or_default();
        let name = account.account_name.as_str();
        let mut existing = self.find_managed(&mut directory, &account).await?;
        if let Some(entry) = &existing {
            self.check_owner(entry, &account)?;
        }
        // Every group is resolved before anything is written.
        let mut wanted: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (index, entitlement) in desired.entitlements.iter().enumerate() {
            let dn = self.resolve_group(&mut directory, index, &entitlement.id).await?;
            wanted.insert(entitlement.id.to_lowercase(), (entitlement.id.clone(), dn));
        }
        let mut changes = Vec::new();
        if let Some(entry) = existing.take() {
            let names = entry.values(&config.account_name_attribute());
            existing = Some(if names.iter().any(|n| n.to_lowercase() == name.to_lowercase()) {
                entry
            } else {
                // Renamed on the directory: the planned name is restored.
                let renamed = self.rename_back(&mut directory, &entry, name).await?;
                changes.push(change("rename", name));
                renamed
            });
        }
        let entry = match existing {
            Some(entry) => entry,
            None => {
                let (dn, attributes) = self.new_entry(desired);
                directory.add(&dn, attributes).await?;
                changes.push(change("create", name));
                self.find_account(&mut directory, name).await?.ok_or_else(|| {
                    TargetError::typed(ConnectorError::internal("the account just created cannot be found"))
                })?
            }
        };

        let mut mods = Vec::new();
        for (contract_name, value) in &desired.attributes {
            let Some(mapped) = config.attributes.get(contract_name) else { continue };
            let current = entry.values(&mapped.ldap);
            let same = match (value.is_empty(), current) {
                (true, []) => true,
                (false, [one]) => match mapped.comparison {
                    AttributeComparison::Exact => one == value,
                    AttributeComparison::CaseInsensitive => one.to_lowercase() == value.to_lowercase(),
                },
                _ => false,
            };
            if !same {
                mods.push(if value.is_empty() {
                    remove_all(&mapped.ldap)
                } else {
                    replace(&mapped.ldap, value.as_str())
                });
                changes.push(change("set_attribute", contract_name));
            }
        }
        if self.is_enabled(&entry) != Some(desired.enabled) {
            match config.mode {
                DirectoryMode::Openldap if desired.enabled => mods.push(remove_all(PWD_ACCOUNT_LOCKED_TIME)),
                DirectoryMode::Openldap => mods.push(replace(PWD_ACCOUNT_LOCKED_TIME, PERMANENT_LOCK)),
                DirectoryMode::ActiveDirectory => {
                    let current = user_account_control(&entry).ok_or_else(|| {
                        TargetError::typed(
                            ConnectorError::permission_denied(
                                "the connector's bind cannot read the account's userAccountControl: the disable bit \
                                 can be neither set by read-modify-write nor proven",
                            )
                            .with_field("desired.enabled"),
                        )
                    })?;
                    let next = with_disabled(current, !desired.enabled);
                    // Read-modify-write: the old value must still be there.
                    mods.push(remove_value(USER_ACCOUNT_CONTROL, current.to_string()));
                    mods.push(add_value(USER_ACCOUNT_CONTROL, next.to_string()));
                }
            }
            changes.push(change(if desired.enabled { "enable" } else { "disable" }, name));
        }
        if desired.credentials == pb::CredentialAction::RevokeAll as i32 {
            let unrevoked = match config.mode {
                DirectoryMode::Openldap => self.password_usable(&entry) || entry.values(USER_PASSWORD).is_empty(),
                DirectoryMode::ActiveDirectory => self.password_usable(&entry),
            };
            if unrevoked {
                match config.mode {
                    DirectoryMode::Openldap => {
                        mods.push(replace(USER_PASSWORD, format!("{REVOKED_SCHEME}{}", random_token())))
                    }
                    DirectoryMode::ActiveDirectory => {
                        mods.push(replace(UNICODE_PWD, ad_password(&format!("R{}!a", random_token()))));
                        mods.push(replace(PWD_LAST_SET, "0"));
                    }
                }
                changes.push(change("revoke_credential", "password"));
            }
            for attribute in config.credential_attributes() {
                if entry.has(&attribute) {
                    mods.push(remove_all(&attribute));
                    changes.push(change("revoke_credential", &format!("attribute:{attribute}")));
                }
            }
        }
        if !mods.is_empty() {
            let result = directory.modify(&entry.dn, mods).await?;
            if result.rc != code::SUCCESS {
                return Err(TargetError::typed(result_error("modify the account", &result)));
            }
        }

        let current = self.memberships(&mut directory, &entry.dn).await?;
        let held: HashSet<String> = current.iter().map(|(name, _)| name.to_lowercase()).collect();
        for (group, group_dn) in &current {
            if !wanted.contains_key(&group.to_lowercase()) {
                self.remove_member(&mut directory, group_dn, &entry.dn).await?;
                changes.push(change("remove_entitlement", &format!("{GROUP}:{group}")));
            }
        }
        for (key, (id, group_dn)) in &wanted {
            if !held.contains(key) {
                let result =
                    directory.modify(group_dn, vec![add_value(&config.member_attribute, entry.dn.as_str())]).await?;
                match result.rc {
                    code::SUCCESS => changes.push(change("add_entitlement", &format!("{GROUP}:{id}"))),
                    code::ATTRIBUTE_OR_VALUE_EXISTS => {}
                    _ => return Err(TargetError::typed(result_error("add the group membership", &result))),
                }
            }
        }
        Ok(pb::ApplyResponse { changes, target_native_id: entry.dn, ..Default::default() })
    }

    /// Removes `member_dn` from a group, keeping the placeholder member in a
    /// group that would otherwise be empty.
    async fn remove_member(
        &self,
        directory: &mut Directory,
        group_dn: &str,
        member_dn: &str,
    ) -> Result<(), TargetError> {
        let member = &self.config().member_attribute;
        let result = directory.modify(group_dn, vec![remove_value(member, member_dn)]).await?;
        match result.rc {
            code::SUCCESS | code::NO_SUCH_ATTRIBUTE => Ok(()),
            code::OBJECT_CLASS_VIOLATION => {
                let result = directory
                    .modify(
                        group_dn,
                        vec![
                            add_value(member, self.inner.empty_group_member.as_str()),
                            remove_value(member, member_dn),
                        ],
                    )
                    .await?;
                if result.rc == code::SUCCESS {
                    Ok(())
                } else {
                    Err(TargetError::typed(result_error("remove the last group member", &result)))
                }
            }
            _ => Err(TargetError::typed(result_error("remove the group membership", &result))),
        }
    }

    async fn apply_absent(
        &self,
        mut directory: Directory,
        account: &pb::AccountRef,
    ) -> Result<pb::ApplyResponse, TargetError> {
        let Some(entry) = self.find_managed(&mut directory, account).await? else {
            return Ok(pb::ApplyResponse::default());
        };
        self.check_owner(&entry, account)?;
        let mut changes = Vec::new();
        for (group, group_dn) in self.memberships(&mut directory, &entry.dn).await? {
            self.remove_member(&mut directory, &group_dn, &entry.dn).await?;
            changes.push(change("remove_entitlement", &format!("{GROUP}:{group}")));
        }
        if directory.delete(&entry.dn).await? {
            changes.push(change("delete", &account.account_name));
        }
        Ok(pb::ApplyResponse { changes, ..Default::default() })
    }

    async fn read_account(
        &self,
        mut directory: Directory,
        account: &pb::AccountRef,
    ) -> Result<pb::AccountState, TargetError> {
        // A renamed account is found by its key and read back under the name
        // the directory shows, so the difference names the rename.
        match self.find_managed(&mut directory, account).await? {
            None => Ok(pb::AccountState { account: Some(account.clone()), exists: false, ..Default::default() }),
            Some(entry) => {
                self.check_owner(&entry, account)?;
                self.account_state(&mut directory, &entry, Some(&account.account_name), None, None).await
            }
        }
    }

    /// The entry named `account_name` in the scope, whoever's it is, and its
    /// state as `List` shows it with the requested correlation attributes.
    async fn scope_entry(
        &self,
        directory: &mut Directory,
        account_name: &str,
        requested: &[String],
    ) -> Result<Option<(DirectoryEntry, pb::AccountState)>, TargetError> {
        let Some(entry) = self.find_account(directory, account_name).await? else { return Ok(None) };
        let mut state = self.account_state(directory, &entry, None, None, None).await?;
        let name = state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
        state.correlation_attributes = correlation::collect(requested, &name, |a| entry.values(a).to_vec());
        Ok(Some((entry, state)))
    }

    /// Links the untagged entry `desired` names (see the module doc), then
    /// converges it.
    async fn link_account(
        &self,
        mut directory: Directory,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, TargetError> {
        let account = desired.account.clone().unwrap_or_default();
        let found = self.scope_entry(&mut directory, &account.account_name, &[]).await?;
        let (entry, state) = found.map_or((None, None), |(entry, state)| (Some(entry), Some(state)));
        let step =
            correlation::link_step(state.as_ref(), &account.account_name, &account.person_id, expected_fingerprint)
                .map_err(TargetError::typed)?;
        let mut changes = Vec::new();
        if let (correlation::LinkStep::WriteKey, Some(entry)) = (step, &entry) {
            let attribute = &self.config().person_id_attribute;
            let result = directory.modify(&entry.dn, vec![add_value(attribute, account.person_id.as_str())]).await?;
            if result.rc != code::SUCCESS {
                return Err(TargetError::typed(result_error("write the correlation key", &result)));
            }
            changes.push(change("link", &account.account_name));
        }
        let mut acknowledgement = self.apply_present(directory, desired).await?;
        changes.append(&mut acknowledgement.changes);
        acknowledgement.changes = changes;
        Ok(acknowledgement)
    }

    /// Starts the paged search behind `List`, reconnecting once if needed.
    async fn start_list(&self, page_size: u32) -> Result<(Directory, PagedSearch), ConnectorError> {
        let config = self.config();
        let filter = config.scope_filter(&self.inner.account_class);
        let attributes = self.inner.read_attributes.clone();
        self.with_directory(|mut directory| {
            let filter = filter.clone();
            let attributes = attributes.clone();
            async move {
                let search = directory.paged_search(&config.users_base_dn, &filter, attributes, page_size).await?;
                Ok((directory, search))
            }
        })
        .await
    }
}

/// `userAccountControl` with the ACCOUNTDISABLE bit set or cleared and every
/// other bit kept.
pub fn with_disabled(user_account_control: u32, disabled: bool) -> u32 {
    if disabled { user_account_control | ACCOUNTDISABLE } else { user_account_control & !ACCOUNTDISABLE }
}

/// `userAccountControl` as a number.
fn user_account_control(entry: &DirectoryEntry) -> Option<u32> {
    let value = entry.first(USER_ACCOUNT_CONTROL)?;
    // AD answers a signed 32-bit integer.
    value.parse::<u32>().ok().or_else(|| value.parse::<i32>().ok().map(|v| v as u32))
}

/// An AD `unicodePwd` value: the password in double quotes, UTF-16LE.
pub fn ad_password(password: &str) -> Vec<u8> {
    format!("\"{password}\"").encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Parses an LDAP GeneralizedTime (`YYYYMMDDHHMMSS[.f]Z`) as UTC.
pub fn generalized_time(value: &str) -> Option<prost_types::Timestamp> {
    let digits = value.get(..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| digits[range].parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second) = (field(8..10)?, field(10..12)?, field(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(prost_types::Timestamp { seconds: days * 86_400 + hour * 3600 + minute * 60 + second, nanos: 0 })
}

/// The directory's credential kinds: the password and the configured
/// credential attributes are enumerated and revoked; what a revocation cannot
/// reach (connections already bound, Kerberos tickets on AD) is declared with
/// its bound.
fn credential_kinds(config: &LdapConfig) -> Vec<pb::CredentialKindSpec> {
    use connector_kit::credentials::{kind, outlives_for, outlives_until_closed};
    let mut kinds = vec![kind("password", true, true, None)];
    kinds.extend(
        config
            .credential_attributes()
            .iter()
            .map(|attribute| kind(&format!("attribute:{attribute}"), true, true, None)),
    );
    kinds.push(kind(
        "bound_connection",
        false,
        false,
        Some(outlives_until_closed(
            "bound_connection",
            "LDAP connections bound before the revocation stay bound: the directory does not end them",
        )),
    ));
    if config.mode == DirectoryMode::ActiveDirectory {
        kinds.push(kind(
            "kerberos_ticket",
            false,
            false,
            Some(outlives_for(
                "kerberos_ticket",
                "Kerberos tickets issued before the revocation stay valid until they expire (the domain's default \
                 maximum ticket lifetime is 10 h; renewal is refused once the account is disabled)",
                std::time::Duration::from_secs(10 * 3600),
            )),
        ));
    }
    kinds
}

/// The account names the directory accepts: any printable name on OpenLDAP
/// (escaped in DNs and filters); AD's sAMAccountName rules (20 characters,
/// none of `"/\[]:;|=,+*?<>@`). Names compare case-insensitively, and look-alikes
/// collide: people read them.
fn account_naming(mode: DirectoryMode) -> pb::AccountNaming {
    use connector_kit::naming::{all_but, rule};
    match mode {
        DirectoryMode::Openldap => rule(
            &all_but(""),
            (1, 256),
            pb::ValueComparison::CaseInsensitive,
            true,
            "",
            "any printable characters; compared case-insensitively",
        ),
        DirectoryMode::ActiveDirectory => rule(
            &all_but("\"/\\[]:;|=,+*?<>@"),
            (1, 20),
            pb::ValueComparison::CaseInsensitive,
            true,
            ".",
            "sAMAccountName: 1 to 20 characters, none of \"/\\[]:;|=,+*?<>@, neither starting nor ending with '.'; compared \
             case-insensitively",
        ),
    }
}

impl Connector for LdapConnector {
    fn describe(&self) -> pb::DescribeResponse {
        let config = self.config();
        let comparison = |c: AttributeComparison| match c {
            AttributeComparison::Exact => pb::ValueComparison::Exact as i32,
            AttributeComparison::CaseInsensitive => pb::ValueComparison::CaseInsensitive as i32,
        };
        let (kind, mut limitations) = match config.mode {
            DirectoryMode::Openldap => (
                "ldap",
                vec![
                    "disable sets pwdAccountLockedTime to 000001010000Z: binds are refused only where the ppolicy overlay is loaded".to_owned(),
                    "a revoked password is an unusable {REVOKED} userPassword value; connections already bound stay bound".to_owned(),
                ],
            ),
            DirectoryMode::ActiveDirectory => (
                "active_directory",
                vec![
                    "a revoked password is a random unicodePwd with pwdLastSet 0; Kerberos tickets already issued stay valid until they expire".to_owned(),
                    "setting unicodePwd needs an encrypted connection (LDAPS or StartTLS)".to_owned(),
                ],
            ),
        };
        limitations.push(format!(
            "credentials enumerated are the password and the attributes {}",
            config.credential_attributes().join(", ")
        ));
        pb::DescribeResponse {
            connector_kind: kind.into(),
            target_id: config.target_id.clone(),
            contract_version: CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: true,
                list: true,
                unmanaged_entitlements: true,
                credential_cutoff: false,
                link: true,
                scope_listing: true,
                ..Default::default()
            }),
            entitlement_kinds: vec![pb::EntitlementKind {
                kind: GROUP.into(),
                comparison: pb::ValueComparison::CaseInsensitive as i32,
            }],
            credential_kinds: credential_kinds(config),
            account_naming: Some(account_naming(config.mode)),
            attributes: config
                .attributes
                .iter()
                .map(|(name, mapped)| pb::AttributeSpec {
                    name: name.clone(),
                    comparison: comparison(mapped.comparison),
                    required: false,
                })
                .collect(),
            account_name_comparison: pb::ValueComparison::CaseInsensitive as i32,
            limitations,
            correlation_attributes: config.correlation_attributes(),
            scope: format!(
                "every entry matching {} under {}",
                config.scope_filter(&self.inner.account_class),
                config.users_base_dn
            ),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        let base = self.config().users_base_dn.clone();
        let found = self
            .with_directory(|mut directory| {
                let base = base.clone();
                async move { directory.search(&base, Scope::Base, "(objectClass=*)", &["1.1".to_owned()]).await }
            })
            .await?;
        if found.is_empty() {
            return Err(ConnectorError::unavailable(format!("users_base_dn {base:?} does not exist")));
        }
        Ok(())
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        tracing::debug!(command_id, "apply");
        if desired.presence == pb::Presence::Absent as i32 {
            let account = desired.account.clone().unwrap_or_default();
            self.with_directory(|directory| self.apply_absent(directory, &account)).await
        } else {
            self.with_directory(|directory| self.apply_present(directory, desired)).await
        }
    }

    async fn link(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        tracing::debug!(command_id, "link");
        self.with_directory(|directory| self.link_account(directory, desired, expected_fingerprint)).await
    }

    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        self.with_directory(|mut directory| async move {
            Ok(self.scope_entry(&mut directory, account_name, correlation_attributes).await?.map(|(_, state)| state))
        })
        .await
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        self.with_directory(|directory| self.read_account(directory, account)).await
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.list_scope(page_size, &[])
    }

    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        self.list_pages(page_size, correlation_attributes)
    }
}

/// The owner check and group resolution need no server; these pin the pure parts.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn generalized_time_parses_openldap_and_ad_forms() {
        assert_eq!(generalized_time("19700101000000Z").map(|t| t.seconds), Some(0));
        assert_eq!(generalized_time("20261127195844Z").map(|t| t.seconds), Some(1_795_809_524));
        assert_eq!(generalized_time("20261127195844.0Z").map(|t| t.seconds), Some(1_795_809_524));
        assert_eq!(generalized_time("2026"), None);
        assert_eq!(generalized_time("20261327195844Z"), None);
    }

    #[test]
    fn ad_password_is_quoted_utf16le() {
        assert_eq!(ad_password("ab"), vec![b'"', 0, b'a', 0, b'b', 0, b'"', 0]);
    }

    #[test]
    fn disable_bit_is_set_and_cleared_keeping_other_bits() {
        let entry = |uac: &str| DirectoryEntry {
            text: HashMap::from([(USER_ACCOUNT_CONTROL.to_ascii_lowercase(), vec![uac.to_owned()])]),
            ..Default::default()
        };
        assert_eq!(user_account_control(&entry("66048")), Some(66048));
        assert_eq!(user_account_control(&entry("-2147483646")), Some(0x8000_0002));
        // NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD | PASSWORD_NOTREQD
        let flags = 0x10220u32;
        assert_eq!(with_disabled(flags, true), 0x10222);
        assert_eq!(with_disabled(0x10222, false), flags);
        assert_eq!(with_disabled(0x10222, true), 0x10222, "already disabled stays as is");
        assert_eq!(with_disabled(flags, false), flags);
        // Verified by the bit, not by comparing with 514.
        let disabled = entry(&with_disabled(flags, true).to_string());
        assert!(user_account_control(&disabled).is_some_and(|uac| uac & ACCOUNTDISABLE != 0));
    }
}
