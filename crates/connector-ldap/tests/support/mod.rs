//! Shared set-up of the integration tests: the real slapd started by
//! `deploy/local/slapd.sh start RUN_DIR` (its `RUN_DIR/slapd.env` sourced),
//! a connector configured against it, and direct access to the directory
//! with the admin account, bypassing the connector.
#![allow(dead_code)]

pub mod samba;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use connector_kit::conformance::{Backdoor, ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_ldap::config::TlsConfig;
use connector_ldap::{LdapConfig, LdapConnector};
use futures::future::BoxFuture;
use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};

/// The slapd the tests run against, from the environment.
pub struct Slapd {
    pub url: String,
    pub ldaps_url: String,
    pub ca_file: PathBuf,
    pub base_dn: String,
    pub bind_dn: String,
    pub password_file: PathBuf,
    pub run_dir: PathBuf,
    pub script: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test directory with `deploy/local/slapd.sh start RUN_DIR` and \
             `source RUN_DIR/slapd.env` (or run .ci/run)"
        )
    })
}

impl Slapd {
    pub fn from_env() -> Self {
        Self {
            url: var("JML_TEST_SLAPD_URL"),
            ldaps_url: var("JML_TEST_SLAPD_LDAPS_URL"),
            ca_file: var("JML_TEST_SLAPD_CA_FILE").into(),
            base_dn: var("JML_TEST_SLAPD_BASE_DN"),
            bind_dn: var("JML_TEST_SLAPD_BIND_DN"),
            password_file: var("JML_TEST_SLAPD_BIND_PASSWORD_FILE").into(),
            run_dir: var("JML_TEST_SLAPD_RUN_DIR").into(),
            script: var("JML_TEST_SLAPD_SCRIPT").into(),
        }
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file).expect("bind password file").trim_end().to_owned()
    }

    pub fn people(&self) -> String {
        format!("ou=people,{}", self.base_dn)
    }

    pub fn groups(&self) -> String {
        format!("ou=groups,{}", self.base_dn)
    }

    /// A connector configuration for this slapd, from the example's shape.
    pub fn config(&self) -> LdapConfig {
        let yaml = format!(
            "target_id: ldap-test\nurl: {}\nbind_dn: {}\nbind_password: {{ file: {} }}\nusers_base_dn: {}\n\
             groups_base_dn: {}\nprivileged_groups: [admins, it-ops, prod-access, db-admins]\n\
             empty_group_member: cn=nobody,{}\n",
            self.url,
            self.bind_dn,
            self.password_file.display(),
            self.people(),
            self.groups(),
            self.base_dn
        );
        let config: LdapConfig = serde_yaml_ng::from_str(&yaml).expect("test config parses");
        config.check().expect("test config is valid");
        assert_eq!(config.bind_password.file.as_ref(), Some(&self.password_file));
        config
    }

    pub fn tls_config(&self, url: &str, starttls: bool) -> LdapConfig {
        let mut config = self.config();
        config.url = url.to_owned();
        config.tls = TlsConfig { starttls, ca_file: Some(self.ca_file.clone()) };
        config
    }

    pub fn connector(&self, config: LdapConfig) -> LdapConnector {
        let password = config.bind_password().expect("bind password");
        LdapConnector::new(config, password).expect("connector")
    }

    /// A bound admin connection, bypassing the connector.
    pub async fn admin(&self) -> ldap3::Ldap {
        let (driver, mut ldap) = LdapConnAsync::new(&self.url).await.expect("connect to slapd");
        ldap3::drive!(driver);
        ldap.simple_bind(&self.bind_dn, &self.password()).await.expect("bind").success().expect("admin bind");
        ldap
    }

    /// The DN of the account named `name` (`uid`), found directly.
    pub async fn account_dn(&self, name: &str) -> Option<String> {
        let mut ldap = self.admin().await;
        let filter = format!("(uid={})", ldap3::ldap_escape(name));
        let (entries, _) = ldap
            .search(&self.people(), Scope::Subtree, &filter, vec!["1.1"])
            .await
            .expect("search")
            .success()
            .expect("ok");
        entries.into_iter().next().map(|e| SearchEntry::construct(e).dn)
    }
}

/// Edits the directory with the admin account, bypassing the connector.
pub struct SlapdBackdoor(pub Arc<Slapd>);

impl SlapdBackdoor {
    /// Applies `mods` to the account's entry as the admin.
    fn modify<'a>(&'a self, account: &'a pb::AccountRef, mods: Vec<Mod<String>>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dn =
                self.0.account_dn(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such account"))?;
            let mut ldap = self.0.admin().await;
            ldap.modify(&dn, mods).await?.success()?;
            Ok(())
        })
    }
}

fn replace(attribute: &str, value: &str) -> Mod<String> {
    Mod::Replace(attribute.to_owned(), HashSet::from([value.to_owned()]))
}

impl Backdoor for SlapdBackdoor {
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dn =
                self.0.account_dn(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such account"))?;
            let group = format!("cn={},{}", ldap3::dn_escape(&entitlement.id), self.0.groups());
            let mut ldap = self.0.admin().await;
            ldap.modify(&group, vec![Mod::Add("member", HashSet::from([dn.as_str()]))]).await?.success()?;
            Ok(())
        })
    }

    fn set_attribute_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        match self.0.config().attributes.get(attribute) {
            Some(mapped) => self.modify(account, vec![replace(&mapped.ldap, value)]),
            None => Box::pin(async move { anyhow::bail!("attribute {attribute} is not mapped") }),
        }
    }

    fn set_enabled_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        enabled: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dn =
                self.0.account_dn(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such account"))?;
            let mut ldap = self.0.admin().await;
            let lock = if enabled {
                Mod::Delete("pwdAccountLockedTime", HashSet::new())
            } else {
                Mod::Replace("pwdAccountLockedTime", HashSet::from(["000001010000Z"]))
            };
            let result = ldap.modify(&dn, vec![lock]).await?;
            // Unlocking an account that is not locked is no change.
            anyhow::ensure!(result.rc == 0 || (enabled && result.rc == 16), "modify: {result:?}");
            Ok(())
        })
    }

    fn add_credential_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            self.modify(account, vec![replace("userPassword", "Direct-Secret-1")]).await?;
            Ok("password".to_owned())
        })
    }

    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let attribute = self.0.config().person_id_attribute;
        self.modify(account, vec![replace(&attribute, person_id)])
    }

    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dn =
                self.0.account_dn(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such account"))?;
            let mut ldap = self.0.admin().await;
            // As an administrator would: out of every group, then the entry.
            let filter = format!("(member={})", ldap3::ldap_escape(&dn));
            let (groups, _) = ldap.search(&self.0.groups(), Scope::Subtree, &filter, vec!["1.1"]).await?.success()?;
            for group in groups {
                let group = SearchEntry::construct(group).dn;
                let result = ldap.modify(&group, vec![Mod::Delete("member", HashSet::from([dn.as_str()]))]).await?;
                if result.rc == 65 {
                    // The last member of a groupOfNames: keep the placeholder.
                    let placeholder = format!("cn=nobody,{}", self.0.base_dn);
                    ldap.modify(
                        &group,
                        vec![
                            Mod::Add("member", HashSet::from([placeholder.as_str()])),
                            Mod::Delete("member", HashSet::from([dn.as_str()])),
                        ],
                    )
                    .await?
                    .success()?;
                } else {
                    result.success()?;
                }
            }
            ldap.delete(&dn).await?.success()?;
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let dn = format!("uid={},{}", ldap3::dn_escape(account_name), self.0.people());
            let mut ldap = self.0.admin().await;
            ldap.add(
                &dn,
                vec![
                    ("objectClass", HashSet::from(["inetOrgPerson"])),
                    ("uid", HashSet::from([account_name])),
                    ("cn", HashSet::from([account_name])),
                    ("sn", HashSet::from(["Hand-made"])),
                    ("mail", HashSet::from([mail])),
                ],
            )
            .await?
            .success()?;
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(dn) = self.0.account_dn(account_name).await {
                self.0.admin().await.delete(&dn).await?.success()?;
            }
            Ok(())
        })
    }
}

fn group(id: &str, privileged: bool) -> pb::Entitlement {
    pb::Entitlement { kind: "group".into(), id: id.into(), privileged }
}

/// A joiner's desired account `name` (person `{name}-person`, a `mail`
/// attribute) holding `groups`, keeping its credentials.
pub fn joiner(name: &str, groups: &[&str]) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("{name}-person"), account_name: name.to_owned() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: BTreeMap::from([("mail".to_string(), format!("{name}@example.org"))]).into_iter().collect(),
        entitlements: groups
            .iter()
            .map(|g| pb::Entitlement { kind: "group".into(), id: (*g).into(), privileged: false })
            .collect(),
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

/// The connector served over real gRPC on loopback, with the conformance fixture.
pub async fn conformance_target() -> ConformanceTarget {
    let slapd = Arc::new(Slapd::from_env());
    let connector = slapd.connector(slapd.config());
    let fixture = Fixture {
        attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Person {name}")),
                ("mail".into(), format!("{name}@Example.org")),
            ])
        }),
        changed_attributes: Box::new(|name| {
            BTreeMap::from([("display_name".into(), format!("Moved {name}")), ("title".into(), "Engineer".into())])
        }),
        entitlements: vec![
            group("staff", false),
            group("engineering", false),
            group("sales", false),
            group("admins", true),
        ],
        hostile_attribute: Some("display_name".into()),
        list_accounts: 120,
        list_page_size: 25,
        backdoor: Some(Arc::new(SlapdBackdoor(slapd))),
        ..Fixture::default()
    };
    ConformanceTarget::serve(connector, fixture).await.expect("the connector serves on loopback")
}

/// Every entry under the suffix as `ldapsearch` shows it: DN -> its lines
/// (sorted, LDIF unwrapped), with operational change stamps kept.
pub fn ldapsearch_snapshot(slapd: &Slapd) -> BTreeMap<String, Vec<String>> {
    let output = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &slapd.url, "-D", &slapd.bind_dn, "-y"])
        .arg(&slapd.password_file)
        .args(["-b", &slapd.base_dn, "(objectClass=*)", "*", "entryCSN", "pwdAccountLockedTime"])
        .output()
        .expect("ldapsearch runs (apt-get install ldap-utils)");
    assert!(output.status.success(), "ldapsearch failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("LDIF is UTF-8");
    let mut entries = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines: Vec<String> = block.lines().map(str::to_owned).collect();
        let dn = lines.remove(0);
        lines.sort();
        entries.insert(dn, lines);
    }
    entries
}
