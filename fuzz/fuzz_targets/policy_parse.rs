//! Policy parsing (YAML, then every check with its path) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = coordinator::policy::Policy::parse(text);
});
