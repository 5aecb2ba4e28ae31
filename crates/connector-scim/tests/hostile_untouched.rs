//! After the hostile-value conformance cases run against the real
//! `scim2-server`, a direct read of every `/Users` and `/Groups` resource
//! (bypassing the connector) shows that nothing the cases did not name was
//! touched: every user that existed before is byte-for-byte the same (same
//! `meta.version`), no user is left behind, and every group has the members
//! it had. Bystanders are planted first, including one without an
//! `externalId` and one whose name starts with the characters the hostile
//! names use.
//!
//! This file holds a single test so that no other test writes to the
//! server while it compares the snapshots.

mod support;

use connector_kit::conformance::{
    expect_pass, hostile_lookups_match_nothing, hostile_values_round_trip_or_are_refused,
};
use rand::Rng;
use serde_json::json;
use support::{Direct, GROUPS, conformance_target, ensure_groups, scim_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cases_touch_nothing_they_did_not_name() {
    let env = scim_env();
    let direct = Direct::new(&env);
    ensure_groups(&direct).await;
    let tag = format!("{:08x}", rand::rng().random::<u32>());
    let staff = direct.group_id(GROUPS[0]).await.expect("fixture group");
    let mut bystanders = Vec::new();
    for (name, external_id) in [
        (format!("jml-bystander-{tag}"), Some(format!("bystander-{tag}"))),
        (format!("jml-unmanaged-{tag}"), None),
        (format!("cf-{tag}\" or userName sw \"x"), Some(format!("cf-{tag}*"))),
    ] {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "displayName": "Bystander",
            "active": true,
        });
        if let Some(external_id) = external_id {
            body["externalId"] = json!(external_id);
        }
        let user = direct.post("/Users", body).await;
        let id = user["id"].as_str().expect("id").to_owned();
        direct
            .patch(&format!("/Groups/{staff}"), json!([{ "op": "add", "path": "members", "value": [{ "value": id }] }]))
            .await;
        bystanders.push(id);
    }

    let (users_before, groups_before) = direct.snapshot().await;

    let target = conformance_target().await;
    expect_pass("hostile_values_round_trip_or_are_refused", hostile_values_round_trip_or_are_refused(&target).await);
    expect_pass("hostile_lookups_match_nothing", hostile_lookups_match_nothing(&target).await);

    let (users_after, groups_after) = direct.snapshot().await;
    for (id, before) in &users_before {
        match users_after.get(id) {
            Some(after) => assert_eq!(after, before, "user {id} was touched by the hostile cases"),
            None => panic!("user {id} ({}) was deleted by the hostile cases", before["userName"]),
        }
    }
    let left: Vec<&serde_json::Value> =
        users_after.iter().filter(|(id, _)| !users_before.contains_key(*id)).map(|(_, u)| &u["userName"]).collect();
    assert!(left.is_empty(), "the hostile cases left users behind: {left:?}");
    assert_eq!(groups_after, groups_before, "group memberships changed");

    for id in bystanders {
        direct
            .patch(
                &format!("/Groups/{staff}"),
                json!([{ "op": "remove", "path": format!("members[value eq \"{id}\"]") }]),
            )
            .await;
        direct.delete(&format!("/Users/{id}")).await;
    }
}
