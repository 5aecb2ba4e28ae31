//! A disabled account against the real server: Read reports as held only
//! the policies the server itself shows in force (none: a disabled account
//! has no userpass user), and the policies kept for its return apart, as
//! dormant. A policy kept on leave reads back as kept, never as in force; a
//! leaver with a policy left in the record (written there out of band) is
//! not verified.

mod support;

use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use connector_vault::names::UserName;
use rand::Rng;

fn policy(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: "policy".into(), id: id.into(), privileged: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_holds_no_policy_in_force_and_its_kept_ones_are_dormant() {
    let config = support::config();
    let direct = support::direct(&config);
    let (client, _server) = support::serve(&config).await;
    let description = client.describe().await.expect("Describe");

    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let account = pb::AccountRef { person_id: format!("person-{suffix}"), account_name: format!("dormant-{suffix}") };
    let name = UserName::parse(&account.account_name).expect("a valid user name");
    let joiner = pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: Default::default(),
        entitlements: vec![policy("pam-ops")],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    };
    client.apply(&format!("join-{suffix}"), joiner.clone()).await.expect("joiner applied");
    let joined = client.read(account.clone()).await.expect("read");
    assert_eq!(joined.entitlements, vec![policy("pam-ops")], "in force: the user's token_policies");
    assert!(joined.dormant_entitlements.is_empty());

    // On leave, policy kept: the server holds no user, so nothing is in force.
    let on_leave = pb::DesiredAccount { enabled: false, ..joiner.clone() };
    client.apply(&format!("leave-{suffix}"), on_leave.clone()).await.expect("suspension applied");
    assert_eq!(direct.read_user(&name).await.expect("read user"), None, "no userpass user while disabled");
    let suspended = client.read(account.clone()).await.expect("read");
    assert!(suspended.exists && !suspended.enabled);
    assert!(suspended.entitlements.is_empty(), "no policy in force: {:?}", suspended.entitlements);
    assert_eq!(suspended.dormant_entitlements, vec![policy("pam-ops")], "kept for the return, apart");
    assert_eq!(compare(&description, &on_leave, &suspended), vec![], "a kept policy reads back as kept");
    // The same state never proves an enabled account holding the policy.
    let differences = compare(&description, &joiner, &suspended);
    assert!(differences.contains(&Difference::Enabled { expected: true, actual: false }), "{differences:?}");
    assert!(
        differences.contains(&Difference::MissingEntitlement { kind: "policy".into(), id: "pam-ops".into() }),
        "a dormant policy is not in force: {differences:?}"
    );

    // The leaver strips it: nothing in force, nothing dormant.
    let leaver = pb::DesiredAccount { entitlements: vec![], ..on_leave.clone() };
    client.apply(&format!("strip-{suffix}"), leaver.clone()).await.expect("leaver applied");
    let left = client.read(account.clone()).await.expect("read");
    assert!(left.entitlements.is_empty() && left.dormant_entitlements.is_empty(), "{left:?}");
    assert!(
        compare(&description, &leaver, &left).iter().all(|d| *d == Difference::CredentialsUnproven),
        "stripped: {:?}",
        compare(&description, &leaver, &left)
    );

    // A policy put back into the record out of band would come back on enable:
    // the leaver is not verified while it is there.
    let mut record = direct.read_record(&name).await.expect("read record").expect("the record is kept");
    record.policies = vec!["pam-admin".into()];
    direct.write_record(&name, &record).await.expect("record written out of band");
    let tampered = client.read(account.clone()).await.expect("read");
    assert!(tampered.entitlements.is_empty(), "still nothing in force");
    let differences = compare(&description, &leaver, &tampered);
    assert!(
        differences.contains(&Difference::ExcessEntitlement { kind: "policy".into(), id: "pam-admin".into() }),
        "a dormant policy fails a leaver: {differences:?}"
    );

    let absent = pb::DesiredAccount { presence: pb::Presence::Absent as i32, ..leaver };
    client.apply(&format!("delete-{suffix}"), absent).await.expect("cleanup");
}
