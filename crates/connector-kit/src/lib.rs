//! The connector kit: everything a Lifecycle Mesh connector shares.
//!
//! - [`Connector`]: the trait a connector implements once for its target.
//! - [`grpc::ConnectorService`]: the gRPC adapter serving any [`Connector`] over
//!   the `jml.v1.Connector` contract, validating requests and mapping
//!   [`ConnectorError`] to stable `tonic::Status` codes.
//! - [`server::ConnectorServer`]: the one server builder every connector binary
//!   uses (health gated on a real preflight, reflection, tracing, graceful
//!   shutdown, TLS and mutual TLS, bound address returned).
//! - [`client::ConnectorClient`]: the coordinator's side, a tower stack with
//!   per-call timeout, retry with jittered exponential backoff honouring
//!   retry-after, and a concurrency limit that admits urgent calls first
//!   ([`admission`]).
//! - [`credentials`]: the credential model (what a revocation proves, what
//!   may outlive it).
//! - [`readback`]: normalisation and comparison of desired state with read-back.
//! - [`correlation`]: fingerprints and the link decision for accounts not
//!   managed yet.
//! - [`owned`]: non-human identities a person owns (transfer, disable,
//!   report) checked against `Describe` and proven by read-back.
//! - [`metrics`]: Prometheus metrics on an HTTP endpoint.
//! - [`conformance`]: the shared conformance suite every connector runs against
//!   its real target.

pub mod admission;
pub mod cli;
pub mod client;
pub mod conformance;
mod connector;
pub mod correlation;
pub mod credentials;
mod error;
pub mod fence;
pub mod grpc;
pub mod metrics;
pub mod naming;
pub mod owned;
pub mod readback;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod validate;

pub use connector::{AccountStream, Connector};
pub use error::{ConnectorError, ErrorKind};
pub use jml_contract::CONTRACT_VERSION;
pub use jml_contract::v1 as contract;

/// The allocator every binary of the mesh runs on (glibc's `malloc` was a
/// quarter of the coordinator's and the LDAP connector's CPU in their
/// benchmarks): `#[global_allocator] static GLOBAL: connector_kit::Allocator =
/// connector_kit::Allocator;` in each `main.rs`.
pub use mimalloc::MiMalloc as Allocator;
