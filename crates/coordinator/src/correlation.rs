//! Correlation: matching accounts that existed before the mesh (they carry no
//! correlation key) to people, and naming every listed account's situation.
//!
//! - A target's `correlation:` policy block holds an ordered list of rules,
//!   each "the target attribute A equals the template T over the person's
//!   identity record" (`{person_id}` is the person's id; a rule without
//!   `equals` uses the target's `account_name` template). Values compare
//!   case-insensitively; empty values never match.
//! - The first rule that yields exactly one person decides: the account is
//!   *unlinked* to that person. When no rule yields exactly one but one
//!   yields several, the account is *disputed*; when none yields anyone it
//!   is *unmatched* (an orphan). An account correlating to a person who
//!   already has an account on the target (linked, or another correlated
//!   one) is *disputed* as well. Disputed accounts are never linked
//!   automatically.
//! - Accounts carrying a key are *linked* (a known person's key) or *foreign
//!   key* (a key no identity record knows). A key starting with
//!   [`UNMATCHED_KEY_PREFIX`] is the mesh's custody key of an unmatched
//!   account it disabled (`on_unmatched: disable`): such an account is
//!   counted *unmatched*.
//! - The index of the rules' values over every identity record is built once
//!   per run ([`CorrelationIndex`]), so a listed page is correlated by
//!   lookups, never by scanning the identities.
//!
//! Correlation values are data: they are looked up in a map, never placed in
//! a filter; a connector reports them (`ListRequest.correlation_attributes`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jml_contract::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{PolicyIssue, TargetSpec, placeholders, render};

/// The correlation attribute every connector supplies: the account name.
pub const ACCOUNT_NAME: &str = "account_name";
/// The key the mesh writes on an unmatched account it takes into custody to
/// disable it: `unmatched:<digest of target and account name>`.
pub const UNMATCHED_KEY_PREFIX: &str = "unmatched:";

/// A target's `correlation:` block.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationSpec {
    /// Ordered rules; the first yielding exactly one person decides.
    pub rules: Vec<CorrelationRule>,
    /// `manual` (default): unlinked accounts are reported and linked by an
    /// admin (`jmlctl reconcile --link`); `correlated`: remediating runs
    /// link every unlinked (never a disputed) account themselves. Needs
    /// `reconcile.action: remediate`.
    #[serde(default)]
    pub adopt: Adopt,
    /// `report` (default): unmatched accounts are reported; `disable`:
    /// remediating runs disable them, strip their entitlements and revoke
    /// their credentials (never delete). Needs `reconcile.action: remediate`.
    #[serde(default)]
    pub on_unmatched: OnUnmatched,
}

/// One correlation rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationRule {
    /// The target attribute (one the connector's `Describe` lists in
    /// `correlation_attributes`, or `account_name`).
    pub attribute: String,
    /// A template over the person's identity record (`{person_id}` is the
    /// person's id) the attribute must equal, case-insensitively. Absent:
    /// the target's `account_name` template.
    #[serde(default)]
    pub equals: Option<String>,
}

impl CorrelationRule {
    /// The template this rule renders for a person.
    pub fn template<'a>(&'a self, target: &'a TargetSpec) -> &'a str {
        self.equals.as_deref().unwrap_or(&target.account_name)
    }

    /// The rule in words, as reports and audit records name it.
    pub fn describe(&self, index: usize, target: &TargetSpec) -> String {
        format!("rules[{index}]: {} equals {}", self.attribute, self.template(target))
    }
}

/// Whether correlated accounts are linked automatically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adopt {
    /// Only an admin links.
    #[default]
    Manual,
    /// Remediating runs link unlinked accounts.
    Correlated,
}

/// What remediating runs do with unmatched accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnmatched {
    /// Report them.
    #[default]
    Report,
    /// Disable, strip and revoke them (never delete).
    Disable,
}

/// Checks a target's correlation block against the rest of the policy:
/// rules present, attributes named, templates over the source of truth's
/// attributes (or `person_id`) with at least one placeholder, and automatic
/// actions only where the target's reconciliation may remediate.
pub fn check_spec(
    path: &str,
    target: &TargetSpec,
    source_attributes: &BTreeSet<&str>,
    issue: &mut dyn FnMut(String, String),
) {
    let Some(spec) = &target.correlation else { return };
    if spec.rules.is_empty() {
        issue(format!("{path}.correlation.rules"), "at least one rule is required".into());
    }
    for (index, rule) in spec.rules.iter().enumerate() {
        let rule_path = format!("{path}.correlation.rules[{index}]");
        if rule.attribute.trim().is_empty() || rule.attribute.chars().any(char::is_control) {
            issue(format!("{rule_path}.attribute"), "must name a target attribute".into());
        }
        let field = if rule.equals.is_some() { "equals" } else { "attribute" };
        match placeholders(rule.template(target)) {
            Err(message) => issue(format!("{rule_path}.{field}"), message),
            Ok(names) if names.is_empty() => issue(
                format!("{rule_path}.equals"),
                "must name at least one attribute: a constant would correlate every account to every person".into(),
            ),
            Ok(names) => {
                for name in names {
                    if name != "person_id" && !source_attributes.contains(name.as_str()) {
                        issue(
                            format!("{rule_path}.{field}"),
                            format!("placeholder {{{name}}} names no attribute of the source of truth (nor person_id)"),
                        );
                    }
                }
            }
        }
    }
    let remediates = target.reconcile.as_ref().is_some_and(|r| r.action == crate::policy::ReconcileAction::Remediate);
    if spec.adopt == Adopt::Correlated && !remediates {
        issue(
            format!("{path}.correlation.adopt"),
            "`correlated` links only in remediating runs: set reconcile.action: remediate on this target".into(),
        );
    }
    if spec.on_unmatched == OnUnmatched::Disable && !remediates {
        issue(
            format!("{path}.correlation.on_unmatched"),
            "`disable` acts only in remediating runs: set reconcile.action: remediate on this target".into(),
        );
    }
}

/// Checks a target's correlation block against its connector's `Describe`:
/// every rule's attribute must be one the connector can supply, the
/// connector must list its whole scope, and automatic linking or disabling
/// needs `link`. `path` is the target's path in the policy (`targets[i]`).
pub fn check_against_describe(
    path: &str,
    spec: &CorrelationSpec,
    description: &pb::DescribeResponse,
) -> Vec<PolicyIssue> {
    let mut issues = Vec::new();
    let caps = description.capabilities.unwrap_or_default();
    if !caps.scope_listing {
        issues.push(PolicyIssue {
            path: format!("{path}.correlation"),
            message: format!(
                "the {} connector of target {:?} does not list its whole scope (capability scope_listing): \
                 accounts without a key are invisible to it",
                description.connector_kind, description.target_id
            ),
        });
    }
    for (index, rule) in spec.rules.iter().enumerate() {
        if rule.attribute != ACCOUNT_NAME && !description.correlation_attributes.contains(&rule.attribute) {
            let mut supplied = vec![ACCOUNT_NAME.to_owned()];
            supplied.extend(description.correlation_attributes.iter().cloned());
            issues.push(PolicyIssue {
                path: format!("{path}.correlation.rules[{index}].attribute"),
                message: format!(
                    "the connector of target {:?} cannot supply {:?} (it supplies: {})",
                    description.target_id,
                    rule.attribute,
                    supplied.join(", ")
                ),
            });
        }
    }
    if (spec.adopt == Adopt::Correlated || spec.on_unmatched == OnUnmatched::Disable) && !caps.link {
        issues.push(PolicyIssue {
            path: format!("{path}.correlation"),
            message: format!(
                "the connector of target {:?} cannot link accounts (capability link)",
                description.target_id
            ),
        });
    }
    issues
}

/// The situation of one listed account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Situation {
    /// Carries the key of a known person.
    Linked,
    /// No key; exactly one person correlates.
    Unlinked,
    /// No key; no person correlates (an orphan).
    Unmatched,
    /// Several persons correlate, or several accounts to one person.
    Disputed,
    /// Carries a key no identity record knows.
    ForeignKey,
}

impl Situation {
    /// Every situation.
    pub const ALL: [Situation; 5] = [Self::Linked, Self::Unlinked, Self::Unmatched, Self::Disputed, Self::ForeignKey];

    /// A stable name for metrics labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Unlinked => "unlinked",
            Self::Unmatched => "unmatched",
            Self::Disputed => "disputed",
            Self::ForeignKey => "foreign_key",
        }
    }
}

/// What the rules say of one account without a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// Rule `rule` yields exactly this person.
    One {
        /// The person.
        person_id: Arc<str>,
        /// The deciding rule's index.
        rule: usize,
    },
    /// No rule yields exactly one person; rule `rule` (the first to yield
    /// any) yields these.
    Several {
        /// The persons, sorted.
        person_ids: Vec<Arc<str>>,
        /// The rule's index.
        rule: usize,
    },
    /// No rule yields anyone.
    Nobody,
}

/// The rules' rendered values over every identity record: value
/// (lower-cased) -> the persons it renders for, one map per rule.
#[derive(Debug, Default)]
pub struct CorrelationIndex {
    attributes: Vec<String>,
    templates: Vec<String>,
    values: Vec<HashMap<String, Vec<Arc<str>>>>,
}

fn normalise(value: &str) -> String {
    value.to_lowercase()
}

impl CorrelationIndex {
    /// An empty index for `spec`'s rules on `target`.
    pub fn new(spec: &CorrelationSpec, target: &TargetSpec) -> Self {
        Self {
            attributes: spec.rules.iter().map(|r| r.attribute.clone()).collect(),
            templates: spec.rules.iter().map(|r| r.template(target).to_owned()).collect(),
            values: spec.rules.iter().map(|_| HashMap::new()).collect(),
        }
    }

    /// The distinct target attributes the rules read, for `ListRequest`.
    pub fn requested_attributes(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.attributes.iter().filter(|a| seen.insert(a.as_str())).cloned().collect()
    }

    /// Adds one person. A rule whose template names an attribute the person
    /// lacks (or renders empty) gives no value for that person.
    pub fn add(&mut self, person_id: &str, attributes: &BTreeMap<String, String>) {
        let person: Arc<str> = Arc::from(person_id);
        let mut with_id = None;
        for (index, template) in self.templates.iter().enumerate() {
            let rendered = if template.contains("{person_id}") {
                let attributes = with_id.get_or_insert_with(|| {
                    let mut all = attributes.clone();
                    all.insert("person_id".to_owned(), person_id.to_owned());
                    all
                });
                render(template, attributes)
            } else {
                render(template, attributes)
            };
            let Ok(value) = rendered else { continue };
            if value.trim().is_empty() {
                continue;
            }
            let persons = self.values[index].entry(normalise(&value)).or_default();
            if !persons.contains(&person) {
                persons.push(person.clone());
            }
        }
    }

    /// Correlates one account by its reported correlation attributes.
    pub fn correlate(&self, state: &pb::AccountState) -> Correlation {
        let mut several: Option<Correlation> = None;
        for (index, attribute) in self.attributes.iter().enumerate() {
            let Some(reported) = state.correlation_attributes.get(attribute) else { continue };
            let mut persons: BTreeSet<Arc<str>> = BTreeSet::new();
            for value in reported.split('\n').filter(|v| !v.trim().is_empty()) {
                if let Some(found) = self.values[index].get(&normalise(value)) {
                    persons.extend(found.iter().cloned());
                }
            }
            match persons.len() {
                0 => {}
                1 => {
                    let person_id = persons.into_iter().next().unwrap_or_else(|| Arc::from(""));
                    return Correlation::One { person_id, rule: index };
                }
                _ => {
                    if several.is_none() {
                        several = Some(Correlation::Several { person_ids: persons.into_iter().collect(), rule: index });
                    }
                }
            }
        }
        several.unwrap_or(Correlation::Nobody)
    }
}

/// One listed account's situation, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The situation.
    pub situation: Situation,
    /// The account's name on the target.
    pub account_name: String,
    /// The person: the key carried (linked, foreign key) or the one person
    /// correlated (unlinked); empty otherwise.
    pub person_id: String,
    /// The persons correlated (disputed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// The rule that decided, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Whether the account holds a privileged entitlement (ranks first).
    pub privileged: bool,
    /// Whether the account is enabled.
    pub enabled: bool,
    /// Entitlements held.
    pub entitlements: usize,
    /// Disabled, stripped and without credentials (an unmatched account
    /// contained: counted, not drift).
    pub contained: bool,
    /// The account's fingerprint as listed: what `--link` checks.
    pub fingerprint: String,
    /// The account as listed (kept for linking; not in the report).
    #[serde(skip)]
    pub state: Option<Box<pb::AccountState>>,
}

impl Finding {
    /// A finding for `state` in `situation`.
    pub fn new(situation: Situation, state: &pb::AccountState, person_id: &str) -> Self {
        Self {
            situation,
            account_name: state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default(),
            person_id: person_id.to_owned(),
            candidates: Vec::new(),
            rule: None,
            privileged: state.entitlements.iter().any(|e| e.privileged),
            enabled: state.enabled,
            entitlements: state.entitlements.len(),
            contained: reconciliation::is_contained_orphan(state),
            fingerprint: state.fingerprint.clone(),
            state: None,
        }
    }

    /// Whether this finding makes the run unclean.
    pub fn is_drift(&self) -> bool {
        match self.situation {
            Situation::Linked | Situation::ForeignKey => false,
            Situation::Unmatched => !self.contained,
            Situation::Unlinked | Situation::Disputed => true,
        }
    }
}

/// Counts of one run, by situation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SituationCounts {
    /// By situation name.
    pub by_situation: BTreeMap<&'static str, u64>,
}

impl SituationCounts {
    /// Every situation at zero.
    pub fn new() -> Self {
        Self { by_situation: Situation::ALL.iter().map(|s| (s.as_str(), 0)).collect() }
    }

    /// Counts one account.
    pub fn add(&mut self, situation: Situation) {
        *self.by_situation.entry(situation.as_str()).or_default() += 1;
    }
}

/// The custody key the mesh writes on the unmatched account `account_name`
/// of `target_id` before disabling it.
pub fn unmatched_key(target_id: &str, account_name: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{target_id}\n{}", account_name.to_lowercase()).as_bytes()));
    format!("{UNMATCHED_KEY_PREFIX}{}", &digest[..32])
}

/// The desired state of a link: the account exactly as listed (its enabled
/// flag and entitlements; no attribute named, so none is touched;
/// credentials kept) under `person_id`, so that the link writes the key and
/// nothing else. The account converges to the person's plan afterwards,
/// through the engine.
pub fn link_desired(state: &pb::AccountState, person_id: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef {
            person_id: person_id.to_owned(),
            account_name: state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default(),
        }),
        presence: pb::Presence::Present as i32,
        enabled: state.enabled,
        attributes: BTreeMap::new(),
        entitlements: state.entitlements.clone(),
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

/// Marks as disputed every unlinked finding whose person already has an
/// account on the target, or several correlated accounts. `linked` are the
/// persons whose key the listing showed.
pub fn dispute_duplicates(findings: &mut [Finding], linked: &BTreeSet<String>) {
    let mut per_person: HashMap<String, usize> = HashMap::new();
    for finding in findings.iter().filter(|f| f.situation == Situation::Unlinked) {
        *per_person.entry(finding.person_id.clone()).or_default() += 1;
    }
    for finding in findings.iter_mut().filter(|f| f.situation == Situation::Unlinked) {
        let several = per_person.get(&finding.person_id).copied().unwrap_or(0) > 1;
        if several || linked.contains(&finding.person_id) {
            finding.situation = Situation::Disputed;
            finding.candidates = vec![finding.person_id.clone()];
            let why = if several {
                "several accounts correlate to this person"
            } else {
                "this person already has a linked account on the target"
            };
            finding.rule = Some(format!("{} ({why})", finding.rule.clone().unwrap_or_default()));
            finding.person_id.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(account_name: &str) -> TargetSpec {
        serde_yaml_ng::from_str(&format!(
            "{{ id: ldap, endpoint: \"http://127.0.0.1:1\", account_name: \"{account_name}\", insecure_plaintext: true }}"
        ))
        .expect("target parses")
    }

    fn spec(rules: &[(&str, Option<&str>)]) -> CorrelationSpec {
        CorrelationSpec {
            rules: rules
                .iter()
                .map(|(attribute, equals)| CorrelationRule {
                    attribute: (*attribute).into(),
                    equals: equals.map(str::to_owned),
                })
                .collect(),
            adopt: Adopt::Manual,
            on_unmatched: OnUnmatched::Report,
        }
    }

    fn account(values: &[(&str, &str)]) -> pb::AccountState {
        pb::AccountState {
            account: Some(pb::AccountRef { person_id: String::new(), account_name: "x".into() }),
            exists: true,
            correlation_attributes: values.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ..Default::default()
        }
    }

    fn attrs(values: &[(&str, &str)]) -> BTreeMap<String, String> {
        values.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn first_rule_with_exactly_one_person_decides() {
        let target = target("{username}");
        let mut index = CorrelationIndex::new(&spec(&[("mail", Some("{email}")), ("account_name", None)]), &target);
        index.add("p1", &attrs(&[("email", "Ann@Example.org"), ("username", "ann")]));
        index.add("p2", &attrs(&[("email", "shared@example.org"), ("username", "bob")]));
        index.add("p3", &attrs(&[("email", "shared@example.org"), ("username", "carl")]));
        let one = |p: &str, rule| Correlation::One { person_id: Arc::from(p), rule };
        assert_eq!(index.correlate(&account(&[("mail", "ann@example.ORG")])), one("p1", 0));
        assert_eq!(index.correlate(&account(&[("mail", "nobody@x"), ("account_name", "BOB")])), one("p2", 1));
        // The shared mail yields two; the name then decides.
        assert_eq!(
            index.correlate(&account(&[("mail", "shared@example.org"), ("account_name", "carl")])),
            one("p3", 1)
        );
        assert_eq!(
            index.correlate(&account(&[("mail", "shared@example.org")])),
            Correlation::Several { person_ids: vec![Arc::from("p2"), Arc::from("p3")], rule: 0 }
        );
        assert_eq!(index.correlate(&account(&[("mail", "")])), Correlation::Nobody);
        assert_eq!(index.correlate(&account(&[])), Correlation::Nobody);
    }

    #[test]
    fn hostile_and_empty_values_are_data() {
        let target = target("{username}");
        let mut index = CorrelationIndex::new(&spec(&[("mail", Some("{email}"))]), &target);
        index.add("p1", &attrs(&[("email", "a@x")]));
        index.add("p2", &attrs(&[("email", "")]));
        index.add("p3", &attrs(&[]));
        for hostile in ["*", "*)(mail=*", "a@x\")(|(uid=*", "\" or userName pr or \""] {
            assert_eq!(index.correlate(&account(&[("mail", hostile)])), Correlation::Nobody, "{hostile}");
        }
        // Several values reported for one attribute: any may match.
        assert_eq!(
            index.correlate(&account(&[("mail", "other@x\nA@X")])),
            Correlation::One { person_id: Arc::from("p1"), rule: 0 }
        );
    }

    #[test]
    fn person_id_template_and_duplicate_accounts() {
        let target = target("{username}");
        let mut index = CorrelationIndex::new(&spec(&[("employeeID", Some("{person_id}"))]), &target);
        index.add("E-1", &attrs(&[]));
        assert_eq!(
            index.correlate(&account(&[("employeeID", "e-1")])),
            Correlation::One { person_id: Arc::from("E-1"), rule: 0 }
        );
        let state = account(&[]);
        let mut findings = vec![
            Finding { person_id: "E-1".into(), ..Finding::new(Situation::Unlinked, &state, "E-1") },
            Finding::new(Situation::Unlinked, &state, "E-1"),
            Finding::new(Situation::Unlinked, &state, "E-2"),
            Finding::new(Situation::Unlinked, &state, "E-3"),
        ];
        dispute_duplicates(&mut findings, &BTreeSet::from(["E-3".to_owned()]));
        let situations: Vec<Situation> = findings.iter().map(|f| f.situation).collect();
        assert_eq!(situations, [Situation::Disputed, Situation::Disputed, Situation::Unlinked, Situation::Disputed]);
    }

    #[test]
    fn unmatched_keys_are_stable_and_valid_person_ids() {
        let key = unmatched_key("ldap", "Rogue");
        assert_eq!(key, unmatched_key("ldap", "rogue"));
        assert_ne!(key, unmatched_key("scim", "rogue"));
        assert!(key.starts_with(UNMATCHED_KEY_PREFIX) && key.len() < 64);
    }
}
