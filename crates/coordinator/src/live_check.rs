//! The policy checked against the connectors it names: each target's
//! `Describe` is fetched and the policy is refused when it grants an
//! entitlement kind, or manages an attribute, that the connector does not
//! declare, or asks for an owned-identity action (`owned_identities`) its
//! connector does not declare. Run at coordinator start (a policy the targets cannot honour is
//! never loaded) and by `jmlctl policy check --live`; each issue names the
//! policy path, the target and what its connector declares instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use connector_kit::ConnectorError;
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::tls::ClientTlsFiles;
use jml_contract::v1 as pb;

use crate::policy::{Policy, PolicyIssue, TargetSpec};

/// The client of one target's connector, as the engine and this check build it.
pub fn connector_client(target: &TargetSpec, call_timeout: Duration) -> Result<ConnectorClient, ConnectorError> {
    let tls = target.tls.as_ref().map(|tls| ClientTlsFiles {
        server_ca: tls.ca.clone(),
        server_name: tls.server_name.clone(),
        identity: tls.cert.clone().zip(tls.key.clone()),
    });
    let options = ClientOptions {
        call_timeout,
        concurrency_limit: target.concurrency.max(1) * 2,
        tls,
        ..ClientOptions::default()
    };
    ConnectorClient::connect(&target.endpoint, options)
}

/// What the policy asks of one target that its connector does not declare.
pub fn check_target(policy: &Policy, target_id: &str, description: &pb::DescribeResponse) -> Vec<PolicyIssue> {
    let mut issues = Vec::new();
    let kinds: Vec<&str> = description.entitlement_kinds.iter().map(|k| k.kind.as_str()).collect();
    let attributes: Vec<&str> = description.attributes.iter().map(|a| a.name.as_str()).collect();
    let connector = format!("connector {:?} of target {target_id}", description.connector_kind);
    if let Some((index, target)) = policy.file.targets.iter().enumerate().find(|(_, t)| t.id == target_id) {
        for name in target.attributes.keys() {
            if !attributes.contains(&name.as_str()) {
                issues.push(PolicyIssue {
                    path: format!("targets[{index}].attributes.{name}"),
                    message: format!(
                        "{connector} does not manage attribute {name:?}; it declares: {}",
                        list(&attributes)
                    ),
                });
            }
        }
    }
    for (index, workflow) in policy.file.workflows.iter().enumerate() {
        for (position, grant) in workflow.grants.get(target_id).into_iter().flatten().enumerate() {
            if !kinds.contains(&grant.kind.as_str()) {
                issues.push(PolicyIssue {
                    path: format!("workflows[{index}].grants.{target_id}[{position}].kind"),
                    message: format!(
                        "{connector} does not manage entitlement kind {:?}; it declares: {}",
                        grant.kind,
                        list(&kinds)
                    ),
                });
            }
        }
    }
    issues.extend(crate::owned::check_connector(policy, target_id, description));
    issues
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// Every target's `Describe`, each retried until `patience` has passed (a
/// connector starting at the same time); a target still unreachable then
/// keeps its last error.
pub async fn describe_all(
    policy: &Policy,
    call_timeout: Duration,
    patience: Duration,
) -> BTreeMap<String, Result<pb::DescribeResponse, String>> {
    let started = Instant::now();
    let checks = policy.file.targets.iter().map(|target| async move {
        let client = match connector_client(target, call_timeout) {
            Ok(client) => client,
            Err(error) => return (target.id.clone(), Err(error.to_string())),
        };
        loop {
            match client.describe().await {
                Ok(description) => return (target.id.clone(), Ok(description)),
                Err(error) if started.elapsed() >= patience => return (target.id.clone(), Err(error.to_string())),
                Err(error) => {
                    tracing::info!(target = %target.id, %error, "waiting for the connector's Describe");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    futures::future::join_all(checks).await.into_iter().collect()
}

/// The policy checked against every connector it names: an unreachable
/// connector is an issue too (what cannot be checked is not trusted).
pub async fn check_live(policy: &Policy, call_timeout: Duration, patience: Duration) -> Vec<PolicyIssue> {
    let mut issues = Vec::new();
    let descriptions = describe_all(policy, call_timeout, patience).await;
    for (index, target) in policy.file.targets.iter().enumerate() {
        match descriptions.get(&target.id) {
            Some(Ok(description)) => issues.extend(check_target(policy, &target.id, description)),
            Some(Err(error)) => issues.push(PolicyIssue {
                path: format!("targets[{index}].endpoint"),
                message: format!("the connector of target {} could not be described: {error}", target.id),
            }),
            None => {}
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version: 1
source_of_truth: { system: hr, attributes: [username, email] }
targets:
  - { id: scim, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true, attributes: { mail: "{email}", shoe_size: "{email}" } }
workflows:
  - name: staff
    owner: it@example.org
    trigger: { events: [joiner] }
    grants:
      scim: [ { kind: group, id: staff }, { kind: role, id: admin } ]
"#;

    #[test]
    fn undeclared_kinds_and_attributes_are_named_with_their_path() {
        let policy = Policy::parse(POLICY).expect("policy parses");
        let description = pb::DescribeResponse {
            connector_kind: "scim".into(),
            entitlement_kinds: vec![pb::EntitlementKind { kind: "group".into(), comparison: 0 }],
            attributes: vec![pb::AttributeSpec { name: "mail".into(), comparison: 0, required: false }],
            ..Default::default()
        };
        let issues: Vec<String> = check_target(&policy, "scim", &description).iter().map(ToString::to_string).collect();
        assert_eq!(
            issues,
            [
                "targets[0].attributes.shoe_size: connector \"scim\" of target scim does not manage attribute \"shoe_size\"; it declares: mail",
                "workflows[0].grants.scim[1].kind: connector \"scim\" of target scim does not manage entitlement kind \"role\"; it declares: group",
            ]
        );
    }
}
