//! The Lifecycle Mesh SCIM 2.0 connector.
//!
//! It provisions Users and Groups into any SCIM 2.0 service provider
//! (RFC 7643 / RFC 7644) and is tested against a real one (`scim2-server`,
//! started by `deploy/local/scim.sh`):
//!
//! - [`config`]: the YAML configuration (base URL, bearer or basic auth from a
//!   file or environment variable, privileged groups, limits);
//! - [`target`]: the HTTP client of the service provider: escaped filters,
//!   percent-encoded paths, typed SCIM errors with `Retry-After`, bounded
//!   bodies, `/ServiceProviderConfig` discovery;
//! - [`connector`]: the `jml.v1` contract over it: lookup by `userName`,
//!   correlation by `externalId`, `POST` / RFC-strict `PATCH` with `If-Match` /
//!   `DELETE` (never `PUT`), groups as entitlements, paged `List`.

pub mod config;
pub mod connector;
pub mod target;

pub use config::{AuthConfig, ScimConfig, SecretSource};
pub use connector::ScimConnector;
pub use target::{ScimError, ScimTarget, ServiceProvider};
