//! The provisioning contract implemented over a SCIM 2.0 service provider.
//!
//! - **Correlation**: the person id is stored in `externalId`; a user is
//!   looked up by `userName eq "..."` and touched only when its `externalId`
//!   is the person id (anything else is CONFLICT).
//! - **Users**: created with `POST`; changed with RFC-strict `PATCH`
//!   (lower-case `add`/`remove`/`replace`, attribute paths, boolean `active`),
//!   carrying `If-Match` when the service provider supports ETags, re-read and
//!   re-planned on 412; disabled with `active=false`; deleted with `DELETE`
//!   after their group memberships are removed. Never `PUT`.
//! - **Groups** are the `group` entitlement kind, identified by `displayName`
//!   (compared case-insensitively, as SCIM does). Membership is added and
//!   removed by `PATCH` on the group (`members[value eq "<id>"]` for removal)
//!   and read with the filter `members[value eq "<id>"]`, asking for each
//!   group's members: a group returned without the user among its members
//!   (a service provider that ignores the filter, or truncates members) makes
//!   the memberships unknown, an error, never a shorter list. Every requested
//!   group is resolved before anything is written, and a user created in an
//!   apply that then fails is deleted again, so nothing is half-written.
//! - **Scope** (#17): `List` enumerates every `/Users` resource, users
//!   without an `externalId` included with an empty key; a link sets
//!   `externalId` on such a user (PATCH with `If-Match` where ETags are
//!   supported) once its fingerprint is as the caller listed it.
//! - **Credentials**: SCIM cannot list credentials. Revocation replaces the
//!   password with a random value nobody keeps (where `changePassword` is
//!   supported) and deactivation does the rest; read-back reports the
//!   credential state as incomplete, and `Describe` says revocation is not
//!   verifiable.

use std::collections::BTreeSet;
use std::sync::Arc;

use connector_kit::contract as pb;
use connector_kit::validate::printable;
use connector_kit::{AccountStream, CONTRACT_VERSION, Connector, ConnectorError, correlation};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

use crate::config::{ConfigError, ScimConfig};
use crate::target::{
    ENTERPRISE_SCHEMA, PageStart, ScimGroup, ScimTarget, ScimUser, ServiceProvider, USER_SCHEMA, filter_string,
};

/// The entitlement kind for SCIM groups.
pub const GROUP_KIND: &str = "group";

/// Where a managed attribute lives on a SCIM User.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeSlot {
    /// `displayName`.
    DisplayName,
    /// `name.givenName`.
    GivenName,
    /// `name.familyName`.
    FamilyName,
    /// The `value` of the `emails` entry of type `work`.
    WorkEmail,
    /// `title`.
    Title,
    /// The enterprise extension's `department`.
    Department,
    /// The enterprise extension's `employeeNumber`.
    EmployeeNumber,
}

/// The attributes the connector manages: contract name, SCIM slot, comparison.
pub const ATTRIBUTES: [(&str, AttributeSlot, pb::ValueComparison); 7] = [
    ("display_name", AttributeSlot::DisplayName, pb::ValueComparison::Exact),
    ("given_name", AttributeSlot::GivenName, pb::ValueComparison::Exact),
    ("family_name", AttributeSlot::FamilyName, pb::ValueComparison::Exact),
    ("mail", AttributeSlot::WorkEmail, pb::ValueComparison::CaseInsensitive),
    ("title", AttributeSlot::Title, pb::ValueComparison::Exact),
    ("department", AttributeSlot::Department, pb::ValueComparison::Exact),
    ("employee_number", AttributeSlot::EmployeeNumber, pb::ValueComparison::Exact),
];

/// The SCIM attributes `List` can report for correlation.
pub const CORRELATION_ATTRIBUTES: [&str; 6] =
    ["userName", "emails", "displayName", "name.givenName", "name.familyName", "employeeNumber"];

/// The values of one correlation attribute of `user`.
fn correlation_values(user: &ScimUser, attribute: &str) -> Vec<String> {
    let one = |value: Option<&str>| value.map(str::to_owned).into_iter().collect();
    match attribute {
        "userName" => vec![user.user_name.clone()],
        "emails" => user.emails.iter().flatten().filter_map(|e| e.value.clone()).collect(),
        "displayName" => one(user.display_name.as_deref()),
        "name.givenName" => one(user.name.as_ref().and_then(|n| n.given_name.as_deref())),
        "name.familyName" => one(user.name.as_ref().and_then(|n| n.family_name.as_deref())),
        "employeeNumber" => one(user.enterprise.as_ref().and_then(|e| e.employee_number.as_deref())),
        _ => Vec::new(),
    }
}

/// The PATCH path of the work email entry.
const WORK_EMAIL_FILTER_PATH: &str = "emails[type eq \"work\"]";

impl AttributeSlot {
    /// The value the user holds, if any.
    pub fn read(self, user: &ScimUser) -> Option<&str> {
        let value = match self {
            Self::DisplayName => user.display_name.as_deref(),
            Self::GivenName => user.name.as_ref().and_then(|n| n.given_name.as_deref()),
            Self::FamilyName => user.name.as_ref().and_then(|n| n.family_name.as_deref()),
            Self::WorkEmail => user.work_email(),
            Self::Title => user.title.as_deref(),
            Self::Department => user.enterprise.as_ref().and_then(|e| e.department.as_deref()),
            Self::EmployeeNumber => user.enterprise.as_ref().and_then(|e| e.employee_number.as_deref()),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The RFC 7644 attribute path of a simple-valued slot.
    fn path(self) -> String {
        match self {
            Self::DisplayName => "displayName".into(),
            Self::GivenName => "name.givenName".into(),
            Self::FamilyName => "name.familyName".into(),
            Self::WorkEmail => format!("{WORK_EMAIL_FILTER_PATH}.value"),
            Self::Title => "title".into(),
            Self::Department => format!("{ENTERPRISE_SCHEMA}:department"),
            Self::EmployeeNumber => format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
        }
    }

    /// The PATCH operation taking `current` to `desired` (empty = absent).
    fn operation(self, current: Option<&str>, desired: &str) -> Value {
        match (self, desired.is_empty(), current) {
            (Self::WorkEmail, true, _) => json!({ "op": "remove", "path": WORK_EMAIL_FILTER_PATH }),
            (_, true, _) => json!({ "op": "remove", "path": self.path() }),
            (Self::WorkEmail, false, None) => {
                json!({ "op": "add", "path": "emails", "value": [{ "value": desired, "type": "work" }] })
            }
            (_, false, _) => json!({ "op": "replace", "path": self.path(), "value": desired }),
        }
    }

    /// Writes the value into a POST body.
    fn write(self, body: &mut Map<String, Value>, value: &str) {
        fn object<'a>(body: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
            body.entry(key.to_owned()).or_insert_with(|| json!({})).as_object_mut()
        }
        match self {
            Self::DisplayName => {
                body.insert("displayName".into(), json!(value));
            }
            Self::GivenName => {
                if let Some(name) = object(body, "name") {
                    name.insert("givenName".into(), json!(value));
                }
            }
            Self::FamilyName => {
                if let Some(name) = object(body, "name") {
                    name.insert("familyName".into(), json!(value));
                }
            }
            Self::WorkEmail => {
                body.insert("emails".into(), json!([{ "value": value, "type": "work", "primary": true }]));
            }
            Self::Title => {
                body.insert("title".into(), json!(value));
            }
            Self::Department => {
                if let Some(extension) = object(body, ENTERPRISE_SCHEMA) {
                    extension.insert("department".into(), json!(value));
                }
            }
            Self::EmployeeNumber => {
                if let Some(extension) = object(body, ENTERPRISE_SCHEMA) {
                    extension.insert("employeeNumber".into(), json!(value));
                }
            }
        }
    }
}

fn slot(name: &str) -> Option<(AttributeSlot, pb::ValueComparison)> {
    ATTRIBUTES.iter().find(|(n, _, _)| *n == name).map(|(_, slot, comparison)| (*slot, *comparison))
}

fn same(comparison: pb::ValueComparison, a: &str, b: &str) -> bool {
    connector_kit::readback::normalise(comparison, a) == connector_kit::readback::normalise(comparison, b)
}

/// Case-insensitive equality as the connector declares it for names.
fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

fn change(action: &str, subject: impl Into<String>) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

/// A password nobody keeps: 48 random characters with every character class
/// common password policies ask for.
fn discarded_password() -> String {
    const SYMBOLS: &[u8] = b"!#$%&*+-=?@^_~";
    let mut rng = rand::rng();
    let mut password: String = (&mut rng).sample_iter(rand::distr::Alphanumeric).take(44).map(char::from).collect();
    password.push(char::from(SYMBOLS[rng.random_range(0..SYMBOLS.len())]));
    password.push_str("a7Z");
    password
}

/// The warning every revocation carries: what SCIM cannot do.
const REVOCATION_WARNING: &str = "SCIM cannot enumerate credentials: the password was replaced by a discarded random \
     value where the service provider allows it and the account relies on active=false; sessions, tokens and \
     application passwords held by the service provider cannot be listed or proven revoked";

struct Inner {
    target_id: String,
    target: ScimTarget,
    privileged_groups: BTreeSet<String>,
    provider: RwLock<Option<ServiceProvider>>,
    page_size: u32,
    precondition_retries: u32,
    list_concurrency: usize,
}

/// The SCIM 2.0 connector.
#[derive(Clone)]
pub struct ScimConnector {
    inner: Arc<Inner>,
}

impl ScimConnector {
    /// A connector for the configured service provider. Loads the secret;
    /// does not call the service provider (the preflight does).
    pub fn new(config: &ScimConfig) -> Result<Self, ConfigError> {
        let target = ScimTarget::new(config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                target_id: config.target_id.clone(),
                target,
                privileged_groups: config.privileged_groups.iter().map(|g| g.to_lowercase()).collect(),
                provider: RwLock::new(None),
                page_size: config.page_size,
                precondition_retries: config.precondition_retries,
                list_concurrency: config.list_concurrency,
            }),
        })
    }

    /// The SCIM client, for tests and benchmarks that talk to the target directly.
    pub fn target(&self) -> &ScimTarget {
        &self.inner.target
    }

    /// What the service provider announced, read at the first call (and at
    /// every preflight).
    pub async fn service_provider(&self) -> Result<ServiceProvider, ConnectorError> {
        if let Some(provider) = *self.inner.provider.read().await {
            return Ok(provider);
        }
        let provider = self.inner.target.service_provider().await?;
        tracing::info!(?provider, "read the SCIM service provider configuration");
        *self.inner.provider.write().await = Some(provider);
        Ok(provider)
    }

    async fn provider_for_changes(&self) -> Result<ServiceProvider, ConnectorError> {
        let provider = self.service_provider().await?;
        if !provider.filter {
            return Err(ConnectorError::unsupported(
                "the service provider does not support filters: users cannot be looked up by userName",
            ));
        }
        Ok(provider)
    }

    fn is_privileged(&self, display_name: &str) -> bool {
        self.inner.privileged_groups.contains(&display_name.to_lowercase())
    }

    /// The user named by `account`, if it exists and carries its person id.
    async fn find_user(&self, account: &pb::AccountRef) -> Result<Option<ScimUser>, ConnectorError> {
        let user = self.find_user_named(&account.account_name).await?;
        if let Some(user) = &user {
            check_owner(user, account)?;
        }
        Ok(user)
    }

    /// The user named `account_name`, whoever's it is.
    async fn find_user_named(&self, account_name: &str) -> Result<Option<ScimUser>, ConnectorError> {
        let filter = format!("userName eq {}", filter_string(account_name));
        let page = self.inner.target.search::<ScimUser>("/Users", Some(&filter), None, &PageStart::Index(1), 2).await?;
        let mut found: Vec<ScimUser> =
            page.resources.into_iter().filter(|u| same_name(&u.user_name, account_name)).collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found.remove(0))),
            _ => Err(ConnectorError::conflict(format!(
                "several users are named {:?} on the service provider",
                printable(account_name)
            ))),
        }
    }

    /// The user named `account_name`, whoever's it is, and its state as
    /// `List` shows it with the requested correlation attributes.
    async fn scope_user(
        &self,
        account_name: &str,
        requested: &[String],
    ) -> Result<Option<(ScimUser, pb::AccountState)>, ConnectorError> {
        let provider = self.provider_for_changes().await?;
        let Some(user) = self.find_user_named(account_name).await? else { return Ok(None) };
        let mut state = self.state(&user, self.groups_of(&provider, &user.id).await?);
        state.correlation_attributes =
            correlation::collect(requested, &user.user_name, |a| correlation_values(&user, a));
        Ok(Some((user, state)))
    }

    /// Sets `externalId` on the untagged user `desired` names, as the caller
    /// listed it, then converges it.
    async fn link_user(
        &self,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let provider = self.provider_for_changes().await?;
        let account = desired.account.clone().unwrap_or_default();
        let found = self.scope_user(&account.account_name, &[]).await?;
        let (user, state) = found.map_or((None, None), |(user, state)| (Some(user), Some(state)));
        let step =
            correlation::link_step(state.as_ref(), &account.account_name, &account.person_id, expected_fingerprint)?;
        let mut changes = Vec::new();
        if let (correlation::LinkStep::WriteKey, Some(user)) = (step, &user) {
            if !provider.patch {
                return Err(ConnectorError::unsupported("the service provider does not support PATCH"));
            }
            let operation = json!({ "op": "replace", "path": "externalId", "value": account.person_id });
            let if_match = if provider.etag { user.version() } else { None };
            self.inner.target.patch("/Users", &user.id, vec![operation], if_match).await.map_err(|error| {
                if error.status() == Some(412) {
                    ConnectorError::conflict("the user changed on the service provider while it was being linked")
                } else {
                    error.into()
                }
            })?;
            changes.push(change("link", account.account_name.clone()));
        }
        let mut acknowledgement = self.apply_present(desired, &account).await?;
        changes.append(&mut acknowledgement.changes);
        acknowledgement.changes = changes;
        Ok(acknowledgement)
    }

    /// The group named `display_name`, if it exists.
    async fn find_group(&self, display_name: &str) -> Result<Option<ScimGroup>, ConnectorError> {
        let filter = format!("displayName eq {}", filter_string(display_name));
        let page = self
            .inner
            .target
            .search::<ScimGroup>("/Groups", Some(&filter), Some("displayName"), &PageStart::Index(1), 2)
            .await?;
        let mut found: Vec<ScimGroup> =
            page.resources.into_iter().filter(|g| same_name(&g.display_name, display_name)).collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found.remove(0))),
            _ => Err(ConnectorError::conflict(format!(
                "several groups are named {:?} on the service provider",
                printable(display_name)
            ))),
        }
    }

    /// Every group the user is a member of. Each group the filter returns
    /// must list the user among its members: what the service provider says
    /// is checked, never trusted.
    async fn groups_of(&self, provider: &ServiceProvider, user_id: &str) -> Result<Vec<ScimGroup>, ConnectorError> {
        let filter = format!("members[value eq {}]", filter_string(user_id));
        let count = self.inner.page_size.min(provider.page_cap()).max(1);
        let mut groups: Vec<ScimGroup> = Vec::new();
        let mut index = 1u64;
        loop {
            let page = self
                .inner
                .target
                .search::<ScimGroup>(
                    "/Groups",
                    Some(&filter),
                    Some("displayName,members"),
                    &PageStart::Index(index),
                    count,
                )
                .await?;
            let fetched = page.resources.len() as u64;
            if let Some(group) = page
                .resources
                .iter()
                .find(|g| !g.members.as_ref().is_some_and(|members| members.iter().any(|m| m.value == user_id)))
            {
                return Err(ConnectorError::internal(format!(
                    "the service provider answered the filter members[value eq id] with group {:?}, whose members \
                     (as returned) do not include the user: it ignores the filter or truncates members, so the \
                     user's memberships cannot be read",
                    printable(&group.display_name)
                )));
            }
            groups.extend(page.resources);
            index += fetched;
            if fetched == 0 || index > page.total_results {
                break;
            }
        }
        let mut seen = BTreeSet::new();
        groups.retain(|g| seen.insert(g.id.clone()));
        Ok(groups)
    }

    /// Resolves every requested group before anything is written.
    async fn resolve_groups(&self, desired: &pb::DesiredAccount) -> Result<Vec<ScimGroup>, ConnectorError> {
        let mut groups = Vec::new();
        for (index, entitlement) in desired.entitlements.iter().enumerate() {
            if entitlement.kind != GROUP_KIND {
                continue;
            }
            match self.find_group(&entitlement.id).await? {
                Some(group) => groups.push(group),
                None => {
                    return Err(ConnectorError::not_found(format!(
                        "group {:?} does not exist on the service provider",
                        printable(&entitlement.id)
                    ))
                    .with_field(format!("desired.entitlements[{index}].id")));
                }
            }
        }
        Ok(groups)
    }

    /// The PATCH operations taking `user` to `desired`, and the changes they make.
    fn user_operations(
        &self,
        provider: &ServiceProvider,
        user: &ScimUser,
        desired: &pb::DesiredAccount,
    ) -> (Vec<Value>, Vec<pb::Change>) {
        let mut operations = Vec::new();
        let mut changes = Vec::new();
        let active = user.active.unwrap_or(true);
        if active != desired.enabled {
            operations.push(json!({ "op": "replace", "path": "active", "value": desired.enabled }));
            changes.push(change(if desired.enabled { "enable" } else { "disable" }, user.user_name.clone()));
        }
        for (name, value) in &desired.attributes {
            let Some((slot, comparison)) = slot(name) else { continue };
            let current = slot.read(user);
            if same(comparison, current.unwrap_or_default(), value) {
                continue;
            }
            operations.push(slot.operation(current, value));
            changes.push(change("set_attribute", name.clone()));
        }
        let revoke = desired.credentials == pb::CredentialAction::RevokeAll as i32;
        if revoke && provider.change_password && (active || !operations.is_empty()) {
            operations.push(json!({ "op": "replace", "path": "password", "value": discarded_password() }));
            changes.push(change("revoke_credential", "password"));
        }
        (operations, changes)
    }

    /// PATCHes the user to the desired state; on 412 re-reads it and re-plans
    /// with the fresh ETag, a bounded number of times.
    async fn converge_user(
        &self,
        provider: &ServiceProvider,
        mut user: ScimUser,
        desired: &pb::DesiredAccount,
        account: &pb::AccountRef,
    ) -> Result<Vec<pb::Change>, ConnectorError> {
        if !provider.patch {
            let (operations, _) = self.user_operations(provider, &user, desired);
            if operations.is_empty() {
                return Ok(Vec::new());
            }
            return Err(ConnectorError::unsupported(
                "the service provider does not support PATCH, and this connector never replaces a user with PUT",
            ));
        }
        let mut attempt = 0;
        loop {
            let (operations, changes) = self.user_operations(provider, &user, desired);
            if operations.is_empty() {
                return Ok(changes);
            }
            let if_match = if provider.etag { user.version().map(str::to_owned) } else { None };
            match self.inner.target.patch("/Users", &user.id, operations, if_match.as_deref()).await {
                Ok(()) => return Ok(changes),
                Err(error) if error.status() == Some(412) && attempt < self.inner.precondition_retries => {
                    attempt += 1;
                    tracing::info!(attempt, "user changed on the service provider meanwhile (412): re-reading");
                    user = self.inner.target.get_user(&user.id).await?;
                    check_owner(&user, account)?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn add_member(&self, group: &ScimGroup, user_id: &str) -> Result<(), ConnectorError> {
        let operation = json!({ "op": "add", "path": "members", "value": [{ "value": user_id }] });
        Ok(self.inner.target.patch("/Groups", &group.id, vec![operation], None).await?)
    }

    async fn remove_member(&self, group: &ScimGroup, user_id: &str) -> Result<(), ConnectorError> {
        let path = format!("members[value eq {}]", filter_string(user_id));
        let operation = json!({ "op": "remove", "path": path });
        Ok(self.inner.target.patch("/Groups", &group.id, vec![operation], None).await?)
    }

    fn create_body(&self, desired: &pb::DesiredAccount, account: &pb::AccountRef) -> Value {
        let mut body = Map::new();
        body.insert("userName".into(), json!(account.account_name));
        body.insert("externalId".into(), json!(account.person_id));
        body.insert("active".into(), json!(desired.enabled));
        for (name, value) in &desired.attributes {
            if let Some((slot, _)) = slot(name)
                && !value.is_empty()
            {
                slot.write(&mut body, value);
            }
        }
        let mut schemas = vec![json!(USER_SCHEMA)];
        if body.contains_key(ENTERPRISE_SCHEMA) {
            schemas.push(json!(ENTERPRISE_SCHEMA));
        }
        body.insert("schemas".into(), Value::Array(schemas));
        Value::Object(body)
    }

    async fn create(
        &self,
        desired: &pb::DesiredAccount,
        account: &pb::AccountRef,
        groups: &[ScimGroup],
    ) -> Result<(ScimUser, Vec<pb::Change>), ConnectorError> {
        let user = self.inner.target.create_user(&self.create_body(desired, account)).await?;
        let mut changes = vec![change("create", account.account_name.clone())];
        for group in groups {
            if let Err(error) = self.add_member(group, &user.id).await {
                // Nothing half-written: the user this apply created goes again.
                if let Err(cleanup) = self.remove_user(&user).await {
                    tracing::error!(%cleanup, "could not delete the user created by a failed apply");
                }
                return Err(error);
            }
            changes.push(change("add_entitlement", format!("{GROUP_KIND}:{}", group.display_name)));
        }
        Ok((user, changes))
    }

    async fn remove_user(&self, user: &ScimUser) -> Result<(), ConnectorError> {
        match self.inner.target.delete("/Users", &user.id).await {
            Err(error) if error.status() != Some(404) => Err(error.into()),
            _ => Ok(()),
        }
    }

    fn state(&self, user: &ScimUser, groups: Vec<ScimGroup>) -> pb::AccountState {
        let attributes = ATTRIBUTES
            .iter()
            .filter_map(|(name, slot, _)| slot.read(user).map(|value| ((*name).to_owned(), value.to_owned())))
            .collect();
        let entitlements = groups
            .into_iter()
            .map(|group| pb::Entitlement {
                kind: GROUP_KIND.into(),
                privileged: self.is_privileged(&group.display_name),
                id: group.display_name,
            })
            .collect();
        let last_activity = user
            .meta
            .as_ref()
            .and_then(|m| m.last_modified.as_deref())
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(prost_types::Timestamp::from);
        pb::AccountState {
            account: Some(pb::AccountRef {
                person_id: user.external_id.clone().unwrap_or_default(),
                account_name: user.user_name.clone(),
            }),
            exists: true,
            enabled: user.active.unwrap_or(true),
            attributes,
            entitlements,
            credentials: Some(pb::CredentialState {
                active: Vec::new(),
                complete: false,
                residual_risks: Vec::new(),
                cutoffs: Vec::new(),
            }),
            target_native_id: user.id.clone(),
            last_activity,
            ..Default::default()
        }
    }

    async fn apply_present(
        &self,
        desired: &pb::DesiredAccount,
        account: &pb::AccountRef,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        let provider = self.provider_for_changes().await?;
        let groups = self.resolve_groups(desired).await?;
        let (user, mut changes) = match self.find_user(account).await? {
            None => self.create(desired, account, &groups).await?,
            Some(user) => {
                let mut changes = self.converge_user(&provider, user.clone(), desired, account).await?;
                let current = self.groups_of(&provider, &user.id).await?;
                let wanted: BTreeSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();
                let held: BTreeSet<&str> = current.iter().map(|g| g.id.as_str()).collect();
                for group in current.iter().filter(|g| !wanted.contains(g.id.as_str())) {
                    self.remove_member(group, &user.id).await?;
                    changes.push(change("remove_entitlement", format!("{GROUP_KIND}:{}", group.display_name)));
                }
                for group in groups.iter().filter(|g| !held.contains(g.id.as_str())) {
                    self.add_member(group, &user.id).await?;
                    changes.push(change("add_entitlement", format!("{GROUP_KIND}:{}", group.display_name)));
                }
                (user, changes)
            }
        };
        let mut warnings = Vec::new();
        if desired.credentials == pb::CredentialAction::RevokeAll as i32 {
            warnings.push(REVOCATION_WARNING.to_owned());
            if !provider.change_password {
                warnings.push("the service provider does not allow password changes: only deactivation applied".into());
            }
        }
        changes.dedup();
        Ok(pb::ApplyResponse {
            command_id: String::new(),
            changes,
            target_native_id: user.id,
            warnings,
            ..Default::default()
        })
    }

    async fn apply_absent(&self, account: &pb::AccountRef) -> Result<pb::ApplyResponse, ConnectorError> {
        let provider = self.provider_for_changes().await?;
        let mut changes = Vec::new();
        if let Some(user) = self.find_user(account).await? {
            for group in self.groups_of(&provider, &user.id).await? {
                self.remove_member(&group, &user.id).await?;
                changes.push(change("remove_entitlement", format!("{GROUP_KIND}:{}", group.display_name)));
            }
            self.remove_user(&user).await?;
            changes.push(change("delete", account.account_name.clone()));
        }
        Ok(pb::ApplyResponse { changes, ..Default::default() })
    }
}

/// Refuses a user that does not carry the person id as its `externalId`.
fn check_owner(user: &ScimUser, account: &pb::AccountRef) -> Result<(), ConnectorError> {
    if user.external_id.as_deref() == Some(account.person_id.as_str()) {
        return Ok(());
    }
    Err(ConnectorError::conflict(format!(
        "user {:?} exists on the service provider but its externalId is not this person's id: it is not managed here",
        printable(&user.user_name)
    )))
}

/// SCIM's credential kinds: none can be enumerated (SCIM never returns
/// passwords and has no session resource); what a revocation leaves is
/// declared with an unknown bound.
fn credential_kinds() -> Vec<pb::CredentialKindSpec> {
    use connector_kit::credentials::{kind, outlives_unknown};
    vec![
        kind(
            "password",
            false,
            true,
            Some(outlives_unknown(
                "password",
                "replaced by a discarded random value where changePassword is supported; SCIM never returns \
                 passwords, so read-back cannot show it",
            )),
        ),
        kind(
            "application_session",
            false,
            false,
            Some(outlives_unknown(
                "application_session",
                "sessions and tokens the application issued before the revocation: SCIM cannot list or end them; \
                 active=false is all the protocol offers",
            )),
        ),
    ]
}

impl Connector for ScimConnector {
    fn describe(&self) -> pb::DescribeResponse {
        pb::DescribeResponse {
            connector_kind: "scim".into(),
            target_id: self.inner.target_id.clone(),
            contract_version: CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: false,
                list: true,
                unmanaged_entitlements: false,
                credential_cutoff: false,
                link: true,
                scope_listing: true,
                ..Default::default()
            }),
            entitlement_kinds: vec![pb::EntitlementKind {
                kind: GROUP_KIND.into(),
                comparison: pb::ValueComparison::CaseInsensitive as i32,
            }],
            credential_kinds: credential_kinds(),
            account_naming: Some(connector_kit::naming::rule(
                &connector_kit::naming::all_but(""),
                (1, 256),
                pb::ValueComparison::CaseInsensitive,
                true,
                "",
                "userName: any printable characters (RFC 7643: caseExact false, unique on the service provider)",
            )),
            attributes: ATTRIBUTES
                .iter()
                .map(|(name, _, comparison)| pb::AttributeSpec {
                    name: (*name).into(),
                    comparison: *comparison as i32,
                    required: false,
                })
                .collect(),
            account_name_comparison: pb::ValueComparison::CaseInsensitive as i32,
            limitations: vec![
                "SCIM cannot list credentials: revocation replaces the password with a discarded random value \
                 (where changePassword is supported) and relies on active=false; read-back cannot prove that \
                 no session or token remains"
                    .into(),
                "a revocation re-applied to an account that is already inactive changes nothing, so a password \
                 set directly on the service provider meanwhile is not replaced (SCIM never returns passwords)"
                    .into(),
                "the correlation key is externalId: List enumerates every user (those without one with an empty \
                 key), and a user renamed on the source (same person, new userName) is not found under its old name"
                    .into(),
                "group memberships are read with the filter members[value eq id], so filters are required".into(),
                "without RFC 9865 cursor pagination, List pages by startIndex and may skip or repeat users \
                 created or deleted while it runs"
                    .into(),
            ],
            correlation_attributes: CORRELATION_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect(),
            scope: "every /Users resource of the service provider".into(),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        let provider = self.inner.target.service_provider().await?;
        self.inner.target.check_access().await?;
        *self.inner.provider.write().await = Some(provider);
        Ok(())
    }

    #[tracing::instrument(name = "scim.apply", skip_all, fields(command_id = command_id))]
    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        if desired.presence == pb::Presence::Absent as i32 {
            self.apply_absent(&account).await
        } else {
            self.apply_present(desired, &account).await
        }
    }

    #[tracing::instrument(name = "scim.link", skip_all, fields(command_id = command_id))]
    async fn link(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        expected_fingerprint: &str,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        self.link_user(desired, expected_fingerprint).await
    }

    #[tracing::instrument(name = "scim.find", skip_all)]
    async fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> Result<Option<pb::AccountState>, ConnectorError> {
        Ok(self.scope_user(account_name, correlation_attributes).await?.map(|(_, state)| state))
    }

    #[tracing::instrument(name = "scim.read", skip_all)]
    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        let provider = self.provider_for_changes().await?;
        Ok(match self.find_user(account).await? {
            Some(user) => {
                let groups = self.groups_of(&provider, &user.id).await?;
                self.state(&user, groups)
            }
            None => pb::AccountState { account: Some(account.clone()), exists: false, ..Default::default() },
        })
    }

    fn list(&self, page_size: u32) -> AccountStream {
        self.list_scope(page_size, &[])
    }

    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let requested: Arc<[String]> = correlation_attributes.into();
        enum Position {
            Start,
            Next(PageStart),
            Done,
        }
        let this = self.clone();
        Box::pin(futures::stream::try_unfold(Position::Start, move |position| {
            let this = this.clone();
            let requested = requested.clone();
            async move {
                let provider = this.service_provider().await?;
                let start = match position {
                    Position::Done => return Ok(None),
                    Position::Next(start) => start,
                    Position::Start if provider.cursor_pagination => PageStart::Cursor(String::new()),
                    Position::Start => PageStart::Index(1),
                };
                let asked = if page_size == 0 { this.inner.page_size } else { page_size };
                let count = asked.min(provider.page_cap()).max(1);
                let page = this.inner.target.search::<ScimUser>("/Users", None, None, &start, count).await?;
                let fetched = page.resources.len() as u64;
                let next = match start {
                    PageStart::Cursor(_) => match page.next_cursor.filter(|c| !c.is_empty()) {
                        Some(cursor) if fetched > 0 => Position::Next(PageStart::Cursor(cursor)),
                        _ => Position::Done,
                    },
                    PageStart::Index(index) if fetched > 0 && index - 1 + fetched < page.total_results => {
                        Position::Next(PageStart::Index(index + fetched))
                    }
                    PageStart::Index(_) => Position::Done,
                };
                let this_ref = &this;
                let provider_ref = &provider;
                let requested_ref = &requested;
                let states: Vec<pb::AccountState> = futures::stream::iter(page.resources)
                    .map(|user| async move {
                        let groups = this_ref.groups_of(provider_ref, &user.id).await?;
                        let mut state = this_ref.state(&user, groups);
                        state.correlation_attributes =
                            correlation::collect(requested_ref, &user.user_name, |a| correlation_values(&user, a));
                        Ok::<_, ConnectorError>(state)
                    })
                    .buffered(this.inner.list_concurrency)
                    .try_collect()
                    .await?;
                Ok(Some((states, next)))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_operations_are_rfc_strict() {
        assert_eq!(
            AttributeSlot::Title.operation(Some("old"), "new"),
            json!({ "op": "replace", "path": "title", "value": "new" })
        );
        assert_eq!(AttributeSlot::Title.operation(Some("old"), ""), json!({ "op": "remove", "path": "title" }));
        assert_eq!(
            AttributeSlot::WorkEmail.operation(None, "a@example.org"),
            json!({ "op": "add", "path": "emails", "value": [{ "value": "a@example.org", "type": "work" }] })
        );
        assert_eq!(
            AttributeSlot::WorkEmail.operation(Some("b@example.org"), "a@example.org"),
            json!({ "op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@example.org" })
        );
        assert_eq!(
            AttributeSlot::Department.operation(None, "R&D"),
            json!({ "op": "replace", "path": format!("{ENTERPRISE_SCHEMA}:department"), "value": "R&D" })
        );
    }

    #[test]
    fn discarded_passwords_are_long_and_random() {
        let a = discarded_password();
        assert_eq!(a.len(), 48);
        assert_ne!(a, discarded_password());
    }
}
