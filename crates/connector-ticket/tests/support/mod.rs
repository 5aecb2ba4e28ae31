//! Shared by the ticket connector's tests: where the real Request Tracker is
//! (from `deploy/local/rt.sh start`), a REST2 client independent of the
//! connector (to read tickets and to act as fulfillers), and the connector's
//! configuration for it.

#![allow(dead_code)]

use base64::Engine as _;
use connector_ticket::{SecretSource, TicketConfig};
use serde_json::{Value, json};

/// The settings `deploy/local/rt.sh start` writes to `rt.env`.
pub struct RtEnv {
    pub url: String,
    pub queue: String,
    pub user: String,
    pub password_file: String,
    pub admin_user: String,
    pub admin_password: String,
    pub fulfillers: Vec<String>,
    pub fulfiller_password: String,
}

fn read(name: &str) -> String {
    mesh_harness::target_env("rt", name)
}

fn secret(name: &str) -> String {
    std::fs::read_to_string(read(name)).expect("secret file").trim().to_owned()
}

/// Reads the environment; fails loudly when RT is not started.
pub fn rt_env() -> RtEnv {
    RtEnv {
        url: read("JML_TEST_RT_URL"),
        queue: read("JML_TEST_RT_QUEUE"),
        user: read("JML_TEST_RT_USER"),
        password_file: read("JML_TEST_RT_PASSWORD_FILE"),
        admin_user: read("JML_TEST_RT_ADMIN_USER"),
        admin_password: secret("JML_TEST_RT_ADMIN_PASSWORD_FILE"),
        fulfillers: read("JML_TEST_RT_FULFILLERS").split(',').map(str::to_owned).collect(),
        fulfiller_password: secret("JML_TEST_RT_FULFILLER_PASSWORD_FILE"),
    }
}

/// The connector's configuration for the test RT, as target `target_id`.
pub fn config(env: &RtEnv, target_id: &str) -> TicketConfig {
    let mut config = TicketConfig::new(
        target_id,
        env.url.clone(),
        env.queue.clone(),
        env.user.clone(),
        SecretSource { file: Some(env.password_file.clone().into()), env: None },
    );
    config.allow_plaintext_http = true;
    config.request_timeout_secs = 10;
    config
}

/// A random suffix for this run's names.
pub fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A REST2 client signed in as one RT user, independent of the connector.
#[derive(Clone)]
pub struct Rest2 {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Rest2 {
    pub fn new(env: &RtEnv, user: &str, password: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/REST/2.0", env.url),
            user: user.into(),
            password: password.into(),
        }
    }

    /// The first fulfiller.
    pub fn fulfiller(env: &RtEnv, index: usize) -> Self {
        Self::new(env, &env.fulfillers[index], &env.fulfiller_password)
    }

    /// RT's administrator.
    pub fn admin(env: &RtEnv) -> Self {
        Self::new(env, &env.admin_user, &env.admin_password)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("REST2 request");
        let status = response.status();
        let text = response.text().await.expect("REST2 body");
        assert!(status.is_success(), "{method} {path} as {}: {status}: {text}", self.user);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A ticket as REST2 shows it.
    pub async fn ticket(&self, id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/ticket/{id}"), None).await
    }

    /// The text bodies of a ticket's entries, oldest first: (creator, content).
    pub async fn bodies(&self, id: &str) -> Vec<(String, String)> {
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/ticket/{id}/attachments?fields=Creator,ContentType,Filename&per_page=100"),
                None,
            )
            .await;
        let mut out = Vec::new();
        for item in page["items"].as_array().cloned().unwrap_or_default() {
            if item["ContentType"] != "text/plain" || item["Filename"] != "" {
                continue;
            }
            let attachment_id = item["id"].as_str().expect("attachment id").to_owned();
            let full = self.call(reqwest::Method::GET, &format!("/attachment/{attachment_id}"), None).await;
            let content = base64::engine::general_purpose::STANDARD
                .decode(full["Content"].as_str().unwrap_or_default().replace(['\n', '\r'], ""))
                .expect("base64");
            out.push((
                item["Creator"]["id"].as_str().unwrap_or_default().to_owned(),
                String::from_utf8_lossy(&content).into_owned(),
            ));
        }
        out
    }

    /// Comments on a ticket, optionally setting its status and attaching files.
    pub async fn comment(&self, id: &str, content: &str, status: Option<&str>, files: &[(&str, &[u8])]) {
        let mut body = json!({ "Content": content, "ContentType": "text/plain" });
        if let Some(status) = status {
            body["Status"] = json!(status);
        }
        if !files.is_empty() {
            body["Attachments"] = json!(
                files
                    .iter()
                    .map(|(name, bytes)| json!({
                        "FileName": name,
                        "FileType": "text/csv",
                        "FileContent": base64::engine::general_purpose::STANDARD.encode(bytes),
                    }))
                    .collect::<Vec<_>>()
            );
        }
        self.call(reqwest::Method::POST, &format!("/ticket/{id}/comment"), Some(body)).await;
    }

    /// Creates a privileged RT user (as the administrator).
    pub async fn create_user(&self, name: &str, password: &str) {
        self.call(
            reqwest::Method::POST,
            "/user",
            Some(json!({ "Name": name, "Password": password, "Privileged": 1, "EmailAddress": format!("{name}@lifecycle-mesh.test") })),
        )
        .await;
    }
}

/// An attestation text.
pub fn attestation(command_id: &str, account: &str, body: &str) -> String {
    format!("Done in the application.\n\nJML-ATTESTATION v1\ncommand: {command_id}\naccount: {account}\n{body}")
}

/// The attestation of a disabled, stripped account with no credentials left.
pub fn leaver_attestation(command_id: &str, account: &str) -> String {
    attestation(command_id, account, "exists: yes\nenabled: no\nentitlements: none\ncredentials: none\n")
}
