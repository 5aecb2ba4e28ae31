//! The Lifecycle Mesh ticket connector, for manual targets: applications no
//! connector can drive, changed by people through tickets in a real
//! ticketing system (Request Tracker 5, REST2 API; `deploy/local/rt.sh`).
//!
//! - [`config`]: the YAML configuration (RT URL, queue, user and password
//!   from a file or environment variable, the target's entitlement kinds and
//!   attributes, export size limit);
//! - [`target`]: the REST2 client: ticket search, create, comment,
//!   attachments, typed errors, bounded bodies;
//! - [`attestation`]: the request a ticket states, the attestation a fulfiller
//!   records, the account export they may attach, parsed strictly;
//! - [`connector`]: the `jml.v1` contract over them: `Apply` files the desired
//!   state and answers *awaiting fulfilment*, `Read` is the attestation,
//!   `List` the newest export.

pub mod attestation;
pub mod config;
pub mod connector;
pub mod target;

pub use config::{SecretSource, TicketConfig};
pub use connector::TicketConnector;
pub use target::{RtClient, RtError};
