//! Shared by the SCIM connector's integration tests and its benchmark: where
//! the real service provider is (from `deploy/local/scim.sh start`), a direct
//! SCIM client that bypasses the connector (fixtures, backdoor edits and
//! independent checks of what the target shows), and the conformance target.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::conformance::{Backdoor, ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_scim::target::filter_string;
use connector_scim::{AuthConfig, ScimConfig, ScimConnector, SecretSource};
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// The groups the conformance fixture uses; the last is privileged.
pub const GROUPS: [&str; 4] = ["jml-cf-staff", "jml-cf-engineering", "jml-cf-sales", "jml-cf-admins"];
/// The privileged group.
pub const PRIVILEGED_GROUP: &str = "jml-cf-admins";

/// The service provider's base URL and token file, from the environment.
pub struct ScimEnv {
    /// `JML_TEST_SCIM_URL`.
    pub url: String,
    /// `JML_TEST_SCIM_TOKEN_FILE`.
    pub token_file: String,
}

/// Reads the environment `deploy/local/scim.sh start` writes; fails loudly when absent.
pub fn scim_env() -> ScimEnv {
    let read = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: start the real SCIM server with `deploy/local/scim.sh start RUN_DIR` and \
                 `source RUN_DIR/scim.env` (or run .ci/run)"
            )
        })
    };
    ScimEnv { url: read("JML_TEST_SCIM_URL"), token_file: read("JML_TEST_SCIM_TOKEN_FILE") }
}

/// The connector configuration for the test server.
pub fn config(env: &ScimEnv) -> ScimConfig {
    let mut config = ScimConfig::new(
        env.url.clone(),
        AuthConfig::Bearer { token: SecretSource { file: Some(env.token_file.clone().into()), env: None } },
    );
    config.target_id = "scim-test".into();
    config.allow_plaintext_http = true;
    config.privileged_groups = vec![PRIVILEGED_GROUP.into()];
    config
}

/// A SCIM client independent of the connector.
#[derive(Clone)]
pub struct Direct {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Direct {
    /// A client of the test server.
    pub fn new(env: &ScimEnv) -> Self {
        let token = std::fs::read_to_string(&env.token_file).expect("token file").trim().to_owned();
        Self { http: reqwest::Client::new(), base: env.url.trim_end_matches('/').to_owned(), token }
    }

    async fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, String)], body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Accept", "application/scim+json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/scim+json").body(body.to_string());
        }
        let response = request.send().await.expect("SCIM request");
        let status = response.status();
        let text = response.text().await.expect("SCIM body");
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("SCIM JSON") }
    }

    /// GET with a query.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Value {
        self.call(reqwest::Method::GET, path, query, None).await
    }

    /// POST a resource.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, &[], Some(body)).await
    }

    /// PATCH a resource.
    pub async fn patch(&self, path: &str, operations: Value) -> Value {
        let body = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations });
        self.call(reqwest::Method::PATCH, path, &[], Some(body)).await
    }

    /// DELETE a resource.
    pub async fn delete(&self, path: &str) {
        self.call(reqwest::Method::DELETE, path, &[], None).await;
    }

    /// The group named `name`, created when missing.
    pub async fn ensure_group(&self, name: &str) -> String {
        if let Some(id) = self.group_id(name).await {
            return id;
        }
        let created = self
            .post("/Groups", json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name }))
            .await;
        created["id"].as_str().expect("group id").to_owned()
    }

    /// The id of the group named `name`.
    pub async fn group_id(&self, name: &str) -> Option<String> {
        let found = self.get("/Groups", &[("filter", format!("displayName eq {}", filter_string(name)))]).await;
        found["Resources"].as_array().and_then(|r| r.first()).and_then(|g| g["id"].as_str()).map(str::to_owned)
    }

    /// The user named `name`, whole.
    pub async fn user_named(&self, name: &str) -> Option<Value> {
        let found = self.get("/Users", &[("filter", format!("userName eq {}", filter_string(name)))]).await;
        found["Resources"].as_array().and_then(|r| r.first()).cloned()
    }

    /// Every resource of `endpoint`, paged by cursor.
    pub async fn all(&self, endpoint: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(endpoint, &[("cursor", cursor.clone()), ("count", "500".into())]).await;
            out.extend(page["Resources"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = next.to_owned(),
                _ => return out,
            }
        }
    }

    /// What the target holds: every user by id (whole, `meta.version`
    /// included), and every group's members by group id.
    pub async fn snapshot(&self) -> (BTreeMap<String, Value>, BTreeMap<String, BTreeSet<String>>) {
        let users =
            self.all("/Users").await.into_iter().map(|u| (u["id"].as_str().unwrap_or("").to_owned(), u)).collect();
        let groups = self
            .all("/Groups")
            .await
            .into_iter()
            .map(|g| {
                let members = g["members"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                (g["id"].as_str().unwrap_or("").to_owned(), members)
            })
            .collect();
        (users, groups)
    }
}

static GROUPS_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Creates the fixture's groups once per test process.
pub async fn ensure_groups(direct: &Direct) {
    GROUPS_READY
        .get_or_init(|| async {
            for name in GROUPS {
                direct.ensure_group(name).await;
            }
        })
        .await;
}

/// Grants a group directly on the target, as an ad hoc edit would.
struct ScimBackdoor(Direct);

impl Backdoor for ScimBackdoor {
    fn grant_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        entitlement: &'a pb::Entitlement,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let user = self.0.user_named(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such user"))?;
            let user_id = user["id"].as_str().ok_or_else(|| anyhow::anyhow!("user without id"))?.to_owned();
            let group = self.0.group_id(&entitlement.id).await.ok_or_else(|| anyhow::anyhow!("no such group"))?;
            self.0
                .patch(
                    &format!("/Groups/{group}"),
                    json!([{ "op": "add", "path": "members", "value": [{ "value": user_id }] }]),
                )
                .await;
            Ok(())
        })
    }

    fn set_attribute_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.set_attribute(account, attribute, value)
    }

    fn set_enabled_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        enabled: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.patch_user(account, json!([{ "op": "replace", "path": "active", "value": enabled }]))
    }

    fn set_person_id_directly<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        person_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.patch_user(account, json!([{ "op": "replace", "path": "externalId", "value": person_id }]))
    }

    fn delete_directly<'a>(&'a self, account: &'a pb::AccountRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let user = self.0.user_named(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such user"))?;
            let user_id = user["id"].as_str().ok_or_else(|| anyhow::anyhow!("user without id"))?.to_owned();
            self.0.delete(&format!("/Users/{user_id}")).await;
            Ok(())
        })
    }

    fn create_untagged<'a>(&'a self, account_name: &'a str, mail: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            self.0
                .post(
                    "/Users",
                    json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": account_name,
                        "emails": [{ "value": mail, "type": "work" }],
                        "active": true,
                    }),
                )
                .await;
            Ok(true)
        })
    }

    fn delete_untagged<'a>(&'a self, account_name: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(user) = self.0.user_named(account_name).await
                && let Some(id) = user["id"].as_str()
            {
                self.0.delete(&format!("/Users/{id}")).await;
            }
            Ok(())
        })
    }
}

impl ScimBackdoor {
    /// PATCHes the user named like the account, directly.
    fn patch_user<'a>(&'a self, account: &'a pb::AccountRef, operations: Value) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let user = self.0.user_named(&account.account_name).await.ok_or_else(|| anyhow::anyhow!("no such user"))?;
            let user_id = user["id"].as_str().ok_or_else(|| anyhow::anyhow!("user without id"))?.to_owned();
            self.0.patch(&format!("/Users/{user_id}"), operations).await;
            Ok(())
        })
    }
}

/// The SCIM attribute path of a contract attribute the connector manages.
fn scim_path(attribute: &str) -> Option<&'static str> {
    Some(match attribute {
        "display_name" => "displayName",
        "given_name" => "name.givenName",
        "family_name" => "name.familyName",
        "mail" => "emails[type eq \"work\"].value",
        "title" => "title",
        "department" => "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "employee_number" => "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        _ => return None,
    })
}

impl ScimBackdoor {
    fn set_attribute<'a>(
        &'a self,
        account: &'a pb::AccountRef,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        match scim_path(attribute) {
            Some(path) => self.patch_user(account, json!([{ "op": "replace", "path": path, "value": value }])),
            None => Box::pin(async move { anyhow::bail!("attribute {attribute} has no SCIM path here") }),
        }
    }
}

fn group(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: "group".into(), id: id.into(), privileged: id == PRIVILEGED_GROUP }
}

/// The connector served over real gRPC on loopback against the real
/// `scim2-server`, with the conformance fixture.
pub async fn conformance_target() -> ConformanceTarget {
    let env = scim_env();
    let direct = Direct::new(&env);
    ensure_groups(&direct).await;
    let connector = ScimConnector::new(&config(&env)).expect("connector");
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let fixture = Fixture {
        attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Person {name}")),
                ("mail".into(), format!("{name}@Example.org")),
                ("family_name".into(), "Family".into()),
            ])
        }),
        changed_attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Moved {name}")),
                ("mail".into(), String::new()),
                ("title".into(), "Engineer".into()),
                ("department".into(), "R&D".into()),
            ])
        }),
        entitlements: GROUPS.iter().map(|g| group(g)).collect(),
        hostile_attribute: Some("display_name".into()),
        list_accounts: 40,
        list_page_size: 7,
        backdoor: Some(Arc::new(ScimBackdoor(direct))),
        ..Fixture::default()
    };
    ConformanceTarget { client, fixture, guard: Some(Box::new(server)) }
}
