//! Direct clients of the four real target servers, each speaking the target's
//! own protocol with the administrator credentials `deploy/local/*.sh` made:
//! an LDAP search on slapd, SCIM GETs on scim2-server, the AWS SDK on moto and
//! the Vault HTTP API on RustyVault. No connector code is involved: these are
//! what the tests believe about what each target shows.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use aws_sdk_iam::Client as IamClient;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use mesh_harness::target_env;
use serde_json::Value;

/// What slapd shows for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapAccount {
    /// The entry's DN.
    pub dn: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// Locked by the ppolicy overlay (`pwdAccountLockedTime` present).
    pub locked: bool,
    /// The `cn` of every group whose `member` names the entry.
    pub groups: BTreeSet<String>,
}

/// slapd, through an admin bind (or another account's, [`Ldap::bound_as`]).
#[derive(Debug, Clone)]
pub struct Ldap {
    url: String,
    bind_dn: String,
    password: String,
    base_dn: String,
}

impl Ldap {
    fn from_env() -> anyhow::Result<Self> {
        let password_file = target_env("slapd", "JML_TEST_SLAPD_BIND_PASSWORD_FILE");
        Ok(Self {
            url: target_env("slapd", "JML_TEST_SLAPD_URL"),
            bind_dn: target_env("slapd", "JML_TEST_SLAPD_BIND_DN"),
            password: std::fs::read_to_string(&password_file)
                .with_context(|| format!("reading {password_file}"))?
                .trim_end()
                .to_owned(),
            base_dn: target_env("slapd", "JML_TEST_SLAPD_BASE_DN"),
        })
    }

    /// A client of the same slapd binding as another account (`dn`, password
    /// in `password_file`): what that account is allowed to see.
    pub fn bound_as(dn: &str, password_file: &str) -> anyhow::Result<Self> {
        let mut ldap = Self::from_env()?;
        ldap.bind_dn = dn.to_owned();
        ldap.password = std::fs::read_to_string(password_file)
            .with_context(|| format!("reading {password_file}"))?
            .trim_end()
            .to_owned();
        Ok(ldap)
    }

    /// A bound admin connection.
    pub async fn connect(&self) -> anyhow::Result<ldap3::Ldap> {
        let (driver, mut ldap) = LdapConnAsync::new(&self.url).await?;
        ldap3::drive!(driver);
        ldap.simple_bind(&self.bind_dn, &self.password).await?.success()?;
        Ok(ldap)
    }

    fn people(&self) -> String {
        format!("ou=people,{}", self.base_dn)
    }

    fn groups(&self) -> String {
        format!("ou=groups,{}", self.base_dn)
    }

    /// The entries whose `uid` is `uid` (more than one is a duplicate).
    pub async fn accounts(&self, uid: &str) -> anyhow::Result<Vec<LdapAccount>> {
        let mut ldap = self.connect().await?;
        let filter = format!("(uid={})", ldap3::ldap_escape(uid));
        let (entries, _) = ldap
            .search(&self.people(), Scope::Subtree, &filter, vec!["displayName", "pwdAccountLockedTime"])
            .await?
            .success()?;
        let mut accounts = Vec::new();
        for entry in entries.into_iter().map(SearchEntry::construct) {
            let member_filter = format!("(member={})", ldap3::ldap_escape(&entry.dn));
            let (groups, _) =
                ldap.search(&self.groups(), Scope::Subtree, &member_filter, vec!["cn"]).await?.success()?;
            let groups = groups
                .into_iter()
                .map(SearchEntry::construct)
                .filter_map(|g| g.attrs.get("cn").and_then(|v| v.first()).map(|cn| cn.to_lowercase()))
                .collect();
            accounts.push(LdapAccount {
                display_name: entry.attrs.get("displayName").and_then(|v| v.first()).cloned(),
                locked: entry.attrs.contains_key("pwdAccountLockedTime"),
                dn: entry.dn,
                groups,
            });
        }
        let _ = ldap.unbind().await;
        Ok(accounts)
    }

    /// The one account named `uid`; fails on a duplicate.
    pub async fn account(&self, uid: &str) -> anyhow::Result<Option<LdapAccount>> {
        let mut accounts = self.accounts(uid).await?;
        if accounts.len() > 1 {
            bail!("LDAP holds {} entries with uid={uid}", accounts.len());
        }
        Ok(accounts.pop())
    }

    /// How many entries carry each `uid` starting with `prefix`.
    pub async fn uid_counts(&self, prefix: &str) -> anyhow::Result<BTreeMap<String, usize>> {
        let mut ldap = self.connect().await?;
        let filter = format!("(uid={}*)", ldap3::ldap_escape(prefix));
        let (entries, _) = ldap.search(&self.people(), Scope::Subtree, &filter, vec!["uid"]).await?.success()?;
        let mut counts = BTreeMap::new();
        for entry in entries.into_iter().map(SearchEntry::construct) {
            for uid in entry.attrs.get("uid").into_iter().flatten() {
                *counts.entry(uid.clone()).or_insert(0) += 1;
            }
        }
        let _ = ldap.unbind().await;
        Ok(counts)
    }

    /// Member DNs (lowercased) of group `cn` that appear more than once.
    pub async fn duplicate_members(&self, cn: &str) -> anyhow::Result<Vec<String>> {
        let mut ldap = self.connect().await?;
        let filter = format!("(cn={})", ldap3::ldap_escape(cn));
        let (entries, _) = ldap.search(&self.groups(), Scope::Subtree, &filter, vec!["member"]).await?.success()?;
        let mut seen = BTreeMap::new();
        for entry in entries.into_iter().map(SearchEntry::construct) {
            for member in entry.attrs.get("member").into_iter().flatten() {
                *seen.entry(member.to_lowercase().replace(' ', "")).or_insert(0usize) += 1;
            }
        }
        let _ = ldap.unbind().await;
        Ok(seen.into_iter().filter(|(_, n)| *n > 1).map(|(m, _)| m).collect())
    }
}

/// What the SCIM service provider shows for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimAccount {
    /// The SCIM id.
    pub id: String,
    /// `active`.
    pub active: bool,
    /// `displayName` of every group listing the user as a member (lowercased).
    pub groups: BTreeSet<String>,
}

/// scim2-server, over HTTP with the bearer token.
#[derive(Debug, Clone)]
pub struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn scim_literal(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Scim {
    fn from_env() -> anyhow::Result<Self> {
        let token_file = target_env("scim", "JML_TEST_SCIM_TOKEN_FILE");
        Ok(Self {
            http: reqwest::Client::new(),
            base: target_env("scim", "JML_TEST_SCIM_URL").trim_end_matches('/').to_owned(),
            token: std::fs::read_to_string(&token_file)
                .with_context(|| format!("reading {token_file}"))?
                .trim()
                .to_owned(),
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let response =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).query(query).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("SCIM GET {path}: HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// Every resource of a list query, page by page.
    async fn list(&self, path: &str, filter: String) -> anyhow::Result<Vec<Value>> {
        let mut resources = Vec::new();
        let mut start = 1usize;
        loop {
            let page = self
                .get(path, &[("filter", filter.clone()), ("startIndex", start.to_string()), ("count", "500".into())])
                .await?;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let got = items.len();
            resources.extend(items);
            start += got;
            if got == 0 || resources.len() >= total {
                return Ok(resources);
            }
        }
    }

    /// The users whose `userName` is `user_name` (more than one is a duplicate).
    pub async fn accounts(&self, user_name: &str) -> anyhow::Result<Vec<ScimAccount>> {
        let users = self.list("/Users", format!("userName eq {}", scim_literal(user_name))).await?;
        let mut accounts = Vec::new();
        for user in users {
            let id = user["id"].as_str().context("a SCIM user without id")?.to_owned();
            let groups = self
                .list("/Groups", format!("members[value eq {}]", scim_literal(&id)))
                .await?
                .iter()
                .filter_map(|g| g["displayName"].as_str().map(str::to_lowercase))
                .collect();
            accounts.push(ScimAccount { active: user["active"].as_bool().unwrap_or(true), id, groups });
        }
        Ok(accounts)
    }

    /// The one user named `user_name`; fails on a duplicate.
    pub async fn account(&self, user_name: &str) -> anyhow::Result<Option<ScimAccount>> {
        let mut accounts = self.accounts(user_name).await?;
        if accounts.len() > 1 {
            bail!("SCIM holds {} users with userName {user_name:?}", accounts.len());
        }
        Ok(accounts.pop())
    }

    /// How many users carry each `userName` starting with `prefix`.
    pub async fn user_name_counts(&self, prefix: &str) -> anyhow::Result<BTreeMap<String, usize>> {
        let users = self.list("/Users", format!("userName sw {}", scim_literal(prefix))).await?;
        let mut counts = BTreeMap::new();
        for user in users {
            if let Some(name) = user["userName"].as_str() {
                *counts.entry(name.to_lowercase()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Member ids of group `display_name` that appear more than once.
    pub async fn duplicate_members(&self, display_name: &str) -> anyhow::Result<Vec<String>> {
        let groups = self.list("/Groups", format!("displayName eq {}", scim_literal(display_name))).await?;
        let mut seen = BTreeMap::new();
        for group in groups {
            for member in group["members"].as_array().into_iter().flatten() {
                if let Some(value) = member["value"].as_str() {
                    *seen.entry(value.to_owned()).or_insert(0usize) += 1;
                }
            }
        }
        Ok(seen.into_iter().filter(|(_, n)| *n > 1).map(|(m, _)| m).collect())
    }
}

/// What IAM (moto) shows for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamAccount {
    /// The user's path.
    pub path: String,
    /// Group names (lowercased).
    pub groups: BTreeSet<String>,
    /// Attached managed policy ARNs.
    pub policies: BTreeSet<String>,
    /// The connector's disabled-marker tag is set to `true`.
    pub disabled_tag: bool,
    /// A console password exists.
    pub login_profile: bool,
    /// Access keys with status Active.
    pub active_access_keys: usize,
}

/// moto's IAM, through the AWS SDK for Rust.
#[derive(Debug, Clone)]
pub struct Iam {
    client: IamClient,
}

impl Iam {
    async fn from_env() -> anyhow::Result<Self> {
        let url = target_env("moto", "JML_TEST_MOTO_URL");
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            target_env("moto", "AWS_ACCESS_KEY_ID");
        }
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client)
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(url)
            .load()
            .await;
        Ok(Self { client: IamClient::new(&config) })
    }

    /// The user named `name`, or `None`.
    pub async fn account(&self, name: &str) -> anyhow::Result<Option<IamAccount>> {
        let user = match self.client.get_user().user_name(name).send().await {
            Ok(output) => output.user.context("GetUser without a user")?,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => return Ok(None),
            Err(error) => bail!("GetUser {name}: {error:?}"),
        };
        let groups = self.client.list_groups_for_user().user_name(name).send().await?;
        let policies = self.client.list_attached_user_policies().user_name(name).send().await?;
        let tags = self.client.list_user_tags().user_name(name).send().await?;
        let login_profile = match self.client.get_login_profile().user_name(name).send().await {
            Ok(_) => true,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => false,
            Err(error) => bail!("GetLoginProfile {name}: {error:?}"),
        };
        let keys = self.client.list_access_keys().user_name(name).send().await?;
        Ok(Some(IamAccount {
            path: user.path,
            groups: groups.groups.iter().map(|g| g.group_name.to_lowercase()).collect(),
            policies: policies.attached_policies().iter().filter_map(|p| p.policy_arn.clone()).collect(),
            disabled_tag: tags.tags.iter().any(|t| t.key == "lifecycle-mesh:disabled" && t.value == "true"),
            login_profile,
            active_access_keys: keys
                .access_key_metadata
                .iter()
                .filter(|k| k.status.as_ref().is_some_and(|s| s.as_str() == "Active"))
                .count(),
        }))
    }

    /// An inline policy's document, URL-decoded as IAM returns it encoded;
    /// `None` when the user has no such policy.
    pub async fn inline_policy(&self, user: &str, policy: &str) -> anyhow::Result<Option<String>> {
        match self.client.get_user_policy().user_name(user).policy_name(policy).send().await {
            Ok(output) => {
                let raw = output.policy_document;
                let mut bytes = Vec::new();
                let mut rest = raw.as_bytes();
                while let Some((&byte, tail)) = rest.split_first() {
                    if byte == b'%' && tail.len() >= 2 {
                        let hex = std::str::from_utf8(&tail[..2])?;
                        bytes.push(u8::from_str_radix(hex, 16)?);
                        rest = &tail[2..];
                    } else {
                        bytes.push(byte);
                        rest = tail;
                    }
                }
                Ok(Some(String::from_utf8(bytes)?))
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(None),
            Err(error) => bail!("GetUserPolicy {user} {policy}: {error:?}"),
        }
    }

    /// How many users carry each name under `path`.
    pub async fn user_name_counts(&self, path: &str) -> anyhow::Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        let mut pages = self.client.list_users().path_prefix(path).into_paginator().send();
        while let Some(page) = pages.next().await {
            for user in page?.users {
                *counts.entry(user.user_name.to_lowercase()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Members of group `name` that appear more than once.
    pub async fn duplicate_members(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let mut seen = BTreeMap::new();
        let mut pages = self.client.get_group().group_name(name).into_paginator().send();
        while let Some(page) = pages.next().await {
            for user in page?.users {
                *seen.entry(user.user_name.to_lowercase()).or_insert(0usize) += 1;
            }
        }
        Ok(seen.into_iter().filter(|(_, n)| *n > 1).map(|(m, _)| m).collect())
    }

    /// The ARN of the customer managed policy `name` (allowing `iam:Get*`),
    /// created when missing: an ad hoc edit.
    pub async fn managed_policy(&self, name: &str) -> anyhow::Result<String> {
        let document =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:Get*","Resource":"*"}]}"#;
        match self.client.create_policy().policy_name(name).policy_document(document).send().await {
            Ok(output) => output.policy.and_then(|p| p.arn).context("CreatePolicy without an ARN"),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_entity_already_exists_exception()) => {
                let mut pages = self
                    .client
                    .list_policies()
                    .scope(aws_sdk_iam::types::PolicyScopeType::Local)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    if let Some(arn) =
                        page?.policies().iter().find(|p| p.policy_name() == Some(name)).and_then(|p| p.arn.clone())
                    {
                        return Ok(arn);
                    }
                }
                bail!("policy {name} exists but is not listed")
            }
            Err(error) => bail!("CreatePolicy {name}: {error:?}"),
        }
    }

    /// Attaches managed policy `arn` to user `user` directly (an ad hoc edit).
    pub async fn attach_policy(&self, user: &str, arn: &str) -> anyhow::Result<()> {
        self.client.attach_user_policy().user_name(user).policy_arn(arn).send().await?;
        Ok(())
    }

    /// Adds user `user` to group `group` directly (an ad hoc edit).
    pub async fn add_to_group(&self, user: &str, group: &str) -> anyhow::Result<()> {
        self.client.add_user_to_group().user_name(user).group_name(group).send().await?;
        Ok(())
    }

    /// Removes user `user` from group `group` directly (an ad hoc edit).
    pub async fn remove_from_group(&self, user: &str, group: &str) -> anyhow::Result<()> {
        self.client.remove_user_from_group().user_name(user).group_name(group).send().await?;
        Ok(())
    }

    /// Removes tag `key` from user `user` directly (an ad hoc edit).
    pub async fn untag_user(&self, user: &str, key: &str) -> anyhow::Result<()> {
        self.client.untag_user().user_name(user).tag_keys(key).send().await?;
        Ok(())
    }

    /// The value of tag `key` of user `user`.
    pub async fn tag(&self, user: &str, key: &str) -> anyhow::Result<Option<String>> {
        let tags = self.client.list_user_tags().user_name(user).send().await?;
        Ok(tags.tags.into_iter().find(|t| t.key == key).map(|t| t.value))
    }

    /// Creates group `name` when missing.
    pub async fn ensure_group(&self, name: &str) -> anyhow::Result<()> {
        match self.client.create_group().group_name(name).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_entity_already_exists_exception()) => Ok(()),
            Err(error) => bail!("CreateGroup {name}: {error:?}"),
        }
    }

    /// Creates user `name` under `path` with `tags` directly (an ad hoc edit).
    pub async fn create_user(&self, name: &str, path: &str, tags: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut request = self.client.create_user().user_name(name).path(path);
        for (key, value) in tags {
            request = request.tags(aws_sdk_iam::types::Tag::builder().key(*key).value(*value).build()?);
        }
        request.send().await?;
        Ok(())
    }
}

/// RustyVault, through the Vault HTTP API with the root token.
#[derive(Debug, Clone)]
pub struct Vault {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Vault {
    fn from_env() -> anyhow::Result<Self> {
        let token_file = target_env("rustyvault", "JML_TEST_VAULT_TOKEN_FILE");
        Ok(Self {
            http: reqwest::Client::new(),
            base: format!("{}/v1", target_env("rustyvault", "JML_TEST_VAULT_ADDR").trim_end_matches('/')),
            token: std::fs::read_to_string(&token_file)
                .with_context(|| format!("reading {token_file}"))?
                .trim()
                .to_owned(),
        })
    }

    /// The policies of userpass user `name` (its login), or `None` when the
    /// user (its login) does not exist.
    pub async fn user(&self, name: &str) -> anyhow::Result<Option<BTreeSet<String>>> {
        let response = self
            .http
            .get(format!("{}/auth/userpass/users/{name}", self.base))
            .header("X-Vault-Token", &self.token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND || (status.is_success() && body["data"].is_null()) {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("Vault GET auth/userpass/users/{name}: HTTP {status}: {body}");
        }
        let data = &body["data"];
        let mut policies: BTreeSet<String> = BTreeSet::new();
        for field in ["token_policies", "policies"] {
            for policy in data[field].as_array().into_iter().flatten() {
                if let Some(policy) = policy.as_str() {
                    policies.insert(policy.to_lowercase());
                }
            }
            if let Some(text) = data[field].as_str() {
                policies.extend(text.split(',').map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()));
            }
        }
        Ok(Some(policies))
    }

    /// Every userpass user name (a LIST).
    pub async fn users(&self) -> anyhow::Result<Vec<String>> {
        let list = reqwest::Method::from_bytes(b"LIST")?;
        let response = self
            .http
            .request(list, format!("{}/auth/userpass/users", self.base))
            .header("X-Vault-Token", &self.token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("Vault LIST auth/userpass/users: HTTP {status}: {body}");
        }
        Ok(body["data"]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect())
    }

    /// One call with the root token; the answer's body (`Null` when empty or
    /// on a 404 of a GET).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request =
            self.http.request(method.clone(), format!("{}/{path}", self.base)).header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if method == reqwest::Method::GET && status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Value::Null);
        }
        if !status.is_success() {
            bail!("Vault {method} {path}: HTTP {status}: {text}");
        }
        Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// Sets the policies of the existing userpass user `name` directly,
    /// keeping its password and token TTLs (an ad hoc edit).
    pub async fn set_user_policies(&self, name: &str, policies: &[&str]) -> anyhow::Result<()> {
        let path = format!("auth/userpass/users/{name}");
        let current = self.call(reqwest::Method::GET, &path, None).await?;
        let data = &current["data"];
        if data.is_null() {
            bail!("userpass user {name} does not exist");
        }
        let mut body = serde_json::json!({ "token_policies": policies });
        for field in ["token_ttl", "token_max_ttl"] {
            if !data[field].is_null() {
                body[field] = data[field].clone();
            }
        }
        self.call(reqwest::Method::POST, &path, Some(body)).await.map(|_| ())
    }

    /// Creates the userpass user `name` directly with a random password that
    /// is not kept (an ad hoc edit).
    pub async fn create_user(&self, name: &str, policies: &[&str]) -> anyhow::Result<()> {
        let password = format!("{:032x}", rand::random::<u128>());
        let body = serde_json::json!({ "password": password, "token_policies": policies });
        self.call(reqwest::Method::POST, &format!("auth/userpass/users/{name}"), Some(body)).await.map(|_| ())
    }

    /// The data of the KV (version 1) entry at `path`, or `None`.
    pub async fn read_kv(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let found = self.call(reqwest::Method::GET, path, None).await?;
        Ok((!found["data"].is_null()).then(|| found["data"].clone()))
    }

    /// Writes the KV (version 1) entry at `path` directly (an ad hoc edit).
    pub async fn write_kv(&self, path: &str, data: &Value) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, path, Some(data.clone())).await.map(|_| ())
    }
}

/// The four real targets.
#[derive(Debug, Clone)]
pub struct Targets {
    /// slapd.
    pub ldap: Ldap,
    /// scim2-server.
    pub scim: Scim,
    /// moto's IAM.
    pub iam: Iam,
    /// RustyVault.
    pub vault: Vault,
}

impl Targets {
    /// Clients of the servers named in the environment; a missing setting
    /// fails with the command that provides it.
    pub async fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            ldap: Ldap::from_env()?,
            scim: Scim::from_env()?,
            iam: Iam::from_env().await?,
            vault: Vault::from_env()?,
        })
    }
}
