//! Users the connector does not manage are never read or changed: a user in
//! another path, a user in a sub-path, a user in the managed path without the
//! correlation tag, and a user tagged with another person. Each is created
//! directly on a real moto server with a group, an access key and a login
//! profile; every connector call about it is refused with CONFLICT, `List`
//! never shows it, and afterwards IAM shows it exactly as before.

mod support;

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::{StatusType, Tag};
use connector_iam::KIND_GROUP;
use connector_kit::ErrorKind;
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;

/// What IAM shows about a user: path, tags, groups, keys and their status, login profile.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    path: String,
    tags: BTreeMap<String, String>,
    groups: Vec<String>,
    keys: Vec<(String, bool)>,
    login_profile: bool,
}

async fn snapshot(client: &Client, user: &str) -> Snapshot {
    let got = client.get_user().user_name(user).send().await.expect("GetUser");
    let record = got.user().expect("user");
    let groups = client.list_groups_for_user().user_name(user).send().await.expect("ListGroupsForUser");
    let keys = client.list_access_keys().user_name(user).send().await.expect("ListAccessKeys");
    Snapshot {
        path: record.path().to_owned(),
        tags: record.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect(),
        groups: groups.groups().iter().map(|g| g.group_name().to_owned()).collect(),
        keys: keys
            .access_key_metadata()
            .iter()
            .map(|k| (k.access_key_id().unwrap_or_default().to_owned(), k.status() == Some(&StatusType::Active)))
            .collect(),
        login_profile: client.get_login_profile().user_name(user).send().await.is_ok(),
    }
}

async fn create_foreign(client: &Client, user: &str, path: &str, tags: &[(&str, &str)]) {
    let mut request = client.create_user().user_name(user).path(path);
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(*key).value(*value).build().expect("tag"));
    }
    request.send().await.expect("CreateUser");
    client.add_user_to_group().user_name(user).group_name("staff").send().await.expect("AddUserToGroup");
    client.create_access_key().user_name(user).send().await.expect("CreateAccessKey");
    client
        .create_login_profile()
        .user_name(user)
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");
}

fn desired(account: &pb::AccountRef, presence: pb::Presence, credentials: pb::CredentialAction) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account.clone()),
        presence: presence as i32,
        enabled: false,
        attributes: Default::default(),
        entitlements: vec![pb::Entitlement { kind: KIND_GROUP.into(), id: "engineering".into(), privileged: false }],
        credentials: credentials as i32,
        owned_identities: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_outside_the_path_or_without_the_tag_are_never_read_or_changed() {
    let (connector, client, _) = support::connector("own").await;
    let config = connector.config().clone();
    let person_tag = config.person_tag_key.clone();
    let managed_path = config.user_path.clone();
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let grpc = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");

    let run = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let other_path = support::fresh_path("elsewhere");
    let sub_path = format!("{managed_path}team/");
    let foreign = [
        (format!("otherpath{run}"), other_path.as_str(), vec![(person_tag.as_str(), "p-other")], "p-other"),
        (format!("subpath{run}"), sub_path.as_str(), vec![(person_tag.as_str(), "p-sub")], "p-sub"),
        (format!("untagged{run}"), managed_path.as_str(), vec![("owner", "someone-else")], "p-untagged"),
        (format!("otherperson{run}"), managed_path.as_str(), vec![(person_tag.as_str(), "p-real")], "p-impostor"),
    ];
    let mut before = Vec::new();
    for (user, path, tags, _) in &foreign {
        create_foreign(&client, user, path, tags).await;
        before.push(snapshot(&client, user).await);
    }
    // One managed user, so that List has something to return.
    let mine = pb::AccountRef { person_id: format!("p-mine-{run}"), account_name: format!("mine{run}") };
    let mut mine_state = desired(&mine, pb::Presence::Present, pb::CredentialAction::Keep);
    mine_state.enabled = true;
    grpc.apply("mine-1", mine_state).await.expect("managed user created");

    for (user, _, _, person_id) in &foreign {
        let account = pb::AccountRef { person_id: (*person_id).into(), account_name: user.clone() };
        let error = grpc.read(account.clone()).await.expect_err("Read of an unmanaged user");
        assert_eq!(error.kind, ErrorKind::Conflict, "Read {user}: {error}");
        let cases = [
            ("present", desired(&account, pb::Presence::Present, pb::CredentialAction::Keep)),
            ("revoke", desired(&account, pb::Presence::Present, pb::CredentialAction::RevokeAll)),
            ("absent", desired(&account, pb::Presence::Absent, pb::CredentialAction::Keep)),
        ];
        for (step, state) in cases {
            let error = grpc.apply(&format!("{user}-{step}"), state).await.expect_err("Apply to an unmanaged user");
            assert_eq!(error.kind, ErrorKind::Conflict, "Apply {step} to {user}: {error}");
        }
    }

    // List: only the managed path itself (its whole scope, #17): tagged users
    // with their person id, the untagged one with none. The user tagged with
    // another person is managed (for that person) and listed as theirs.
    let mut listed = Vec::new();
    let mut stream = grpc.list(2).await.expect("List");
    while let Some(page) = stream.message().await.expect("List page") {
        listed.extend(page.accounts.into_iter().filter_map(|a| a.account).map(|a| (a.account_name, a.person_id)));
    }
    listed.sort();
    let mut expected = vec![
        (mine.account_name.clone(), mine.person_id.clone()),
        (format!("otherperson{run}"), "p-real".to_string()),
        (format!("untagged{run}"), String::new()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "List shows exactly the users of the scope, each with its own person id or none");

    for ((user, ..), expected) in foreign.iter().zip(before) {
        assert_eq!(snapshot(&client, user).await, expected, "{user} was changed");
        assert!(expected.login_profile && expected.keys.iter().all(|(_, active)| *active));
    }

    grpc.apply("mine-2", desired(&mine, pb::Presence::Absent, pb::CredentialAction::Keep)).await.expect("cleanup");
    for (user, ..) in &foreign {
        for key in snapshot(&client, user).await.keys {
            client.delete_access_key().user_name(user).access_key_id(key.0).send().await.expect("cleanup key");
        }
        client.delete_login_profile().user_name(user).send().await.expect("cleanup login profile");
        client.remove_user_from_group().user_name(user).group_name("staff").send().await.expect("cleanup group");
        client.delete_user().user_name(user).send().await.expect("cleanup user");
    }
}
