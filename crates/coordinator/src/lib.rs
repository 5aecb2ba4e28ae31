//! The Lifecycle Mesh coordinator.
//!
//! - [`adoption`]: linking an account without a key to a person (or into
//!   custody), read back and audited;
//! - [`policy`]: policy as code (source of truth, targets, workflows) and its
//!   checker, which reports every error with its path;
//! - [`planner`]: the pure, deterministic planner (person, policy) -> desired
//!   state per target, with a plan hash;
//! - [`store`]: durable storage behind a backend-neutral trait, SQLite by
//!   default, with the audit hash chain;
//! - [`correlation`]: correlation rules and situations of accounts that
//!   existed before the mesh (linked, unlinked, unmatched, disputed,
//!   foreign key);
//! - [`claims`]: task claims with leases for several replicas on PostgreSQL;
//! - [`engine`]: durable propagation: ordering per person, approvals,
//!   dispatch, acknowledgement, read-back, retries, deadlines;
//! - [`api`]: the `jml.v1.Lifecycle` gRPC service;
//! - [`auth`]: authentication (bearer tokens, client certificates) and
//!   role-based authorisation of its callers, refusals audited;
//! - [`baseline`]: identity records loaded without provisioning;
//! - [`scim_inbound`]: the SCIM 2.0 service provider for inbound HR data
//!   (RFC 7643, RFC 7644), every write a state submit;
//! - [`server`]: the coordinator's gRPC server (health, reflection, graceful
//!   shutdown);
//! - [`evidence`]: status and evidence documents;
//! - [`ingest`]: HR ingestion: state-based submits (joiner, mover, leaver,
//!   rehire derived from a person's record), batches and the mass-change guard;
//! - [`metrics`]: the coordinator's Prometheus metrics;
//! - [`reconcile`]: reconciliation of each target's accounts with the
//!   expected state (drift report, remediation, schedules);
//! - [`tracing_context`]: one OpenTelemetry trace per lifecycle event (root,
//!   plan, approval wait, dispatch per target, connector calls).

pub mod adoption;
pub mod api;
pub mod auth;
pub mod baseline;
pub mod calendar;
pub mod campaign;
pub mod claims;
pub mod correlation;
pub mod credentials;
pub mod engine;
pub mod event;
pub mod evidence;
pub mod ingest;
pub mod leave;
pub mod live_check;
pub mod metrics;
pub mod naming;
pub mod owned;
pub mod planner;
pub mod policy;
pub mod reconcile;
pub mod report;
pub mod scim_inbound;
pub mod server;
pub mod store;
pub mod tracing_context;

pub use engine::{Engine, EngineConfig, EngineError};
pub use policy::{Policy, PolicyError};
pub use store::postgres::PostgresStore;
pub use store::sqlite::SqliteStore;

/// The allocator the coordinator binary (and its benchmarks) run on:
/// `#[global_allocator] static GLOBAL: coordinator::Allocator = coordinator::Allocator;`.
pub use connector_kit::Allocator;
