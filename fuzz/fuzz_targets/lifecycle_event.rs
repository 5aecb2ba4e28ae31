//! Untrusted bytes as a lifecycle event, validated against the example
//! policy: never panics; what is accepted came from the source of truth.
#![no_main]

use connector_kit::contract::LifecycleEvent;
use coordinator::policy::Policy;
use libfuzzer_sys::fuzz_target;
use prost::Message;

static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
    Policy::parse(include_str!("../../deploy/examples/policy.yaml")).expect("the example policy is valid")
});

fuzz_target!(|data: &[u8]| {
    let Ok(event) = LifecycleEvent::decode(data) else { return };
    if coordinator::event::validate(Some(&event), &POLICY).is_ok() {
        assert_eq!(event.source_system, "workday");
    }
});
