//! The Lifecycle Mesh coordinator.
//!
//! - [`policy`]: policy as code (source of truth, targets, workflows) and its
//!   checker, which reports every error with its path;
//! - [`planner`]: the pure, deterministic planner (person, policy) -> desired
//!   state per target, with a plan hash;
//! - [`store`]: durable storage behind a backend-neutral trait, SQLite by
//!   default, with the audit hash chain;
//! - [`claims`]: task claims with leases for several replicas on PostgreSQL;
//! - [`engine`]: durable propagation: ordering per person, approvals,
//!   dispatch, acknowledgement, read-back, retries, deadlines;
//! - [`api`]: the `jml.v1.Lifecycle` gRPC service;
//! - [`auth`]: authentication (bearer tokens, client certificates) and
//!   role-based authorisation of its callers, refusals audited;
//! - [`server`]: the coordinator's gRPC server (health, reflection, graceful
//!   shutdown);
//! - [`evidence`]: status and evidence documents;
//! - [`metrics`]: the coordinator's Prometheus metrics;
//! - [`reconcile`]: reconciliation of each target's accounts with the
//!   expected state (drift report, remediation, schedules);
//! - [`tracing_context`]: one OpenTelemetry trace per lifecycle event (root,
//!   plan, approval wait, dispatch per target, connector calls).

pub mod api;
pub mod auth;
pub mod claims;
pub mod credentials;
pub mod engine;
pub mod event;
pub mod evidence;
pub mod live_check;
pub mod metrics;
pub mod naming;
pub mod planner;
pub mod policy;
pub mod reconcile;
pub mod server;
pub mod store;
pub mod tracing_context;

pub use engine::{Engine, EngineConfig, EngineError};
pub use policy::{Policy, PolicyError};
pub use store::postgres::PostgresStore;
pub use store::sqlite::SqliteStore;
