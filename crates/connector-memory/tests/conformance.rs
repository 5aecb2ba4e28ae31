//! The whole conformance suite against the in-memory reference connector,
//! served over real gRPC on loopback; `List` over 10,000 accounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use connector_kit::conformance::{ConformanceTarget, Fixture};
use connector_kit::contract as pb;
use connector_memory::{MemoryBackdoor, MemoryConfig, MemoryConnector, MemoryTarget};

fn group(id: &str) -> pb::Entitlement {
    pb::Entitlement { kind: "group".into(), id: id.into(), privileged: false }
}

async fn target() -> ConformanceTarget {
    let config = MemoryConfig::default();
    let store = Arc::new(MemoryTarget::new(&config.entitlements, None));
    let connector = MemoryConnector::new("memory-conformance", store.clone());
    let fixture = Fixture {
        attributes: Box::new(|name| {
            BTreeMap::from([
                ("display_name".into(), format!("Person {name}")),
                ("mail".into(), format!("{name}@Example.org")),
            ])
        }),
        changed_attributes: Box::new(|name| {
            BTreeMap::from([("display_name".into(), format!("Moved {name}")), ("title".into(), "Engineer".into())])
        }),
        entitlements: vec![group("staff"), group("engineering"), group("sales"), group("admins")],
        hostile_attribute: Some("display_name".into()),
        list_accounts: 10_000,
        list_page_size: 500,
        backdoor: Some(Arc::new(MemoryBackdoor(store))),
        ..Fixture::default()
    };
    ConformanceTarget::serve(connector, fixture).await.expect("the connector serves on loopback")
}

connector_kit::conformance_tests!(target);
