//! No partial people: every desired account name of an event is checked
//! against its target's declared naming rules (`Describe.account_naming`)
//! before the event is accepted, so an event one target must refuse is
//! refused whole, naming the target and the rule, before anything is written
//! on any target.
//!
//! Not yet here: refusing a name that collides, under the target's declared
//! comparison (case, UTS #39 skeleton), with another person's account.

use jml_contract::v1 as pb;

use crate::event::InvalidEvent;

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
}
