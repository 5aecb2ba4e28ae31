//! An account renamed on the directory after the connector created it (an
//! admin's `modrdn`): the correlation key travels with the entry, so the
//! account is still found as this person's, never an orphan beside a
//! missing one. Read shows it under the name the directory shows (so the
//! read-back names the rename), `List` shows one account with the person's
//! key, and Apply gives it its planned name back instead of creating a second
//! entry. Checked on the real slapd with the admin account.

mod support;

use std::collections::BTreeMap;

use connector_kit::Connector;
use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use futures::StreamExt;
use ldap3::{Scope, SearchEntry};
use support::Slapd;

/// The DNs of every entry under the people base carrying `person_id`.
async fn entries_of(slapd: &Slapd, person_id: &str) -> Vec<String> {
    let mut admin = slapd.admin().await;
    let filter = format!("(employeeNumber={})", ldap3::ldap_escape(person_id));
    let (entries, _) = admin
        .search(&slapd.people(), Scope::Subtree, &filter, vec!["uid"])
        .await
        .expect("search")
        .success()
        .expect("ok");
    entries.into_iter().map(|e| SearchEntry::construct(e).dn.to_lowercase()).collect()
}

#[tokio::test]
async fn a_renamed_account_is_found_by_its_key_and_renamed_back() {
    let slapd = Slapd::from_env();
    let config = slapd.config();
    assert_eq!(config.person_id_attribute, "employeeNumber", "the test reads the key attribute directly");
    let connector = slapd.connector(config);
    let description = connector.describe();
    let name = format!("rn{:06x}", rand::random::<u32>() & 0xff_ffff);
    let person_id = format!("{name}-person");
    let account = pb::AccountRef { person_id: person_id.clone(), account_name: name.clone() };
    let desired = pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: BTreeMap::from([("display_name".to_string(), format!("Person {name}"))]).into_iter().collect(),
        entitlements: vec![pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    };
    let dn = connector.apply("c1", &desired).await.expect("create").target_native_id;

    // An admin renames it on the directory.
    let renamed = format!("{name}-renamed");
    let mut admin = slapd.admin().await;
    admin
        .modifydn(&dn, &format!("uid={renamed}"), true, None)
        .await
        .expect("modrdn")
        .success()
        .expect("renamed on slapd");
    let renamed_dn = slapd.account_dn(&renamed).await.expect("slapd shows the new name");
    assert_eq!(slapd.account_dn(&name).await, None, "the old name is gone on slapd");

    // Read finds it by its key, under the name the directory shows.
    let state = connector.read(&account).await.expect("read");
    assert!(state.exists, "the renamed account is this person's account, not missing");
    assert_eq!(state.account.as_ref().map(|a| a.account_name.as_str()), Some(renamed.as_str()));
    assert_eq!(state.account.as_ref().map(|a| a.person_id.as_str()), Some(person_id.as_str()));
    assert_eq!(state.target_native_id.to_lowercase(), renamed_dn.to_lowercase());
    let differences = compare(&description, &desired, &state);
    assert!(
        differences.contains(&Difference::AccountName { expected: name.clone(), actual: renamed.clone() }),
        "the read-back names the rename: {differences:?}"
    );
    // slapd has no referential-integrity overlay here: `staff` still names the
    // old DN, so the membership reads as missing until the name is restored.
    assert!(
        differences.iter().all(|d| matches!(d, Difference::AccountName { .. } | Difference::MissingEntitlement { .. })),
        "nothing else differs: {differences:?}"
    );

    // List shows one account with the person's key: linked, not an orphan.
    let mut listed = Vec::new();
    let mut stream = connector.list(500);
    while let Some(page) = stream.next().await {
        for item in page.expect("list") {
            if item.account.as_ref().is_some_and(|a| a.person_id == person_id) {
                listed.push(item);
            }
        }
    }
    assert_eq!(listed.len(), 1, "one account carries the key: {listed:?}");
    assert_eq!(listed[0].account.as_ref().map(|a| a.account_name.as_str()), Some(renamed.as_str()));

    // Apply converges it: the planned name back, no second entry.
    let ack = connector.apply("c2", &desired).await.expect("converge");
    let actions: Vec<&str> = ack.changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, vec!["rename"], "{:?}", ack.changes);
    assert_eq!(entries_of(&slapd, &person_id).await, vec![dn.to_lowercase()], "one entry, under its planned name");
    assert_eq!(slapd.account_dn(&renamed).await, None);
    let state = connector.read(&account).await.expect("read");
    assert_eq!(compare(&description, &desired, &state), vec![], "verified again");

    // A renamed account is deleted as this person's, never left behind.
    admin.modifydn(&dn, &format!("uid={renamed}"), true, None).await.expect("modrdn").success().expect("renamed");
    let absent = pb::DesiredAccount { presence: pb::Presence::Absent as i32, ..desired };
    let ack = connector.apply("c3", &absent).await.expect("delete");
    assert!(ack.changes.iter().any(|c| c.action == "delete"), "{:?}", ack.changes);
    assert!(entries_of(&slapd, &person_id).await.is_empty(), "nothing of the person is left on slapd");
}
