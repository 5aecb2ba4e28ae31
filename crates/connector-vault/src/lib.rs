//! The Lifecycle Mesh PAM connector over the HashiCorp Vault HTTP API.
//!
//! It manages privileged access in a store speaking the Vault API (Vault,
//! OpenBao, RustyVault): userpass users are the accounts, policies (all
//! privileged) are the entitlements. See [`connector`] for the model: the
//! per-account record that carries the correlation key, disable by removing
//! the login, and credential revocation as far as the server allows.
//!
//! # What the server must offer, and what RustyVault 0.2.1 does
//!
//! | endpoint | used for | RustyVault 0.2.1 |
//! |---|---|---|
//! | `sys/seal-status`, `auth/token/lookup-self` | preflight; proving a token dead | yes (a dead token gets 403) |
//! | `auth/<mount>/users/<user>` GET/POST/DELETE, `LIST auth/<mount>/users` | accounts | yes |
//! | `auth/<mount>/login/<user>` | login probes (tests) | yes, but a bad password is HTTP 200 with `data.error` |
//! | KV v1 `<mount>/<prefix>/<user>` | the account record | yes (`secret/` is KV v1) |
//! | `sys/leases/revoke-prefix/<login path>` | revoking a leaver's tokens | no: 500 "path not supported" |
//! | `sys/revoke-prefix/...` (legacy) | not used | answers 204 but does nothing, so never trusted |
//! | `LIST auth/token/accessors`, `lookup-accessor`, `revoke-accessor` | finding and revoking live tokens | no: 500 "path not supported"; login answers carry no accessor |
//! | `sys/policies/acl[/<name>]` | creating and checking policies | no: 500 "path not supported" |
//! | `sys/policy/<name>` (legacy) | not used | handlers are no-ops: writes answer 204 and store nothing, reads 404 |
//!
//! The connector probes the first three "no" rows at start ([`ServerProfile`])
//! and states in `Describe`'s limitations, and in the warnings of every
//! acknowledgement that relies on them, what it therefore cannot guarantee.
//! On RustyVault: a leaver's login and policies are removed and proven gone,
//! but tokens issued before stay valid until they expire (bounded by the
//! `token_max_ttl` the connector sets on every managed user), and read-back
//! reports the credential listing as incomplete, so the coordinator never
//! marks that revocation verified.

pub mod config;
pub mod connector;
pub mod names;
pub mod target;

pub use config::{VaultConfig, VaultToken};
pub use connector::{ServerProfile, VaultConnector};
pub use target::VaultTarget;
