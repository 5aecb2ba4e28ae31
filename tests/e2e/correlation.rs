//! Accounts that existed before the mesh (#17), end to end: the real
//! coordinator, connector processes and `jmlctl` against slapd,
//! scim2-server, moto's IAM and RustyVault.
//!
//! Accounts are created beforehand with each server's own client (LDAP adds,
//! SCIM POSTs, the AWS SDK, the Vault HTTP API): one correlating by mail, one
//! by name, one to two people, one rogue account with no person in a
//! privileged group (and on LDAP: correlation values that look like filter
//! injections). People already employed are loaded as a baseline with
//! `jmlctl identities load`. The first reconciliation names each account's
//! situation; `--link-from` the saved report links them (an account changed
//! since the report is refused and nothing written); the next run shows them
//! linked and converged, read with each server's own client; a remediating
//! run disables and strips the rogue account under `on_unmatched: disable`,
//! and it still exists. A joiner meeting an unlinked account fails naming
//! the account, the rule and the command that links it (`adopt: manual`),
//! and links it itself under `adopt: correlated`.
//!
//! The target servers are shared: every run is limited to this run's people
//! (`--person-prefix`) and accounts (`--account-prefix`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use jml_contract::v1 as pb;
use ldap3::{Mod, Scope, SearchEntry};
use mesh_e2e::mesh::task;
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};
use mesh_harness::target_env;
use serde_json::{Value, json};

/// `jmlctl reconcile`'s exit code when drift is found.
const DRIFT_FOUND: i32 = 4;

/// The correlation rules of each target (inserted after its `tls:` line).
fn correlation_block(server_name: &str, adopt: &str) -> String {
    let rules = match server_name {
        "connector-ldap" => r#"[ { attribute: mail, equals: "{email}" }, { attribute: account_name } ]"#,
        "connector-scim" => r#"[ { attribute: emails, equals: "{email}" }, { attribute: account_name } ]"#,
        "connector-iam" => r#"[ { attribute: email, equals: "{email}" }, { attribute: account_name } ]"#,
        _ => r#"[ { attribute: account_name } ]"#,
    };
    format!(
        "    reconcile: {{ action: remediate }}\n    correlation: {{ rules: {rules}, adopt: {adopt}, on_unmatched: disable }}\n"
    )
}

/// Writes correlation rules (with `adopt`) and `reconcile: remediate` into
/// every target of the policy, makes `jmlctl` an administrator, and
/// restarts the coordinator.
async fn configure(mesh: &mut Mesh, adopt: &str) -> anyhow::Result<()> {
    let policy = std::fs::read_to_string(mesh.policy_path())?;
    let mut rewritten = String::new();
    let mut skipping = false;
    for line in policy.lines() {
        if skipping && (line.starts_with("    reconcile:") || line.starts_with("    correlation:")) {
            continue;
        }
        skipping = false;
        rewritten.push_str(line);
        rewritten.push('\n');
        if line.trim_start().starts_with("tls:")
            && let Some(name) = ["connector-ldap", "connector-scim", "connector-vault", "connector-iam"]
                .into_iter()
                .find(|name| line.contains(&format!("server_name: {name}")))
        {
            rewritten.push_str(&correlation_block(name, adopt));
            skipping = true;
        }
    }
    if rewritten.matches("correlation:").count() != 4 {
        bail!("expected four targets' tls lines in the policy: {policy}");
    }
    std::fs::write(mesh.policy_path(), rewritten)?;
    let callers = std::fs::read_to_string(mesh.callers_path())?;
    let upgraded = callers.replace(
        "principal: auditor, roles: [auditor], certificate_names: [jmlctl]",
        "principal: auditor, roles: [auditor, admin], certificate_names: [jmlctl]",
    );
    std::fs::write(mesh.callers_path(), upgraded)?;
    mesh.stop_coordinator().await?;
    mesh.start_coordinator().await
}

/// Runs `jmlctl reconcile --json` with `args`; the exit code and the report.
async fn reconcile(mesh: &Mesh, args: &[&str]) -> anyhow::Result<(i32, Value, Vec<u8>)> {
    let mut all = vec!["reconcile", "--json"];
    all.extend_from_slice(args);
    let output = mesh.jmlctl(&all).await?;
    let code = output.status.code().unwrap_or(-1);
    let reports: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "jmlctl {all:?} exited {code}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let report = reports.as_array().and_then(|r| r.first()).cloned().context("no report")?;
    Ok((code, report, output.stdout))
}

/// The finding of the account named `name` (case-insensitively).
fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["correlation"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["account_name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .unwrap_or_else(|| panic!("no finding for {name} in {report}"))
}

fn situation(report: &Value, name: &str) -> String {
    finding(report, name)["situation"].as_str().unwrap_or_default().to_owned()
}

fn count(report: &Value, situation: &str) -> u64 {
    report["correlation"]["counts"]["by_situation"][situation].as_u64().unwrap_or(0)
}

/// The link records of a report, by account name (lower-cased).
fn links(report: &Value) -> BTreeMap<String, Value> {
    report["correlation"]["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["account_name"].as_str().unwrap_or_default().to_lowercase(), l.clone()))
        .collect()
}

/// The run's people: A (its account correlates by mail), B (by name), C and
/// D (one email and one user name for both: an account correlating to two
/// people), E (an email that looks like an LDAP filter injection).
fn people(run_id: &str) -> Vec<Person> {
    let mut people: Vec<Person> = (0..5).map(|n| Person::new(run_id, n, "Sales")).collect();
    for n in [2, 3] {
        people[n].username = format!("{run_id}-shared");
        people[n].email = format!("{run_id}-shared@example.org");
    }
    people[4].email = "*)(uid=*".into();
    people
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Loads the baseline with `jmlctl identities load`.
async fn load_baseline(mesh: &Mesh, people: &[Person]) -> anyhow::Result<Value> {
    let file = mesh.dir.join("baseline.jsonl");
    let lines: Vec<String> =
        people.iter().map(|p| json!({ "person_id": p.person_id, "attributes": p.attributes() }).to_string()).collect();
    std::fs::write(&file, lines.join("\n"))?;
    let path = file.display().to_string();
    let output = mesh.jmlctl(&["identities", "load", "--file", &path, "--source-system", "workday", "--json"]).await?;
    if !output.status.success() {
        bail!("identities load failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The admin LDAP connection and DNs of slapd.
struct Slapd {
    base: String,
}

impl Slapd {
    fn dn(&self, uid: &str) -> String {
        format!("uid={},ou=people,{}", ldap3::dn_escape(uid), self.base)
    }

    fn group(&self, cn: &str) -> String {
        format!("cn={cn},ou=groups,{}", self.base)
    }
}

async fn ldap_add(ldap: &mut ldap3::Ldap, dn: &str, uid: &str, mail: Option<&str>) -> anyhow::Result<()> {
    let mut attributes = vec![
        ("objectClass", HashSet::from(["inetOrgPerson"])),
        ("uid", HashSet::from([uid])),
        ("cn", HashSet::from([uid])),
        ("sn", HashSet::from(["Hand-made"])),
    ];
    if let Some(mail) = mail {
        attributes.push(("mail", HashSet::from([mail])));
    }
    ldap.add(dn, attributes).await?.success()?;
    Ok(())
}

/// `employeeNumber` of the entry `uid`, read with an admin search.
async fn ldap_key(targets: &Targets, uid: &str) -> anyhow::Result<Option<String>> {
    let mut ldap = targets.ldap.connect().await?;
    let base = target_env("slapd", "JML_TEST_SLAPD_BASE_DN");
    let filter = format!("(uid={})", ldap3::ldap_escape(uid));
    let (entries, _) =
        ldap.search(&format!("ou=people,{base}"), Scope::Subtree, &filter, vec!["employeeNumber"]).await?.success()?;
    let _ = ldap.unbind().await;
    Ok(entries
        .into_iter()
        .map(SearchEntry::construct)
        .next()
        .and_then(|e| e.attrs.get("employeeNumber").and_then(|v| v.first()).cloned()))
}

/// A direct SCIM client (the server's own HTTP API).
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
            token: std::fs::read_to_string(&token_file)?.trim().into(),
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

    async fn create_user(&self, user_name: &str, email: Option<&str>) -> anyhow::Result<String> {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "active": true,
        });
        if let Some(email) = email {
            body["emails"] = json!([{ "value": email, "type": "work" }]);
        }
        let created = self.call(reqwest::Method::POST, "/Users", Some(body)).await?;
        created["id"].as_str().map(str::to_owned).context("a created user without id")
    }

    async fn user(&self, user_name: &str) -> anyhow::Result<Option<Value>> {
        let filter = format!("userName eq \"{user_name}\"");
        let encoded: String = filter
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let found = self.call(reqwest::Method::GET, &format!("/Users?filter={encoded}"), None).await?;
        Ok(found["Resources"].as_array().and_then(|r| r.first()).cloned())
    }

    async fn add_to_group(&self, group: &str, user_id: &str) -> anyhow::Result<()> {
        let found = self.call(reqwest::Method::GET, "/Groups?count=500", None).await?;
        let id = match found["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["displayName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(group)))
        {
            Some(existing) => existing["id"].as_str().unwrap_or_default().to_owned(),
            None => {
                let body = json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group });
                let created = self.call(reqwest::Method::POST, "/Groups", Some(body)).await?;
                created["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{ "op": "add", "path": "members", "value": [{ "value": user_id }] }],
        });
        self.call(reqwest::Method::PATCH, &format!("/Groups/{id}"), Some(body)).await.map(|_| ())
    }
}

/// Waits for the convergence events a report's links started.
async fn converged(mesh: &Mesh, report: &Value, accounts: &[&str]) -> anyhow::Result<()> {
    let links = links(report);
    let mut events = Vec::new();
    for account in accounts {
        let link = links.get(&account.to_lowercase()).with_context(|| format!("no link of {account} in {report}"))?;
        if link["outcome"] != "linked" {
            bail!("{account} was not linked: {link}");
        }
        events.push(link["convergence_event_id"].as_str().context("no convergence event")?.to_owned());
    }
    let status = mesh.wait_finished(&events, Duration::from_secs(180)).await?;
    for (event, status) in status {
        if status.state != pb::EventState::Verified as i32 && status.state != pb::EventState::Failed as i32 {
            bail!("convergence {event} did not finish: {status:?}");
        }
        for task in &status.tasks {
            let residual = task.state == pb::TaskState::Verified as i32;
            if !residual {
                bail!("convergence {event} on {}: {task:?}", task.target_id);
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn existing_accounts_are_correlated_linked_and_contained() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let scim = ScimDirect::from_env().expect("a direct SCIM client");
    let mut mesh = Mesh::start("cor", MeshOptions::default()).await.expect("the mesh starts");
    configure(&mut mesh, "manual").await.expect("correlation rules in the policy");
    let run = mesh.run_id.clone();
    let prefix = format!("P-{run}-");
    let people = people(&run);
    let (a, b, c, d, e) = (&people[0], &people[1], &people[2], &people[3], &people[4]);

    let loaded = load_baseline(&mesh, &people).await.expect("baseline loaded");
    assert_eq!(loaded["loaded"], 5, "{loaded}");
    let again = load_baseline(&mesh, &people).await.expect("baseline loaded again");
    assert_eq!((again["loaded"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(5)), "{again}");

    // Accounts made by hand on every target.
    let slapd = Slapd { base: target_env("slapd", "JML_TEST_SLAPD_BASE_DN") };
    let rogue = format!("{run}-rogue");
    let star = format!("{run}-star");
    let inj = format!("{run}-inj");
    let mut ldap = targets.ldap.connect().await.expect("admin bind");
    ldap_add(&mut ldap, &slapd.dn(&a.username), &a.username, Some(&a.email)).await.expect("ldapadd A");
    ldap_add(&mut ldap, &slapd.dn(&b.username), &b.username, None).await.expect("ldapadd B");
    ldap_add(&mut ldap, &slapd.dn(&c.username), &c.username, Some(&c.email)).await.expect("ldapadd shared");
    ldap_add(&mut ldap, &slapd.dn(&rogue), &rogue, None).await.expect("ldapadd rogue");
    ldap_add(&mut ldap, &slapd.dn(&star), &star, Some("*")).await.expect("ldapadd star");
    ldap_add(&mut ldap, &slapd.dn(&inj), &inj, Some(&e.email)).await.expect("ldapadd inj");
    ldap.modify(&slapd.group("admins"), vec![Mod::Add("member", HashSet::from([slapd.dn(&rogue).as_str()]))])
        .await
        .and_then(|r| r.success())
        .expect("the rogue account in the privileged admins group");
    let a_scim = scim.create_user(&a.email, Some(&a.email)).await.expect("SCIM A");
    scim.create_user(&b.email, None).await.expect("SCIM B");
    scim.create_user(&c.email, Some(&c.email)).await.expect("SCIM shared");
    let rogue_scim = scim.create_user(&format!("{rogue}@example.org"), None).await.expect("SCIM rogue");
    scim.add_to_group("admins", &rogue_scim).await.expect("SCIM rogue in admins");
    let path = mesh.iam_user_path.clone();
    targets.iam.create_user(&a.username, &path, &[("email", a.email.as_str())]).await.expect("IAM A");
    targets.iam.create_user(&b.username, &path, &[]).await.expect("IAM B");
    targets.iam.create_user(&c.username, &path, &[("email", c.email.as_str())]).await.expect("IAM shared");
    targets.iam.create_user(&rogue, &path, &[]).await.expect("IAM rogue");
    targets.iam.ensure_group("admins").await.expect("IAM admins group");
    targets.iam.add_to_group(&rogue, "admins").await.expect("IAM rogue in admins");
    targets.vault.create_user(&a.username, &[]).await.expect("Vault A");
    targets.vault.create_user(&c.username, &[]).await.expect("Vault shared");
    targets.vault.create_user(&rogue, &["pam-ops"]).await.expect("Vault rogue with a privileged policy");
    let _ = a_scim;

    let scope = |target: &'static str| -> Vec<String> {
        ["--target", target, "--person-prefix", &prefix, "--account-prefix", &run]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };

    // First reconciliation: each account in its exact situation.
    let name_of =
        |target: &str, person: &Person| if target == "scim" { person.email.clone() } else { person.username.clone() };
    let mut saved = BTreeMap::new();
    for target in ["ldap", "scim", "aws", "vault"] {
        let (code, report, stdout) = reconcile(&mesh, &args(&scope(target))).await.expect("reconcile");
        assert_eq!(code, DRIFT_FOUND, "{target}: {report}");
        let rogue_name = if target == "scim" { format!("{rogue}@example.org") } else { rogue.clone() };
        let first = &report["correlation"]["findings"][0];
        assert_eq!(first["account_name"].as_str().map(str::to_lowercase), Some(rogue_name.to_lowercase()), "{report}");
        assert_eq!((first["situation"].as_str(), first["privileged"].as_bool()), (Some("unmatched"), Some(true)));
        let a_finding = finding(&report, &name_of(target, a));
        assert_eq!(
            (a_finding["situation"].as_str(), a_finding["person_id"].as_str()),
            (Some("unlinked"), Some(a.person_id.as_str()))
        );
        assert!(a_finding["rule"].as_str().is_some_and(|r| r.starts_with("rules[0]")), "{target}: {a_finding}");
        if target != "vault" {
            let b_finding = finding(&report, &name_of(target, b));
            assert_eq!(b_finding["person_id"], b.person_id.as_str(), "{target}: {b_finding}");
            assert!(b_finding["rule"].as_str().is_some_and(|r| r.starts_with("rules[1]")), "{target}: {b_finding}");
        }
        let shared = finding(&report, &name_of(target, c));
        assert_eq!(shared["situation"], "disputed", "{target}: {shared}");
        let candidates: BTreeSet<&str> =
            shared["candidates"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(candidates, BTreeSet::from([c.person_id.as_str(), d.person_id.as_str()]), "{target}: {shared}");
        if target == "ldap" {
            // Values that look like filter syntax are data: "*" matches nobody,
            // "*)(uid=*" only the person whose email is exactly that.
            assert_eq!(situation(&report, &star), "unmatched", "{report}");
            assert_eq!(finding(&report, &inj)["person_id"], e.person_id.as_str(), "{report}");
        }
        let file = mesh.dir.join(format!("report-{target}.json"));
        std::fs::write(&file, &stdout).expect("report saved");
        saved.insert(target, file);
    }

    // An account changed since the report: its link is refused, nothing written.
    let mut ldap = targets.ldap.connect().await.expect("admin bind");
    ldap.modify(&slapd.group("engineering"), vec![Mod::Add("member", HashSet::from([slapd.dn(&b.username).as_str()]))])
        .await
        .and_then(|r| r.success())
        .expect("B's entry changed after the report");

    // Link what the reports showed.
    for target in ["ldap", "scim", "aws", "vault"] {
        let mut link_args = scope(target);
        link_args.extend(["--link-from".to_string(), saved[target].display().to_string()]);
        let (_, report, _) = reconcile(&mesh, &args(&link_args)).await.expect("reconcile --link-from");
        let records = links(&report);
        match target {
            "ldap" => {
                converged(&mesh, &report, &[&a.username]).await.expect("A converges");
                let b_link = &records[&b.username.to_lowercase()];
                assert_eq!(b_link["outcome"], "refused", "{b_link}");
                assert!(b_link["error"].as_str().is_some_and(|e| e.contains("changed")), "{b_link}");
                assert_eq!(ldap_key(&targets, &b.username).await.expect("ldapsearch"), None, "nothing written on B");
                let inj_link = &records[&inj.to_lowercase()];
                assert_eq!(inj_link["outcome"], "refused", "E's account has another name than E's: {inj_link}");
                // A fresh report's link of B succeeds.
                let mut fresh = scope(target);
                fresh.push("--link".into());
                let (_, report, _) = reconcile(&mesh, &args(&fresh)).await.expect("reconcile --link");
                converged(&mesh, &report, &[&b.username]).await.expect("B converges");
            }
            "vault" => converged(&mesh, &report, &[&a.username]).await.expect("vault A converges"),
            _ => {
                let names = [name_of(target, a), name_of(target, b)];
                converged(&mesh, &report, &[&names[0], &names[1]]).await.expect("A and B converge");
            }
        }
    }

    // What the servers show: keys written, plans applied.
    assert_eq!(ldap_key(&targets, &a.username).await.expect("ldapsearch").as_deref(), Some(a.person_id.as_str()));
    assert_eq!(ldap_key(&targets, &b.username).await.expect("ldapsearch").as_deref(), Some(b.person_id.as_str()));
    let a_ldap = targets.ldap.account(&a.username).await.expect("ldap").expect("A's entry");
    assert_eq!(a_ldap.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{a_ldap:?}");
    let b_ldap = targets.ldap.account(&b.username).await.expect("ldap").expect("B's entry");
    assert_eq!(b_ldap.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{b_ldap:?}");
    let a_scim = scim.user(&a.email).await.expect("SCIM").expect("A's user");
    assert_eq!(a_scim["externalId"], a.person_id.as_str(), "{a_scim}");
    let a_scim_groups = targets.scim.account(&a.email).await.expect("scim").expect("A").groups;
    assert_eq!(a_scim_groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]));
    let a_iam = targets.iam.account(&a.username).await.expect("iam").expect("A's IAM user");
    assert_eq!(a_iam.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{a_iam:?}");
    assert_eq!(
        targets.iam.tag(&a.username, "lifecycle-mesh:person-id").await.expect("tags").as_deref(),
        Some(a.person_id.as_str())
    );
    assert_eq!(
        targets.vault.user(&a.username).await.expect("vault"),
        Some(BTreeSet::from(["pam-read".to_string()])),
        "A's login got the plan's policy"
    );

    // The next run: linked and converged; the disputed and rogue accounts remain.
    for target in ["ldap", "scim", "aws", "vault"] {
        let (_, report, _) = reconcile(&mesh, &args(&scope(target))).await.expect("reconcile");
        let expected_linked = if target == "vault" { 1 } else { 2 };
        assert_eq!(count(&report, "linked"), expected_linked, "{target}: {report}");
        assert_eq!(count(&report, "unlinked"), if target == "ldap" { 1 } else { 0 }, "{target}: {report}");
        assert_eq!(situation(&report, &name_of(target, c)), "disputed");
        let converged_people = if target == "vault" { vec![&a.person_id] } else { vec![&a.person_id, &b.person_id] };
        for drift in report["drift"].as_array().into_iter().flatten() {
            assert!(
                !converged_people.iter().any(|p| drift["person_id"] == p.as_str()),
                "{target}: linked accounts converged, yet {drift}"
            );
        }
    }

    // A remediating run (limited to the rogue account: no person, its name)
    // disables and strips it; it stays.
    let rogue_scope = |target: &'static str| -> Vec<String> {
        let name = if target == "scim" { format!("{rogue}@") } else { rogue.clone() };
        let nobody = format!("{prefix}nobody");
        ["--target", target, "--person-prefix", &nobody, "--account-prefix", &name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    for target in ["ldap", "scim", "aws", "vault"] {
        let mut remediate = rogue_scope(target);
        remediate.push("--remediate".into());
        let (_, report, _) = reconcile(&mesh, &args(&remediate)).await.expect("reconcile --remediate");
        let rogue_name = if target == "scim" { format!("{rogue}@example.org") } else { rogue.clone() };
        let records = links(&report);
        let link = records.get(&rogue_name.to_lowercase()).unwrap_or_else(|| panic!("{target}: {report}"));
        assert_eq!(link["outcome"], "linked", "{target}: {link}");
        assert!(link["person_id"].as_str().is_some_and(|k| k.starts_with("unmatched:")), "{link}");
        let event = link["convergence_event_id"].as_str().expect("a containment event").to_owned();
        let status =
            mesh.wait_finished(std::slice::from_ref(&event), Duration::from_secs(180)).await.expect("contained");
        let state = task(&status[&event], target).state;
        assert!(
            state == pb::TaskState::Verified as i32
                || state == pb::TaskState::VerifiedWithResidualRisk as i32
                || state == pb::TaskState::Failed as i32,
            "{target}: {:?}",
            status[&event]
        );
    }
    let rogue_ldap = targets.ldap.account(&rogue).await.expect("ldap").expect("the rogue entry still exists");
    assert!(rogue_ldap.locked && rogue_ldap.groups.is_empty(), "{rogue_ldap:?}");
    let rogue_scim = targets.scim.account(&format!("{rogue}@example.org")).await.expect("scim").expect("still exists");
    assert!(!rogue_scim.active && rogue_scim.groups.is_empty(), "{rogue_scim:?}");
    let rogue_iam = targets.iam.account(&rogue).await.expect("iam").expect("the rogue IAM user still exists");
    assert!(rogue_iam.disabled_tag && rogue_iam.groups.is_empty(), "{rogue_iam:?}");
    assert_eq!(targets.vault.user(&rogue).await.expect("vault"), None, "the rogue login is gone (Vault's disable)");

    // Contained now: counted, not drift, left alone.
    let (code, report, _) = reconcile(&mesh, &args(&rogue_scope("ldap"))).await.expect("reconcile");
    let rogue_finding = finding(&report, &rogue);
    assert_eq!(
        (rogue_finding["situation"].as_str(), rogue_finding["contained"].as_bool()),
        (Some("unmatched"), Some(true))
    );
    assert_eq!(code, 0, "a contained account is not drift: {report}");
    mesh.verify_audit().await.expect("the audit chain verifies");
    mesh.stop_all().await.expect("the mesh stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joiner_meeting_an_unlinked_account() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("cjo", MeshOptions { max_attempts: 2, ..MeshOptions::default() }).await.expect("mesh");
    configure(&mut mesh, "manual").await.expect("correlation rules, adopt: manual");
    let run = mesh.run_id.clone();
    let slapd = Slapd { base: target_env("slapd", "JML_TEST_SLAPD_BASE_DN") };
    let manual = Person::new(&run, 0, "Sales");
    let automatic = Person::new(&run, 1, "Sales");
    let mut ldap = targets.ldap.connect().await.expect("admin bind");
    for person in [&manual, &automatic] {
        ldap_add(&mut ldap, &slapd.dn(&person.username), &person.username, Some(&person.email)).await.expect("ldapadd");
    }

    // adopt: manual: the joiner's LDAP task fails naming the account, the
    // rule and the command that links it; the other targets are provisioned.
    let joiner = format!("{run}-join-0");
    mesh.submit(manual.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    let status = mesh.wait_finished(std::slice::from_ref(&joiner), Duration::from_secs(180)).await.expect("finishes");
    let ldap_task = task(&status[&joiner], "ldap");
    assert_eq!(ldap_task.state, pb::TaskState::Failed as i32, "{ldap_task:?}");
    let command = format!("jmlctl reconcile --target ldap --person-prefix {} --link", manual.person_id);
    assert!(ldap_task.last_error.contains(&manual.username), "{}", ldap_task.last_error);
    assert!(ldap_task.last_error.contains("rules[0]: mail equals {email}"), "{}", ldap_task.last_error);
    assert!(ldap_task.last_error.contains(&command), "{}", ldap_task.last_error);
    assert_eq!(ldap_key(&targets, &manual.username).await.expect("ldapsearch"), None, "not taken over");

    // The command it names links it, and the account converges.
    let (_, report, _) = reconcile(&mesh, &["--target", "ldap", "--person-prefix", &manual.person_id, "--link"])
        .await
        .expect("the named command");
    converged(&mesh, &report, &[&manual.username]).await.expect("converges");
    assert_eq!(
        ldap_key(&targets, &manual.username).await.expect("ldapsearch").as_deref(),
        Some(manual.person_id.as_str())
    );
    let entry = targets.ldap.account(&manual.username).await.expect("ldap").expect("entry");
    assert_eq!(entry.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{entry:?}");

    // adopt: correlated: the joiner links it itself, read back like any task.
    configure(&mut mesh, "correlated").await.expect("adopt: correlated");
    let joiner = format!("{run}-join-1");
    mesh.submit(automatic.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    let status = mesh.wait_finished(std::slice::from_ref(&joiner), Duration::from_secs(180)).await.expect("finishes");
    let ldap_task = task(&status[&joiner], "ldap");
    assert_eq!(ldap_task.state, pb::TaskState::Verified as i32, "{ldap_task:?}");
    assert_eq!(
        ldap_key(&targets, &automatic.username).await.expect("ldapsearch").as_deref(),
        Some(automatic.person_id.as_str())
    );
    let entry = targets.ldap.account(&automatic.username).await.expect("ldap").expect("entry");
    assert_eq!(entry.groups, BTreeSet::from(["staff".to_string(), "sales".to_string()]), "{entry:?}");
    mesh.stop_all().await.expect("the mesh stops");
}
