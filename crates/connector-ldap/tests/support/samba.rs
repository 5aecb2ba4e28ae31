//! The real Samba AD domain controller started by
//! `deploy/local/samba-ad.sh start RUN_DIR` (its `RUN_DIR/samba-ad.env`
//! sourced), a connector in Active Directory mode against it, and direct
//! access with the Administrator account and with `samba-tool`.

use std::collections::HashSet;

use connector_ldap::{LdapConfig, LdapConnector};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test domain controller with `deploy/local/samba-ad.sh start RUN_DIR` and \
             `source RUN_DIR/samba-ad.env` (or run .ci/run)"
        )
    })
}

/// The domain controller the tests run against, from the environment.
pub struct SambaAd {
    pub url: String,
    pub base_dn: String,
    pub bind_dn: String,
    pub password_file: String,
    pub password: String,
    pub ca_file: String,
}

impl SambaAd {
    pub fn from_env() -> Self {
        let password_file = var("JML_TEST_SAMBA_AD_BIND_PASSWORD_FILE");
        Self {
            url: var("JML_TEST_SAMBA_AD_URL"),
            base_dn: var("JML_TEST_SAMBA_AD_BASE_DN"),
            bind_dn: var("JML_TEST_SAMBA_AD_BIND_DN"),
            password: std::fs::read_to_string(&password_file).expect("password file").trim_end().to_owned(),
            password_file,
            ca_file: var("JML_TEST_SAMBA_AD_CA_FILE"),
        }
    }

    /// The connector's AD-mode configuration, bound as the Administrator.
    pub fn config(&self) -> LdapConfig {
        let yaml = format!(
            "target_id: ad-test\nmode: active_directory\nurl: {}\ntls: {{ ca_file: {} }}\nbind_dn: {}\n\
             bind_password: {{ file: {} }}\nusers_base_dn: OU=Managed,{}\ngroups_base_dn: OU=Groups,{}\n\
             upn_suffix: {}\nperson_id_attribute: employeeNumber\n\
             attributes:\n  display_name: {{ ldap: displayName }}\n  mail: {{ ldap: mail, comparison: case_insensitive }}\n\
             privileged_groups: [admins, it-ops, prod-access, db-admins]\n",
            self.url,
            self.ca_file,
            self.bind_dn,
            self.password_file,
            self.base_dn,
            self.base_dn,
            var("JML_TEST_SAMBA_AD_UPN_SUFFIX"),
        );
        let config: LdapConfig = serde_yaml_ng::from_str(&yaml).expect("AD test config parses");
        config.check().expect("AD test config is valid");
        config
    }

    pub fn connector(&self, config: LdapConfig) -> LdapConnector {
        let password = config.bind_password().expect("bind password");
        LdapConnector::new(config, password).expect("connector")
    }

    /// A connection bound as the Administrator, bypassing the connector.
    pub async fn admin(&self) -> ldap3::Ldap {
        self.bind(&self.bind_dn, &self.password).await
    }

    /// A connection bound as `dn`.
    pub async fn bind(&self, dn: &str, password: &str) -> ldap3::Ldap {
        let tls = connector_ldap::target::rustls_config(std::path::Path::new(&self.ca_file)).expect("CA");
        let (driver, mut ldap) =
            LdapConnAsync::with_settings(LdapConnSettings::new().set_config(tls), &self.url).await.expect("connect");
        ldap3::drive!(driver);
        ldap.simple_bind(dn, password).await.expect("bind").success().expect("bind accepted");
        ldap
    }

    /// One entry's attributes, read by the Administrator.
    pub async fn entry(&self, dn: &str, attributes: Vec<&str>) -> SearchEntry {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(dn, Scope::Base, "(objectClass=*)", attributes)
            .await
            .expect("search")
            .success()
            .expect("the entry exists");
        SearchEntry::construct(entries.into_iter().next().expect("one entry"))
    }

    /// The string form of the entry's `objectSid`.
    pub async fn sid(&self, dn: &str) -> String {
        let entry = self.entry(dn, vec!["objectSid"]).await;
        // ldap3 keeps a value that happens to be valid UTF-8 as text.
        let raw: Vec<u8> = entry
            .bin_attrs
            .get("objectSid")
            .and_then(|v| v.first().cloned())
            .or_else(|| entry.attrs.get("objectSid").and_then(|v| v.first()).map(|s| s.as_bytes().to_vec()))
            .expect("objectSid");
        let authority = raw[2..8].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        let mut sid = format!("S-{}-{authority}", raw[0]);
        for chunk in raw[8..].chunks_exact(4) {
            sid.push_str(&format!("-{}", u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])));
        }
        sid
    }

    /// Adds an ACE to an object's security descriptor with `samba-tool dsacl`.
    pub fn add_ace(&self, object_dn: &str, sddl: &str) {
        let host = self.url.trim_start_matches("ldaps://").trim_start_matches("ldap://");
        let host = host.split(':').next().unwrap_or(host);
        let output = std::process::Command::new("samba-tool")
            .args(["dsacl", "set", "-H", &format!("ldap://{host}"), "-U", "Administrator"])
            .arg(format!("--objectdn={object_dn}"))
            .arg(format!("--sddl={sddl}"))
            .env("PASSWD", &self.password)
            .output()
            .expect("samba-tool runs (apt-get install samba)");
        assert!(output.status.success(), "samba-tool dsacl set failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Adds a plain user (not managed: no person id) able to bind with `password`.
    pub async fn add_user(&self, dn: &str, name: &str, password: &str) {
        let mut ldap = self.admin().await;
        let quoted: Vec<u8> = connector_ldap::connector::ad_password(password);
        let uac = "512".to_owned();
        let attributes: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (b"objectClass".to_vec(), HashSet::from([b"user".to_vec()])),
            (b"sAMAccountName".to_vec(), HashSet::from([name.as_bytes().to_vec()])),
            (b"unicodePwd".to_vec(), HashSet::from([quoted])),
            (b"userAccountControl".to_vec(), HashSet::from([uac.into_bytes()])),
        ];
        ldap.add(dn, attributes).await.expect("add").success().expect("the user is added");
    }
}
