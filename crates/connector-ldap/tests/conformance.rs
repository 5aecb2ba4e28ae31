//! The whole conformance suite over real gRPC against the real slapd started
//! by `deploy/local/slapd.sh start RUN_DIR`.

mod support;

connector_kit::conformance_tests!(support::conformance_target);
