//! Account naming rules: what a connector declares in `Describe`
//! (`AccountNaming`) and the one check of a name against them.
//!
//! The coordinator checks every desired account name against its target's
//! declared rules before it accepts an event, so an event one target must
//! refuse is refused whole, before anything is written on any target.

use jml_contract::v1::{AccountNaming, CharacterRange, ValueComparison};

/// A rule allowing the characters of `ranges`, each `(first, last)`
/// inclusive.
pub fn rule(
    ranges: &[(char, char)],
    lengths: (u32, u32),
    comparison: ValueComparison,
    confusables_collide: bool,
    not_at_ends: &str,
    description: &str,
) -> AccountNaming {
    AccountNaming {
        allowed: ranges
            .iter()
            .map(|(first, last)| CharacterRange { first: u32::from(*first), last: u32::from(*last) })
            .collect(),
        min_length: lengths.0,
        max_length: lengths.1,
        comparison: comparison as i32,
        confusables_collide,
        description: description.to_owned(),
        not_at_ends: not_at_ends.to_owned(),
    }
}

/// Ranges of single characters: `"_+=,.@-"` as `[('_', '_'), ...]`.
pub fn singles(characters: &str) -> Vec<(char, char)> {
    characters.chars().map(|c| (c, c)).collect()
}

/// Every printable character (from U+0020, controls excluded) except those
/// of `excluded`: the allow-list form of "anything but these".
pub fn all_but(excluded: &str) -> Vec<(char, char)> {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in '\u{20}'..='\u{7e}' {
        if excluded.contains(c) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(c) => *last = c,
            _ => ranges.push((c, c)),
        }
    }
    // Everything beyond ASCII but the C1 controls (U+0080-U+009F).
    ranges.push(('\u{a0}', char::MAX));
    ranges
}

/// Why `name` breaks `naming`, in plain words, or `None` when it follows it.
pub fn violation(naming: &AccountNaming, name: &str) -> Option<String> {
    let length = u32::try_from(name.chars().count()).unwrap_or(u32::MAX);
    if length < naming.min_length || (naming.max_length > 0 && length > naming.max_length) {
        return Some(format!(
            "{} to {} characters, not {length}",
            naming.min_length,
            if naming.max_length > 0 { naming.max_length.to_string() } else { "any number of".into() }
        ));
    }
    if !naming.allowed.is_empty() {
        let allowed = |c: char| naming.allowed.iter().any(|range| (range.first..=range.last).contains(&u32::from(c)));
        if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
            return Some(format!("the character {:?} (U+{:04X}) is not allowed", bad, u32::from(bad)));
        }
    }
    if let Some(edge) =
        [name.chars().next(), name.chars().last()].into_iter().flatten().find(|c| naming.not_at_ends.contains(*c))
    {
        return Some(format!("a name may not start or end with {edge:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_characters_length_and_ends() {
        let iam = rule(
            &[('a', 'z'), ('A', 'Z'), ('0', '9')].into_iter().chain(singles("_+=,.@-")).collect::<Vec<_>>(),
            (1, 64),
            ValueComparison::CaseInsensitive,
            false,
            "",
            "IAM",
        );
        assert_eq!(violation(&iam, "alice.b+c@d"), None);
        assert!(violation(&iam, "al/ice").is_some_and(|m| m.contains("'/'")));
        assert!(violation(&iam, &"x".repeat(65)).is_some());
        assert!(violation(&iam, "").is_some());
        let vault = rule(&[('a', 'z'), ('0', '9')], (3, 64), ValueComparison::CaseInsensitive, false, "-", "v");
        assert!(violation(&vault, "-abc").is_some());
        let ad = rule(&all_but("\"/\\[]:;|=,+*?<>@"), (1, 20), ValueComparison::CaseInsensitive, true, "", "AD");
        assert_eq!(violation(&ad, "Zoë.Müller"), None);
        assert!(violation(&ad, "a@b").is_some());
        assert_eq!(violation(&ad, "a b"), None, "inner spaces are allowed");
        assert!(violation(&ad, "a\u{85}b").is_some(), "a C1 control is not");
    }
}
