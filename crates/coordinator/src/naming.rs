//! No partial people: every desired account name of an event is checked
//! against its target's declared naming rules (`Describe.account_naming`)
//! before the event is accepted, so an event one target must refuse is
//! refused whole, naming the target and the rule, before anything is written
//! on any target.
//!
//! The same check refuses a name that collides with another person's account
//! name on the same target under the target's declared comparison
//! (`AccountNaming.comparison`: case-insensitive targets compare case-folded
//! names; `confusables_collide`: names with the same UTS #39 confusable
//! skeleton, e.g. a Cyrillic `а` for a Latin `a`, are the same account). The
//! other names come from the store's account-name index
//! (`store::account_names`, migration 0009), which every accepted event's
//! present accounts fill, created or linked.

use jml_contract::v1 as pb;

use crate::event::InvalidEvent;
use crate::store::AccountNameRecord;

/// A name refused because another person holds a name on the same target
/// that the target takes for the same account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "target {target_id} refuses the account name \"{account_name}\": it collides with the account name \
     \"{existing_name}\" another person holds there ({how})"
)]
pub struct NameCollision {
    /// The target.
    pub target_id: String,
    /// The name refused (printable).
    pub account_name: String,
    /// The name already held (printable).
    pub existing_name: String,
    /// How they collide: `same name`, `same name ignoring case` or `look-alike (UTS #39 skeleton ...)`.
    pub how: String,
}

/// The name as a case-insensitive target compares it: Unicode lower case.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The name's UTS #39 confusable skeleton, case-folded before and after (the
/// skeleton maps `0` to `O` and `I` to `l`), so two names a reader cannot
/// tell apart have the same key.
pub fn skeleton_key(name: &str) -> String {
    unicode_security::skeleton(&name_key(name)).collect::<String>().to_lowercase()
}

/// The first name of `holders` held by someone other than `person_id` that
/// collides with `planned`'s desired account name under `description`'s
/// declared comparison.
pub fn collision(
    planned: &pb::PlannedTarget,
    description: &pb::DescribeResponse,
    person_id: &str,
    holders: &[AccountNameRecord],
) -> Option<NameCollision> {
    let desired = planned.desired.as_ref()?;
    if desired.presence != pb::Presence::Present as i32 {
        return None;
    }
    let name = desired.account.as_ref().map(|a| a.account_name.as_str()).unwrap_or_default();
    let naming = description.account_naming.clone().unwrap_or_default();
    let case_insensitive = naming.comparison == pb::ValueComparison::CaseInsensitive as i32
        || naming.comparison == pb::ValueComparison::DistinguishedName as i32;
    let (key, skeleton) = (name_key(name), skeleton_key(name));
    holders.iter().filter(|held| held.target_id == planned.target_id && held.person_id != person_id).find_map(|held| {
        let how = if held.account_name == name {
            "the same name".to_owned()
        } else if case_insensitive && held.name_key == key {
            "the same name ignoring case, as this target compares names".to_owned()
        } else if naming.confusables_collide && held.skeleton_key == skeleton {
            format!(
                "names that look alike: both have the UTS #39 skeleton \"{}\"",
                connector_kit::validate::printable(&skeleton)
            )
        } else {
            return None;
        };
        Some(NameCollision {
            target_id: planned.target_id.clone(),
            account_name: connector_kit::validate::printable(name),
            existing_name: connector_kit::validate::printable(&held.account_name),
            how,
        })
    })
}

/// The first refusal of `planned`'s desired account name by `description`'s
/// naming rules, or `None` when the name follows them (or the target
/// declares none).
pub fn refusal(planned: &pb::PlannedTarget, description: &pb::DescribeResponse) -> Option<InvalidEvent> {
    let naming = description.account_naming.as_ref()?;
    let desired = planned.desired.as_ref()?;
    if desired.presence != pb::Presence::Present as i32 {
        return None;
    }
    let name = desired.account.as_ref().map(|a| a.account_name.as_str()).unwrap_or_default();
    let why = connector_kit::naming::violation(naming, name)?;
    Some(InvalidEvent {
        field: format!("plan.targets.{}.account_name", planned.target_id),
        message: format!(
            "target {} refuses the account name {:?}: {why} (its rule: {})",
            planned.target_id,
            connector_kit::validate::printable(name),
            naming.description
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_a_target_refuses_is_named_with_the_target_and_the_rule() {
        let description = pb::DescribeResponse {
            account_naming: Some(connector_kit::naming::rule(
                &[('a', 'z')],
                (1, 8),
                pb::ValueComparison::CaseInsensitive,
                false,
                "",
                "a-z, 1 to 8",
            )),
            ..Default::default()
        };
        let planned = |name: &str| pb::PlannedTarget {
            target_id: "vault".into(),
            desired: Some(pb::DesiredAccount {
                account: Some(pb::AccountRef { person_id: "p".into(), account_name: name.into() }),
                presence: pb::Presence::Present as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(refusal(&planned("ada"), &description).is_none());
        let refused = refusal(&planned("ada/x"), &description).expect("refused").to_string();
        assert!(
            refused.contains("target vault") && refused.contains("'/'") && refused.contains("a-z, 1 to 8"),
            "{refused}"
        );
    }

    fn naming(comparison: pb::ValueComparison, confusables_collide: bool) -> pb::DescribeResponse {
        pb::DescribeResponse {
            account_naming: Some(connector_kit::naming::rule(
                &connector_kit::naming::all_but(""),
                (1, 64),
                comparison,
                confusables_collide,
                "",
                "any",
            )),
            ..Default::default()
        }
    }

    fn planned(target: &str, name: &str) -> pb::PlannedTarget {
        pb::PlannedTarget {
            target_id: target.into(),
            desired: Some(pb::DesiredAccount {
                account: Some(pb::AccountRef { person_id: "p-new".into(), account_name: name.into() }),
                presence: pb::Presence::Present as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn skeletons_fold_case_and_look_alikes() {
        assert_eq!(skeleton_key("ada.lovelace"), skeleton_key("\u{430}da.lovelace"), "Cyrillic a");
        assert_eq!(skeleton_key("Ada"), skeleton_key("ada"));
        assert_eq!(skeleton_key("paypal"), skeleton_key("p\u{430}yp\u{430}l"));
        assert_eq!(skeleton_key("l0gin"), skeleton_key("LOGIN"), "0 and O look alike");
        assert_eq!(skeleton_key("bi11"), skeleton_key("bill"), "1 and l look alike");
        assert_ne!(skeleton_key("ada"), skeleton_key("ida"));
    }

    #[test]
    fn a_name_colliding_with_another_persons_is_refused_by_the_targets_comparison() {
        let held = vec![crate::store::AccountNameRecord::new("ad", "ada.lovelace", "p-ada", "e1", 1)];
        let ad = naming(pb::ValueComparison::CaseInsensitive, true);
        let refused =
            collision(&planned("ad", "\u{430}da.lovelace"), &ad, "p-new", &held).expect("a look-alike collides");
        assert!(refused.to_string().contains("ada.lovelace") && refused.how.contains("skeleton"), "{refused}");
        let refused = collision(&planned("ad", "ADA.Lovelace"), &ad, "p-new", &held).expect("case collides");
        assert!(refused.how.contains("ignoring case"), "{refused}");
        assert!(collision(&planned("ad", "ada.lovelace"), &ad, "p-ada", &held).is_none(), "one's own name");
        assert!(collision(&planned("other", "ada.lovelace"), &ad, "p-new", &held).is_none(), "another target");
        assert!(collision(&planned("ad", "ada.byron"), &ad, "p-new", &held).is_none());
        let exact = naming(pb::ValueComparison::Exact, false);
        assert!(collision(&planned("ad", "ADA.lovelace"), &exact, "p-new", &held).is_none(), "case-sensitive");
        assert!(collision(&planned("ad", "\u{430}da.lovelace"), &exact, "p-new", &held).is_none());
        assert!(collision(&planned("ad", "ada.lovelace"), &exact, "p-new", &held).is_some(), "the same name");
    }
}
