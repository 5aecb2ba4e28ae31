//! The whole conformance suite over real gRPC against a real Samba AD domain
//! controller (`deploy/local/samba-ad.sh start RUN_DIR`), the connector in
//! Active Directory mode over LDAPS.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use connector_kit::conformance::{Backdoor, ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_ldap::{LdapConfig, LdapConnector};
use futures::future::BoxFuture;
use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test domain controller with `deploy/local/samba-ad.sh start RUN_DIR` and \
             `source RUN_DIR/samba-ad.env` (or run .ci/run)"
        )
    })
}

struct SambaAd {
    url: String,
    base_dn: String,
    bind_dn: String,
    password: String,
    ca_file: String,
}

impl SambaAd {
    fn from_env() -> Self {
        let password_file = var("JML_TEST_SAMBA_AD_BIND_PASSWORD_FILE");
        Self {
            url: var("JML_TEST_SAMBA_AD_URL"),
            base_dn: var("JML_TEST_SAMBA_AD_BASE_DN"),
            bind_dn: var("JML_TEST_SAMBA_AD_BIND_DN"),
            password: std::fs::read_to_string(&password_file).expect("password file").trim_end().to_owned(),
            ca_file: var("JML_TEST_SAMBA_AD_CA_FILE"),
        }
    }

    fn config(&self) -> LdapConfig {
        let yaml = format!(
            "target_id: ad-test\nmode: active_directory\nurl: {}\ntls: {{ ca_file: {} }}\nbind_dn: {}\n\
             bind_password: {{ file: {} }}\nusers_base_dn: OU=Managed,{}\ngroups_base_dn: OU=Groups,{}\n\
             upn_suffix: {}\nperson_id_attribute: employeeNumber\n\
             attributes:\n  display_name: {{ ldap: displayName }}\n  mail: {{ ldap: mail, comparison: case_insensitive }}\n  \
             title: {{ ldap: title }}\n  department: {{ ldap: department }}\n\
             privileged_groups: [admins, it-ops, prod-access, db-admins]\n",
            self.url,
            self.ca_file,
            self.bind_dn,
            var("JML_TEST_SAMBA_AD_BIND_PASSWORD_FILE"),
            self.base_dn,
            self.base_dn,
            var("JML_TEST_SAMBA_AD_UPN_SUFFIX"),
        );
        let config: LdapConfig = serde_yaml_ng::from_str(&yaml).expect("AD test config parses");
        config.check().expect("AD test config is valid");
        config
    }

    async fn admin(&self) -> ldap3::Ldap {
        let tls = connector_ldap::target::rustls_config(std::path::Path::new(&self.ca_file)).expect("CA");
        let (driver, mut ldap) =
            LdapConnAsync::with_settings(LdapConnSettings::new().set_config(tls), &self.url).await.expect("connect");
        ldap3::drive!(driver);
        ldap.simple_bind(&self.bind_dn, &self.password).await.expect("bind").success().expect("admin bind");
        ldap
    }
}

struct SambaBackdoor(Arc<SambaAd>);

impl SambaBackdoor {
    /// The DN of the account, found by the Administrator.
    async fn account_dn(&self, ldap: &mut ldap3::Ldap, account: &pb::AccountRef) -> anyhow::Result<String> {
        let filter = format!("(sAMAccountName={})", ldap3::ldap_escape(&account.account_name));
        let (entries, _) = ldap
            .search(&format!("OU=Managed,{}", self.0.base_dn), Scope::Subtree, &filter, vec!["1.1"])
            .await?
            .success()?;
        Ok(SearchEntry::construct(entries.into_iter().next().ok_or_else(|| anyhow::anyhow!("no account"))?).dn)
    }

    fn modify<'a>(&'a self, account: &'a pb::AccountRef, mods: Vec<Mod<Vec<u8>>>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut ldap = self.0.admin().await;
            let dn = self.account_dn(&mut ldap, account).await?;
            ldap.modify(&dn, mods).await?.success()?;
            Ok(())
        })
    }
}

fn replace(attribute: &str, value: impl Into<Vec<u8>>) -> Mod<Vec<u8>> {
    Mod::Replace(attribute.as_bytes().to_vec(), HashSet::from([value.into()]))
}

impl Backdoor for SambaBackdoor {
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
            let (_, current) = uac(&self.0, &account.account_name).await;
            let next = connector_ldap::connector::with_disabled(current, !enabled);
            self.modify(account, vec![replace("userAccountControl", next.to_string())]).await
        })
    }

    fn add_credential_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let password = connector_ldap::connector::ad_password("Direct-Secret-1a!");
            self.modify(account, vec![replace("unicodePwd", password), replace("pwdLastSet", "-1")]).await?;
            Ok("password".to_owned())
        })
    }

    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.modify(account, vec![replace("employeeNumber", person_id)])
    }

    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut ldap = self.0.admin().await;
            let dn = self.account_dn(&mut ldap, account).await?;
            ldap.delete(&dn).await?.success()?;
            Ok(())
        })
    }

    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut ldap = self.0.admin().await;
            let filter = format!("(sAMAccountName={})", ldap3::ldap_escape(&account.account_name));
            let (entries, _) = ldap
                .search(&format!("OU=Managed,{}", self.0.base_dn), Scope::Subtree, &filter, vec!["1.1"])
                .await?
                .success()?;
            let dn =
                SearchEntry::construct(entries.into_iter().next().ok_or_else(|| anyhow::anyhow!("no account"))?).dn;
            let group = format!("CN={},OU=Groups,{}", ldap3::dn_escape(&entitlement.id), self.0.base_dn);
            ldap.modify(&group, vec![Mod::Add("member", HashSet::from([dn.as_str()]))]).await?.success()?;
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let dn = format!("CN={},OU=Managed,{}", ldap3::dn_escape(account_name), self.0.base_dn);
            let mut ldap = self.0.admin().await;
            // NORMAL_ACCOUNT | ACCOUNTDISABLE | PASSWORD_NOTREQD: no password needed.
            ldap.add(
                &dn,
                vec![
                    ("objectClass", HashSet::from(["top", "person", "organizationalPerson", "user"])),
                    ("cn", HashSet::from([account_name])),
                    ("sAMAccountName", HashSet::from([account_name])),
                    ("mail", HashSet::from([mail])),
                    ("userAccountControl", HashSet::from(["546"])),
                ],
            )
            .await?
            .success()?;
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut ldap = self.0.admin().await;
            let filter = format!("(sAMAccountName={})", ldap3::ldap_escape(account_name));
            let (entries, _) = ldap
                .search(&format!("OU=Managed,{}", self.0.base_dn), Scope::Subtree, &filter, vec!["1.1"])
                .await?
                .success()?;
            for entry in entries {
                ldap.delete(&SearchEntry::construct(entry).dn).await?.success()?;
            }
            Ok(())
        })
    }
}

fn group(id: &str, privileged: bool) -> pb::Entitlement {
    pb::Entitlement { kind: "group".into(), id: id.into(), privileged }
}

async fn target() -> ConformanceTarget {
    let ad = Arc::new(SambaAd::from_env());
    let config = ad.config();
    let password = config.bind_password().expect("bind password");
    let connector = LdapConnector::new(config, password).expect("connector");
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
        list_accounts: 40,
        list_page_size: 15,
        backdoor: Some(Arc::new(SambaBackdoor(ad))),
        ..Fixture::default()
    };
    ConformanceTarget::serve(connector, fixture).await.expect("the connector serves on loopback")
}

connector_kit::conformance_tests!(target);

/// `userAccountControl` of the account named `name`, read directly.
async fn uac(ad: &SambaAd, name: &str) -> (String, u32) {
    let mut ldap = ad.admin().await;
    let filter = format!("(sAMAccountName={})", ldap3::ldap_escape(name));
    let (entries, _) = ldap
        .search(&format!("OU=Managed,{}", ad.base_dn), Scope::Subtree, &filter, vec!["userAccountControl"])
        .await
        .expect("search")
        .success()
        .expect("ok");
    let mut entry = SearchEntry::construct(entries.into_iter().next().expect("account exists"));
    let value = entry.attrs.remove("userAccountControl").and_then(|mut v| v.pop()).expect("userAccountControl");
    (entry.dn, value.parse().expect("number"))
}

#[tokio::test]
async fn disable_sets_only_bit_0x2_and_keeps_other_bits() {
    use connector_kit::Connector;
    let ad = SambaAd::from_env();
    let config = ad.config();
    let password = config.bind_password().expect("bind password");
    let connector = LdapConnector::new(config, password).expect("connector");
    let name = format!("uac{:08x}", rand::random::<u32>());
    let mut desired = pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("{name}-p"), account_name: name.clone() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    connector.apply("uac-1", &desired).await.expect("create");
    let (dn, created) = uac(&ad, &name).await;
    assert_eq!(created & 0x2, 0, "created enabled");
    // DONT_EXPIRE_PASSWORD set out of band must survive disable and enable.
    let with_flag = created | 0x10000;
    let mut ldap = ad.admin().await;
    ldap.modify(&dn, vec![Mod::Replace("userAccountControl", HashSet::from([with_flag.to_string().as_str()]))])
        .await
        .expect("modify")
        .success()
        .expect("flag set");
    desired.enabled = false;
    connector.apply("uac-2", &desired).await.expect("disable");
    assert_eq!(uac(&ad, &name).await.1, with_flag | 0x2, "only bit 0x2 was added");
    desired.enabled = true;
    connector.apply("uac-3", &desired).await.expect("enable");
    assert_eq!(uac(&ad, &name).await.1, with_flag, "only bit 0x2 was cleared");
    desired.presence = pb::Presence::Absent as i32;
    connector.apply("uac-4", &desired).await.expect("delete");
}
