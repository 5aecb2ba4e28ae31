//! Reconciliation end to end, through the real coordinator, the real
//! connector processes and the real `jmlctl`, against all four targets
//! (slapd, scim2-server, moto's IAM and RustyVault): after a joiner and a
//! leaver are propagated, ad hoc edits are made directly on each target with
//! its own protocol (a privileged group or policy added, a group removed, a
//! managed policy attached, an attribute changed, a leaver's disable undone,
//! an orphan account created); `jmlctl reconcile --json` names each with its
//! class; `--remediate` pushes the expected state back through the normal
//! propagation path, the targets show it, the evidence shows the
//! remediation, and the next reconcile is clean.
//!
//! On Vault an account is a userpass user plus the connector's record of it
//! (a user without a record is not managed, so not listed): the orphan made
//! directly there is a record and a user, as someone copying the managed
//! pattern would make it. SCIM and RustyVault cannot prove that no session
//! remains, so their disabling remediations are done but never verified.
//!
//! The target servers are shared with other runs, so every reconcile is
//! limited to this run's people (`--person-prefix P-<run>-`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use jml_contract::v1 as pb;
use ldap3::Mod;
use mesh_e2e::mesh::{TARGET_IDS, task};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};
use mesh_harness::target_env;
use serde_json::{Value, json};

/// `jmlctl reconcile`'s exit code when drift is found.
const DRIFT_FOUND: i32 = 4;

/// A direct SCIM client (the server's own HTTP API, no connector code).
struct ScimDirect {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ScimDirect {
    fn from_env() -> anyhow::Result<Self> {
        let token_file = target_env("scim", "JML_TEST_SCIM_TOKEN_FILE");
        Ok(Self {
            http: reqwest::Client::new(),
            base: target_env("scim", "JML_TEST_SCIM_URL").trim_end_matches('/').to_owned(),
            token: std::fs::read_to_string(&token_file).with_context(|| format!("reading {token_file}"))?.trim().into(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/scim+json").body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("SCIM {method} {path}: HTTP {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn patch(&self, path: &str, operations: Value) -> anyhow::Result<()> {
        let body = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations });
        self.call(reqwest::Method::PATCH, path, Some(body)).await.map(|_| ())
    }

    /// The id of the group named `name`, created when missing.
    async fn group(&self, name: &str) -> anyhow::Result<String> {
        let filter = format!("displayName eq \"{name}\"");
        let url = format!("/Groups?filter={}", urlencode(&filter));
        let found = self.call(reqwest::Method::GET, &url, None).await?;
        if let Some(id) = found["Resources"].as_array().and_then(|r| r.first()).and_then(|g| g["id"].as_str()) {
            return Ok(id.to_owned());
        }
        let body = json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name });
        let created = self.call(reqwest::Method::POST, "/Groups", Some(body)).await?;
        created["id"].as_str().map(str::to_owned).context("a created group without id")
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `jmlctl reconcile --target T --person-prefix P --json [--remediate]`
/// and returns its exit code and the target's report.
async fn reconcile(mesh: &Mesh, target: &str, prefix: &str, remediate: bool) -> anyhow::Result<(i32, Value)> {
    let mut args = vec!["reconcile", "--target", target, "--person-prefix", prefix, "--json"];
    if remediate {
        args.push("--remediate");
    }
    let output = mesh.jmlctl(&args).await?;
    let code = output.status.code().unwrap_or(-1);
    let reports: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "jmlctl {args:?} exited {code}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let report = reports.as_array().and_then(|r| r.first()).cloned().context("no report")?;
    Ok((code, report))
}

/// (person id, class) of every drift of a report.
fn drift_of(report: &Value) -> BTreeSet<(String, String)> {
    report["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (d["person_id"].as_str().unwrap_or_default().to_owned(), d["class"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn find<'a>(report: &'a Value, person_id: &str, class: &str) -> &'a Value {
    report["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["person_id"] == person_id && d["class"] == class)
        .unwrap_or_else(|| panic!("no {class} drift for {person_id} in {report}"))
}

fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

/// The connectors' TLS server names, one per target of the policy.
const SERVER_NAMES: [&str; 4] = ["connector-ldap", "connector-scim", "connector-vault", "connector-iam"];

/// Lets the coordinator remediate every target, and `jmlctl`'s certificate
/// act as an administrator too, then restarts the coordinator on them.
async fn allow_remediation(mesh: &mut Mesh, admin: bool) -> anyhow::Result<()> {
    let policy = std::fs::read_to_string(mesh.policy_path())?;
    if !policy.contains("reconcile:") {
        let mut rewritten = String::new();
        for line in policy.lines() {
            rewritten.push_str(line);
            rewritten.push('\n');
            if line.trim_start().starts_with("tls:")
                && SERVER_NAMES.iter().any(|name| line.contains(&format!("server_name: {name}")))
            {
                rewritten.push_str("    reconcile: { action: remediate }\n");
            }
        }
        if rewritten.matches("reconcile:").count() != SERVER_NAMES.len() {
            bail!("expected every target's tls line in the policy: {policy}");
        }
        std::fs::write(mesh.policy_path(), rewritten)?;
    }
    if admin {
        let callers = std::fs::read_to_string(mesh.callers_path())?;
        let upgraded = callers.replace(
            "principal: auditor, roles: [auditor], certificate_names: [jmlctl]",
            "principal: auditor, roles: [auditor, admin], certificate_names: [jmlctl]",
        );
        if upgraded == callers {
            bail!("the callers file has no jmlctl auditor line to upgrade: {callers}");
        }
        std::fs::write(mesh.callers_path(), upgraded)?;
    }
    mesh.stop_coordinator().await?;
    mesh.start_coordinator().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_on_every_target_is_classified_then_remediated() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let scim = ScimDirect::from_env().expect("a direct SCIM client");
    let mut mesh = Mesh::start("rec", MeshOptions::default()).await.expect("the mesh starts");
    allow_remediation(&mut mesh, false).await.expect("the coordinator restarts with reconcile blocks");
    let within = Duration::from_secs(180);
    let prefix = format!("P-{}-", mesh.run_id);

    // A joiner who stays, and one who leaves (Sales: nothing privileged, so
    // no approval is needed).
    let stay = Person::new(&mesh.run_id, 0, "Sales");
    let gone = Person::new(&mesh.run_id, 1, "Sales");
    let joiners = vec![format!("{}-join-0", mesh.run_id), format!("{}-join-1", mesh.run_id)];
    mesh.submit(stay.event(&joiners[0], pb::EventKind::Joiner)).await.expect("joiner accepted");
    mesh.submit(gone.event(&joiners[1], pb::EventKind::Joiner)).await.expect("joiner accepted");
    let status = mesh.wait_finished(&joiners, within).await.expect("joiners finish");
    for id in &joiners {
        assert_eq!(status[id].state, pb::EventState::Verified as i32, "{:?}", status[id]);
    }
    let leaver = format!("{}-leave-1", mesh.run_id);
    mesh.submit(gone.event(&leaver, pb::EventKind::Leaver)).await.expect("leaver accepted");
    let status = mesh.wait_finished(std::slice::from_ref(&leaver), within).await.expect("leaver finishes");
    for target in ["ldap", "aws"] {
        let state = task(&status[&leaver], target).state;
        assert!(
            state == pb::TaskState::Verified as i32 || state == pb::TaskState::VerifiedWithResidualRisk as i32,
            "{:?}",
            status[&leaver]
        );
    }

    // Clean before anyone touches the targets.
    for target in TARGET_IDS {
        let (code, report) = reconcile(&mesh, target, &prefix, false).await.expect("reconcile");
        assert_eq!(code, 0, "{target} is clean after propagation: {report}");
        assert_eq!(report["clean"], true, "{report}");
    }

    // Ad hoc edits on slapd, with an admin bind.
    let base = target_env("slapd", "JML_TEST_SLAPD_BASE_DN");
    let group = |cn: &str| format!("cn={cn},ou=groups,{base}");
    let stay_ldap = targets.ldap.account(&stay.username).await.expect("ldap").expect("stay's entry");
    let gone_ldap = targets.ldap.account(&gone.username).await.expect("ldap").expect("gone's entry");
    assert!(gone_ldap.locked, "the leaver is locked: {gone_ldap:?}");
    let orphan_id = format!("{prefix}9999");
    let orphan_uid = format!("{}-orphan", mesh.run_id);
    let orphan_dn = format!("uid={orphan_uid},ou=people,{base}");
    let mut ldap = targets.ldap.connect().await.expect("admin bind");
    ldap.modify(&group("admins"), vec![Mod::Add("member", HashSet::from([stay_ldap.dn.as_str()]))])
        .await
        .and_then(|r| r.success())
        .expect("ldapmodify: stay added to the privileged admins group");
    ldap.modify(&group("sales"), vec![Mod::Delete("member", HashSet::from([stay_ldap.dn.as_str()]))])
        .await
        .and_then(|r| r.success())
        .expect("ldapmodify: stay removed from sales");
    ldap.modify(&gone_ldap.dn, vec![Mod::Delete("pwdAccountLockedTime", HashSet::<&str>::new())])
        .await
        .and_then(|r| r.success())
        .expect("ldapmodify: the leaver's lock removed");
    ldap.add(
        &orphan_dn,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([orphan_uid.as_str()])),
            ("cn", HashSet::from(["Orphan"])),
            ("sn", HashSet::from(["Orphan"])),
            ("employeeNumber", HashSet::from([orphan_id.as_str()])),
        ],
    )
    .await
    .and_then(|r| r.success())
    .expect("ldapadd: an orphan account");
    ldap.modify(&group("staff"), vec![Mod::Add("member", HashSet::from([orphan_dn.as_str()]))])
        .await
        .and_then(|r| r.success())
        .expect("ldapmodify: the orphan in staff");
    let _ = ldap.unbind().await;

    // Ad hoc edits on scim2-server.
    let stay_scim = targets.scim.account(&stay.email).await.expect("scim").expect("stay's user");
    let gone_scim = targets.scim.account(&gone.email).await.expect("scim").expect("gone's user");
    assert!(!gone_scim.active, "the leaver is inactive: {gone_scim:?}");
    let admins = scim.group("admins").await.expect("the admins group");
    let staff = scim.group("staff").await.expect("the staff group");
    scim.patch(
        &format!("/Groups/{admins}"),
        json!([{ "op": "add", "path": "members", "value": [{ "value": stay_scim.id }] }]),
    )
    .await
    .expect("SCIM PATCH: stay added to admins");
    scim.patch(
        &format!("/Users/{}", stay_scim.id),
        json!([{ "op": "replace", "path": "displayName", "value": "Edited By Hand" }]),
    )
    .await
    .expect("SCIM PATCH: stay's display name edited");
    scim.patch(&format!("/Users/{}", gone_scim.id), json!([{ "op": "replace", "path": "active", "value": true }]))
        .await
        .expect("SCIM PATCH: the leaver re-activated");
    let orphan_email = format!("{orphan_uid}@example.org");
    let created = scim
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": orphan_email,
                "externalId": orphan_id,
                "displayName": "Orphan",
                "active": true,
            })),
        )
        .await
        .expect("SCIM POST: an orphan user");
    let orphan_scim = created["id"].as_str().expect("orphan id").to_owned();
    scim.patch(
        &format!("/Groups/{staff}"),
        json!([{ "op": "add", "path": "members", "value": [{ "value": orphan_scim }] }]),
    )
    .await
    .expect("SCIM PATCH: the orphan in staff");

    // Ad hoc edits on moto's IAM, with the AWS SDK.
    let stay_iam = targets.iam.account(&stay.username).await.expect("iam").expect("stay's user");
    let gone_iam = targets.iam.account(&gone.username).await.expect("iam").expect("gone's user");
    assert_eq!(stay_iam.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{stay_iam:?}");
    assert!(gone_iam.disabled_tag && gone_iam.groups.is_empty(), "the leaver is disabled: {gone_iam:?}");
    let adhoc_policy =
        targets.iam.managed_policy(&format!("{}-adhoc", mesh.run_id)).await.expect("CreatePolicy: an ad hoc policy");
    targets.iam.attach_policy(&stay.username, &adhoc_policy).await.expect("AttachUserPolicy: on stay");
    targets.iam.remove_from_group(&stay.username, "sales").await.expect("RemoveUserFromGroup: stay from sales");
    targets.iam.untag_user(&gone.username, "lifecycle-mesh:disabled").await.expect("UntagUser: the leaver enabled");
    targets
        .iam
        .create_user(&orphan_uid, &mesh.iam_user_path, &[("lifecycle-mesh:person-id", orphan_id.as_str())])
        .await
        .expect("CreateUser: an orphan");
    targets.iam.add_to_group(&orphan_uid, "staff").await.expect("AddUserToGroup: the orphan in staff");

    // Ad hoc edits on RustyVault, with the Vault HTTP API (the records'
    // place is deploy/quickstart/connector-vault.yaml.in's).
    let records = format!("secret/lifecycle-mesh/{}/accounts", mesh.run_id);
    assert_eq!(
        targets.vault.user(&stay.username).await.expect("vault"),
        Some(BTreeSet::from(["pam-read".to_string()])),
        "stay's login holds pam-read"
    );
    assert_eq!(targets.vault.user(&gone.username).await.expect("vault"), None, "the leaver has no login");
    targets
        .vault
        .set_user_policies(&stay.username, &["pam-read", "pam-ops"])
        .await
        .expect("Vault: the privileged pam-ops policy added to stay");
    targets.vault.create_user(&gone.username, &[]).await.expect("Vault: the leaver's login recreated");
    targets
        .vault
        .write_kv(
            &format!("{records}/{orphan_uid}"),
            &json!({ "person_id": orphan_id, "policies": ["pam-read"], "enabled": true, "managed_by": "lifecycle-mesh" }),
        )
        .await
        .expect("Vault: an orphan's record");
    targets.vault.create_user(&orphan_uid, &["pam-read"]).await.expect("Vault: the orphan's login");

    // Report: each edit with its class.
    let (code, ldap_report) = reconcile(&mesh, "ldap", &prefix, false).await.expect("reconcile ldap");
    assert_eq!(code, DRIFT_FOUND, "{ldap_report}");
    assert_eq!(
        drift_of(&ldap_report),
        pairs(&[
            (&stay.person_id, "excess_entitlement"),
            (&stay.person_id, "missing_entitlement"),
            (&gone.person_id, "should_be_disabled"),
            (&orphan_id, "orphan_account"),
        ]),
        "{ldap_report}"
    );
    let excess = find(&ldap_report, &stay.person_id, "excess_entitlement");
    assert_eq!((excess["privileged"].clone(), excess["severity"].clone()), (json!(true), json!("high")), "{excess}");
    assert_eq!(find(&ldap_report, &gone.person_id, "should_be_disabled")["severity"], "critical");
    assert_eq!(ldap_report["drift"][0]["class"], "should_be_disabled", "most severe first: {ldap_report}");

    let (code, scim_report) = reconcile(&mesh, "scim", &prefix, false).await.expect("reconcile scim");
    assert_eq!(code, DRIFT_FOUND, "{scim_report}");
    assert_eq!(
        drift_of(&scim_report),
        pairs(&[
            (&stay.person_id, "excess_entitlement"),
            (&stay.person_id, "attribute_drift"),
            (&gone.person_id, "should_be_disabled"),
            (&orphan_id, "orphan_account"),
        ]),
        "{scim_report}"
    );
    assert_eq!(find(&scim_report, &stay.person_id, "excess_entitlement")["privileged"], true, "{scim_report}");

    let (code, iam_report) = reconcile(&mesh, "aws", &prefix, false).await.expect("reconcile aws");
    assert_eq!(code, DRIFT_FOUND, "{iam_report}");
    assert_eq!(
        drift_of(&iam_report),
        pairs(&[
            (&stay.person_id, "excess_entitlement"),
            (&stay.person_id, "missing_entitlement"),
            (&gone.person_id, "should_be_disabled"),
            (&orphan_id, "orphan_account"),
        ]),
        "{iam_report}"
    );
    let excess = find(&iam_report, &stay.person_id, "excess_entitlement");
    assert!(excess["detail"].as_str().is_some_and(|d| d.contains(&adhoc_policy)), "names the policy: {excess}");
    assert_eq!(find(&iam_report, &gone.person_id, "should_be_disabled")["severity"], "critical");

    let (code, vault_report) = reconcile(&mesh, "vault", &prefix, false).await.expect("reconcile vault");
    assert_eq!(code, DRIFT_FOUND, "{vault_report}");
    assert_eq!(
        drift_of(&vault_report),
        pairs(&[
            (&stay.person_id, "excess_entitlement"),
            (&gone.person_id, "should_be_disabled"),
            (&orphan_id, "orphan_account"),
        ]),
        "{vault_report}"
    );
    let excess = find(&vault_report, &stay.person_id, "excess_entitlement");
    assert_eq!((excess["privileged"].clone(), excess["severity"].clone()), (json!(true), json!("high")), "{excess}");
    assert_eq!(find(&vault_report, &gone.person_id, "should_be_disabled")["severity"], "critical");

    // An auditor may report but not remediate.
    let refused = mesh
        .jmlctl(&["reconcile", "--target", "ldap", "--person-prefix", &prefix, "--remediate", "--json"])
        .await
        .expect("jmlctl runs");
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).to_lowercase().contains("permission"), "{refused:?}");

    // Remediate, as an administrator.
    allow_remediation(&mut mesh, true).await.expect("the coordinator restarts");
    let mut remediation_ids = Vec::new();
    let mut stay_remediations = BTreeMap::new();
    for target in TARGET_IDS {
        let (code, report) = reconcile(&mesh, target, &prefix, true).await.expect("reconcile --remediate");
        assert_eq!(code, DRIFT_FOUND, "the remediating run still reports what it found: {report}");
        assert_eq!(report["action"], "remediate", "{report}");
        let remediations = report["remediations"].as_array().cloned().unwrap_or_default();
        let people: BTreeSet<&str> = remediations.iter().filter_map(|r| r["person_id"].as_str()).collect();
        assert_eq!(
            people,
            BTreeSet::from([stay.person_id.as_str(), gone.person_id.as_str(), orphan_id.as_str()]),
            "one remediation per drifted account: {report}"
        );
        for remediation in &remediations {
            assert_eq!(remediation["awaiting_approval"], false, "removing access needs no approval: {remediation}");
            let id = remediation["event_id"].as_str().expect("event id").to_owned();
            if remediation["person_id"] == stay.person_id.as_str() {
                stay_remediations.insert(target, id.clone());
            }
            remediation_ids.push(id);
        }
    }
    let finished = mesh.wait_finished(&remediation_ids, within).await.expect("remediations finish");
    for (id, status) in &finished {
        let only = &status.tasks;
        assert_eq!(only.len(), 1, "a remediation touches one target: {status:?}");
        // What a target cannot prove ends verified with residual risk (the
        // connector's declared credential model), never plain verified.
        let unproven = only[0].differences == vec!["credentials: the target cannot prove that none remain".to_string()];
        assert!(
            only[0].state == pb::TaskState::Verified as i32
                || only[0].state == pb::TaskState::VerifiedWithResidualRisk as i32
                || (["scim", "vault"].contains(&only[0].target_id.as_str()) && unproven),
            "remediation {id}: {status:?}"
        );
    }

    // The targets show the expected state again.
    let stay_ldap = targets.ldap.account(&stay.username).await.expect("ldap").expect("stay's entry");
    assert_eq!(stay_ldap.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{stay_ldap:?}");
    assert!(
        targets.ldap.account(&gone.username).await.expect("ldap").expect("gone").locked,
        "the leaver is locked again"
    );
    let orphan = targets.ldap.account(&orphan_uid).await.expect("ldap").expect("the orphan is kept, not deleted");
    assert!(orphan.locked && orphan.groups.is_empty(), "the orphan is disabled and stripped: {orphan:?}");
    let stay_scim = targets.scim.account(&stay.email).await.expect("scim").expect("stay's user");
    assert_eq!(stay_scim.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{stay_scim:?}");
    assert!(
        !targets.scim.account(&gone.email).await.expect("scim").expect("gone").active,
        "the leaver is inactive again"
    );
    let orphan = targets.scim.account(&orphan_email).await.expect("scim").expect("the orphan is kept, not deleted");
    assert!(!orphan.active && orphan.groups.is_empty(), "the orphan is disabled and stripped: {orphan:?}");

    let stay_iam = targets.iam.account(&stay.username).await.expect("iam").expect("stay's user");
    assert_eq!(stay_iam.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{stay_iam:?}");
    assert!(stay_iam.policies.is_empty(), "the ad hoc policy is detached: {stay_iam:?}");
    let gone_iam = targets.iam.account(&gone.username).await.expect("iam").expect("gone's user");
    assert!(gone_iam.disabled_tag && !gone_iam.login_profile, "the leaver is disabled again: {gone_iam:?}");
    let orphan = targets.iam.account(&orphan_uid).await.expect("iam").expect("the orphan is kept, not deleted");
    assert!(orphan.disabled_tag && orphan.groups.is_empty(), "the orphan is disabled and stripped: {orphan:?}");
    assert_eq!(
        targets.vault.user(&stay.username).await.expect("vault"),
        Some(BTreeSet::from(["pam-read".to_string()])),
        "pam-ops is taken off stay's login"
    );
    assert_eq!(targets.vault.user(&gone.username).await.expect("vault"), None, "the leaver's login is gone again");
    assert_eq!(targets.vault.user(&orphan_uid).await.expect("vault"), None, "the orphan cannot log in");
    let record = targets.vault.read_kv(&format!("{records}/{orphan_uid}")).await.expect("vault");
    let record = record.expect("the orphan's record is kept, not deleted");
    assert_eq!((record["enabled"].clone(), record["policies"].clone()), (json!(false), json!([])), "{record}");

    // The evidence shows the remediation.
    for target in TARGET_IDS {
        let evidence = mesh.evidence(&stay_remediations[target]).await.expect("evidence of the remediation");
        assert_eq!(evidence["source_system"], "reconciliation", "{evidence}");
        assert!(evidence["initiator"].as_str().is_some_and(|i| i.starts_with("reconcile:")), "{evidence}");
        let listed = evidence["targets"].as_array().expect("targets");
        assert_eq!(listed.len(), 1, "{evidence}");
        assert_eq!(listed[0]["target_id"], target);
        assert_eq!(listed[0]["state"], "verified", "{evidence}");
        assert!(listed[0]["acknowledgement"].is_object() && listed[0]["read_back"].is_object(), "{evidence}");
    }

    // And the next reconcile is clean.
    for target in TARGET_IDS {
        let (code, report) = reconcile(&mesh, target, &prefix, false).await.expect("reconcile");
        assert_eq!(code, 0, "{target} is clean after remediation: {report}");
        assert_eq!(report["counts"]["contained_orphans"], 1, "the disabled orphan is counted: {report}");
    }
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}
