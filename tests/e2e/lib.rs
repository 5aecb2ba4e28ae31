//! Shared set-up of the end-to-end tests: the real target servers (from the
//! environment `deploy/local/<target>.sh start` writes), the real connector
//! binaries and the real coordinator, wired by the quickstart's own policy and
//! connector templates (`deploy/quickstart/*.in`) with mutual TLS.
//!
//! - [`mesh`]: starts the four connectors and the coordinator as child
//!   processes, talks to the coordinator's gRPC API and runs `jmlctl`;
//! - [`targets`]: direct clients of the four real servers (LDAP, SCIM, AWS IAM
//!   on moto, the Vault API), so a test checks what each *target* shows, never
//!   what a connector reports.

pub mod mesh;
pub mod targets;

pub use mesh::{Mesh, MeshOptions, Person};
pub use targets::Targets;
