//! Non-human identities a leaver owned (#20), on a real moto server: service
//! users tagged `owner=<person id>` with access keys and a console password,
//! created directly with the tests' own client. Through the gRPC adapter (so
//! the kit's checks run), a leaver's directive transfers them to the manager,
//! disables them or only reports them; each action is in the
//! acknowledgement, the connector's read-back proves it
//! (`connector_kit::readback::compare` is empty), and boto3 (the AWS SDK for
//! Python, its own client of moto) shows it on the target. A transfer
//! without a new owner is refused before anything is written; a service user
//! of another owner is never touched.

mod support;

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use connector_iam::{IamConnector, OwnedIdentitiesConfig};
use connector_kit::ErrorKind;
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::readback::compare;
use connector_kit::server::ConnectorServer;
use serde_json::Value;

const OWNER_TAG: &str = "owner";
const PREVIOUS_OWNER_TAG: &str = "lifecycle-mesh:previous-owner";

/// What boto3 shows about IAM users: tags, access keys with their status,
/// whether a login profile exists.
fn boto3_view(users: &[&str]) -> Value {
    let script = r#"
import json, os, sys
import boto3
iam = boto3.client("iam", endpoint_url=os.environ["JML_TEST_MOTO_URL"], region_name="us-east-1")
out = {}
for name in sys.argv[1:]:
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
    keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]}
    try:
        iam.get_login_profile(UserName=name)
        login = True
    except iam.exceptions.NoSuchEntityException:
        login = False
    out[name] = {"tags": tags, "keys": keys, "login_profile": login}
print(json.dumps(out))
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(users)
        .output()
        .expect("python3 runs (boto3 comes with moto[server])");
    assert!(output.status.success(), "boto3 check failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("boto3 check prints JSON")
}

async fn create_service_user(client: &Client, name: &str, path: &str, owner: &str) -> String {
    client
        .create_user()
        .user_name(name)
        .path(path)
        .tags(Tag::builder().key(OWNER_TAG).value(owner).build().expect("tag"))
        .send()
        .await
        .expect("CreateUser");
    client
        .create_login_profile()
        .user_name(name)
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");
    let key = client.create_access_key().user_name(name).send().await.expect("CreateAccessKey");
    key.access_key().expect("access key").access_key_id().to_owned()
}

async fn delete_service_user(client: &Client, name: &str) {
    let keys = client.list_access_keys().user_name(name).send().await.expect("ListAccessKeys");
    for key in keys.access_key_metadata() {
        let id = key.access_key_id().unwrap_or_default();
        client.delete_access_key().user_name(name).access_key_id(id).send().await.expect("cleanup key");
    }
    let _ = client.delete_login_profile().user_name(name).send().await;
    client.delete_user().user_name(name).send().await.expect("cleanup user");
}

fn joiner(account: &pb::AccountRef) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    }
}

fn leaver(account: &pb::AccountRef, action: pb::OwnedIdentityAction, new_owner: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: false,
        credentials: pb::CredentialAction::RevokeAll as i32,
        owned_identities: Some(connector_kit::owned::directive(action, new_owner)),
        ..Default::default()
    }
}

fn changes(ack: &pb::ApplyResponse, action: &str) -> Vec<String> {
    let mut subjects: Vec<String> =
        ack.changes.iter().filter(|c| c.action == action).map(|c| c.subject.clone()).collect();
    subjects.sort();
    subjects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leavers_service_users_are_transferred_disabled_or_reported() {
    let client = support::direct_client().await;
    let ssc = support::supports_service_specific_credentials(&client).await;
    let catalogue = support::ensure_catalogue(&client).await;
    let service_path = support::fresh_path("svc");
    let mut config = support::config(&support::fresh_path("nhi"), ssc, &support::policy_arn(&catalogue, "lm-admin"));
    config.owned_identities = Some(OwnedIdentitiesConfig {
        owner_tag_key: OWNER_TAG.into(),
        previous_owner_tag_key: PREVIOUS_OWNER_TAG.into(),
        path_prefix: service_path.clone(),
    });
    let connector = IamConnector::connect(config).await.expect("valid config");
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let grpc = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let description = grpc.describe().await.expect("Describe");
    assert!(description.capabilities.unwrap_or_default().owned_identities);
    assert_eq!(description.owned_identities.clone().unwrap_or_default().kinds, ["iam_user"]);

    let run = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let person = |label: &str| format!("p-{label}-{run}");
    let (transferrer, disabler, reporter, manager, stranger) =
        (person("ada"), person("bob"), person("cyd"), person("mgr"), person("eve"));
    let svc = |label: &str| format!("svc-{label}-{run}");
    let (svc_a, svc_b, svc_c, svc_d, svc_other) = (svc("a"), svc("b"), svc("c"), svc("d"), svc("other"));
    let mut keys = BTreeMap::new();
    for (name, owner) in [
        (&svc_a, &transferrer),
        (&svc_b, &transferrer),
        (&svc_c, &disabler),
        (&svc_d, &reporter),
        (&svc_other, &stranger),
    ] {
        keys.insert(name.clone(), create_service_user(&client, name, &service_path, owner).await);
    }
    let accounts: Vec<pb::AccountRef> = [&transferrer, &disabler, &reporter]
        .iter()
        .map(|p| pb::AccountRef { person_id: (*p).clone(), account_name: format!("acct-{p}") })
        .collect();
    for account in &accounts {
        grpc.apply(&format!("join-{}", account.person_id), joiner(account)).await.expect("joiner");
    }

    // Read lists what each person owns, complete, with usable credentials.
    let state = grpc.read(accounts[0].clone()).await.expect("Read");
    assert!(state.owned_identities_complete);
    let owned: Vec<(String, String, bool)> =
        state.owned_identities.iter().map(|i| (i.id.clone(), i.owner.clone(), i.enabled)).collect();
    assert_eq!(owned, [(svc_a.clone(), transferrer.clone(), true), (svc_b.clone(), transferrer.clone(), true)]);
    assert!(state.owned_identities[0].credentials.contains(&format!("access_key:{}", keys[&svc_a])));

    // A transfer without a new owner is refused before anything is written.
    let refused = grpc
        .apply("leave-ada-0", leaver(&accounts[0], pb::OwnedIdentityAction::Transfer, ""))
        .await
        .expect_err("a transfer needs a new owner");
    assert_eq!(refused.kind, ErrorKind::InvalidArgument, "{refused}");
    assert_eq!(refused.field.as_deref(), Some("desired.owned_identities.new_owner"));
    assert!(grpc.read(accounts[0].clone()).await.expect("Read").enabled, "the account was not touched");
    let view = boto3_view(&[&svc_a]);
    assert_eq!(view[&svc_a]["tags"][OWNER_TAG], transferrer.as_str(), "the service user was not touched");

    // Transfer: both service users go to the manager, acknowledged and read back.
    let desired = leaver(&accounts[0], pb::OwnedIdentityAction::Transfer, &manager);
    let ack = grpc.apply("leave-ada-1", desired.clone()).await.expect("leaver with transfer");
    assert_eq!(
        changes(&ack, "transfer_owner"),
        [format!("iam_user:{svc_a} to {manager}"), format!("iam_user:{svc_b} to {manager}")]
    );
    let state = grpc.read(accounts[0].clone()).await.expect("Read");
    let differences = compare(&description, &desired, &state);
    assert!(differences.is_empty(), "the read-back proves the transfer: {differences:?}");
    assert!(state.owned_identities.iter().all(|i| i.owner == manager && i.previous_owner == transferrer));
    let view = boto3_view(&[&svc_a, &svc_b]);
    for name in [&svc_a, &svc_b] {
        assert_eq!(view[name]["tags"][OWNER_TAG], manager.as_str(), "boto3: {name} owner");
        assert_eq!(view[name]["tags"][PREVIOUS_OWNER_TAG], transferrer.as_str(), "boto3: {name} previous owner");
        assert_eq!(view[name]["keys"][&keys[name]], "Active", "boto3: a transfer keeps {name}'s key usable");
    }
    let again = grpc.apply("leave-ada-2", desired).await.expect("re-applied");
    assert!(changes(&again, "transfer_owner").is_empty(), "idempotent: {:?}", again.changes);

    // Disable: the key is deactivated, the password removed, the owner kept.
    let desired = leaver(&accounts[1], pb::OwnedIdentityAction::Disable, "");
    let ack = grpc.apply("leave-bob-1", desired.clone()).await.expect("leaver with disable");
    assert_eq!(changes(&ack, "disable_owned"), [format!("iam_user:{svc_c}")]);
    let state = grpc.read(accounts[1].clone()).await.expect("Read");
    let differences = compare(&description, &desired, &state);
    assert!(differences.is_empty(), "the read-back proves the disable: {differences:?}");
    let view = boto3_view(&[&svc_c]);
    assert_eq!(view[&svc_c]["keys"][&keys[&svc_c]], "Inactive", "boto3: key deactivated");
    assert_eq!(view[&svc_c]["login_profile"], false, "boto3: console password removed");
    assert_eq!(view[&svc_c]["tags"][OWNER_TAG], disabler.as_str(), "boto3: owner kept");

    // Report: listed and acknowledged, nothing changed.
    let desired = leaver(&accounts[2], pb::OwnedIdentityAction::Report, "");
    let ack = grpc.apply("leave-cyd-1", desired.clone()).await.expect("leaver with report");
    assert_eq!(changes(&ack, "report_owned"), [format!("iam_user:{svc_d}")]);
    let state = grpc.read(accounts[2].clone()).await.expect("Read");
    let differences = compare(&description, &desired, &state);
    assert!(differences.is_empty(), "the read-back proves it: {differences:?}");
    assert!(state.owned_identities[0].enabled);
    let view = boto3_view(&[&svc_d, &svc_other]);
    assert_eq!(view[&svc_d]["keys"][&keys[&svc_d]], "Active", "boto3: report changes nothing");
    assert_eq!(view[&svc_d]["login_profile"], true);
    assert_eq!(view[&svc_other]["tags"][OWNER_TAG], stranger.as_str(), "boto3: another owner's user untouched");
    assert_eq!(view[&svc_other]["keys"][&keys[&svc_other]], "Active");

    for (index, account) in accounts.iter().enumerate() {
        let absent = pb::DesiredAccount { presence: pb::Presence::Absent as i32, ..joiner(account) };
        grpc.apply(&format!("cleanup-{index}"), absent).await.expect("cleanup account");
    }
    for name in [&svc_a, &svc_b, &svc_c, &svc_d, &svc_other] {
        delete_service_user(&client, name).await;
    }
}
