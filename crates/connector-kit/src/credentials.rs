//! The credential model every connector declares and the coordinator applies.
//!
//! A connector declares in `Describe`, per credential kind the target has,
//! whether `Read` can enumerate it, whether `REVOKE_ALL` revokes it, and what
//! may outlive a revocation and for how long ([`CredentialKindSpec`]). After
//! a revocation the coordinator proves what can be proven by read-back
//! ([`crate::readback::compare`]) and lists the rest as residual risks
//! ([`residual_risks`]): every kind that may outlive the revocation and whose
//! cut-off the read-back does not show, every kind `Read` cannot enumerate,
//! and whatever the read itself reports (a listing cut short). A task with
//! residual risks is neither verified nor failed: it ends in a state of its
//! own, never retried, since nothing the coordinator can do changes it.

use std::collections::BTreeSet;
use std::time::Duration;

use jml_contract::v1::{
    AccountState, CredentialAction, CredentialKindSpec, CredentialState, DescribeResponse, DesiredAccount,
    ResidualBound, ResidualRisk,
};

/// A declared credential kind.
pub fn kind(name: &str, enumerable: bool, revocable: bool, outlives: Option<ResidualRisk>) -> CredentialKindSpec {
    let outlives_revocation = outlives.map(|mut risk| {
        if risk.credential_kind.is_empty() {
            name.clone_into(&mut risk.credential_kind);
        }
        risk
    });
    CredentialKindSpec { kind: name.to_owned(), enumerable, revocable, outlives_revocation }
}

/// What may stay usable for at most `max_lifetime` after a revocation.
pub fn outlives_for(kind: &str, description: &str, max_lifetime: Duration) -> ResidualRisk {
    ResidualRisk {
        credential_kind: kind.to_owned(),
        description: description.to_owned(),
        bound: ResidualBound::Duration as i32,
        max_lifetime: prost_types::Duration::try_from(max_lifetime).ok(),
    }
}

/// What stays usable until its client closes it.
pub fn outlives_until_closed(kind: &str, description: &str) -> ResidualRisk {
    ResidualRisk {
        credential_kind: kind.to_owned(),
        description: description.to_owned(),
        bound: ResidualBound::UntilClosed as i32,
        max_lifetime: None,
    }
}

/// What may stay usable for a time the target does not say.
pub fn outlives_unknown(kind: &str, description: &str) -> ResidualRisk {
    ResidualRisk {
        credential_kind: kind.to_owned(),
        description: description.to_owned(),
        bound: ResidualBound::Unknown as i32,
        max_lifetime: None,
    }
}

/// Whether `credentials.complete == false` is explained by the connector's
/// own declaration: a declared kind `Read` cannot enumerate, or a residual
/// risk the read reports. An unexplained incomplete read stays a difference.
pub fn incompleteness_declared(description: &DescribeResponse, credentials: &CredentialState) -> bool {
    description.credential_kinds.iter().any(|kind| !kind.enumerable) || !credentials.residual_risks.is_empty()
}

/// The residual risks of a read-back after `desired`: empty unless the
/// desired state revokes every credential. Kinds the read-back shows a
/// cut-off for are proven cut; every other declared kind that may outlive a
/// revocation, or that `Read` cannot enumerate, is a residual risk, and so is
/// every risk the read itself reports. Sorted and without duplicates.
pub fn residual_risks(
    description: &DescribeResponse,
    desired: &DesiredAccount,
    actual: &AccountState,
) -> Vec<ResidualRisk> {
    if desired.credentials != CredentialAction::RevokeAll as i32 {
        return Vec::new();
    }
    let credentials = actual.credentials.clone().unwrap_or_default();
    let cut: BTreeSet<&str> = credentials
        .cutoffs
        .iter()
        .filter(|cutoff| cutoff.issued_before.is_some())
        .map(|cutoff| cutoff.credential_kind.as_str())
        .collect();
    let mut risks = Vec::new();
    for spec in &description.credential_kinds {
        if cut.contains(spec.kind.as_str()) {
            continue;
        }
        if let Some(outlives) = &spec.outlives_revocation {
            let mut risk = outlives.clone();
            if risk.credential_kind.is_empty() {
                risk.credential_kind.clone_from(&spec.kind);
            }
            risks.push(risk);
        } else if !spec.enumerable {
            risks.push(outlives_unknown(
                &spec.kind,
                "cannot be enumerated on this target: whether any remains is unknown",
            ));
        }
    }
    risks.extend(credentials.residual_risks.iter().cloned());
    risks.sort_by(|a, b| (&a.credential_kind, &a.description).cmp(&(&b.credential_kind, &b.description)));
    risks.dedup();
    risks
}

/// One residual risk in plain words: `kind: description (bound)`.
pub fn label(risk: &ResidualRisk) -> String {
    format!("{}: {} ({})", risk.credential_kind, risk.description, bound_label(risk))
}

/// A residual risk's bound in plain words: "up to 36h", "until closed",
/// "unknown".
pub fn bound_label(risk: &ResidualRisk) -> String {
    match ResidualBound::try_from(risk.bound).unwrap_or(ResidualBound::Unknown) {
        ResidualBound::Duration => match &risk.max_lifetime {
            Some(lifetime) => format!("up to {}", human_duration(lifetime.seconds)),
            None => "unknown".to_owned(),
        },
        ResidualBound::UntilClosed => "until closed".to_owned(),
        ResidualBound::Unspecified | ResidualBound::Unknown => "unknown".to_owned(),
    }
}

/// The short name of a bound, for metrics labels: `duration`,
/// `until_closed`, `unknown`.
pub fn bound_name(risk: &ResidualRisk) -> &'static str {
    match ResidualBound::try_from(risk.bound).unwrap_or(ResidualBound::Unknown) {
        ResidualBound::Duration if risk.max_lifetime.is_some() => "duration",
        ResidualBound::UntilClosed => "until_closed",
        _ => "unknown",
    }
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jml_contract::v1::{CredentialCutoff, Presence};

    fn described() -> DescribeResponse {
        DescribeResponse {
            credential_kinds: vec![
                kind("password", true, true, None),
                kind(
                    "sts_session",
                    false,
                    true,
                    Some(outlives_for("", "temporary credentials", Duration::from_secs(36 * 3600))),
                ),
                kind("token", false, true, None),
            ],
            ..DescribeResponse::default()
        }
    }

    fn leaver() -> DesiredAccount {
        DesiredAccount {
            presence: Presence::Present as i32,
            credentials: CredentialAction::RevokeAll as i32,
            ..DesiredAccount::default()
        }
    }

    #[test]
    fn every_declared_survivor_and_unlistable_kind_is_a_risk() {
        let read = AccountState {
            exists: true,
            credentials: Some(CredentialState { complete: false, ..CredentialState::default() }),
            ..AccountState::default()
        };
        let risks = residual_risks(&described(), &leaver(), &read);
        let labels: Vec<String> = risks.iter().map(label).collect();
        assert_eq!(
            labels,
            [
                "sts_session: temporary credentials (up to 36h)",
                "token: cannot be enumerated on this target: whether any remains is unknown (unknown)"
            ]
        );
        assert!(incompleteness_declared(&described(), &read.credentials.unwrap_or_default()));
    }

    #[test]
    fn a_cutoff_read_back_removes_its_kind_and_keep_has_no_risk() {
        let cutoff = CredentialCutoff {
            credential_kind: "sts_session".into(),
            issued_before: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
            proof: "policy".into(),
        };
        let read = AccountState {
            exists: true,
            credentials: Some(CredentialState { complete: false, cutoffs: vec![cutoff], ..CredentialState::default() }),
            ..AccountState::default()
        };
        let risks = residual_risks(&described(), &leaver(), &read);
        assert_eq!(risks.iter().map(|r| r.credential_kind.as_str()).collect::<Vec<_>>(), ["token"]);
        let keep = DesiredAccount { credentials: CredentialAction::Keep as i32, ..leaver() };
        assert!(residual_risks(&described(), &keep, &read).is_empty());
    }

    #[test]
    fn an_incomplete_read_without_a_declared_reason_is_not_explained() {
        let description = DescribeResponse {
            credential_kinds: vec![kind("password", true, true, None)],
            ..DescribeResponse::default()
        };
        assert!(!incompleteness_declared(&description, &CredentialState::default()));
    }
}
