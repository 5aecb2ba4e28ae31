//! The hostile corpus (`tests/corpus/hostile/corpus.json`, made by its
//! `generate.py`) against the running mesh: the real coordinator (TLS,
//! authenticated callers), the four real connector processes and slapd,
//! scim2-server, moto and RustyVault.
//!
//! Every entry gets the typed gRPC error it must get, or (valid values that
//! carry injection payloads) is handled literally: accepted, and each task
//! ends verified (the target shows exactly the literal value) or failed with
//! nothing left on that target. No process dies. Each target is snapshotted
//! directly with its own client before and after: nothing that existed
//! changed, and the only new accounts are those of verified tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use ldap3::{Scope, SearchEntry};
use mesh_e2e::mesh::{TARGET_IDS, state_name};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};
use serde_json::Value;
use tonic::transport::Channel;

/// The corpus, compiled in.
const CORPUS: &str = include_str!("../corpus/hostile/corpus.json");

/// One target's accounts: name (lowercased) -> what the target shows.
type Accounts = BTreeMap<String, String>;

/// What the four targets show, read directly.
#[derive(Debug, PartialEq)]
struct Snapshot {
    targets: BTreeMap<&'static str, Accounts>,
    /// slapd: every DN under the base, lowercased, with its `member` values.
    ldap_entries: BTreeMap<String, BTreeSet<String>>,
}

async fn snapshot(targets: &Targets) -> Snapshot {
    let base = mesh_harness::target_env("slapd", "JML_TEST_SLAPD_BASE_DN");
    let mut ldap = targets.ldap.connect().await.expect("ldap");
    let (entries, _) = ldap
        .search(&base, Scope::Subtree, "(objectClass=*)", vec!["uid", "member"])
        .await
        .expect("ldap search")
        .success()
        .expect("ldap search result");
    let mut ldap_entries = BTreeMap::new();
    let mut uids = BTreeSet::new();
    for entry in entries.into_iter().map(SearchEntry::construct) {
        let members = entry.attrs.get("member").into_iter().flatten().map(|m| m.to_lowercase()).collect();
        for uid in entry.attrs.get("uid").into_iter().flatten() {
            uids.insert(uid.clone());
        }
        ldap_entries.insert(entry.dn.to_lowercase(), members);
    }
    let _ = ldap.unbind().await;
    let mut ldap_accounts = Accounts::new();
    for uid in uids {
        let accounts = targets.ldap.accounts(&uid).await.expect("ldap account");
        ldap_accounts.insert(uid.to_lowercase(), format!("{accounts:?}"));
    }
    let mut scim = Accounts::new();
    for name in targets.scim.user_name_counts("").await.expect("scim users").into_keys() {
        let accounts = targets.scim.accounts(&name).await.expect("scim account");
        scim.insert(name, format!("{accounts:?}"));
    }
    let mut iam = Accounts::new();
    for name in targets.iam.user_name_counts("/").await.expect("iam users").into_keys() {
        let account = targets.iam.account(&name).await.map_err(|e| e.to_string());
        iam.insert(name, format!("{account:?}"));
    }
    let mut vault = Accounts::new();
    for name in targets.vault.users().await.expect("vault users") {
        // Only plain names are read back by path; the list itself is the check for the rest.
        let details = if name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            format!("{:?}", targets.vault.user(&name).await.map_err(|e| e.to_string()))
        } else {
            String::new()
        };
        vault.insert(name.to_lowercase(), details);
    }
    Snapshot {
        targets: BTreeMap::from([("ldap", ldap_accounts), ("scim", scim), ("aws", iam), ("vault", vault)]),
        ldap_entries,
    }
}

/// `{run}`, `{n}` and `{repeat:TEXT:COUNT}` filled in.
fn fill(template: &str, run_id: &str, n: usize) -> String {
    let mut text = template.replace("{run}", run_id).replace("{n}", &n.to_string());
    while let Some(start) = text.find("{repeat:") {
        let Some(len) = text[start..].find('}') else { break };
        let spec = text[start + 8..start + len].to_owned();
        let (unit, count) = spec.rsplit_once(':').expect("repeat:TEXT:COUNT");
        let count: usize = count.parse().expect("repeat count");
        text.replace_range(start..start + len + 1, &unit.repeat(count));
    }
    text
}

fn code(name: &str) -> tonic::Code {
    match name {
        "INVALID_ARGUMENT" => tonic::Code::InvalidArgument,
        "PERMISSION_DENIED" => tonic::Code::PermissionDenied,
        "UNAUTHENTICATED" => tonic::Code::Unauthenticated,
        other => panic!("unknown expected code {other}"),
    }
}

/// The event an entry describes.
fn hostile_event(entry: &Value, run_id: &str, n: usize) -> pb::LifecycleEvent {
    let person = Person::new(run_id, 5000 + n, "Sales");
    let mut event = person.event(&format!("{run_id}-h{n}"), pb::EventKind::Joiner);
    if let Some(set) = entry["set"].as_object() {
        for (field, value) in set {
            let text = || fill(value.as_str().expect("string"), run_id, n);
            match field.as_str() {
                "event_id" => event.event_id = text(),
                "person_id" => event.person_id = text(),
                "source_system" => event.source_system = text(),
                "effective_at" => event.effective_at = text(),
                "kind" => event.kind = i32::try_from(value.as_i64().expect("kind")).expect("i32"),
                "urgent" => event.urgent = value.as_bool().expect("urgent"),
                other => panic!("unknown field {other} in the corpus"),
            }
        }
    }
    if let Some(attributes) = entry["attributes"].as_object() {
        for (name, value) in attributes {
            match value.as_str() {
                Some(value) => {
                    event.attributes.insert(name.clone(), fill(value, run_id, n));
                }
                None => {
                    event.attributes.remove(name);
                }
            }
        }
    }
    event
}

fn authorize<T>(request: &mut tonic::Request<T>, mesh: &Mesh, token: &str) {
    let value = match token {
        "none" => return,
        "unknown" => "Bearer 0123456789abcdef-not-a-token".to_string(),
        "malformed" => "Basic aHI6aHI=".to_string(),
        principal => {
            let token = std::fs::read_to_string(mesh.token_path(principal)).expect("token file");
            format!("Bearer {}", token.trim())
        }
    };
    let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = value.parse().expect("header");
    value.set_sensitive(true);
    request.metadata_mut().insert("authorization", value);
}

async fn submit(
    client: &mut LifecycleClient<Channel>,
    mesh: &Mesh,
    event: pb::LifecycleEvent,
    token: &str,
) -> Result<pb::Receipt, tonic::Status> {
    let mut request = tonic::Request::new(pb::SubmitEventRequest { event: Some(event) });
    authorize(&mut request, mesh, token);
    Ok(client.submit_event(request).await?.into_inner().receipt.unwrap_or_default())
}

/// Sends `body` as the whole HTTP/2 request body of SubmitEvent; returns the
/// grpc-status, or a description of what came back instead.
async fn send_raw(channel: Channel, mesh: &Mesh, body: Vec<u8>) -> Result<i32, String> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let token = std::fs::read_to_string(mesh.token_path("hr-integration")).expect("token file");
    let request = http::Request::builder()
        .method("POST")
        .uri("/jml.v1.Lifecycle/SubmitEvent")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body))))
        .map_err(|e| e.to_string())?;
    let response = channel.oneshot(request).await.map_err(|e| format!("transport: {e}"))?;
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    let status = headers
        .get("grpc-status")
        .or_else(|| collected.trailers().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    status.ok_or_else(|| format!("no grpc-status (headers {headers:?})"))
}

fn raw_body(hex: &str) -> Vec<u8> {
    match hex {
        "GEN:oversized-message" => {
            let size: usize = 5 * 1024 * 1024;
            let mut message = vec![0x0a];
            let mut length = size;
            while length >= 0x80 {
                message.push((length as u8 & 0x7f) | 0x80);
                length >>= 7;
            }
            message.push(length as u8);
            message.resize(message.len() + size, b'a');
            let mut frame = vec![0];
            frame.extend_from_slice(&u32::try_from(message.len()).expect("u32").to_be_bytes());
            frame.extend(message);
            frame
        }
        "GEN:many-frames" => [0u8, 0, 0, 0, 2, 0x0a, 0].repeat(1000),
        hex => (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect(),
    }
}

/// Every mesh process is still running (not exited, not a zombie).
fn assert_alive(mesh: &Mesh) {
    for (name, pid) in mesh.process_ids() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("gone");
        assert!(!["gone", "Z", "X"].contains(&state), "{name} (pid {pid}) is no longer running: state {state}");
    }
}

/// The corpus test checks that no account appeared on any target without a
/// verified task: the other test of this file, which creates accounts, must
/// not run beside it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hostile_corpus_gets_typed_errors_and_changes_nothing_else() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let corpus: Vec<Value> = serde_json::from_str(CORPUS).expect("the corpus is JSON");
    assert!(corpus.len() >= 200, "the corpus holds {} entries", corpus.len());
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let options = MeshOptions { max_attempts: 2, base_backoff_ms: 100, ..MeshOptions::default() };
    let mesh = Mesh::start("hostile", options).await.expect("the mesh starts");
    let before = snapshot(&targets).await;
    let channel = mesh.channel().await.expect("a TLS channel to the coordinator");
    let mut client = LifecycleClient::new(channel.clone());
    let mut wrong = Vec::new();
    let mut accepted = Vec::new();

    for (n, entry) in corpus.iter().enumerate() {
        let name = entry["name"].as_str().unwrap_or_default();
        match entry["kind"].as_str().unwrap_or_default() {
            "raw" => match send_raw(channel.clone(), &mesh, raw_body(entry["hex"].as_str().expect("hex"))).await {
                Ok(status) if status != 0 && status != 2 => {}
                Ok(status) => wrong.push(format!("{name}: grpc-status {status} (want a typed error)")),
                Err(error) => wrong.push(format!("{name}: {error}")),
            },
            "event" => {
                let event = hostile_event(entry, &mesh.run_id, n);
                let token = entry["token"].as_str().unwrap_or("hr-integration");
                let result = submit(&mut client, &mesh, event, token).await;
                match (entry["expect"].as_str().expect("expect"), result) {
                    ("handled", Ok(receipt)) => accepted.push(receipt.event_id),
                    ("handled", Err(status)) if status.code() == tonic::Code::InvalidArgument => {}
                    (expect, Err(status)) if expect != "handled" && status.code() == code(expect) => {
                        if status.message().is_empty() {
                            wrong.push(format!("{name}: {expect} without a message"));
                        }
                    }
                    (expect, Ok(receipt)) => {
                        wrong.push(format!("{name}: accepted as {} (want {expect})", receipt.event_id));
                        // Still followed, so what it did on the targets is accounted for.
                        accepted.push(receipt.event_id);
                    }
                    (expect, Err(status)) => wrong.push(format!("{name}: {status:?} (want {expect})")),
                }
            }
            "replay" => {
                let person = Person::new(&mesh.run_id, 9999, "Sales");
                let id = format!("{}-replayed", mesh.run_id);
                let first = submit(&mut client, &mesh, person.event(&id, pb::EventKind::Joiner), "hr-integration")
                    .await
                    .expect("the original event");
                assert!(!first.duplicate);
                accepted.push(id.clone());
                let again = submit(&mut client, &mesh, person.event(&id, pb::EventKind::Joiner), "hr-integration")
                    .await
                    .expect("the same event again");
                let mut changed = person.event(&id, pb::EventKind::Mover);
                changed.attributes.insert("department".into(), "Engineering".into());
                let altered =
                    submit(&mut client, &mesh, changed, "hr-integration").await.expect("same id, new content");
                for (how, receipt) in [("replayed", &again), ("altered", &altered)] {
                    if !receipt.duplicate || receipt.plan_hash != first.plan_hash {
                        wrong.push(format!(
                            "{name}: the {how} event was not answered with the first receipt: {receipt:?}"
                        ));
                    }
                }
                let by_approver = submit(&mut client, &mesh, person.event(&id, pb::EventKind::Joiner), "alice").await;
                if by_approver.as_ref().map_err(tonic::Status::code).err() != Some(tonic::Code::PermissionDenied) {
                    wrong.push(format!("{name}: replayed by an approver: {by_approver:?}"));
                }
            }
            // Sent to the SCIM endpoint by crates/coordinator/tests/scim_inbound.rs.
            "scim" => {}
            other => panic!("unknown corpus entry kind {other}"),
        }
    }
    assert_alive(&mesh);

    let statuses = mesh.wait_finished(&accepted, Duration::from_secs(150)).await.expect("accepted events finish");
    assert_alive(&mesh);
    let after = snapshot(&targets).await;

    // What verified is what may be new; what failed must have left nothing.
    let mut verified: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for status in statuses.values() {
        for task in &status.tasks {
            let account = task.desired.as_ref().and_then(|d| d.account.as_ref()).map(|a| a.account_name.to_lowercase());
            let account = account.unwrap_or_default();
            let target = TARGET_IDS.into_iter().find(|t| *t == task.target_id).expect("a known target");
            match pb::TaskState::try_from(task.state) {
                Ok(pb::TaskState::Verified) => {
                    verified.entry(target).or_default().insert(account);
                }
                Ok(pb::TaskState::Failed | pb::TaskState::Superseded) => {
                    if after.targets[target].contains_key(&account) {
                        wrong.push(format!(
                            "{} on {target}: {} but the target shows {account:?} (half-applied): {}",
                            status.event_id,
                            state_name(task.state),
                            task.last_error
                        ));
                    }
                }
                _ => wrong.push(format!("{} on {target}: left {}", status.event_id, state_name(task.state))),
            }
        }
    }
    for (target, accounts) in &before.targets {
        let now = &after.targets[target];
        for (name, shown) in accounts {
            match now.get(name) {
                None => wrong.push(format!("{target}: {name:?} disappeared")),
                Some(now_shown) if now_shown != shown => {
                    wrong.push(format!("{target}: {name:?} changed from {shown} to {now_shown}"))
                }
                Some(_) => {}
            }
        }
        let allowed = verified.get(target).cloned().unwrap_or_default();
        for name in now.keys().filter(|name| !accounts.contains_key(*name)) {
            if !allowed.contains(name) {
                wrong.push(format!("{target}: {name:?} appeared without a verified task"));
            }
        }
    }
    let new_dns: BTreeSet<&String> =
        after.ldap_entries.keys().filter(|dn| !before.ldap_entries.contains_key(*dn)).collect();
    let new_uids = after.targets["ldap"].len() - before.targets["ldap"].len();
    if new_dns.len() != new_uids {
        wrong.push(format!("ldap: {} new entries for {new_uids} new accounts: {new_dns:?}", new_dns.len()));
    }
    for (dn, members) in &before.ldap_entries {
        let Some(now) = after.ldap_entries.get(dn) else { continue };
        for member in members.difference(now) {
            wrong.push(format!("ldap: {member} was removed from {dn}"));
        }
        for member in now.difference(members) {
            if !new_dns.contains(member) {
                wrong.push(format!("ldap: {member}, not a new account, was added to {dn}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} corpus entries misbehaved:\n{}", wrong.len(), corpus.len(), wrong.join("\n"));
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}

/// `name` with its digits swapped for the letters they look like (`0` → `O`,
/// `1` → `l`): the same UTS #39 skeleton, every character ASCII, so every
/// target's naming rule accepts it and only the collision check can refuse it.
fn look_alike(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '0' => 'O',
            '1' => 'l',
            other => other,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_colliding_by_case_or_look_alike_are_refused_before_anything_is_written() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mesh = Mesh::start("names", MeshOptions::default()).await.expect("the mesh starts");
    let mut client = mesh.client().await.expect("a client of the coordinator");

    // Ada holds her names on every target.
    let ada = Person::new(&mesh.run_id, 1, "Sales");
    let joined = mesh.submit(ada.event(&format!("{}-ada", mesh.run_id), pb::EventKind::Joiner)).await.expect("joiner");
    let statuses =
        mesh.wait_finished(std::slice::from_ref(&joined.event_id), Duration::from_secs(120)).await.expect("finished");
    assert_eq!(
        statuses[&joined.event_id].state,
        pb::EventState::Verified as i32,
        "Ada's joiner verifies: {:?}",
        statuses[&joined.event_id]
    );

    // Two other people whose usernames slapd would show as Ada's: one in
    // capitals (slapd compares uid case-insensitively), one that looks the
    // same (`0` for `O`, `1` for `l`: slapd declares that look-alikes collide).
    let upper = ada.username.to_uppercase();
    let alike = look_alike(&ada.username);
    assert_ne!(alike, ada.username, "the username has digits to swap");
    for (n, username, how) in [(2, upper, "ignoring case"), (3, alike, "look alike")] {
        let mut other = Person::new(&mesh.run_id, n, "Sales");
        other.username = username.clone();
        let event = other.event(&format!("{}-other-{n}", mesh.run_id), pb::EventKind::Joiner);
        let refused = client
            .submit_event(pb::SubmitEventRequest { event: Some(event.clone()) })
            .await
            .expect_err("a colliding name is refused at submit");
        assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
        let message = refused.message();
        assert!(
            message.contains("target ldap") && message.contains(&ada.username) && message.contains(how),
            "the refusal names the target, the name it collides with and how: {message}"
        );
        // Nothing was recorded or written anywhere: slapd, scim2-server, moto
        // and RustyVault read with their own clients.
        let status = client.get_event(pb::GetEventRequest { event_id: event.event_id.clone() }).await;
        assert_eq!(status.map_err(|s| s.code()).err(), Some(tonic::Code::NotFound), "no event was recorded");
        let ada_on_ldap = targets.ldap.account(&ada.username).await.expect("ldap").expect("Ada's entry");
        assert!(!ada_on_ldap.locked, "Ada's account is untouched");
        for entry in targets.ldap.accounts(&username).await.expect("ldap") {
            assert_eq!(entry.dn, ada_on_ldap.dn, "slapd holds no entry for {username:?} but Ada's");
        }
        assert!(targets.scim.account(&other.email).await.expect("scim").is_none(), "no SCIM user");
        if username.to_lowercase() != ada.username {
            assert!(targets.iam.account(&username).await.expect("iam").is_none(), "no IAM user {username}");
            assert!(targets.vault.user(&username.to_lowercase()).await.expect("vault").is_none(), "no Vault user");
        }
    }

    // Ada's own later events keep her name.
    let mut moved = ada.event(&format!("{}-ada-mover", mesh.run_id), pb::EventKind::Mover);
    moved.attributes.insert("title".into(), "Manager".into());
    let mover = mesh.submit(moved).await.expect("Ada's mover is accepted under her own name");
    let statuses =
        mesh.wait_finished(std::slice::from_ref(&mover.event_id), Duration::from_secs(120)).await.expect("finished");
    assert_eq!(statuses[&mover.event_id].state, pb::EventState::Verified as i32, "{:?}", statuses[&mover.event_id]);
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}
