//! LDAP escaping: an escaped filter value holds no unescaped filter
//! metacharacter, and an escaped DN value holds no unescaped DN separator, no
//! NUL, and no leading space or `#` or trailing space.
#![no_main]

use connector_ldap::escape::{dn_value, filter_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let filter = filter_value(value);
    let mut chars = filter.chars();
    while let Some(c) = chars.next() {
        assert!(!matches!(c, '*' | '(' | ')' | '\0'), "unescaped {c:?} in filter value {filter:?}");
        if c == '\\' {
            let hex: String = chars.by_ref().take(2).collect();
            assert!(hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()), "bad escape in {filter:?}");
        }
    }
    let dn = dn_value(value);
    assert!(!dn.starts_with(' ') && !dn.starts_with('#'), "{dn:?}");
    assert!(!dn.ends_with(' ') || dn.ends_with("\\ ") || dn.ends_with("\\20"), "{dn:?}");
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        assert!(!matches!(c, ',' | '+' | '"' | '<' | '>' | ';' | '=' | '\0'), "unescaped {c:?} in DN value {dn:?}");
        escaped = c == '\\';
    }
});
