//! Policy as code: the one YAML file declaring the source of truth, the
//! targets and the workflows, and its checker.
//!
//! [`Policy::parse`] reports *every* error it finds, each with its path in the
//! file (`workflows[2].grants.vault[0]: unknown target "vault"`), so
//! `jmlctl policy check` can show them all at once. A policy that parses is
//! consistent: every grant names a known target, every template placeholder
//! names a declared attribute, every approval names a known group, every
//! privileged grant has an approval rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One error in a policy file, with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// Where, e.g. `workflows[2].grants.vault[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// A policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy has errors; every one is listed.
    #[error("policy has {} error(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<PolicyIssue>),
}

/// The source of truth.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOfTruth {
    /// The only system whose events are accepted (e.g. `workday`).
    pub system: String,
    /// The attributes it is authoritative for; events carrying others are
    /// refused, and templates and conditions may name only these.
    pub attributes: Vec<String>,
    /// The mass-change guard of HR ingestion ([`crate::ingest::guard`]): the
    /// most leavers one batch of state submits may make before it is held,
    /// nothing applied, for an admin's approval: a count (`50`) or a share of
    /// the active persons (`"5%"`). Absent: batches are never held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leavers: Option<crate::ingest::guard::MaxLeavers>,
    /// How the SCIM 2.0 service provider (`crate::scim_inbound`) reads a
    /// person's record from a SCIM User: the person id and each source
    /// attribute as a SCIM attribute path. Absent: the SCIM endpoint refuses
    /// every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<crate::scim_inbound::mapping::ScimMapping>,
}

/// TLS towards one connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTls {
    /// The CA the connector's certificate must chain to (PEM file).
    pub ca: PathBuf,
    /// The coordinator's client certificate for mutual TLS (PEM file).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM file).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the connector's certificate must carry.
    pub server_name: String,
}

/// One target: a connector process driving one target instance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The target's id, referenced by workflows (letters, digits, `-_`).
    pub id: String,
    /// The connector's gRPC endpoint (`http://` or `https://`).
    pub endpoint: String,
    /// Default propagation deadline for this target (e.g. `5m`).
    #[serde(default = "default_deadline")]
    pub deadline: String,
    /// The account name on this target, as a template over attributes
    /// (e.g. `"{username}"`).
    pub account_name: String,
    /// Managed attributes: target attribute name -> template.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Leaver retention before deletion (e.g. `30d`): every leaver schedules
    /// the deletion of the account on this target at the leaver's effective
    /// time plus this (`crate::calendar`); a rehire before then cancels it.
    /// The connector must declare delete support (checked against its
    /// `Describe` when the coordinator starts).
    #[serde(default)]
    pub delete_after: Option<String>,
    /// Pre-hire (e.g. `2d`): a joiner dated ahead creates the account on
    /// this target this long before its effective time, disabled, without
    /// entitlements or credentials (`crate::calendar`); the joiner enables
    /// it with its grants at the start. The connector must declare disable
    /// support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prehire: Option<String>,
    /// A leave of absence (`crate::leave`) disables the account and
    /// `strip`s its entitlements (default) or `keep`s them.
    #[serde(default, skip_serializing_if = "LeaveEntitlements::is_default")]
    pub on_leave: LeaveEntitlements,
    /// What a leaver does with the non-human identities (service users,
    /// access keys, AppRoles) the person owns on this target
    /// (`crate::owned`): `transfer` them to the manager (identity attribute
    /// `manager`, which the source of truth must declare), `disable` them,
    /// or only `report` them. Absent: they are not looked at. The connector
    /// must declare the action in `Describe` (checked when the coordinator
    /// starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_identities: Option<OwnedIdentityPolicy>,
    /// TLS towards the connector.
    #[serde(default)]
    pub tls: Option<TargetTls>,
    /// Talk plaintext to the connector (local development only).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Calls in flight to this target at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Slots of `concurrency` kept free for urgent leavers: ordinary work
    /// (joiners, movers, plain leavers) takes at most `concurrency -
    /// urgent_headroom` of them, so an urgent leaver is dispatched at once
    /// whatever the backlog (issue #21). Must be less than `concurrency`.
    #[serde(default)]
    pub urgent_headroom: usize,
    /// Reconciliation of this target: what a run does with drift and how
    /// often the coordinator runs it. Absent: on demand only, report only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileSpec>,
    /// Correlation of accounts without a correlation key (rules, automatic
    /// linking, unmatched accounts); see [`crate::correlation`]. Absent:
    /// such accounts are reported unmatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<crate::correlation::CorrelationSpec>,
}

/// What a reconciliation run does with the drift it finds on a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileAction {
    /// Report the drift (audit, metrics, the report); change nothing.
    #[default]
    Report,
    /// Also push the expected state back through the normal propagation
    /// path (an internal event per drifted account, with the same approval
    /// rules and audit as any event).
    Remediate,
}

/// A target's `reconcile:` block.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSpec {
    /// `report` (default) or `remediate`; applies to scheduled runs and is
    /// the most an on-demand run may do (an on-demand `--remediate` on a
    /// `report` target is refused).
    #[serde(default)]
    pub action: ReconcileAction,
    /// Run on a schedule every this long (e.g. `1h`); absent: on demand only.
    #[serde(default)]
    pub every: Option<String>,
    /// An enabled account whose target reports no change or login for this
    /// long (e.g. `90d`) is counted stale; absent: only leavers' enabled
    /// accounts are.
    #[serde(default)]
    pub stale_after: Option<String>,
}

fn default_deadline() -> String {
    "15m".into()
}

fn default_concurrency() -> usize {
    32
}

/// An event kind a trigger names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKindName {
    /// A joiner (or rehire).
    Joiner,
    /// A mover.
    Mover,
    /// A leaver.
    Leaver,
    /// A rehire (a person who had left comes back): matches the workflows
    /// naming `joiner` as well as those naming `rehire`.
    Rehire,
    /// A leave of absence starts (`crate::leave`); not a trigger.
    Suspension,
    /// A leave of absence ends (`crate::leave`); not a trigger.
    Return,
}

/// What a leave of absence does with a target's entitlements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaveEntitlements {
    /// Remove them; the return grants them again.
    #[default]
    Strip,
    /// Keep them on the disabled account.
    Keep,
}

impl LeaveEntitlements {
    fn is_default(&self) -> bool {
        *self == Self::Strip
    }
}

/// What a leaver does with a target's non-human identities the person owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnedIdentityPolicy {
    /// Make the leaver's manager their owner.
    Transfer,
    /// Make their credentials unusable.
    Disable,
    /// List them in the leaver's status and evidence; change nothing.
    Report,
}

/// A condition on one attribute.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Condition {
    /// The attribute equals this value.
    Equals(String),
    /// The attribute equals one of these values.
    OneOf {
        /// The accepted values.
        #[serde(rename = "in")]
        one_of: Vec<String>,
    },
}

/// When a workflow applies.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event kinds it applies to (joiner and mover; leavers are planned
    /// by the leaver rule, not by workflows).
    pub events: Vec<EventKindName>,
    /// Conditions on attributes; all must hold.
    #[serde(default)]
    pub when: BTreeMap<String, Condition>,
}

/// One grant on one target.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The entitlement kind (`group`, `role`, `policy`, ...).
    pub kind: String,
    /// The entitlement id on the target.
    pub id: String,
    /// Whether it is privileged (needs approval).
    #[serde(default)]
    pub privileged: bool,
}

/// Who must approve.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Distinct approvers needed.
    #[serde(default = "one")]
    pub approvers: u32,
    /// The approver group they must belong to.
    pub group: String,
}

fn one() -> u32 {
    1
}

/// One workflow: birthright access for people matching a trigger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// The workflow's name, unique in the policy.
    pub name: String,
    /// The accountable owner (required).
    pub owner: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// When it applies.
    pub trigger: Trigger,
    /// Grants per target id.
    #[serde(default)]
    pub grants: BTreeMap<String, Vec<Grant>>,
    /// Approval needed for every grant of this workflow. Without it,
    /// privileged grants still need the policy's `default_approval`.
    #[serde(default)]
    pub approval: Option<ApprovalRule>,
    /// Propagation deadline (e.g. `15m`); the stricter of this and the
    /// target's applies.
    #[serde(default)]
    pub deadline: Option<String>,
    /// Pre-hire (e.g. `2d`) on every target this workflow grants on: as a
    /// target's `prehire`; the longest of the target's and its granting
    /// workflows' applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prehire: Option<String>,
}

/// The policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The format version; must be 1.
    pub version: u32,
    /// The source of truth.
    pub source_of_truth: SourceOfTruth,
    /// The targets.
    pub targets: Vec<TargetSpec>,
    /// The workflows.
    #[serde(default)]
    pub workflows: Vec<Workflow>,
    /// Approver groups: group name -> principals.
    #[serde(default)]
    pub approvers: BTreeMap<String, Vec<String>>,
    /// The approval privileged grants need when their workflow has none.
    #[serde(default)]
    pub default_approval: Option<ApprovalRule>,
    /// Recertification campaigns started on a schedule (`crate::campaign`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<crate::campaign::CampaignSpec>,
}

/// A checked policy, ready for the planner.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The parsed file.
    pub file: PolicyFile,
    /// Hex SHA-256 of the policy's canonical JSON form.
    pub hash: String,
    /// Deadline per target id.
    pub target_deadlines: BTreeMap<String, Duration>,
    /// Deadline per workflow name, where set.
    pub workflow_deadlines: BTreeMap<String, Duration>,
}

/// Parses a duration such as `30s`, `5m`, `2h`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{text:?} has no unit (s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a number followed by s, m, h or d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    if number == 0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// The placeholders (`{name}`) of a template, or an error for unbalanced braces.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("unbalanced '}}' in template {template:?}"));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed '{{' in template {template:?}"))?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("empty or nested placeholder in template {template:?}"));
        }
        names.push(name.to_owned());
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Renders a template over attributes; a missing attribute is an error
/// naming it.
pub fn render(template: &str, attributes: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed '{{' in template {template:?}"))?;
        let name = &after[..close];
        match attributes.get(name) {
            Some(value) if !value.is_empty() => out.push_str(value),
            _ => return Err(name.to_owned()),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_identifier(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Deserialises one YAML node, collecting an issue with its full path.
fn typed<T: serde::de::DeserializeOwned>(
    value: serde_yaml_ng::Value,
    path: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(typed) => Some(typed),
        Err(error) => {
            let inner = error.path().to_string();
            let full = match (path.is_empty(), inner == ".") {
                (_, true) => path.to_owned(),
                (true, false) => inner,
                (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
                (false, false) => format!("{path}.{inner}"),
            };
            issues.push(PolicyIssue { path: full, message: error.into_inner().to_string() });
            None
        }
    }
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
        Self::parse(&text)
    }

    /// Parses and checks a policy, reporting every error with its path.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut issues = Vec::new();
        let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| PolicyError::Invalid(vec![PolicyIssue { path: String::new(), message: e.to_string() }]))?;
        let serde_yaml_ng::Value::Mapping(mut root) = root else {
            return Err(PolicyError::Invalid(vec![PolicyIssue {
                path: String::new(),
                message: "the policy must be a mapping".into(),
            }]));
        };
        // Parse list elements one by one so that errors in several elements
        // are all reported.
        let mut take_list = |key: &str, issues: &mut Vec<PolicyIssue>| -> Vec<(usize, serde_yaml_ng::Value)> {
            match root.remove(key) {
                None => Vec::new(),
                Some(serde_yaml_ng::Value::Sequence(items)) => items.into_iter().enumerate().collect(),
                Some(_) => {
                    issues.push(PolicyIssue { path: key.into(), message: "must be a list".into() });
                    Vec::new()
                }
            }
        };
        let raw_targets = take_list("targets", &mut issues);
        let raw_workflows = take_list("workflows", &mut issues);
        // Ids of targets that failed to parse still count as declared, so the
        // workflows naming them are not reported twice.
        let raw_target_ids: BTreeSet<String> = raw_targets
            .iter()
            .filter_map(|(_, v)| v.get("id").and_then(serde_yaml_ng::Value::as_str).map(str::to_owned))
            .collect();
        let targets: Vec<Option<TargetSpec>> =
            raw_targets.into_iter().map(|(i, v)| typed(v, &format!("targets[{i}]"), &mut issues)).collect();
        let workflows: Vec<Option<Workflow>> =
            raw_workflows.into_iter().map(|(i, v)| typed(v, &format!("workflows[{i}]"), &mut issues)).collect();
        let all_parsed = targets.iter().all(Option::is_some) && workflows.iter().all(Option::is_some);
        root.insert("targets".into(), serde_yaml_ng::Value::Sequence(Vec::new()));
        root.insert("workflows".into(), serde_yaml_ng::Value::Sequence(Vec::new()));
        let Some(mut file) = typed::<PolicyFile>(serde_yaml_ng::Value::Mapping(root), "", &mut issues) else {
            return Err(PolicyError::Invalid(issues));
        };
        // Semantic checks run over every part that parsed, so one file shows
        // all its errors at once.
        file.targets = targets.into_iter().flatten().collect();
        file.workflows = workflows.into_iter().flatten().collect();
        let (target_deadlines, workflow_deadlines) = check(&file, &raw_target_ids, &mut issues);
        crate::campaign::check_specs(&file.campaigns, &raw_target_ids, &mut issues);
        if !issues.is_empty() || !all_parsed {
            return Err(PolicyError::Invalid(issues));
        }
        let canonical = serde_json::to_vec(&file).map_err(|e| {
            PolicyError::Invalid(vec![PolicyIssue { path: String::new(), message: format!("cannot encode: {e}") }])
        })?;
        let hash = hex::encode(Sha256::digest(&canonical));
        Ok(Self { file, hash, target_deadlines, workflow_deadlines })
    }

    /// The target with this id.
    pub fn target(&self, id: &str) -> Option<&TargetSpec> {
        self.file.targets.iter().find(|t| t.id == id)
    }

    /// The principals of an approver group.
    pub fn group_members(&self, group: &str) -> &[String] {
        self.file.approvers.get(group).map(Vec::as_slice).unwrap_or_default()
    }
}

type Deadlines = (BTreeMap<String, Duration>, BTreeMap<String, Duration>);

/// The semantic checks, after every part deserialised.
fn check(file: &PolicyFile, declared_targets: &BTreeSet<String>, issues: &mut Vec<PolicyIssue>) -> Deadlines {
    let mut issue = |path: String, message: String| issues.push(PolicyIssue { path, message });
    if file.version != 1 {
        issue("version".into(), format!("unsupported version {} (expected 1)", file.version));
    }
    if file.source_of_truth.system.trim().is_empty() {
        issue("source_of_truth.system".into(), "must not be empty".into());
    }
    let attributes: BTreeSet<&str> = file.source_of_truth.attributes.iter().map(String::as_str).collect();
    for (i, name) in file.source_of_truth.attributes.iter().enumerate() {
        if !crate::event::valid_attribute_name(name) {
            issue(format!("source_of_truth.attributes[{i}]"), format!("invalid attribute name {name:?}"));
        }
    }
    crate::ingest::guard::check_policy(&file.source_of_truth, &mut issue);
    crate::scim_inbound::mapping::check_policy(&file.source_of_truth, &mut issue);
    let check_template =
        |path: String, template: &str, issue: &mut dyn FnMut(String, String)| match placeholders(template) {
            Err(message) => issue(path, message),
            Ok(names) => {
                for name in names {
                    if !attributes.contains(name.as_str()) {
                        issue(
                            path.clone(),
                            format!("placeholder {{{name}}} names no attribute of the source of truth"),
                        );
                    }
                }
            }
        };
    if declared_targets.is_empty() {
        issue("targets".into(), "at least one target is required".into());
    }
    let mut seen_ids = BTreeSet::new();
    let mut target_deadlines = BTreeMap::new();
    for (i, target) in file.targets.iter().enumerate() {
        let path = format!("targets[{i}]");
        if !valid_identifier(&target.id) {
            issue(format!("{path}.id"), format!("invalid target id {:?} (letters, digits, - and _)", target.id));
        }
        if !seen_ids.insert(target.id.as_str()) {
            issue(format!("{path}.id"), format!("duplicate target id {:?}", target.id));
        }
        match target.endpoint.split_once("://") {
            Some(("http", rest)) | Some(("https", rest)) if !rest.is_empty() => {}
            _ => issue(format!("{path}.endpoint"), format!("{:?} is not an http:// or https:// URL", target.endpoint)),
        }
        let https = target.endpoint.starts_with("https://");
        match (&target.tls, target.insecure_plaintext) {
            (Some(_), true) => issue(format!("{path}.tls"), "tls and insecure_plaintext are exclusive".into()),
            (None, false) => {
                issue(format!("{path}.tls"), "required (or set insecure_plaintext: true for local development)".into())
            }
            (Some(tls), false) => {
                if !https {
                    issue(format!("{path}.endpoint"), "must be https:// when tls is set".into());
                }
                if tls.cert.is_some() != tls.key.is_some() {
                    issue(format!("{path}.tls"), "cert and key go together".into());
                }
            }
            (None, true) => {
                if https {
                    issue(format!("{path}.endpoint"), "must be http:// with insecure_plaintext".into());
                }
            }
        }
        match parse_duration(&target.deadline) {
            Ok(deadline) => {
                target_deadlines.insert(target.id.clone(), deadline);
            }
            Err(message) => issue(format!("{path}.deadline"), message),
        }
        if let Some(reconcile) = &target.reconcile {
            for (field, value) in [("every", &reconcile.every), ("stale_after", &reconcile.stale_after)] {
                if let Some(value) = value
                    && let Err(message) = parse_duration(value)
                {
                    issue(format!("{path}.reconcile.{field}"), message);
                }
            }
        }
        for (field, value) in [("delete_after", &target.delete_after), ("prehire", &target.prehire)] {
            if let Some(value) = value
                && let Err(message) = parse_duration(value)
            {
                issue(format!("{path}.{field}"), message);
            }
        }
        if target.owned_identities == Some(OwnedIdentityPolicy::Transfer)
            && !file.source_of_truth.attributes.iter().any(|a| a == crate::owned::MANAGER_ATTRIBUTE)
        {
            issue(
                format!("{path}.owned_identities"),
                format!(
                    "transfer needs the leaver's manager: the source of truth must declare the attribute {:?}",
                    crate::owned::MANAGER_ATTRIBUTE
                ),
            );
        }
        if target.concurrency == 0 {
            issue(format!("{path}.concurrency"), "must be at least 1".into());
        } else if target.urgent_headroom >= target.concurrency {
            issue(
                format!("{path}.urgent_headroom"),
                format!(
                    "must be less than concurrency ({}): ordinary work needs at least one slot",
                    target.concurrency
                ),
            );
        }
        check_template(format!("{path}.account_name"), &target.account_name, &mut issue);
        if placeholders(&target.account_name).map(|p| p.is_empty()).unwrap_or(false) {
            issue(format!("{path}.account_name"), "must name at least one attribute".into());
        }
        for (name, template) in &target.attributes {
            check_template(format!("{path}.attributes.{name}"), template, &mut issue);
        }
        crate::correlation::check_spec(&path, target, &attributes, &mut issue);
    }
    for (group, members) in &file.approvers {
        if members.is_empty() {
            issue(format!("approvers.{group}"), "an approver group needs at least one principal".into());
        }
    }
    let check_rule = |path: String, rule: &ApprovalRule, issue: &mut dyn FnMut(String, String)| match file
        .approvers
        .get(&rule.group)
    {
        None => issue(format!("{path}.group"), format!("unknown approver group {:?}", rule.group)),
        Some(members) => {
            if rule.approvers == 0 {
                issue(format!("{path}.approvers"), "must be at least 1".into());
            } else if rule.approvers as usize > members.len() {
                issue(
                    format!("{path}.approvers"),
                    format!("{} approvers needed but group {:?} has {}", rule.approvers, rule.group, members.len()),
                );
            }
        }
    };
    if let Some(rule) = &file.default_approval {
        check_rule("default_approval".into(), rule, &mut issue);
    }
    let mut workflow_names = BTreeSet::new();
    let mut workflow_deadlines = BTreeMap::new();
    for (i, workflow) in file.workflows.iter().enumerate() {
        let path = format!("workflows[{i}]");
        if workflow.name.trim().is_empty() {
            issue(format!("{path}.name"), "must not be empty".into());
        }
        if !workflow_names.insert(workflow.name.as_str()) {
            issue(format!("{path}.name"), format!("duplicate workflow name {:?}", workflow.name));
        }
        if workflow.owner.trim().is_empty() {
            issue(format!("{path}.owner"), "every workflow needs an accountable owner".into());
        }
        if workflow.trigger.events.is_empty() {
            issue(format!("{path}.trigger.events"), "name at least one event kind".into());
        }
        for (j, kind) in workflow.trigger.events.iter().enumerate() {
            if matches!(kind, EventKindName::Suspension | EventKindName::Return) {
                issue(
                    format!("{path}.trigger.events[{j}]"),
                    "a leave of absence is planned by the leave rule (disable; keep or strip per target's on_leave), not by workflows".into(),
                );
            }
            if *kind == EventKindName::Leaver {
                issue(
                    format!("{path}.trigger.events[{j}]"),
                    "leavers are planned by the leaver rule (disable, remove every entitlement, revoke credentials), not by workflows".into(),
                );
            }
        }
        for name in workflow.trigger.when.keys() {
            if !attributes.contains(name.as_str()) {
                issue(
                    format!("{path}.trigger.when.{name}"),
                    format!("{name:?} is not an attribute of the source of truth"),
                );
            }
        }
        if let Some(rule) = &workflow.approval {
            check_rule(format!("{path}.approval"), rule, &mut issue);
        }
        if let Some(Err(message)) = workflow.prehire.as_deref().map(parse_duration) {
            issue(format!("{path}.prehire"), message);
        }
        match workflow.deadline.as_deref().map(parse_duration) {
            Some(Ok(deadline)) => {
                workflow_deadlines.insert(workflow.name.clone(), deadline);
            }
            Some(Err(message)) => issue(format!("{path}.deadline"), message),
            None => {}
        }
        for (target, grants) in &workflow.grants {
            if grants.is_empty() && !declared_targets.contains(target) {
                issue(format!("{path}.grants.{target}"), format!("unknown target {target:?}"));
            }
            for (j, grant) in grants.iter().enumerate() {
                let grant_path = format!("{path}.grants.{target}[{j}]");
                if !declared_targets.contains(target) {
                    issue(grant_path.clone(), format!("unknown target {target:?}"));
                }
                if grant.kind.trim().is_empty() || grant.id.trim().is_empty() {
                    issue(grant_path.clone(), "kind and id must not be empty".into());
                }
                if grant.privileged && workflow.approval.is_none() && file.default_approval.is_none() {
                    issue(
                        grant_path,
                        "privileged grant needs an approval rule: set the workflow's approval or default_approval"
                            .into(),
                    );
                }
            }
        }
    }
    (target_deadlines, workflow_deadlines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version: 1
source_of_truth: { system: workday, attributes: [username, display_name, email, department] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true,
      attributes: { display_name: "{display_name}", mail: "{email}" } }
workflows:
  - name: eng
    owner: eng-it@example.org
    trigger: { events: [joiner, mover], when: { department: { in: [Engineering, R&D] } } }
    grants: { ldap: [ { kind: group, id: engineering }, { kind: group, id: admins, privileged: true } ] }
    approval: { approvers: 2, group: security }
approvers: { security: [alice, bob, carol] }
"#;

    #[test]
    fn good_policy_parses_with_a_stable_hash() {
        let first = Policy::parse(GOOD).expect("parses");
        let second = Policy::parse(GOOD).expect("parses");
        assert_eq!(first.hash, second.hash);
        assert_eq!(first.hash.len(), 64);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let bad = r#"
version: 1
source_of_truth: { system: workday, attributes: [username] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{user_name}", insecure_plaintext: true, deadline: 5x }
  - { id: scim, endpoint: "http://127.0.0.1:2", account_name: "{username}", insecure_plaintext: true, colour: red }
workflows:
  - name: a
    owner: ""
    trigger: { events: [joiner] }
    grants: { vault: [ { kind: policy, id: p, privileged: true } ] }
"#;
        let PolicyError::Invalid(issues) = Policy::parse(bad).expect_err("invalid") else { panic!("not invalid") };
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.starts_with("targets[1]") && t.contains("colour")), "{text:?}");
        for expected in [
            "targets[0].account_name: placeholder {user_name} names no attribute",
            "targets[0].deadline:",
            "workflows[0].owner:",
            "workflows[0].grants.vault[0]: unknown target \"vault\"",
            "workflows[0].grants.vault[0]: privileged grant needs an approval rule",
        ] {
            assert!(text.iter().any(|t| t.starts_with(expected)), "missing {expected:?} in {text:?}");
        }
    }

    #[test]
    fn durations_and_templates() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        let attributes = BTreeMap::from([("a".to_string(), "x".to_string())]);
        assert_eq!(render("{a}@example.org", &attributes), Ok("x@example.org".into()));
        assert_eq!(render("{b}", &attributes), Err("b".into()));
        assert!(placeholders("{a").is_err());
    }

    #[test]
    fn reconcile_blocks_are_checked() {
        let good = GOOD.replace(
            "insecure_plaintext: true,\n",
            "insecure_plaintext: true, reconcile: { action: remediate, every: 1h, stale_after: 90d },\n",
        );
        let policy = Policy::parse(&good).expect("parses");
        let spec = policy.file.targets[0].reconcile.clone().expect("reconcile block");
        assert_eq!(spec.action, ReconcileAction::Remediate);
        assert_eq!(spec.every.as_deref(), Some("1h"));
        assert_ne!(policy.hash, Policy::parse(GOOD).expect("parses").hash, "the block is part of the policy hash");
        let bad = GOOD.replace(
            "insecure_plaintext: true,\n",
            "insecure_plaintext: true, reconcile: { action: delete, every: soon, stale_after: 0d },\n",
        );
        let PolicyError::Invalid(issues) = Policy::parse(&bad).expect_err("invalid") else { panic!("not invalid") };
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("delete")), "unknown action refused: {text:?}");
        let bad =
            GOOD.replace("insecure_plaintext: true,\n", "insecure_plaintext: true, reconcile: { every: soon },\n");
        let PolicyError::Invalid(issues) = Policy::parse(&bad).expect_err("invalid") else { panic!("not invalid") };
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.starts_with("targets[0].reconcile.every:")), "{text:?}");
    }
}
