//! Reads fail closed, on the real slapd: what the connector's bind cannot
//! see is unknown, never the safe value, and a leaver's "no entitlements"
//! holds for every group the directory shows, not only the managed ones.
//!
//! - slapd's ACL (`deploy/local/slapd.sh`) gives the write-only service
//!   account the write privilege on `userPassword` without read or compare
//!   under its subtree: a password set there is invisible to a connector
//!   bound as it, so a revocation must not be "proven" by invisibility.
//! - Groups outside `groups_base_dn`, expressed as `groupOfUniqueNames`
//!   (`uniqueMember`) and `posixGroup` (`memberUid`), are reported as
//!   unmanaged; a privileged one keeps a leaver unverified.

mod support;

use std::collections::HashSet;

use connector_kit::Connector;
use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use ldap3::Mod;
use support::{Slapd, joiner};

fn prefix(tag: &str) -> String {
    format!("fc{tag}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn leaver(name: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        enabled: false,
        entitlements: vec![],
        credentials: pb::CredentialAction::RevokeAll as i32,
        ..joiner(name, &[])
    }
}

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: source RUN_DIR/slapd.env (deploy/local/slapd.sh)"))
}

/// The connector bound as slapd's write-only service account, managing
/// accounts under its subtree.
fn write_only_connector(slapd: &Slapd) -> connector_ldap::LdapConnector {
    let mut config = slapd.config();
    config.bind_dn = var("JML_TEST_SLAPD_WRITEONLY_BIND_DN");
    config.bind_password.file = Some(var("JML_TEST_SLAPD_WRITEONLY_PASSWORD_FILE").into());
    config.users_base_dn = var("JML_TEST_SLAPD_WRITEONLY_USERS_DN");
    slapd.connector(config)
}

async fn admin_modify(slapd: &Slapd, dn: &str, mods: Vec<Mod<&str>>) {
    let mut admin = slapd.admin().await;
    admin.modify(dn, mods).await.expect("modify").success().expect("the admin's modify succeeds");
}

/// The account named `name` as the connector's `List` shows it.
async fn listed(connector: &connector_ldap::LdapConnector, name: &str) -> pb::AccountState {
    use futures::TryStreamExt;
    let pages: Vec<Vec<pb::AccountState>> = connector.list(100).try_collect().await.expect("List");
    pages
        .into_iter()
        .flatten()
        .find(|s| s.account.as_ref().is_some_and(|a| a.account_name == name))
        .unwrap_or_else(|| panic!("List shows no {name}"))
}

#[tokio::test]
async fn a_password_hidden_from_the_bind_is_unknown_not_revoked() {
    let slapd = Slapd::from_env();
    let connector = write_only_connector(&slapd);
    let name = prefix("pw");
    let account = pb::AccountRef { person_id: format!("{name}-person"), account_name: name.clone() };
    let ack = connector.apply("fc-pw-1", &joiner(&name, &[])).await.expect("the joiner is applied");
    let dn = ack.target_native_id;
    // A usable password set on the target, which the connector's bind may
    // write but never read nor compare.
    admin_modify(&slapd, &dn, vec![Mod::Replace("userPassword", HashSet::from(["Usable-Secret-1"]))]).await;

    let state = connector.read(&account).await.expect("read");
    assert!(state.exists, "{state:?}");
    let credentials = state.credentials.clone().unwrap_or_default();
    assert!(!credentials.complete, "an invisible password is not a complete enumeration: {state:?}");
    assert!(
        state.unreadable.iter().any(|u| u.field == "credentials" && u.target_attribute == "userPassword"),
        "the read-back says which attribute could not be read: {state:?}"
    );

    // List proves absent passwords a page at a time (one search of
    // `(!(userPassword=*))`): a password the bind may not search is never
    // taken for an absent one there either.
    let hidden = listed(&connector, &name).await;
    assert!(!hidden.credentials.clone().unwrap_or_default().complete, "List: {hidden:?}");
    assert!(
        hidden.unreadable.iter().any(|u| u.field == "credentials" && u.target_attribute == "userPassword"),
        "List: {hidden:?}"
    );

    // The revocation is written (slapd accepts it), but the read-back cannot
    // show it: never verified, the attribute named.
    let description = connector.describe();
    let revoke = pb::DesiredAccount { credentials: pb::CredentialAction::RevokeAll as i32, ..joiner(&name, &[]) };
    connector.apply("fc-pw-2", &revoke).await.expect("the revocation is applied");
    let state = connector.read(&account).await.expect("read");
    let differences = compare(&description, &revoke, &state);
    assert!(
        differences.iter().any(
            |d| matches!(d, Difference::Unreadable { target_attribute, .. } if target_attribute == "userPassword")
        ),
        "not verified, userPassword named: {differences:?}"
    );
    // The admin, who can read it, sees the revoked value the connector wrote.
    let mut admin = slapd.admin().await;
    let (entries, _) = admin
        .search(&dn, ldap3::Scope::Base, "(objectClass=*)", vec!["userPassword"])
        .await
        .expect("search")
        .success()
        .expect("ok");
    let entry = ldap3::SearchEntry::construct(entries.into_iter().next().expect("the entry"));
    let values: Vec<String> = entry
        .attrs
        .get("userPassword")
        .cloned()
        .or_else(|| {
            entry
                .bin_attrs
                .get("userPassword")
                .map(|v| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
        })
        .unwrap_or_default();
    assert!(values.iter().all(|v| v.starts_with("{REVOKED}")) && !values.is_empty(), "{values:?}");

    // An account that truly has no password, read by a bind that may
    // compare: a complete enumeration with nothing active.
    let root = slapd.connector(slapd.config());
    let other = prefix("nopw");
    root.apply("fc-pw-3", &joiner(&other, &[])).await.expect("create");
    let other_ref = pb::AccountRef { person_id: format!("{other}-person"), account_name: other.clone() };
    let state = root.read(&other_ref).await.expect("read");
    assert_eq!(
        state.credentials,
        Some(pb::CredentialState { active: vec![], complete: true, ..Default::default() }),
        "{state:?}"
    );
    assert!(state.unreadable.is_empty(), "{state:?}");
    let absent = listed(&root, &other).await;
    assert_eq!(absent.credentials, state.credentials, "List proves the absence as Read does: {absent:?}");
    assert!(absent.unreadable.is_empty(), "{absent:?}");

    let mut gone = leaver(&name);
    gone.presence = pb::Presence::Absent as i32;
    root.apply("fc-pw-4", &gone).await.expect("cleanup");
    let mut gone = leaver(&other);
    gone.presence = pb::Presence::Absent as i32;
    root.apply("fc-pw-5", &gone).await.expect("cleanup");
}

#[tokio::test]
async fn a_leaver_in_a_privileged_group_outside_the_groups_base_is_not_verified() {
    let slapd = Slapd::from_env();
    let name = prefix("grp");
    let ou = format!("ou={name},{}", slapd.base_dn);
    let dbas = format!("cn={name}-dbas,{ou}");
    let shell = format!("cn={name}-shell,{ou}");
    let mut config = slapd.config();
    config.privileged_groups.push(format!("{name}-dbas"));
    let connector = slapd.connector(config);
    let account = pb::AccountRef { person_id: format!("{name}-person"), account_name: name.clone() };
    let ack = connector.apply("fc-g-1", &joiner(&name, &["staff"])).await.expect("the joiner is applied");
    let dn = ack.target_native_id;

    // Memberships the connector does not manage, expressed two other ways,
    // outside ou=groups.
    let mut admin = slapd.admin().await;
    admin
        .add(&ou, vec![("objectClass", HashSet::from(["organizationalUnit"])), ("ou", HashSet::from([name.as_str()]))])
        .await
        .expect("add")
        .success()
        .expect("the OU is added");
    let dbas_name = format!("{name}-dbas");
    admin
        .add(
            &dbas,
            vec![
                ("objectClass", HashSet::from(["groupOfUniqueNames"])),
                ("cn", HashSet::from([dbas_name.as_str()])),
                ("uniqueMember", HashSet::from([dn.as_str()])),
            ],
        )
        .await
        .expect("add")
        .success()
        .expect("the privileged group is added");
    let shell_name = format!("{name}-shell");
    admin
        .add(
            &shell,
            vec![
                ("objectClass", HashSet::from(["posixGroup"])),
                ("cn", HashSet::from([shell_name.as_str()])),
                ("gidNumber", HashSet::from(["90001"])),
                ("memberUid", HashSet::from([name.as_str()])),
            ],
        )
        .await
        .expect("add")
        .success()
        .expect("the posix group is added");

    let state = connector.read(&account).await.expect("read");
    let mut unmanaged: Vec<(String, bool)> =
        state.unmanaged_entitlements.iter().map(|e| (e.id.to_lowercase(), e.privileged)).collect();
    unmanaged.sort();
    assert_eq!(unmanaged, vec![(dbas.to_lowercase(), true), (shell.to_lowercase(), false)], "{state:?}");
    assert_eq!(state.entitlements.len(), 1, "the managed group stays managed: {state:?}");

    let description = connector.describe();
    assert!(description.capabilities.unwrap_or_default().unmanaged_entitlements);
    connector.apply("fc-g-2", &leaver(&name)).await.expect("the leaver is applied");
    let state = connector.read(&account).await.expect("read");
    assert!(state.entitlements.is_empty() && !state.enabled, "the managed part is done: {state:?}");
    let differences = compare(&description, &leaver(&name), &state);
    assert!(
        matches!(&differences[..], [Difference::PrivilegedUnmanaged { kind, id }] if kind == "group" && id.eq_ignore_ascii_case(&dbas)),
        "not verified while in the privileged group: {differences:?}"
    );

    // Out of the privileged group, the plain unmanaged one does not hold the leaver back.
    admin_modify(&slapd, &dbas, vec![Mod::Replace("uniqueMember", HashSet::from([slapd.bind_dn.as_str()]))]).await;
    let state = connector.read(&account).await.expect("read");
    assert_eq!(compare(&description, &leaver(&name), &state), vec![], "{state:?}");

    let mut gone = leaver(&name);
    gone.presence = pb::Presence::Absent as i32;
    connector.apply("fc-g-3", &gone).await.expect("cleanup");
    for dn in [&dbas, &shell, &ou] {
        admin.delete(dn).await.expect("delete").success().expect("cleanup");
    }
}
