//! The whole conformance suite against the SCIM connector, served over real
//! gRPC on loopback, driving the real `scim2-server` started by
//! `deploy/local/scim.sh start` (JML_TEST_SCIM_URL, JML_TEST_SCIM_TOKEN_FILE).

mod support;

use support::conformance_target;

// SCIM has no way to list a user's credentials (Describe: revocation is not
// verifiable), so no credential the backdoor could add would show in Read.
connector_kit::conformance_tests!(conformance_target, expected_skips: [read_shows_credential_added_on_target]);
