//! `List` reads memberships a page at a time (issue #21) and must show each
//! account exactly as `Read` does: the managed groups, and every group
//! outside them that holds the account by `member`, `uniqueMember` or
//! `memberUid`, with pages smaller and larger than the scope, and a name
//! that must be escaped in its DN.

mod support;

use std::collections::{BTreeMap, HashSet};

use connector_kit::Connector;
use connector_kit::contract as pb;
use futures::StreamExt;
use support::Slapd;

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

/// What a membership comparison looks at: managed ids, unmanaged (id, privileged).
fn memberships(state: &pb::AccountState) -> (Vec<String>, Vec<(String, bool)>) {
    let mut managed: Vec<String> = state.entitlements.iter().map(|e| e.id.to_lowercase()).collect();
    managed.sort();
    let mut unmanaged: Vec<(String, bool)> =
        state.unmanaged_entitlements.iter().map(|e| (e.id.to_lowercase(), e.privileged)).collect();
    unmanaged.sort();
    (managed, unmanaged)
}

async fn add(admin: &mut ldap3::Ldap, dn: &str, attributes: Vec<(&str, HashSet<&str>)>) {
    admin.add(dn, attributes).await.expect("add").success().unwrap_or_else(|e| panic!("{dn} is added: {e}"));
}

#[tokio::test]
async fn list_shows_every_membership_as_read_does_page_by_page() {
    let slapd = Slapd::from_env();
    let tag = format!("ls{:06x}", rand::random::<u32>() & 0xff_ffff);
    let users = format!("ou={tag},{}", slapd.people());
    let others = format!("ou={tag}-groups,{}", slapd.base_dn);
    let mut admin = slapd.admin().await;
    add(
        &mut admin,
        &users,
        vec![("objectClass", HashSet::from(["organizationalUnit"])), ("ou", HashSet::from([tag.as_str()]))],
    )
    .await;
    let others_ou = format!("{tag}-groups");
    add(
        &mut admin,
        &others,
        vec![("objectClass", HashSet::from(["organizationalUnit"])), ("ou", HashSet::from([others_ou.as_str()]))],
    )
    .await;

    let mut config = slapd.config();
    config.users_base_dn = users.clone();
    config.privileged_groups.push(format!("{tag}-dbas"));
    let connector = slapd.connector(config);
    // Seven accounts, one named with characters its DN escapes.
    let names: Vec<String> = (0..6).map(|n| format!("{tag}-{n}")).chain([format!("{tag}, \"q\"+x")]).collect();
    let mut dns = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let groups: &[&str] = match n % 3 {
            0 => &["staff"],
            1 => &["staff", "hr"],
            _ => &[],
        };
        dns.push(connector.apply(&format!("{tag}-{n}"), &joiner(name, groups)).await.expect("joiner").target_native_id);
    }
    // Outside the managed groups: a privileged groupOfUniqueNames holding
    // three accounts, a posixGroup holding two by name, a groupOfNames
    // holding one by a DN spelled in upper case.
    let dbas = format!("cn={tag}-dbas,{others}");
    let dbas_name = format!("{tag}-dbas");
    add(
        &mut admin,
        &dbas,
        vec![
            ("objectClass", HashSet::from(["groupOfUniqueNames"])),
            ("cn", HashSet::from([dbas_name.as_str()])),
            ("uniqueMember", HashSet::from([dns[0].as_str(), dns[3].as_str(), dns[6].as_str()])),
        ],
    )
    .await;
    let shell = format!("cn={tag}-shell,{others}");
    let shell_name = format!("{tag}-shell");
    add(
        &mut admin,
        &shell,
        vec![
            ("objectClass", HashSet::from(["posixGroup"])),
            ("cn", HashSet::from([shell_name.as_str()])),
            ("gidNumber", HashSet::from(["90002"])),
            ("memberUid", HashSet::from([names[1].as_str(), names[6].as_str()])),
        ],
    )
    .await;
    let loud = format!("cn={tag}-loud,{others}");
    let loud_name = format!("{tag}-loud");
    let loud_member = dns[4].to_uppercase();
    add(
        &mut admin,
        &loud,
        vec![
            ("objectClass", HashSet::from(["groupOfNames"])),
            ("cn", HashSet::from([loud_name.as_str()])),
            ("member", HashSet::from([loud_member.as_str()])),
        ],
    )
    .await;

    let mut read = BTreeMap::new();
    for name in &names {
        let account = pb::AccountRef { person_id: format!("{name}-person"), account_name: name.clone() };
        read.insert(name.clone(), memberships(&connector.read(&account).await.expect("read")));
    }
    assert_eq!(read[&names[0]].1, [(dbas.to_lowercase(), true)], "the test sees what it set up");
    assert_eq!(read[&names[6]].1.len(), 2, "{:?}", read[&names[6]]);
    for page_size in [2, 3, 500] {
        let mut listed = BTreeMap::new();
        let mut pages = connector.list(page_size);
        while let Some(page) = pages.next().await {
            for state in page.expect("page") {
                let name = state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
                listed.insert(name, memberships(&state));
            }
        }
        assert_eq!(listed, read, "pages of {page_size}");
    }

    for (n, name) in names.iter().enumerate() {
        let mut gone = joiner(name, &[]);
        gone.presence = pb::Presence::Absent as i32;
        connector.apply(&format!("{tag}-gone-{n}"), &gone).await.expect("cleanup");
    }
    for dn in [&dbas, &shell, &loud, &others, &users] {
        admin.delete(dn).await.expect("delete").success().expect("cleanup");
    }
}
