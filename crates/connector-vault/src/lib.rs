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
//! | endpoint | used for | RustyVault 0.2.1 (observed over HTTP) |
//! |---|---|---|
//! | `sys/seal-status`, `sys/init`, `sys/unseal` | preflight; the test server's set-up | yes |
//! | `auth/token/lookup-self` | preflight; proving a token dead | yes: a revoked token gets 403 |
//! | `auth/<mount>/users/<user>` GET/POST/DELETE, `LIST auth/<mount>/users` | accounts | yes (no pagination) |
//! | `auth/<mount>/login/<user>` | login probes (tests) | yes, but a bad password is HTTP 200 with `data.error` |
//! | KV v1 `<mount>/<prefix>/<user>` GET/POST/DELETE/LIST | the account record | yes (`secret/` is KV v1) |
//! | `sys/leases/revoke-prefix/<login path>` | revoking a leaver's tokens | no: 404 |
//! | `sys/revoke-prefix/...`, `sys/revoke/...` (legacy) | not used | 404 over HTTP (the handlers behind them are empty) |
//! | `LIST auth/token/accessors`, `lookup-accessor`, `revoke-accessor` | finding and revoking live tokens | no: 500 "Logical backend path not supported."; login answers carry no accessor |
//! | `auth/token/revoke/<token>` | not usable: needs the token itself, which only the user holds | yes |
//! | `sys/policies/acl[/<name>]`, `sys/policy/<name>` | creating and checking policies | no: 404 (no policy store, no ACL enforcement) |
//!
//! The connector probes the first three "no" rows at start ([`ServerProfile`])
//! and states in `Describe`'s limitations, and in the warnings of every
//! acknowledgement that relies on them, what it therefore cannot guarantee.
//! On RustyVault: a leaver's login and policies are removed and proven gone,
//! but tokens issued before stay valid until they expire (bounded by the
//! `token_max_ttl` the connector sets on every managed user), and read-back
//! reports the credential listing as incomplete, so the coordinator never
//! marks that revocation verified.

//!
//! # Rotation of shared secrets
//!
//! Where `shared_secrets` is configured, a command that revokes every
//! credential rotates each KV (version 1) secret readable by a policy the
//! command removes: the configured fields get fresh random values, other
//! fields are kept, and the acknowledgement lists the paths as
//! `rotate_secret` changes, never a value. Which policy can read which secret
//! is what the configuration says (RustyVault enforces no policy at all).

pub mod config;
pub mod connector;
pub mod names;
pub mod target;

pub use config::{VaultConfig, VaultToken};
pub use connector::{ServerProfile, VaultConnector};
pub use target::VaultTarget;
