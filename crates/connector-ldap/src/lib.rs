//! The Lifecycle Mesh LDAP / Active Directory connector.
//!
//! One process drives one directory: OpenLDAP (`inetOrgPerson` accounts,
//! `groupOfNames` memberships, disable by a permanent ppolicy lock) or Active
//! Directory (`user` accounts named by `sAMAccountName`, disable by bit 0x2 of
//! `userAccountControl`). Every value placed in a DN is escaped per RFC 4514
//! and in a filter per RFC 4515 ([`escape`]); `List` pages with RFC 2696;
//! connections are pooled and re-established after the server restarts; TLS
//! (LDAPS or StartTLS) goes through rustls with a configurable CA.
//!
//! - [`config`]: the YAML configuration.
//! - [`target`]: the client of the real directory.
//! - [`connector`]: the contract implementation.

pub mod config;
pub mod connector;
pub mod escape;
pub mod target;

pub use config::{DirectoryMode, LdapConfig};
pub use connector::LdapConnector;
