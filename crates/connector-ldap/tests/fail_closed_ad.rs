//! Reads fail closed, on the real Samba AD domain controller: a
//! `userAccountControl` the connector's bind cannot read is unknown (never
//! "disabled"), and a leaver is not verified while AD shows the account in a
//! privileged group the connector does not manage, nested or not.

mod support;

use std::collections::{BTreeMap, HashSet};

use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use connector_kit::{Connector, ErrorKind};
use ldap3::Mod;
use support::samba::SambaAd;

/// The `schemaIDGUID` of the User-Account-Control attribute.
const USER_ACCOUNT_CONTROL_GUID: &str = "bf967a68-0de6-11d0-a285-00aa003049e2";

fn prefix(tag: &str) -> String {
    format!("fc{tag}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn joiner(name: &str, groups: &[&str]) -> pb::DesiredAccount {
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

fn leaver(name: &str) -> pb::DesiredAccount {
    pb::DesiredAccount { enabled: false, entitlements: vec![], ..joiner(name, &[]) }
}

fn absent(name: &str) -> pb::DesiredAccount {
    pb::DesiredAccount { presence: pb::Presence::Absent as i32, ..leaver(name) }
}

#[tokio::test]
async fn a_user_account_control_hidden_from_the_bind_is_unknown_not_disabled() {
    let ad = SambaAd::from_env();
    let admin_connector = ad.connector(ad.config());
    let name = prefix("uac");
    let account = pb::AccountRef { person_id: format!("{name}-person"), account_name: name.clone() };
    let dn = admin_connector.apply("fc-uac-1", &joiner(&name, &["staff"])).await.expect("joiner").target_native_id;

    // The connector's bind: a domain user whom the account's security
    // descriptor denies reading userAccountControl.
    let reader_dn = format!("CN={name}-reader,CN=Users,{}", ad.base_dn);
    let reader_password = format!("Rd-{:016x}!a", rand::random::<u64>());
    ad.add_user(&reader_dn, &format!("{name}-reader"), &reader_password).await;
    let reader_sid = ad.sid(&reader_dn).await;
    ad.add_ace(&dn, &format!("(OD;;RP;{USER_ACCOUNT_CONTROL_GUID};;{reader_sid})"));
    let password_file = std::env::temp_dir().join(format!("{name}-reader.password"));
    std::fs::write(&password_file, &reader_password).expect("password file");
    let mut config = ad.config();
    config.bind_dn = reader_dn.clone();
    config.bind_password.file = Some(password_file.clone());
    let reader = ad.connector(config);

    let state = reader.read(&account).await.expect("the reader reads the account");
    assert!(state.exists, "{state:?}");
    assert!(
        state.unreadable.iter().any(|u| u.field == "enabled" && u.target_attribute == "userAccountControl"),
        "the unreadable flag is named: {state:?}"
    );
    assert!(state.enabled, "unknown reads as the unsafe value, never as disabled: {state:?}");
    let differences = compare(&reader.describe(), &leaver(&name), &state);
    assert!(
        differences.iter().any(
            |d| matches!(d, Difference::Unreadable { target_attribute, .. } if target_attribute == "userAccountControl")
        ),
        "a leaver is not verified by an unreadable flag: {differences:?}"
    );
    // Nor can the leaver be applied by this bind: it can neither set the bit
    // by read-modify-write nor prove it.
    let error = reader.apply("fc-uac-2", &leaver(&name)).await.expect_err("the leaver is refused");
    assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error}");
    // What the domain controller shows its administrator: still enabled.
    let entry = ad.entry(&dn, vec!["userAccountControl"]).await;
    let uac: u32 = entry.attrs["userAccountControl"][0].parse().expect("a number");
    assert_eq!(uac & 0x2, 0, "the account is still enabled on the target");

    admin_connector.apply("fc-uac-3", &absent(&name)).await.expect("cleanup");
    let mut admin = ad.admin().await;
    admin.delete(&reader_dn).await.expect("delete").success().expect("cleanup of the reader");
    let _ = std::fs::remove_file(password_file);
}

#[tokio::test]
async fn a_leaver_in_a_privileged_group_outside_the_managed_base_is_not_verified() {
    let ad = SambaAd::from_env();
    let connector = ad.connector(ad.config());
    let name = prefix("adm");
    let account = pb::AccountRef { person_id: format!("{name}-person"), account_name: name.clone() };
    let dn = connector.apply("fc-adm-1", &joiner(&name, &["staff"])).await.expect("joiner").target_native_id;

    // The account in a group under CN=Users that is itself a member of
    // Domain Admins: privileged by nesting, outside OU=Groups.
    let ops = format!("CN={name}-ops,CN=Users,{}", ad.base_dn);
    let domain_admins = format!("CN=Domain Admins,CN=Users,{}", ad.base_dn);
    let ops_name = format!("{name}-ops");
    let mut admin = ad.admin().await;
    admin
        .add(
            &ops,
            vec![
                ("objectClass", HashSet::from(["group"])),
                ("sAMAccountName", HashSet::from([ops_name.as_str()])),
                ("member", HashSet::from([dn.as_str()])),
            ],
        )
        .await
        .expect("add")
        .success()
        .expect("the group is added");
    admin
        .modify(&domain_admins, vec![Mod::Add("member", HashSet::from([ops.as_str()]))])
        .await
        .expect("modify")
        .success()
        .expect("nested into Domain Admins");

    let state = connector.read(&account).await.expect("read");
    let unmanaged: BTreeMap<String, bool> =
        state.unmanaged_entitlements.iter().map(|e| (e.id.to_lowercase(), e.privileged)).collect();
    assert_eq!(unmanaged.get(&ops.to_lowercase()), Some(&false), "{state:?}");
    assert_eq!(unmanaged.get(&domain_admins.to_lowercase()), Some(&true), "adminCount marks it: {state:?}");
    assert_eq!(state.entitlements.len(), 1, "{state:?}");

    let description = connector.describe();
    connector.apply("fc-adm-2", &leaver(&name)).await.expect("the leaver is applied");
    let state = connector.read(&account).await.expect("read");
    assert!(state.entitlements.is_empty() && !state.enabled, "{state:?}");
    let differences = compare(&description, &leaver(&name), &state);
    assert!(
        differences.iter().any(
            |d| matches!(d, Difference::PrivilegedUnmanaged { id, .. } if id.eq_ignore_ascii_case(&domain_admins))
        ),
        "not verified while in Domain Admins: {differences:?}"
    );

    admin
        .modify(&domain_admins, vec![Mod::Delete("member", HashSet::from([ops.as_str()]))])
        .await
        .expect("modify")
        .success()
        .expect("out of Domain Admins");
    let state = connector.read(&account).await.expect("read");
    assert_eq!(compare(&description, &leaver(&name), &state), vec![], "{state:?}");

    connector.apply("fc-adm-3", &absent(&name)).await.expect("cleanup");
    admin.delete(&ops).await.expect("delete").success().expect("cleanup of the group");
}
