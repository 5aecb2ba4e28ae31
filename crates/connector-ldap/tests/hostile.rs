//! After the conformance suite's hostile-value cases, `ldapsearch` (the
//! OpenLDAP command-line client, not the connector's own client) shows exactly
//! the entries that were there before: no extra entry created or left, no
//! entry outside the run modified, every group's membership as before. Alone
//! in its test binary so no other test changes the directory meanwhile.

mod support;

use connector_kit::conformance::{Outcome, hostile_lookups_match_nothing, hostile_values_round_trip_or_are_refused};
use support::Slapd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_touch_only_intended_entries() {
    let slapd = Slapd::from_env();
    let before = support::ldapsearch_snapshot(&slapd);
    let target = support::conformance_target().await;
    assert_eq!(hostile_values_round_trip_or_are_refused(&target).await, Ok(Outcome::Passed));
    assert_eq!(hostile_lookups_match_nothing(&target).await, Ok(Outcome::Passed));
    let after = support::ldapsearch_snapshot(&slapd);

    let created: Vec<&String> = after.keys().filter(|dn| !before.contains_key(*dn)).collect();
    assert!(created.is_empty(), "entries left behind: {created:?}");
    let removed: Vec<&String> = before.keys().filter(|dn| !after.contains_key(*dn)).collect();
    assert!(removed.is_empty(), "entries removed: {removed:?}");
    for (dn, lines) in &before {
        let is_group = lines.iter().any(|l| l.eq_ignore_ascii_case("objectClass: groupOfNames"));
        let keep = |line: &&String| !(is_group && line.starts_with("entryCSN:"));
        let was: Vec<&String> = lines.iter().filter(keep).collect();
        let now: Vec<&String> = after[dn].iter().filter(keep).collect();
        // Groups were joined by the run's own accounts and left again: their
        // members must be as before. Every other entry must be untouched
        // (same entryCSN).
        assert_eq!(was, now, "{dn} changed");
    }
    assert!(before.len() > 5, "the snapshot saw the base tree");
}
