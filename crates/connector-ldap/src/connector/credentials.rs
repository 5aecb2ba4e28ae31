//! Credentials as the connector's bind can prove them: the password
//! (OpenLDAP `userPassword`, AD `pwdLastSet`) and the configured credential
//! attributes.
//!
//! On OpenLDAP a `userPassword` the search did not return is either absent or
//! hidden from the bind by an ACL. For one account a compare tells them
//! apart ("no such attribute" proves absence). For a page of `List` (issue
//! #21), one search per batch of [`PASSWORD_BATCH`] entries,
//! `(&(!(userPassword=*))(|(uid=a)(uid=b)...))`, proves absence for every
//! entry it returns: the server returns an entry only when the NOT evaluates
//! to TRUE, while a presence test on an attribute the bind may not search is
//! Undefined (RFC 4511 §4.5.1.7) and so is its NOT, so a hidden password is
//! never taken for an absent one (fail closed). The entries the search does
//! not return get the per-account compare, as before. The search runs after
//! the page was read, so what it proves is no older than the page.

use std::collections::HashSet;

use connector_kit::contract as pb;
use connector_kit::readback::normalise_dn;
use ldap3::Scope;

use super::{LdapConnector, PWD_LAST_SET, PasswordState, REVOKED_SCHEME, USER_PASSWORD, random_token, unreadable};
use crate::config::DirectoryMode;
use crate::escape;
use crate::target::{Directory, DirectoryEntry, TargetError, code};

/// Entries per absence search (an OR of their names).
pub const PASSWORD_BATCH: usize = 250;

impl LdapConnector {
    /// The normalised DNs of the page's entries whose `userPassword` is
    /// proven absent (see the module doc). Empty on AD, and for entries that
    /// returned a password.
    pub(super) async fn page_passwords_absent(
        &self,
        directory: &mut Directory,
        entries: &[DirectoryEntry],
    ) -> Result<HashSet<String>, TargetError> {
        let config = self.config();
        let mut absent = HashSet::new();
        if config.mode != DirectoryMode::Openldap {
            return Ok(absent);
        }
        let name_attribute = config.account_name_attribute();
        let unseen: Vec<&DirectoryEntry> = entries.iter().filter(|e| !e.has(USER_PASSWORD)).collect();
        for batch in unseen.chunks(PASSWORD_BATCH) {
            let terms: String = batch
                .iter()
                .filter_map(|e| e.values(&name_attribute).first().map(|name| escape::equality(&name_attribute, name)))
                .collect();
            if terms.is_empty() {
                continue;
            }
            let wanted: HashSet<String> = batch.iter().map(|e| normalise_dn(&e.dn)).collect();
            let filter = format!("(&(!({USER_PASSWORD}=*))(|{terms}))");
            // An answer refused (a size limit under the batch, say) proves
            // nothing: those entries get the per-account compare.
            let found =
                match directory.search(&config.users_base_dn, Scope::Subtree, &filter, &["1.1".to_owned()]).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::debug!(error = %error.error, "absence search refused: passwords compared per account");
                        continue;
                    }
                };
            for entry in found {
                let dn = normalise_dn(&entry.dn);
                if wanted.contains(&dn) {
                    absent.insert(dn);
                }
            }
        }
        Ok(absent)
    }

    /// The password's state as the bind can prove it. OpenLDAP: a
    /// `userPassword` that is not returned is absent only if a compare says
    /// "no such attribute"; otherwise it is hidden from this bind.
    async fn password_state(
        &self,
        directory: &mut Directory,
        entry: &DirectoryEntry,
        absent: Option<&HashSet<String>>,
    ) -> Result<PasswordState, TargetError> {
        if entry.has(USER_PASSWORD) || self.config().mode == DirectoryMode::ActiveDirectory {
            return Ok(match self.config().mode {
                DirectoryMode::ActiveDirectory if !entry.has(PWD_LAST_SET) => PasswordState::Unknown(
                    PWD_LAST_SET,
                    "not returned to the connector's bind, although every Active Directory account has one".into(),
                ),
                _ if self.password_usable(entry) => PasswordState::Usable,
                _ => PasswordState::Unusable,
            });
        }
        if absent.is_some_and(|absent| absent.contains(&normalise_dn(&entry.dn))) {
            return Ok(PasswordState::Unusable);
        }
        let probe = random_token();
        Ok(match directory.compare(&entry.dn, USER_PASSWORD, probe.as_bytes()).await? {
            code::NO_SUCH_ATTRIBUTE => PasswordState::Unusable,
            code::COMPARE_FALSE | code::COMPARE_TRUE => PasswordState::Unknown(
                USER_PASSWORD,
                "the entry has a password the connector's bind may not read (hidden by an ACL)".into(),
            ),
            rc => PasswordState::Unknown(
                USER_PASSWORD,
                format!("not returned to the connector's bind, and a compare was refused (LDAP result {rc})"),
            ),
        })
    }

    /// Whether the password can still be used to log in.
    pub(super) fn password_usable(&self, entry: &DirectoryEntry) -> bool {
        match self.config().mode {
            DirectoryMode::Openldap => {
                entry.binary.contains(&USER_PASSWORD.to_ascii_lowercase())
                    || entry.values(USER_PASSWORD).iter().any(|v| !v.starts_with(REVOKED_SCHEME))
            }
            DirectoryMode::ActiveDirectory => entry.first(PWD_LAST_SET) != Some("0"),
        }
    }

    /// Credentials still usable, as the contract names them, and whether
    /// every one could be seen (otherwise what could not is in `unreadable`).
    pub(super) async fn credential_state(
        &self,
        directory: &mut Directory,
        entry: &DirectoryEntry,
        passwords_absent: Option<&HashSet<String>>,
        unreadable_fields: &mut Vec<pb::UnreadableField>,
    ) -> Result<pb::CredentialState, TargetError> {
        let mut active = Vec::new();
        let mut complete = true;
        match self.password_state(directory, entry, passwords_absent).await? {
            PasswordState::Usable => active.push("password".to_owned()),
            PasswordState::Unusable => {}
            PasswordState::Unknown(attribute, reason) => {
                complete = false;
                unreadable_fields.push(unreadable("credentials", attribute, reason));
            }
        }
        for attribute in self.config().credential_attributes() {
            if entry.has(&attribute) {
                active.push(format!("attribute:{attribute}"));
            }
        }
        Ok(pb::CredentialState { active, complete, ..Default::default() })
    }
}
