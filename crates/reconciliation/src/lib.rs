//! Reconciliation: is the access a target shows the access policy expects?
//!
//! - [`classify`] compares one account's expected state (from the planner,
//!   over the coordinator's identity records) with what the target shows and
//!   names each [`Drift`] with its [`DriftClass`] and [`Severity`].
//! - [`Reconciliation`] runs the comparison over a whole target in bounded
//!   memory: the actual side is the connector's `List` stream, consumed a page
//!   at a time; the expected side is looked up per page by person id; only
//!   the set of person ids seen is kept, so that expected accounts the target
//!   lacks can be reported at the end.
//!
//! The same planner produces the expected state for events and for
//! reconciliation, so the two cannot disagree.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use connector_kit::contract as pb;
use connector_kit::readback::{Difference, compare};
use serde::Serialize;

/// What kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// A leaver's account still enabled, holding access or credentials: a
    /// failed deprovisioning. The most severe class.
    ShouldBeDisabled,
    /// The target holds an entitlement policy does not grant (an ad hoc edit).
    ExcessEntitlement,
    /// An account managed by the connector that belongs to no known identity.
    OrphanAccount,
    /// An expected account does not exist on the target.
    MissingAccount,
    /// An expected entitlement is missing.
    MissingEntitlement,
    /// A managed attribute (or the enabled flag of an active person) differs.
    AttributeDrift,
}

impl DriftClass {
    /// Every class, most severe first.
    pub const ALL: [DriftClass; 6] = [
        Self::ShouldBeDisabled,
        Self::ExcessEntitlement,
        Self::OrphanAccount,
        Self::MissingAccount,
        Self::MissingEntitlement,
        Self::AttributeDrift,
    ];

    /// A stable name for metrics labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShouldBeDisabled => "should_be_disabled",
            Self::ExcessEntitlement => "excess_entitlement",
            Self::OrphanAccount => "orphan_account",
            Self::MissingAccount => "missing_account",
            Self::MissingEntitlement => "missing_entitlement",
            Self::AttributeDrift => "attribute_drift",
        }
    }
}

impl fmt::Display for DriftClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a drift is. Ordered: `Critical` is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Cosmetic or self-healing (attribute drift, missing non-privileged access).
    Low,
    /// Access that should not be there, not privileged.
    Medium,
    /// Privileged access that should not be there, or a privileged orphan.
    High,
    /// A failed deprovisioning.
    Critical,
}

/// One drift on one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The person, or the correlation key found on an orphan account.
    pub person_id: String,
    /// The account's name on the target.
    pub account_name: String,
    /// The class.
    pub class: DriftClass,
    /// Whether privileged access is involved; privileged variants rank above.
    pub privileged: bool,
    /// How urgent.
    pub severity: Severity,
    /// What differs, in words (never a secret).
    pub detail: String,
}

fn severity(class: DriftClass, privileged: bool) -> Severity {
    match (class, privileged) {
        (DriftClass::ShouldBeDisabled, _) => Severity::Critical,
        (DriftClass::ExcessEntitlement | DriftClass::OrphanAccount, true) => Severity::High,
        (DriftClass::ExcessEntitlement | DriftClass::OrphanAccount, false) => Severity::Medium,
        (DriftClass::MissingEntitlement | DriftClass::MissingAccount, true) => Severity::Medium,
        _ => Severity::Low,
    }
}

fn drift(account: &pb::AccountRef, class: DriftClass, privileged: bool, detail: String) -> Drift {
    Drift {
        person_id: account.person_id.clone(),
        account_name: account.account_name.clone(),
        class,
        privileged,
        severity: severity(class, privileged),
        detail,
    }
}

/// Whether the account holds a privileged entitlement, managed or not.
fn holds_privileged(state: &pb::AccountState) -> bool {
    state.entitlements.iter().chain(&state.unmanaged_entitlements).any(|e| e.privileged)
}

/// Whether an expected state is a leaver's: absent, or present but disabled
/// with every credential revoked.
pub fn is_leaver_state(expected: &pb::DesiredAccount) -> bool {
    expected.presence == pb::Presence::Absent as i32
        || (!expected.enabled && expected.credentials == pb::CredentialAction::RevokeAll as i32)
}

/// Whether an orphan account is already contained: disabled, holding no
/// entitlement and no privileged unmanaged one, no active credential, and
/// nothing unreadable. That is the end state policy wants for an orphan
/// (disabled, never deleted), so it is counted, not drift.
pub fn is_contained_orphan(state: &pb::AccountState) -> bool {
    !state.enabled
        && state.entitlements.is_empty()
        && !holds_privileged(state)
        && state.unreadable.is_empty()
        && state.credentials.as_ref().is_none_or(|credentials| credentials.active.is_empty())
}

/// Classifies the drift of one account. `expected` is `None` for an account
/// the target holds that no identity accounts for (an orphan); `actual` is
/// `None` (or not existing) when the target lacks it.
pub fn classify(
    description: &pb::DescribeResponse,
    expected: Option<&pb::DesiredAccount>,
    actual: Option<&pb::AccountState>,
) -> Vec<Drift> {
    let actual = actual.filter(|state| state.exists);
    match (expected, actual) {
        (None, None) => Vec::new(),
        (None, Some(state)) if is_contained_orphan(state) => Vec::new(),
        (None, Some(state)) => {
            let account = state.account.clone().unwrap_or_default();
            vec![drift(
                &account,
                DriftClass::OrphanAccount,
                holds_privileged(state),
                format!(
                    "managed account with no identity ({} entitlements, {})",
                    state.entitlements.len(),
                    if state.enabled { "enabled" } else { "disabled" }
                ),
            )]
        }
        (Some(expected), None) => {
            if expected.presence == pb::Presence::Absent as i32 || !expected.enabled {
                return Vec::new();
            }
            let account = expected.account.clone().unwrap_or_default();
            let privileged = expected.entitlements.iter().any(|e| e.privileged);
            vec![drift(&account, DriftClass::MissingAccount, privileged, "expected account does not exist".into())]
        }
        (Some(expected), Some(state)) => {
            // Owned non-human identities (#20) are the leaver task's to prove
            // (its read-back); `List` does not enumerate them.
            let expected = &pb::DesiredAccount { owned_identities: None, ..expected.clone() };
            let account = expected.account.clone().unwrap_or_default();
            if is_leaver_state(expected) {
                let differences = compare(description, expected, state);
                if differences.is_empty() || differences.iter().all(|d| *d == Difference::CredentialsUnproven) {
                    return Vec::new();
                }
                let detail = differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                return vec![drift(&account, DriftClass::ShouldBeDisabled, holds_privileged(state), detail)];
            }
            let privileged_ids: BTreeMap<(&str, &str), bool> = state
                .entitlements
                .iter()
                .chain(expected.entitlements.iter())
                .map(|e| ((e.kind.as_str(), e.id.as_str()), e.privileged))
                .collect();
            let is_privileged = |kind: &str, id: &str| privileged_ids.get(&(kind, id)).copied().unwrap_or(false);
            compare(description, expected, state)
                .into_iter()
                .filter_map(|difference| {
                    let detail = difference.to_string();
                    match &difference {
                        Difference::ExcessEntitlement { kind, id } => {
                            Some(drift(&account, DriftClass::ExcessEntitlement, is_privileged(kind, id), detail))
                        }
                        Difference::MissingEntitlement { kind, id } => {
                            Some(drift(&account, DriftClass::MissingEntitlement, is_privileged(kind, id), detail))
                        }
                        Difference::PrivilegedUnmanaged { .. } => {
                            Some(drift(&account, DriftClass::ExcessEntitlement, true, detail))
                        }
                        Difference::Attribute { .. }
                        | Difference::Enabled { .. }
                        | Difference::AccountName { .. }
                        | Difference::PersonId { .. }
                        | Difference::Unreadable { .. } => {
                            Some(drift(&account, DriftClass::AttributeDrift, false, detail))
                        }
                        Difference::Existence { .. } => {
                            Some(drift(&account, DriftClass::MissingAccount, false, detail))
                        }
                        Difference::CredentialsRemain { .. }
                        | Difference::CredentialsUnproven
                        | Difference::OwnedIdentity { .. } => None,
                    }
                })
                .collect()
        }
    }
}

/// Counts of one run, by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftCounts {
    /// Accounts the target listed.
    pub accounts_listed: u64,
    /// Accounts expected on the target.
    pub accounts_expected: u64,
    /// Drift found, by class name.
    pub by_class: BTreeMap<&'static str, u64>,
    /// Enabled accounts of people who left.
    pub stale_accounts: u64,
    /// Orphan accounts already disabled and stripped (not drift).
    pub contained_orphans: u64,
}

impl DriftCounts {
    /// Whether the run found no drift.
    pub fn is_clean(&self) -> bool {
        self.by_class.values().all(|count| *count == 0)
    }
}

/// One reconciliation run over one target, fed a page at a time.
///
/// Memory: the set of person ids listed so far (to find missing accounts at
/// the end) and the drift found; never both sides whole.
pub struct Reconciliation {
    description: pb::DescribeResponse,
    seen: HashSet<String>,
    counts: DriftCounts,
}

impl Reconciliation {
    /// A run against a target described by `description`.
    pub fn new(description: pb::DescribeResponse) -> Self {
        let mut counts = DriftCounts::default();
        for class in DriftClass::ALL {
            counts.by_class.insert(class.as_str(), 0);
        }
        Self { description, seen: HashSet::new(), counts }
    }

    fn record(&mut self, drift: &[Drift]) {
        for item in drift {
            *self.counts.by_class.entry(item.class.as_str()).or_default() += 1;
        }
    }

    /// Compares one listed page. `expected` looks up the expected state of
    /// each listed person (`None`: no identity, an orphan).
    pub fn page<'a>(
        &mut self,
        accounts: &'a [pb::AccountState],
        mut expected: impl FnMut(&'a pb::AccountState) -> Option<pb::DesiredAccount>,
    ) -> Vec<Drift> {
        let mut found = Vec::new();
        for state in accounts {
            self.counts.accounts_listed += 1;
            let person_id = state.account.as_ref().map(|a| a.person_id.clone()).unwrap_or_default();
            let want = expected(state);
            if let Some(want) = &want
                && is_leaver_state(want)
                && state.enabled
            {
                self.counts.stale_accounts += 1;
            }
            if want.is_none() && state.exists && is_contained_orphan(state) {
                self.counts.contained_orphans += 1;
            }
            let drift = classify(&self.description, want.as_ref(), Some(state));
            self.record(&drift);
            found.extend(drift);
            self.seen.insert(person_id);
        }
        found
    }

    /// Checks one expected account after the listing: reports it missing if
    /// the target did not list it.
    pub fn expected(&mut self, expected: &pb::DesiredAccount) -> Vec<Drift> {
        if is_leaver_state(expected) && expected.presence == pb::Presence::Absent as i32 {
            return Vec::new();
        }
        if !is_leaver_state(expected) {
            self.counts.accounts_expected += 1;
        }
        let person_id = expected.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
        if self.seen.contains(person_id) {
            return Vec::new();
        }
        let drift = classify(&self.description, Some(expected), None);
        self.record(&drift);
        drift
    }

    /// The counts so far.
    pub fn counts(&self) -> &DriftCounts {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> pb::DescribeResponse {
        pb::DescribeResponse {
            entitlement_kinds: vec![pb::EntitlementKind { kind: "group".into(), comparison: 1 }],
            attributes: vec![pb::AttributeSpec { name: "title".into(), comparison: 1, required: false }],
            capabilities: Some(pb::Capabilities { credential_revocation_verifiable: true, ..Default::default() }),
            ..Default::default()
        }
    }

    fn group(id: &str, privileged: bool) -> pb::Entitlement {
        pb::Entitlement { kind: "group".into(), id: id.into(), privileged }
    }

    fn account(person: &str) -> pb::AccountRef {
        pb::AccountRef { person_id: person.into(), account_name: format!("u-{person}") }
    }

    fn desired(person: &str, groups: Vec<pb::Entitlement>) -> pb::DesiredAccount {
        pb::DesiredAccount {
            account: Some(account(person)),
            presence: pb::Presence::Present as i32,
            enabled: true,
            attributes: [("title".to_string(), "Engineer".to_string())].into(),
            entitlements: groups,
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        }
    }

    fn leaver(person: &str) -> pb::DesiredAccount {
        pb::DesiredAccount {
            enabled: false,
            entitlements: vec![],
            attributes: Default::default(),
            credentials: pb::CredentialAction::RevokeAll as i32,
            ..desired(person, vec![])
        }
    }

    fn actual(person: &str, enabled: bool, groups: Vec<pb::Entitlement>) -> pb::AccountState {
        pb::AccountState {
            account: Some(account(person)),
            exists: true,
            enabled,
            attributes: [("title".to_string(), "Engineer".to_string())].into(),
            entitlements: groups,
            credentials: Some(pb::CredentialState { active: vec![], complete: true, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn matching_account_has_no_drift() {
        let d = desired("p1", vec![group("staff", false)]);
        assert!(classify(&description(), Some(&d), Some(&actual("p1", true, vec![group("staff", false)]))).is_empty());
    }

    #[test]
    fn an_enabled_leaver_is_a_failed_deprovisioning() {
        let drift =
            classify(&description(), Some(&leaver("p1")), Some(&actual("p1", true, vec![group("admins", true)])));
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].class, DriftClass::ShouldBeDisabled);
        assert_eq!(drift[0].severity, Severity::Critical);
        assert!(drift[0].privileged);
        assert!(classify(&description(), Some(&leaver("p1")), Some(&actual("p1", false, vec![]))).is_empty());
    }

    #[test]
    fn a_leaver_in_a_privileged_group_outside_the_managed_scope_is_reported() {
        let mut state = actual("p1", false, vec![]);
        state.unmanaged_entitlements = vec![group("CN=Domain Admins,CN=Users,DC=jml,DC=test", true)];
        let drift = classify(&description(), Some(&leaver("p1")), Some(&state));
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!((drift[0].class, drift[0].severity), (DriftClass::ShouldBeDisabled, Severity::Critical));
        assert!(drift[0].privileged);
        assert!(drift[0].detail.contains("Domain Admins"), "{}", drift[0].detail);
        // An orphan holding it is not contained.
        assert_eq!(classify(&description(), None, Some(&state))[0].class, DriftClass::OrphanAccount);
        // A plain unmanaged group does not hold a leaver back.
        state.unmanaged_entitlements = vec![group("cn=wiki,ou=apps,dc=example,dc=org", false)];
        assert!(classify(&description(), Some(&leaver("p1")), Some(&state)).is_empty());
    }

    #[test]
    fn a_leaver_whose_enabled_flag_cannot_be_read_is_reported() {
        let mut state = actual("p1", false, vec![]);
        state.unreadable = vec![pb::UnreadableField {
            field: "enabled".into(),
            target_attribute: "userAccountControl".into(),
            reason: "not returned to the connector's bind".into(),
        }];
        let drift = classify(&description(), Some(&leaver("p1")), Some(&state));
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].class, DriftClass::ShouldBeDisabled);
        assert!(drift[0].detail.contains("userAccountControl"), "{}", drift[0].detail);
    }

    #[test]
    fn ad_hoc_privileged_grant_ranks_above_a_plain_one() {
        let d = desired("p1", vec![group("staff", false)]);
        let drift = classify(
            &description(),
            Some(&d),
            Some(&actual("p1", true, vec![group("staff", false), group("admins", true), group("wiki", false)])),
        );
        let classes: Vec<(DriftClass, Severity)> = drift.iter().map(|d| (d.class, d.severity)).collect();
        assert_eq!(
            classes,
            vec![(DriftClass::ExcessEntitlement, Severity::High), (DriftClass::ExcessEntitlement, Severity::Medium)]
        );
    }

    #[test]
    fn orphan_missing_account_missing_entitlement_and_attribute_drift() {
        let orphan = classify(&description(), None, Some(&actual("ghost", true, vec![group("admins", true)])));
        assert_eq!((orphan[0].class, orphan[0].severity), (DriftClass::OrphanAccount, Severity::High));
        let disabled_with_access =
            classify(&description(), None, Some(&actual("ghost", false, vec![group("x", false)])));
        assert_eq!(disabled_with_access[0].class, DriftClass::OrphanAccount);
        assert!(classify(&description(), None, Some(&actual("ghost", false, vec![]))).is_empty(), "contained orphan");
        let missing = classify(&description(), Some(&desired("p2", vec![])), None);
        assert_eq!(missing[0].class, DriftClass::MissingAccount);
        let mut state = actual("p3", true, vec![]);
        state.attributes.insert("title".into(), "Manager".into());
        let drift = classify(&description(), Some(&desired("p3", vec![group("staff", false)])), Some(&state));
        let classes: Vec<DriftClass> = drift.iter().map(|d| d.class).collect();
        assert_eq!(classes, vec![DriftClass::AttributeDrift, DriftClass::MissingEntitlement]);
    }

    #[test]
    fn a_run_counts_by_class_and_finds_unlisted_accounts() {
        let mut run = Reconciliation::new(description());
        let expected: BTreeMap<String, pb::DesiredAccount> = [
            ("p1".to_string(), desired("p1", vec![group("staff", false)])),
            ("p2".to_string(), desired("p2", vec![])),
            ("p3".to_string(), leaver("p3")),
        ]
        .into();
        let listed = vec![
            actual("p1", true, vec![group("staff", false)]),
            actual("p3", true, vec![]),
            actual("x", true, vec![]),
        ];
        let drift = run.page(&listed, |state| {
            expected.get(&state.account.as_ref().map(|a| a.person_id.clone()).unwrap_or_default()).cloned()
        });
        assert_eq!(drift.len(), 2, "{drift:?}");
        let mut missing = Vec::new();
        for want in expected.values() {
            missing.extend(run.expected(want));
        }
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].person_id, "p2");
        let counts = run.counts();
        assert_eq!(counts.by_class["should_be_disabled"], 1);
        assert_eq!(counts.by_class["orphan_account"], 1);
        assert_eq!(counts.by_class["missing_account"], 1);
        assert_eq!(counts.stale_accounts, 1);
        assert_eq!(counts.accounts_listed, 3);
        assert!(!counts.is_clean());
    }
}
