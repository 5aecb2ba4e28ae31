//! Untrusted bytes as an `ApplyRequest`: decoding and validation never panic,
//! and whatever validation accepts carries no control character in a name.
#![no_main]

use connector_kit::Connector;
use connector_kit::contract as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = pb::ApplyRequest::decode(data) else { return };
    let target = std::sync::Arc::new(connector_memory::MemoryTarget::new(&connector_memory::config::default_catalogue(), None));
    let description = connector_memory::MemoryConnector::new("fuzz", target).describe();
    let _ = connector_kit::validate::command_id(&request.command_id);
    if connector_kit::validate::desired_account(&description, request.desired.as_ref()).is_ok() {
        let account = request.desired.and_then(|d| d.account).expect("validated state has an account");
        assert!(!account.account_name.chars().any(char::is_control));
        assert!(!account.person_id.chars().any(char::is_control));
        assert!(account.account_name.len() <= connector_kit::validate::MAX_NAME_BYTES);
    }
});
