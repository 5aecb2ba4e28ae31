//! Benchmark of the SCIM connector against the real `scim2-server`:
//! 1,000 `Apply`+`Read` pairs and a `List` of 10,000 users through the
//! connector over gRPC, each compared with the same SCIM requests sent
//! directly with a plain HTTP client (the ratio is the figure).
//!
//! ```text
//! deploy/local/scim.sh start /tmp/jml-run && source /tmp/jml-run/scim.env
//! CARGO_TARGET_DIR=/work/target-scim cargo bench -p connector-scim --bench scim
//! ```
//!
//! Run only by `cargo bench` (which passes `--bench`); any other invocation
//! returns at once, so `cargo test --all-targets` does not run it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_scim::ScimConnector;
use connector_scim::target::filter_string;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use support::{Direct, GROUPS, config, ensure_groups, scim_env};

const PAIRS: usize = 1_000;
const LIST_USERS: usize = 10_000;
const LIST_PAGE: u32 = 500;
const CONCURRENCY: usize = 8;

fn desired(prefix: &str, n: usize) -> pb::DesiredAccount {
    let name = format!("{prefix}u{n:05}");
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("{prefix}-{n:05}"), account_name: name.clone() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: [
            ("display_name".to_string(), format!("Person {name}")),
            ("mail".to_string(), format!("{name}@example.org")),
        ]
        .into(),
        entitlements: vec![pb::Entitlement { kind: "group".into(), id: GROUPS[0].into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

/// The SCIM requests one connector Apply (a create with one group) and one
/// Read make, sent directly.
async fn direct_pair(direct: &Direct, state: &pb::DesiredAccount) {
    let account = state.account.clone().unwrap_or_default();
    let name = &account.account_name;
    let by_name = [("filter", format!("userName eq {}", filter_string(name))), ("count", "2".to_string())];
    // Apply: resolve the group, look the user up, create it, add the membership.
    let group = direct
        .get(
            "/Groups",
            &[
                ("filter", format!("displayName eq {}", filter_string(GROUPS[0]))),
                ("attributes", "displayName".into()),
                ("startIndex", "1".into()),
                ("count", "2".into()),
            ],
        )
        .await;
    let group_id = group["Resources"][0]["id"].as_str().unwrap_or_default().to_owned();
    direct.get("/Users", &by_name).await;
    let user = direct
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name, "externalId": account.person_id, "active": true,
                "displayName": format!("Person {name}"),
                "emails": [{ "value": format!("{name}@example.org"), "type": "work", "primary": true }],
            }),
        )
        .await;
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    direct
        .patch(
            &format!("/Groups/{group_id}"),
            json!([{ "op": "add", "path": "members", "value": [{ "value": user_id }] }]),
        )
        .await;
    // Read: look the user up, then its groups.
    direct.get("/Users", &by_name).await;
    direct.get("/Groups", &groups_of(&user_id)).await;
}

fn groups_of(user_id: &str) -> [(&'static str, String); 4] {
    [
        ("filter", format!("members[value eq {}]", filter_string(user_id))),
        ("attributes", "displayName".into()),
        ("startIndex", "1".into()),
        ("count", "100".into()),
    ]
}

/// The SCIM requests a connector List makes, sent directly: user pages by
/// cursor, and each user's groups.
async fn direct_list(direct: &Direct) -> usize {
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = direct
            .get(
                "/Users",
                &[("filter", "externalId pr".into()), ("cursor", cursor.clone()), ("count", LIST_PAGE.to_string())],
            )
            .await;
        let users: Vec<Value> = page["Resources"].as_array().cloned().unwrap_or_default();
        seen += futures::stream::iter(users)
            .map(|user| async move {
                let id = user["id"].as_str().unwrap_or_default().to_owned();
                direct.get("/Groups", &groups_of(&id)).await
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .len();
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = next.to_owned(),
            _ => return seen,
        }
    }
}

async fn delete_user_named(direct: &Direct, state: &pb::DesiredAccount) {
    let name = state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
    let Some(user) = direct.user_named(&name).await else { return };
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    let staff = direct.group_id(GROUPS[0]).await.unwrap_or_default();
    direct
        .patch(
            &format!("/Groups/{staff}"),
            json!([{ "op": "remove", "path": format!("members[value eq {}]", filter_string(&id)) }]),
        )
        .await;
    direct.delete(&format!("/Users/{id}")).await;
}

async fn delete_users_with_prefix(direct: &Direct, prefix: &str) {
    let users = direct.all("/Users").await;
    let ids: Vec<String> = users
        .iter()
        .filter(|u| u["userName"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect();
    let staff = direct.group_id(GROUPS[0]).await.unwrap_or_default();
    futures::stream::iter(ids)
        .for_each_concurrent(CONCURRENCY, |id| {
            let staff = staff.clone();
            async move {
                direct
                    .patch(
                        &format!("/Groups/{staff}"),
                        json!([{ "op": "remove", "path": format!("members[value eq {}]", filter_string(&id)) }]),
                    )
                    .await;
                direct.delete(&format!("/Users/{id}")).await;
            }
        })
        .await;
}

fn report(what: &str, connector: Duration, direct: Duration, operations: usize) {
    println!(
        "{what}: connector {:.2} s ({:.2} ms/op), direct {:.2} s ({:.2} ms/op), ratio {:.2}",
        connector.as_secs_f64(),
        connector.as_secs_f64() * 1e3 / operations as f64,
        direct.as_secs_f64(),
        direct.as_secs_f64() * 1e3 / operations as f64,
        connector.as_secs_f64() / direct.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let env = scim_env();
    let direct = Direct::new(&env);
    ensure_groups(&direct).await;
    let connector = ScimConnector::new(&config(&env))?;
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse()?).await?;
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default())?;
    let tag = format!("bn{:06x}", rand::rng().random::<u32>() & 0xff_ffff);

    // 1,000 Apply+Read pairs, sequential, alternating one through the
    // connector over gRPC and one sent directly, so both see the same server
    // state; each pair's user is deleted afterwards, untimed, so the server
    // (which scans users and group members) does not slow down as it fills.
    let mut through_connector = Duration::ZERO;
    let mut sent_directly = Duration::ZERO;
    for n in 0..PAIRS {
        let state = desired(&format!("{tag}c"), n);
        let started = Instant::now();
        client.apply(&format!("{tag}c-{n}"), state.clone()).await?;
        let read = client.read(state.account.clone().unwrap_or_default()).await?;
        through_connector += started.elapsed();
        anyhow::ensure!(read.exists && read.entitlements.len() == 1, "read-back differs");
        delete_user_named(&direct, &state).await;

        let state = desired(&format!("{tag}d"), n);
        let started = Instant::now();
        direct_pair(&direct, &state).await;
        sent_directly += started.elapsed();
        delete_user_named(&direct, &state).await;
    }
    report("1,000 Apply+Read pairs", through_connector, sent_directly, PAIRS);

    // A List of 10,000 users.
    let list_prefix = format!("{tag}l");
    futures::stream::iter(0..LIST_USERS)
        .for_each_concurrent(CONCURRENCY, |n| {
            let direct = &direct;
            let list_prefix = &list_prefix;
            async move {
                let name = format!("{list_prefix}u{n:05}");
                direct
                    .post(
                        "/Users",
                        json!({
                            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": name, "externalId": format!("{list_prefix}-{n:05}"), "active": true,
                            "displayName": format!("Person {name}"),
                        }),
                    )
                    .await;
            }
        })
        .await;
    let started = Instant::now();
    let mut stream = client.list(LIST_PAGE).await?;
    let mut listed = 0usize;
    while let Some(page) = stream.message().await? {
        listed += page
            .accounts
            .iter()
            .filter(|a| a.account.as_ref().is_some_and(|r| r.person_id.starts_with(&list_prefix)))
            .count();
    }
    let through_connector = started.elapsed();
    anyhow::ensure!(listed == LIST_USERS, "List found {listed} of {LIST_USERS}");
    let started = Instant::now();
    let seen = direct_list(&direct).await;
    let sent_directly = started.elapsed();
    anyhow::ensure!(seen >= LIST_USERS, "the direct listing saw {seen}");
    report("List of 10,000 users", through_connector, sent_directly, LIST_USERS);
    delete_users_with_prefix(&direct, &tag).await;
    server.shutdown().await?;
    Ok(())
}
