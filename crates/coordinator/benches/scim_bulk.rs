//! SCIM `/Bulk` benchmark: time to accepted of one `/Bulk` request of
//! `--records` (default 1,000) `POST /Users` (joiners), sent over HTTP on
//! loopback to the coordinator's SCIM endpoint, against a baseline measured
//! in the same run: the same number of records through
//! [`coordinator::ingest::Ingest::submit_state`] called in process one by
//! one (what each Bulk operation runs, without HTTP and JSON), and through
//! [`coordinator::ingest::Ingest::submit_batch`] (the `SubmitStates` rpc's
//! path). Fresh persons each time, `--runs` (default 3) runs, medians.
//!
//! The coordinator is in process on SQLite with one in-memory reference
//! connector; no workflow grants anything, so the joiners plan no task and
//! only acceptance is measured (derive, plan, record, answer). The endpoint
//! is plaintext with the development-mode principal header (TLS costs one
//! handshake per request, not per record).
//!
//! `cargo bench -p coordinator --bench scim_bulk -- [--records N] [--runs R]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::auth::Authentication;
use coordinator::ingest::state::{Employment, SourceRecord};
use coordinator::ingest::{Batch, Ingest};
use coordinator::scim_inbound::{RunningScim, ScimOptions};
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn record(id: &str) -> SourceRecord {
    SourceRecord {
        person_id: id.into(),
        source_system: "workday".into(),
        attributes: BTreeMap::from([
            ("username".into(), id.to_lowercase()),
            ("display_name".into(), format!("Person {id}")),
            ("email".into(), format!("{}@example.org", id.to_lowercase())),
            ("department".into(), "Sales".into()),
        ]),
        employment_status: "active".into(),
        employment: Employment::Active,
        hire_at: None,
        terminated_at: None,
        changed_at: None,
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records = arg("--records", 1000);
    let runs = arg("--runs", 3).max(1);
    let dir = tempfile::tempdir()?;
    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(MemoryConnector::new("ldap", target)).bind("127.0.0.1:0".parse()?).await?;
    let policy = Policy::parse(&format!(
        r#"
version: 1
source_of_truth:
  system: workday
  attributes: [username, display_name, email, department]
  scim:
    person_id: externalId
    attributes: {{ username: userName, display_name: displayName, email: emails.value, department: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department" }}
targets:
  - {{ id: ldap, endpoint: "{}", insecure_plaintext: true, account_name: "{{username}}", concurrency: 16 }}
workflows:
  - {{ name: none, owner: it@example.org, trigger: {{ events: [joiner, mover], when: {{ department: Nowhere }} }}, grants: {{ ldap: [ {{ kind: group, id: staff }} ] }} }}
"#,
        server.endpoint()
    ))?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    let engine = Engine::start(store, Arc::new(policy), EngineConfig::default()).await?;
    let ingest = Ingest::new(engine.clone());
    let options = ScimOptions { max_body: 64 * 1024 * 1024, max_bulk_operations: records.max(1) };
    let scim = RunningScim::bind("127.0.0.1:0".parse()?, engine, None, Authentication::InsecureHeader, options).await?;
    let http = reqwest::Client::new();
    let url = format!("http://{}/Bulk", scim.local_addr());
    println!("{records} records per request, {runs} runs (release build: cargo bench)");
    let (mut single, mut batch, mut bulk) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let started = Instant::now();
        for i in 0..records {
            ingest.submit_state(record(&format!("A{run}X{i:06}")), "hr-bench").await?;
        }
        single.push(started.elapsed());

        let all = (0..records).map(|i| record(&format!("B{run}X{i:06}"))).collect();
        let started = Instant::now();
        let response = ingest
            .submit_batch(Batch { records: all, source_system: "workday".into(), ..Batch::default() }, "hr-bench")
            .await?;
        batch.push(started.elapsed());
        assert_eq!(response.counts.unwrap_or_default().joiners, records as u64);

        let operations: Vec<serde_json::Value> = (0..records)
            .map(|i| {
                let id = format!("C{run}X{i:06}");
                json!({"method": "POST", "path": "/Users", "bulkId": id, "data": {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "externalId": id, "userName": id.to_lowercase(), "displayName": format!("Person {id}"),
                    "emails": [{"value": format!("{}@example.org", id.to_lowercase()), "primary": true}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}}})
            })
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations})
            .to_string();
        let started = Instant::now();
        let response = http
            .post(&url)
            .header("content-type", "application/scim+json")
            .header("x-jml-principal", "hr-bench")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        bulk.push(started.elapsed());
        let created =
            answer["Operations"].as_array().map_or(0, |ops| ops.iter().filter(|o| o["status"] == "201").count());
        assert!(status.is_success() && created == records, "{status}: {created} of {records} created");
        println!(
            "run {run}: submit_state x{records} {:.2} s, submit_batch {:.2} s, SCIM /Bulk {:.2} s",
            single[run].as_secs_f64(),
            batch[run].as_secs_f64(),
            bulk[run].as_secs_f64()
        );
    }
    let (single, batch, bulk) = (median(single), median(batch), median(bulk));
    println!(
        "median: SCIM /Bulk of {records} accepted in {:.2} s ({:.0} records/s); baseline submit_state one by one {:.2} s (ratio {:.2}), submit_batch {:.2} s (ratio {:.2})",
        bulk.as_secs_f64(),
        records as f64 / bulk.as_secs_f64(),
        single.as_secs_f64(),
        bulk.as_secs_f64() / single.as_secs_f64(),
        batch.as_secs_f64(),
        bulk.as_secs_f64() / batch.as_secs_f64(),
    );
    scim.shutdown().await;
    Ok(())
}
