//! The mass-change guard: a batch of state submits (a roster, a SCIM
//! `/Bulk`) that would make more leavers than `source_of_truth.max_leavers`
//! allows is held as a whole, nothing applied, until an admin other than the
//! submitter approves it (as Entra's accidental-deletion threshold does).
//! The limit is a count (`50`) or a share of the active persons (`"5%"`).

use serde::{Deserialize, Serialize};

use crate::policy::SourceOfTruth;

/// `source_of_truth.max_leavers` as written: a count or a percentage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MaxLeavers {
    /// At most this many leavers per batch.
    Count(u64),
    /// `"N%"`: at most this share of the active persons.
    Share(String),
}

impl MaxLeavers {
    /// The percentage of a `Share`, when it is well formed (0 < N <= 100).
    fn percent(text: &str) -> Option<f64> {
        let number: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
        (number > 0.0 && number <= 100.0).then_some(number)
    }

    /// The most leavers allowed for a population of `active` persons.
    /// A malformed share (refused when the policy is loaded) allows none.
    pub fn limit(&self, active: u64) -> u64 {
        match self {
            Self::Count(count) => *count,
            Self::Share(text) => match Self::percent(text) {
                // Rounded down: "5%" of 30 persons allows 1 leaver.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
                Some(percent) => ((active as f64) * percent / 100.0).floor() as u64,
                None => 0,
            },
        }
    }

    /// As written in the policy.
    pub fn as_written(&self) -> String {
        match self {
            Self::Count(count) => count.to_string(),
            Self::Share(text) => text.clone(),
        }
    }
}

/// Checks `source_of_truth.max_leavers`, reporting with its path.
pub fn check_policy(source: &SourceOfTruth, issue: &mut dyn FnMut(String, String)) {
    if let Some(MaxLeavers::Share(text)) = &source.max_leavers
        && MaxLeavers::percent(text).is_none()
    {
        issue(
            "source_of_truth.max_leavers".into(),
            format!("{text:?} is neither a count (50) nor a percentage between 0 and 100 (\"5%\")"),
        );
    }
}

/// Whether a batch making `leavers` leavers among `active` persons must be
/// held, and the limit that applied.
pub fn must_hold(max: Option<&MaxLeavers>, leavers: u64, active: u64) -> Option<u64> {
    let limit = max?.limit(active);
    (leavers > limit).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_shares() {
        assert_eq!(MaxLeavers::Count(5).limit(1000), 5);
        assert_eq!(MaxLeavers::Share("5%".into()).limit(1000), 50);
        assert_eq!(MaxLeavers::Share("5%".into()).limit(30), 1);
        assert_eq!(MaxLeavers::Share("x%".into()).limit(1000), 0);
        assert_eq!(must_hold(Some(&MaxLeavers::Count(2)), 3, 10), Some(2));
        assert_eq!(must_hold(Some(&MaxLeavers::Count(3)), 3, 10), None);
        assert_eq!(must_hold(None, 1000, 10), None);
    }
}
