//! The Lifecycle Mesh connector for AWS IAM, built on the official AWS SDK
//! for Rust (`aws-sdk-iam`).
//!
//! # What it manages
//!
//! - **Accounts** are IAM users in one configured path (default
//!   `/lifecycle-mesh/`) carrying the person id in a configured tag (default
//!   `lifecycle-mesh:person-id`). A user in another path (sub-paths included),
//!   without the tag, or tagged with another person is never read, listed or
//!   changed: `Read` and `Apply` answer CONFLICT for it and `List` skips it.
//! - **Attributes** (`display_name`, `mail`, `department`, `title` by
//!   default) are stored as tags on the user (see
//!   [`IamConfig::attribute_tags`]); an empty value removes the tag.
//! - **Entitlements**: kind `group` (group membership, id = group name,
//!   compared case-insensitively as IAM compares names) and kind `policy`
//!   (attached managed policy, id = the policy **ARN**, e.g.
//!   `arn:aws:iam::aws:policy/ReadOnlyAccess`; an ARN, not a name, because
//!   only the ARN names one policy: customer policies in different paths and
//!   AWS managed policies may share a name). Each is flagged privileged by
//!   configuration ([`IamConfig::privileged_groups`],
//!   [`IamConfig::privileged_policies`]). Every group and policy the desired
//!   state adds is checked to exist before anything is written, so an unknown
//!   one is a non-retryable NOT_FOUND and a new user is not half-created.
//!   Inline user policies are reported as kind `inline_policy` (always
//!   privileged) so ad hoc grants show as drift; they are removed on every
//!   apply and can never be granted.
//!
//! # What `enabled` means on IAM
//!
//! IAM users have no enabled flag. Here a user is **disabled** when it
//! carries the disabled-marker tag (default `lifecycle-mesh:disabled=true`)
//! **and** holds no usable credential. Disabling sets the marker, deletes the
//! login profile (IAM cannot deactivate a console password) and sets every
//! access key, signing certificate, SSH public key and service-specific
//! credential `Inactive`. Enabling removes the marker and restores nothing: a
//! person gets new credentials through the normal issuing process. A joiner
//! is created enabled with no credential at all (IAM users start without
//! one). If a credential becomes usable again on a marked user (an ad hoc
//! edit), read-back shows the user enabled, so the drift is visible.
//!
//! # Credential revocation and the leaver's clean-up
//!
//! `CREDENTIAL_ACTION_REVOKE_ALL` deletes, in the order AWS requires before
//! `DeleteUser`: the login profile, access keys, signing certificates, SSH
//! public keys, service-specific credentials, MFA devices (deactivated;
//! virtual ones deleted). Entitlement removal follows in AWS's order: inline
//! policies, attached managed policies, group memberships. `PRESENCE_ABSENT`
//! does all of that and then `DeleteUser`. Every step is idempotent. Read-back
//! lists every credential (`login_profile`, `access_key:AKIA…`,
//! `signing_certificate:…`, `ssh_public_key:…`,
//! `service_specific_credential:…`, `mfa_device:SERIAL`; inactive ones end in
//! `:inactive`) and says `complete: true`, so an empty list proves nothing is
//! left.
//!
//! # Non-human identities a person owns
//!
//! With `owned_identities` configured, service users (IAM users under a path
//! prefix, tagged with an owner's person id, not carrying the person tag)
//! are the person's owned identities: `Read` lists them with their owner,
//! previous owner and credentials, and a leaver's directive transfers them to
//! the manager (owner tag rewritten, previous-owner tag written), disables
//! them (login profile deleted, keys set `Inactive`) or reports them
//! ([`owned`]).
//!
//! # Safety
//!
//! Every name is checked against IAM's rules ([`names`]) before any call, so
//! a bad value is a typed INVALID_ARGUMENT naming the field. AWS errors map
//! to stable kinds ([`target::classify`]); throttling (`Throttling`, HTTP 429)
//! is retried by the SDK's standard strategy with jittered exponential
//! backoff and, when attempts run out, answered as a retryable THROTTLED.
//! Credentials come from the standard AWS provider chain and are never read,
//! logged or formatted by the connector.

pub mod config;
pub mod connector;
pub mod names;
pub mod owned;
pub mod target;

pub use config::{ConfigError, IamConfig, OwnedIdentitiesConfig};
pub use connector::{IamConnector, KIND_GROUP, KIND_INLINE_POLICY, KIND_POLICY};
pub use target::IamTarget;
