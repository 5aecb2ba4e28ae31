//! A recertification campaign over a privileged group on the real slapd
//! (`deploy/local/slapd.sh start`), and the control evidence report of the
//! same period recomputed from the audit chain.
//!
//! Three people join through the coordinator and the LDAP connector (served
//! in-process over gRPC) into a privileged group of their own OU, approved
//! by a security approver. A campaign over that group gives one item each:
//! the first is kept, the second revoked (the membership is gone on slapd,
//! checked with `ldapsearch`), the third left undecided and escalated at the
//! deadline. The third person's manager in the HR record is the person
//! themself, so their item goes to the workflow owner; the subject and a
//! stranger may not decide.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_ldap::{LdapConfig, LdapConnector};
use coordinator::server::RunningCoordinator;
use coordinator::store::Store;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use tonic::transport::Channel;

fn var(name: &str) -> String {
    mesh_harness::target_env("slapd", name)
}

struct Slapd {
    url: String,
    base: String,
    bind_dn: String,
    password_file: String,
}

impl Slapd {
    fn ldap(&self, tool: &str, args: &[&str], input: Option<&str>) -> String {
        use std::io::Write;
        let mut command = Command::new(tool);
        command
            .args(["-x", "-H", &self.url, "-D", &self.bind_dn, "-y", &self.password_file])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("ldap-utils");
        if let Some(input) = input {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write ldif");
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("ldap tool");
        assert!(output.status.success(), "{tool}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The members of a group, as `ldapsearch` shows them.
    fn members(&self, group_dn: &str) -> Vec<String> {
        let out = self.ldap("ldapsearch", &["-LLL", "-b", group_dn, "-s", "base", "(objectClass=*)", "member"], None);
        out.lines().filter_map(|l| l.strip_prefix("member: ")).map(|m| m.to_lowercase()).collect()
    }
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never {what}");
}

fn as_principal<T>(message: T, principal: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-jml-principal", principal.parse().expect("header"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_over_a_privileged_group_keeps_revokes_and_escalates() {
    let slapd = Slapd {
        url: var("JML_TEST_SLAPD_URL"),
        base: var("JML_TEST_SLAPD_BASE_DN"),
        bind_dn: var("JML_TEST_SLAPD_BIND_DN"),
        password_file: var("JML_TEST_SLAPD_BIND_PASSWORD_FILE"),
    };
    let run = format!("{:08x}", rand::random::<u32>());
    let people = format!("ou=cmp-{run},ou=people,{}", slapd.base);
    let group = format!("cmp-admins-{run}");
    let group_dn = format!("cn={group},ou=groups,{}", slapd.base);
    let placeholder = format!("cn=nobody,{}", slapd.base);
    slapd.ldap(
        "ldapadd",
        &[],
        Some(&format!(
            "dn: {people}\nobjectClass: organizationalUnit\nou: cmp-{run}\n\n\
             dn: {group_dn}\nobjectClass: groupOfNames\ncn: {group}\nmember: {placeholder}\n"
        )),
    );

    let config: LdapConfig = serde_yaml_ng::from_str(&format!(
        "target_id: ldap\nurl: {}\nbind_dn: {}\nbind_password: {{ file: {} }}\nusers_base_dn: {people}\n\
         groups_base_dn: ou=groups,{}\nprivileged_groups: [{group}]\nempty_group_member: {placeholder}\n",
        slapd.url, slapd.bind_dn, slapd.password_file, slapd.base
    ))
    .expect("ldap config");
    let password = config.bind_password().expect("password");
    let connector = LdapConnector::new(config, password).expect("connector");
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let policy = format!(
        r#"
version: 1
source_of_truth: {{ system: workday, attributes: [username, display_name, department, manager] }}
targets:
  - {{ id: ldap, endpoint: "{endpoint}", insecure_plaintext: true, account_name: "{{username}}",
      attributes: {{ display_name: "{{display_name}}" }}, deadline: 10m }}
workflows:
  - name: directory-admins
    owner: it-owner
    trigger: {{ events: [joiner, mover], when: {{ department: IT }} }}
    grants: {{ ldap: [ {{ kind: group, id: {group}, privileged: true }} ] }}
    approval: {{ approvers: 1, group: security }}
approvers: {{ security: [sec-1] }}
campaigns:
  - {{ name: sched-{run}, scope: "entitlement:ldap:group:{group}", every: 1h, deadline: 1h, fallback_reviewer: sec-1 }}
"#,
        endpoint = server.endpoint()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("mesh.db")).await.expect("store"));
    let engine =
        Engine::start(store.clone(), Arc::new(Policy::parse(&policy).expect("policy")), EngineConfig::default())
            .await
            .expect("engine");
    // The policy's schedule (ticking fast here): one campaign per period.
    let _schedules = coordinator::campaign::spawn_schedules(&engine, Duration::from_millis(200));
    let coordinator = RunningCoordinator::bind("127.0.0.1:0".parse().expect("address"), engine).await.expect("bind");
    let mut client: LifecycleClient<Channel> = LifecycleClient::connect(coordinator.endpoint()).await.expect("client");
    let period_start = coordinator::event::format_time(Some(coordinator::event::now_ms() - 1000));

    // Three joiners into the privileged group, approved by security.
    let names: Vec<String> = ["ann", "ben", "cy"].iter().map(|n| format!("{n}{run}")).collect();
    for (index, name) in names.iter().enumerate() {
        let manager = if index == 2 { name.clone() } else { format!("mgr-{run}") };
        let event = pb::LifecycleEvent {
            event_id: format!("join-{name}"),
            kind: pb::EventKind::Joiner as i32,
            person_id: format!("p-{name}"),
            attributes: BTreeMap::from([
                ("username".to_owned(), name.clone()),
                ("display_name".to_owned(), format!("Person {name}")),
                ("department".to_owned(), "IT".to_owned()),
                ("manager".to_owned(), manager),
            ]),
            source_system: "workday".into(),
            ..Default::default()
        };
        client
            .submit_event(as_principal(pb::SubmitEventRequest { event: Some(event) }, "hr-feed"))
            .await
            .expect("submit");
        let approval =
            pb::ApprovalRequest { event_id: format!("join-{name}"), target_id: "ldap".into(), comment: String::new() };
        until("awaiting approval", async || client.approve(as_principal(approval.clone(), "sec-1")).await.ok()).await;
    }
    for name in &names {
        let event_id = format!("join-{name}");
        until("joiner verified", async || {
            let status = client.get_event(pb::GetEventRequest { event_id: event_id.clone() }).await.ok()?.into_inner();
            (status.state == pb::EventState::Verified as i32).then_some(())
        })
        .await;
    }
    assert_eq!(slapd.members(&group_dn).len(), 4, "three people and the placeholder");

    // A manual-target scope is checked against the connector's Describe.
    let refused = client
        .start_campaign(as_principal(
            pb::StartCampaignRequest {
                name: "not-manual".into(),
                scope: "manual:ldap".into(),
                deadline: "1d".into(),
                fallback_reviewer: String::new(),
            },
            "admin-1",
        ))
        .await
        .expect_err("ldap is not a manual target");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");

    // The campaign: one item per holder, sorted by account name.
    let started = client
        .start_campaign(as_principal(
            pb::StartCampaignRequest {
                name: format!("privileged-{run}"),
                scope: format!("entitlement:ldap:group:{group}"),
                deadline: "15s".into(),
                fallback_reviewer: String::new(),
            },
            "admin-1",
        ))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.items.len(), 3, "{started:?}");
    let item = |name: &str| started.items.iter().find(|i| i.account_name == name).cloned().expect("item");
    let (keep, revoke, undecided) = (item(&names[0]), item(&names[1]), item(&names[2]));
    assert_eq!((keep.reviewer.as_str(), keep.reviewer_source.as_str()), (format!("mgr-{run}").as_str(), "manager"));
    assert_eq!(
        (undecided.reviewer.as_str(), undecided.reviewer_source.as_str()),
        ("it-owner", "workflow_owner"),
        "the subject is never their own reviewer"
    );
    let decide = |item: &pb::CampaignItem, decision: &str| pb::CampaignDecisionRequest {
        campaign_id: started.campaign_id.clone(),
        item_id: item.item_id.clone(),
        decision: decision.into(),
        comment: "recertification".into(),
    };

    // The subject and a stranger may not decide.
    let refused =
        client.decide_campaign_item(as_principal(decide(&undecided, "keep"), &names[2])).await.expect_err("subject");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let refused =
        client.decide_campaign_item(as_principal(decide(&keep, "keep"), "stranger")).await.expect_err("stranger");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    client.decide_campaign_item(as_principal(decide(&keep, "keep"), &format!("mgr-{run}"))).await.expect("keep");
    let after = client
        .decide_campaign_item(as_principal(decide(&revoke, "revoke"), &format!("mgr-{run}")))
        .await
        .expect("revoke")
        .into_inner();
    let remediation =
        after.items.iter().find(|i| i.item_id == revoke.item_id).expect("item").remediation_event_id.clone();
    assert!(!remediation.is_empty());
    until("the revoke verified", async || {
        let status = client.get_event(pb::GetEventRequest { event_id: remediation.clone() }).await.ok()?.into_inner();
        (status.state == pb::EventState::Verified as i32).then_some(())
    })
    .await;
    let members = slapd.members(&group_dn);
    let holds = |name: &str| members.iter().any(|m| m.starts_with(&format!("uid={name},")));
    assert!(holds(&names[0]) && !holds(&names[1]) && holds(&names[2]), "ldapsearch shows {members:?}");

    // The deadline passes: the undecided item is escalated and counted.
    let closed = until("escalated", async || {
        let status = client
            .get_campaign(pb::GetCampaignRequest { campaign_id: started.campaign_id.clone() })
            .await
            .ok()?
            .into_inner();
        status.closed.then_some(status)
    })
    .await;
    assert_eq!((closed.kept, closed.revoked, closed.undecided, closed.escalated), (1, 1, 1, 1), "{closed:?}");
    assert!(closed.items.iter().any(|i| i.item_id == undecided.item_id && i.escalated));
    let late =
        client.decide_campaign_item(as_principal(decide(&undecided, "keep"), "it-owner")).await.expect_err("closed");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);

    // The control report of the period, and its figures recomputed from the chain.
    let report: serde_json::Value = serde_json::from_str(
        &client
            .control_report(pb::ControlReportRequest { from: period_start, to: String::new() })
            .await
            .expect("report")
            .into_inner()
            .json,
    )
    .expect("JSON");
    let mut records = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = store.audit_records(after_seq, 500).await.expect("audit");
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        records.extend(page);
    }
    let count = |action: &str| records.iter().filter(|r| r.action == action).count();
    let aa = &report["controls"]["PR.AA-01"]["summary"];
    assert_eq!(aa["events"], count("event.accepted"), "{aa}");
    assert_eq!(aa["tasks_verified"], count("task.verified") + count("task.verified_with_residual_risk"), "{aa}");
    let ac = &report["controls"]["PR.AC-4"];
    assert_eq!(ac["summary"]["approvals"], count("approval.approve"));
    let campaign = ac["campaigns"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["campaign_id"] == started.campaign_id.as_str()))
        .cloned()
        .expect("the campaign");
    let decided = |decision: &str| {
        records
            .iter()
            .filter(|r| r.action == "campaign.decided" && r.payload.contains(&started.campaign_id))
            .filter(|r| serde_json::from_str::<serde_json::Value>(&r.payload).is_ok_and(|p| p["decision"] == decision))
            .count()
    };
    assert_eq!(campaign["kept"], decided("keep"));
    assert_eq!(campaign["revoked"], decided("revoke"));
    let escalated: usize = records
        .iter()
        .filter(|r| r.action == "campaign.escalated" && r.payload.contains(&started.campaign_id))
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .filter_map(|p| p["count"].as_u64())
        .sum::<u64>() as usize;
    assert_eq!(campaign["escalated"], escalated);
    // The sweep and the status reads raced to close it: one of them did.
    let closings =
        records.iter().filter(|r| r.action == "campaign.escalated" && r.payload.contains(&started.campaign_id)).count();
    assert_eq!(closings, 1, "the campaign was closed more than once");
    // The head at `to` is a record of the chain (records appended after the
    // report, e.g. by the engine finishing events, may follow it).
    let head_at_to = report["audit"]["head_hash_at_to"].as_str().expect("head hash");
    assert!(records.iter().any(|r| r.hash == head_at_to), "{head_at_to} is not a record of the chain");
    assert_eq!(report["audit"]["intact"], true);
    // The schedule started its campaign once in all the ticks of this test.
    let scheduled = records
        .iter()
        .filter(|r| r.action == "campaign.started" && r.payload.contains(&format!("\"schedule\":\"sched-{run}\"")))
        .count();
    assert_eq!(scheduled, 1);
    std::fs::write(std::env::temp_dir().join(format!("jml-campaign-report-{run}.json")), report.to_string()).ok();
}
