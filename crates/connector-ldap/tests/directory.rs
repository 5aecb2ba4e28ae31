//! What the directory itself shows after the connector acted, checked with
//! the admin account and with binds as the account: disable really refuses
//! binds, revocation really makes the password unusable, delete really
//! removes every membership, and TLS (LDAPS, StartTLS) works with the CA from
//! the configuration.

mod support;

use std::collections::{BTreeMap, HashSet};

use connector_kit::Connector;
use connector_kit::contract as pb;
use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};
use support::Slapd;

fn desired(prefix: &str, groups: &[&str]) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("{prefix}-person"), account_name: prefix.to_owned() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: BTreeMap::from([("display_name".to_string(), format!("Person {prefix}"))]).into_iter().collect(),
        entitlements: groups
            .iter()
            .map(|g| pb::Entitlement { kind: "group".into(), id: (*g).into(), privileged: false })
            .collect(),
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

fn prefix(tag: &str) -> String {
    format!("dt{tag}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The result code of a simple bind as `dn`.
async fn bind_code(slapd: &Slapd, dn: &str, password: &str) -> u32 {
    let (driver, mut ldap) = LdapConnAsync::new(&slapd.url).await.expect("connect");
    ldap3::drive!(driver);
    ldap.simple_bind(dn, password).await.expect("bind answered").rc
}

async fn set_password(slapd: &Slapd, dn: &str, password: &str) {
    let mut admin = slapd.admin().await;
    admin
        .modify(dn, vec![Mod::Replace("userPassword", HashSet::from([password]))])
        .await
        .expect("modify")
        .success()
        .expect("password set");
}

async fn groups_holding(slapd: &Slapd, dn: &str) -> Vec<String> {
    let mut admin = slapd.admin().await;
    let filter = format!("(member={})", ldap3::ldap_escape(dn));
    let (entries, _) = admin
        .search(&slapd.groups(), Scope::Subtree, &filter, vec!["cn"])
        .await
        .expect("search")
        .success()
        .expect("ok");
    let mut names: Vec<String> =
        entries.into_iter().filter_map(|e| SearchEntry::construct(e).attrs.remove("cn")?.pop()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn disable_refuses_binds_and_enable_restores_them() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.config());
    let p = prefix("dis");
    let mut state = desired(&p, &["staff"]);
    let ack = connector.apply("c1", &state).await.expect("create");
    let dn = ack.target_native_id.clone();
    set_password(&slapd, &dn, "Initial-Secret-1").await;
    assert_eq!(bind_code(&slapd, &dn, "Initial-Secret-1").await, 0, "an enabled account binds");

    state.enabled = false;
    connector.apply("c2", &state).await.expect("disable");
    assert_eq!(bind_code(&slapd, &dn, "Initial-Secret-1").await, 49, "a disabled account cannot bind");
    assert!(!connector.read(state.account.as_ref().expect("account")).await.expect("read").enabled);

    state.enabled = true;
    connector.apply("c3", &state).await.expect("enable");
    assert_eq!(bind_code(&slapd, &dn, "Initial-Secret-1").await, 0, "a re-enabled account binds again");

    state.presence = pb::Presence::Absent as i32;
    connector.apply("c4", &state).await.expect("delete");
}

#[tokio::test]
async fn revocation_makes_the_password_unusable_and_removes_certificates() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.config());
    let p = prefix("rev");
    let mut state = desired(&p, &[]);
    let dn = connector.apply("c1", &state).await.expect("create").target_native_id;
    set_password(&slapd, &dn, "Initial-Secret-2").await;
    let mut admin = slapd.admin().await;
    admin
        .modify(&dn, vec![Mod::Add("userPKCS12".as_bytes(), HashSet::from([&[0x30u8, 0x03, 0x02, 0x01, 0x01][..]]))])
        .await
        .expect("modify")
        .success()
        .expect("PKCS#12 credential added");
    let account = state.account.clone().expect("account");
    let before = connector.read(&account).await.expect("read").credentials.expect("credentials");
    assert_eq!(before.active, vec!["password".to_string(), "attribute:userPKCS12".to_string()]);

    state.credentials = pb::CredentialAction::RevokeAll as i32;
    let ack = connector.apply("c2", &state).await.expect("revoke");
    assert_eq!(ack.changes.len(), 2, "{:?}", ack.changes);
    assert_eq!(bind_code(&slapd, &dn, "Initial-Secret-2").await, 49, "the old password no longer binds");
    let after = connector.read(&account).await.expect("read").credentials.expect("credentials");
    assert!(after.active.is_empty() && after.complete, "{after:?}");
    let again = connector.apply("c3", &state).await.expect("revoke again");
    assert!(again.changes.is_empty(), "revoking again changes nothing: {:?}", again.changes);

    state.presence = pb::Presence::Absent as i32;
    connector.apply("c4", &state).await.expect("delete");
}

#[tokio::test]
async fn delete_removes_the_entry_and_every_membership() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.config());
    let p = prefix("del");
    let mut state = desired(&p, &["staff", "sales", "admins"]);
    let dn = connector.apply("c1", &state).await.expect("create").target_native_id;
    assert_eq!(groups_holding(&slapd, &dn).await, vec!["admins", "sales", "staff"]);
    state.presence = pb::Presence::Absent as i32;
    let ack = connector.apply("c2", &state).await.expect("delete");
    assert_eq!(ack.changes.iter().filter(|c| c.action == "remove_entitlement").count(), 3);
    assert!(slapd.account_dn(&p).await.is_none(), "the entry is gone");
    assert!(groups_holding(&slapd, &dn).await.is_empty(), "no group still names the deleted DN");
}

#[tokio::test]
async fn the_last_member_leaving_a_group_keeps_it_valid() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.config());
    // A group whose only member will be this account.
    let group = prefix("grp");
    let group_dn = format!("cn={group},{}", slapd.groups());
    let p = prefix("last");
    let mut state = desired(&p, &[]);
    let dn = connector.apply("c1", &state).await.expect("create").target_native_id;
    let mut admin = slapd.admin().await;
    admin
        .add(
            &group_dn,
            vec![
                ("objectClass", HashSet::from(["groupOfNames"])),
                ("cn", HashSet::from([group.as_str()])),
                ("member", HashSet::from([dn.as_str()])),
            ],
        )
        .await
        .expect("add")
        .success()
        .expect("group added");
    state.entitlements = vec![pb::Entitlement { kind: "group".into(), id: group.clone(), privileged: false }];
    assert!(connector.apply("c2", &state).await.expect("converge").changes.is_empty());
    state.entitlements.clear();
    let ack = connector.apply("c3", &state).await.expect("leave the group");
    assert_eq!(ack.changes.len(), 1);
    assert!(groups_holding(&slapd, &dn).await.is_empty());
    let read = connector.read(state.account.as_ref().expect("account")).await.expect("read");
    assert!(read.entitlements.is_empty(), "the placeholder member is never reported: {:?}", read.entitlements);
    admin.delete(&group_dn).await.expect("delete").success().expect("group deleted");
    state.presence = pb::Presence::Absent as i32;
    connector.apply("c4", &state).await.expect("delete");
}

#[tokio::test]
async fn ldaps_with_the_configured_ca_works() {
    let slapd = Slapd::from_env();
    let connector = slapd.connector(slapd.tls_config(&slapd.ldaps_url, false));
    connector.preflight().await.expect("LDAPS preflight with the test CA");
    let p = prefix("tls");
    let mut state = desired(&p, &["staff"]);
    connector.apply("c1", &state).await.expect("create over LDAPS");
    state.presence = pb::Presence::Absent as i32;
    connector.apply("c2", &state).await.expect("delete over LDAPS");
}

#[tokio::test]
async fn starttls_with_the_configured_ca_works() {
    let slapd = Slapd::from_env();
    let url = slapd.url.clone();
    let connector = slapd.connector(slapd.tls_config(&url, true));
    connector.preflight().await.expect("StartTLS preflight with the test CA");
}

#[tokio::test]
async fn tls_with_an_untrusted_server_certificate_is_refused() {
    let slapd = Slapd::from_env();
    // A CA that did not sign the server certificate: the system bundle.
    let other_ca = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    let mut config = slapd.tls_config(&slapd.ldaps_url, false);
    config.tls.ca_file = Some(other_ca.to_owned());
    let error = slapd.connector(config).preflight().await.expect_err("the server certificate is not trusted");
    assert_eq!(error.kind, connector_kit::ErrorKind::Unavailable, "{error}");
}
