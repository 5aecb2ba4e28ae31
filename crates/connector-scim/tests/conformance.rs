//! The whole conformance suite against the SCIM connector, served over real
//! gRPC on loopback, driving the real `scim2-server` started by
//! `deploy/local/scim.sh start` (JML_TEST_SCIM_URL, JML_TEST_SCIM_TOKEN_FILE).

mod support;

use support::conformance_target;

connector_kit::conformance_tests!(conformance_target);
