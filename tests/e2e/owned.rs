//! Non-human identities a leaver owned (#20), on the quickstart's real
//! servers with the real binaries: an IAM service user tagged with its
//! owner's person id, holding an access key, is transferred to the leaver's
//! manager (from the joiner's record) by the leaver, acknowledged, read back,
//! in the evidence and in `jmlctl status`, and boto3 (its own client of
//! moto) shows the new owner; a leaver without a manager is refused, nothing
//! applied. RustyVault's connector declares no owned identities, so a policy
//! asking to report them on the vault target is refused when the coordinator
//! starts.

use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::task;
use mesh_e2e::{Mesh, MeshOptions, Person};
use serde_json::Value;

const OWNER_TAG: &str = "owner";
const PREVIOUS_OWNER_TAG: &str = "lifecycle-mesh:previous-owner";

/// Runs boto3 against moto: `create USER PATH OWNER` (a service user with an
/// access key, printing the key id) or `show USER...` (tags and key
/// statuses as JSON).
fn boto3(args: &[&str]) -> Value {
    let script = r#"
import json, os, sys
import boto3
iam = boto3.client("iam", endpoint_url=os.environ["JML_TEST_MOTO_URL"], region_name="us-east-1")
if sys.argv[1] == "create":
    name, path, owner = sys.argv[2:5]
    iam.create_user(UserName=name, Path=path, Tags=[{"Key": "owner", "Value": owner}])
    key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    print(json.dumps({"key": key}))
else:
    out = {}
    for name in sys.argv[2:]:
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
        keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]}
        out[name] = {"tags": tags, "keys": keys}
    print(json.dumps(out))
"#;
    let url = mesh_harness::target_env("moto", "JML_TEST_MOTO_URL");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("JML_TEST_MOTO_URL", url)
        .output()
        .expect("python3 runs (boto3 comes with moto[server])");
    assert!(output.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("boto3 prints JSON")
}

/// The policy with `line` added to the target `target_id` and `manager`
/// declared by the source of truth.
fn with_owned(policy: &str, target_id: &str, line: &str) -> String {
    let mut out = String::new();
    let mut in_target = false;
    for text in policy.lines() {
        let text = if text.trim_start().starts_with("attributes: [username,") && !text.contains("manager") {
            text.replace(']', ", manager]")
        } else {
            text.to_owned()
        };
        out.push_str(&text);
        out.push('\n');
        if text.trim_start().starts_with("- id: ") {
            in_target = text.trim_start() == format!("- id: {target_id}");
        }
        if in_target && text.trim_start().starts_with("account_name:") {
            out.push_str(&format!("    owned_identities: {line}\n"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leavers_iam_service_user_goes_to_the_manager_and_vault_refuses_what_it_cannot() {
    let mut mesh = Mesh::start("nhi", MeshOptions::default()).await.expect("the mesh starts");
    let run = mesh.run_id.clone();
    let service_path = format!("/lifecycle-mesh-svc/{run}/");
    mesh.stop_coordinator().await.expect("stops");
    mesh.kill_connector("iam").await.expect("stops");
    let config_path = mesh.dir.join("connector-iam.yaml");
    let config = std::fs::read_to_string(&config_path).expect("iam config");
    let owned = format!(
        "owned_identities: {{ owner_tag_key: {OWNER_TAG}, previous_owner_tag_key: \"{PREVIOUS_OWNER_TAG}\", path_prefix: \"{service_path}\" }}\n"
    );
    std::fs::write(&config_path, format!("{config}{owned}")).expect("iam config with owned identities");
    mesh.start_connector("iam").await.expect("the IAM connector starts with owned identities");
    let policy = std::fs::read_to_string(mesh.policy_path()).expect("policy");

    // RustyVault's connector does not declare owned identities: the
    // coordinator refuses to start on a policy asking it to report them.
    let refused_policy = mesh.dir.join("policy-vault-owned.yaml");
    std::fs::write(&refused_policy, with_owned(&policy, "vault", "report")).expect("policy");
    let certs = mesh.dir.join("certs");
    let refused = tokio::process::Command::new(mesh_harness::binary("coordinator").expect("coordinator binary"))
        .arg("--policy")
        .arg(&refused_policy)
        .arg("--db")
        .arg(mesh.dir.join("refused.db"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(certs.join("coordinator.pem"))
        .arg("--tls-key")
        .arg(certs.join("coordinator.key"))
        .arg("--tls-client-ca")
        .arg(certs.join("ca.pem"))
        .arg("--callers")
        .arg(mesh.callers_path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("the coordinator runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused: {stderr}");
    assert!(stderr.contains("targets[2].owned_identities"), "{stderr}");
    assert!(stderr.contains("cannot report owned non-human identities"), "{stderr}");

    std::fs::write(mesh.policy_path(), with_owned(&policy, "aws", "transfer")).expect("policy");
    mesh.start_coordinator().await.expect("the coordinator starts with a transfer on aws");

    let ann = Person::new(&run, 0, "Sales");
    let ben = Person::new(&run, 1, "Sales");
    let manager = format!("P-{run}-manager");
    let service_user = format!("svc-{run}-ann");
    let key = boto3(&["create", &service_user, &service_path, &ann.person_id])["key"].as_str().expect("key").to_owned();

    let mut joiner = ann.event(&format!("{run}-ann-joiner"), pb::EventKind::Joiner);
    joiner.attributes.insert("manager".into(), manager.clone());
    let ben_joiner = ben.event(&format!("{run}-ben-joiner"), pb::EventKind::Joiner);
    mesh.submit(joiner.clone()).await.expect("accepted");
    mesh.submit(ben_joiner.clone()).await.expect("accepted");
    let within = Duration::from_secs(240);
    mesh.wait_finished(&[joiner.event_id.clone(), ben_joiner.event_id.clone()], within).await.expect("joiners finish");

    // Ben has no manager: his leaver is refused whole.
    let ben_leaver = pb::LifecycleEvent {
        attributes: Default::default(),
        ..ben.event(&format!("{run}-ben-leaver"), pb::EventKind::Leaver)
    };
    let error = mesh.submit(ben_leaver).await.expect_err("a transfer needs a manager");
    assert!(format!("{error:#}").contains("event.attributes.manager"), "{error:#}");

    // Ann's leaver: the manager comes from her record.
    let leaver = pb::LifecycleEvent {
        attributes: Default::default(),
        ..ann.event(&format!("{run}-ann-leaver"), pb::EventKind::Leaver)
    };
    mesh.submit(leaver.clone()).await.expect("accepted");
    let finished = mesh.wait_finished(std::slice::from_ref(&leaver.event_id), within).await.expect("finishes");
    let status = &finished[&leaver.event_id];
    assert!(
        status.state == pb::EventState::Verified as i32
            || status.state == pb::EventState::VerifiedWithResidualRisk as i32,
        "{status:?}"
    );
    let aws = task(status, "aws");
    let directive = aws.desired.as_ref().and_then(|d| d.owned_identities.clone()).expect("directive");
    assert_eq!(
        (directive.action, directive.new_owner.as_str()),
        (pb::OwnedIdentityAction::Transfer as i32, manager.as_str())
    );
    let ack = aws.acknowledgement.clone().expect("acknowledged");
    assert!(
        ack.changes
            .iter()
            .any(|c| c.action == "transfer_owner" && c.subject == format!("iam_user:{service_user} to {manager}")),
        "{ack:?}"
    );
    let read_back = aws.read_back.clone().expect("read back");
    assert!(read_back.owned_identities_complete);
    let shown: Vec<(&str, &str, &str)> = read_back
        .owned_identities
        .iter()
        .map(|i| (i.id.as_str(), i.owner.as_str(), i.previous_owner.as_str()))
        .collect();
    assert_eq!(shown, [(service_user.as_str(), manager.as_str(), ann.person_id.as_str())]);

    // boto3 shows the new owner, the previous one, and the key still usable.
    let view = boto3(&["show", &service_user]);
    assert_eq!(view[&service_user]["tags"][OWNER_TAG], manager.as_str(), "{view}");
    assert_eq!(view[&service_user]["tags"][PREVIOUS_OWNER_TAG], ann.person_id.as_str(), "{view}");
    assert_eq!(view[&service_user]["keys"][&key], "Active", "{view}");

    // Evidence and jmlctl status show them.
    let evidence = mesh.evidence(&leaver.event_id).await.expect("evidence");
    let text = evidence.to_string();
    assert!(text.contains(&format!("\"new_owner\":\"{manager}\"")), "{text}");
    assert!(text.contains(&format!("\"previous_owner\":\"{}\"", ann.person_id)), "{text}");
    let shown = mesh.jmlctl(&["status", &leaver.event_id]).await.expect("jmlctl status");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("owned identities: transfer to {manager}")), "{shown}");
    assert!(shown.contains(&format!("iam_user:{service_user} owner {manager}")), "{shown}");

    // The control evidence report's NHI-03 lists the transfer, from the chain.
    let report =
        mesh.jmlctl(&["report", "controls", "--from", "2000-01-01T00:00:00Z", "--json"]).await.expect("report");
    let report: Value = serde_json::from_slice(&report.stdout).expect("the report is JSON");
    let rows = report["controls"]["NHI-03"]["non_human_identities_of_leavers"].as_array().cloned().unwrap_or_default();
    let row = rows
        .iter()
        .find(|r| r["event_id"] == leaver.event_id.as_str() && r["target_id"] == "aws")
        .unwrap_or_else(|| panic!("no NHI-03 row for the leaver on aws: {rows:?}"));
    let listed = row["owned_identities"].as_array().cloned().unwrap_or_default();
    assert!(
        listed.iter().any(|i| i["id"] == service_user.as_str()
            && i["owner"] == manager.as_str()
            && i["previous_owner"] == ann.person_id.as_str()),
        "{row}"
    );
    mesh.stop_all().await.expect("stops");
}
