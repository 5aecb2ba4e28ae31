//! DN normalisation (read-back comparison) never panics and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|dn: &str| {
    let once = connector_kit::readback::normalise_dn(dn);
    assert_eq!(connector_kit::readback::normalise_dn(&once), once);
});
