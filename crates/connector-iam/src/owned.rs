//! Non-human identities a person owns on IAM (#20): IAM users (service
//! users) anywhere under `owned_identities.path_prefix` whose owner tag
//! (`owned_identities.owner_tag_key`) holds the person id, with their access
//! keys and other credentials. A user carrying the person tag (a person's own
//! account) is never taken for a service user.
//!
//! - **report**: each is listed and acknowledged (`report_owned`); nothing
//!   changes.
//! - **disable**: each still owned by the person has its login profile
//!   deleted and every access key, signing certificate, SSH key and
//!   service-specific credential set `Inactive` (kept: the identity can be
//!   given an owner and reactivated); `disable_owned` per identity.
//! - **transfer**: each still owned by the person gets the new owner in the
//!   owner tag and the person in the previous-owner tag (one `TagUser` call,
//!   so an identity is never ownerless); `transfer_owner` per identity.
//!
//! Read lists every service user whose owner or previous owner is the person,
//! so a transfer is proven by reading the new owner back. Finding them costs
//! one `ListUsers` page per 100 users and one `ListUserTags` per user under
//! the prefix, at `read_concurrency`.

use std::collections::BTreeMap;

use connector_kit::contract as pb;
use connector_kit::{ConnectorError, ErrorKind};
use futures::{StreamExt, TryStreamExt};

use crate::config::OwnedIdentitiesConfig;
use crate::connector::IamConnector;
use crate::target::IamUser;

/// The kind of an owned service user.
pub const KIND_IAM_USER: &str = "iam_user";

/// A service user found for a person, with its credentials.
struct ServiceUser {
    user: IamUser,
    credentials: crate::target::HeldCredentials,
}

impl IamConnector {
    fn owned_config(&self) -> Option<&OwnedIdentitiesConfig> {
        self.config().owned_identities.as_ref()
    }

    /// Every service user whose owner or previous owner is `person_id`.
    async fn service_users(&self, person_id: &str) -> Result<Vec<ServiceUser>, ConnectorError> {
        let Some(owned) = self.owned_config() else { return Ok(Vec::new()) };
        let config = self.config();
        let target = self.target();
        let users: Vec<IamUser> = target.list_users(&owned.path_prefix, config.list_page_size).try_collect().await?;
        let found: Vec<Result<Option<ServiceUser>, ConnectorError>> = futures::stream::iter(users)
            .map(|user| async move {
                let tags = match target.user_tags(&user.user_name).await {
                    Ok(tags) => tags,
                    Err(error) if error.kind == ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(error),
                };
                let owns = |key: &str| tags.get(key).is_some_and(|v| v == person_id);
                if tags.contains_key(&config.person_tag_key)
                    || !(owns(&owned.owner_tag_key) || owns(&owned.previous_owner_tag_key))
                {
                    return Ok(None);
                }
                let credentials = match target.credentials(&user.user_name).await {
                    Ok(credentials) => credentials,
                    Err(error) if error.kind == ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(error),
                };
                Ok(Some(ServiceUser { user: IamUser { tags, ..user }, credentials }))
            })
            .buffered(config.read_concurrency)
            .collect()
            .await;
        let mut out = Vec::new();
        for result in found {
            out.extend(result?);
        }
        out.sort_by(|a, b| a.user.user_name.cmp(&b.user.user_name));
        Ok(out)
    }

    fn owner_of(&self, user: &IamUser) -> String {
        self.owned_config().and_then(|o| user.tags.get(&o.owner_tag_key)).cloned().unwrap_or_default()
    }

    /// The owned identities of `person_id` as the contract shows them, and
    /// whether the list is complete (false when the connector is not
    /// configured for owned identities).
    pub(crate) async fn owned_identities(
        &self,
        person_id: &str,
    ) -> Result<(Vec<pb::OwnedIdentity>, bool), ConnectorError> {
        let Some(owned) = self.owned_config() else { return Ok((Vec::new(), false)) };
        let identities = self
            .service_users(person_id)
            .await?
            .into_iter()
            .map(|found| pb::OwnedIdentity {
                kind: KIND_IAM_USER.into(),
                id: found.user.user_name.clone(),
                target_native_id: found.user.user_id.clone(),
                owner: self.owner_of(&found.user),
                previous_owner: found.user.tags.get(&owned.previous_owner_tag_key).cloned().unwrap_or_default(),
                enabled: crate::connector::usable(&found.credentials),
                credentials: crate::connector::credential_labels(&found.credentials),
            })
            .collect();
        Ok((identities, true))
    }

    /// Carries out an owned-identity directive for `person_id`, appending
    /// each action to `changes`. The kit has checked the directive against
    /// `Describe` (a transfer names another person as the new owner).
    pub(crate) async fn act_on_owned(
        &self,
        person_id: &str,
        directive: &pb::OwnedIdentityDirective,
        changes: &mut Vec<pb::Change>,
    ) -> Result<(), ConnectorError> {
        let action =
            pb::OwnedIdentityAction::try_from(directive.action).unwrap_or(pb::OwnedIdentityAction::Unspecified);
        let Some(owned) = self.owned_config().cloned() else {
            return match action {
                pb::OwnedIdentityAction::Unspecified => Ok(()),
                _ => Err(ConnectorError::unsupported("this connector is not configured for owned identities")),
            };
        };
        if action == pb::OwnedIdentityAction::Unspecified {
            return Ok(());
        }
        for found in self.service_users(person_id).await? {
            let name = found.user.user_name.clone();
            let subject = format!("{KIND_IAM_USER}:{name}");
            let still_owned = self.owner_of(&found.user) == person_id;
            match action {
                pb::OwnedIdentityAction::Report => changes.push(change("report_owned", subject)),
                pb::OwnedIdentityAction::Disable if still_owned && crate::connector::usable(&found.credentials) => {
                    let mut deactivated = Vec::new();
                    self.deactivate_all(&name, &found.credentials, &mut deactivated).await?;
                    changes.push(change("disable_owned", subject));
                    changes.extend(deactivated.into_iter().map(|c| change(&c.action, format!("{name}/{}", c.subject))));
                }
                pb::OwnedIdentityAction::Transfer if still_owned => {
                    let tags = BTreeMap::from([
                        (owned.owner_tag_key.clone(), directive.new_owner.clone()),
                        (owned.previous_owner_tag_key.clone(), person_id.to_owned()),
                    ]);
                    self.target().tag_user(&name, &tags).await?;
                    changes.push(change("transfer_owner", format!("{subject} to {}", directive.new_owner)));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn change(action: &str, subject: impl Into<String>) -> pb::Change {
    pb::Change { action: action.into(), subject: subject.into() }
}

/// What `Describe` declares about owned identities.
pub fn support(config: Option<&OwnedIdentitiesConfig>) -> Option<pb::OwnedIdentitySupport> {
    config.map(|owned| pb::OwnedIdentitySupport {
        kinds: vec![KIND_IAM_USER.into()],
        actions: [pb::OwnedIdentityAction::Report, pb::OwnedIdentityAction::Disable, pb::OwnedIdentityAction::Transfer]
            .into_iter()
            .map(|a| a as i32)
            .collect(),
        owner_source: format!(
            "IAM user tag {:?} under path {} (previous owner in tag {:?})",
            owned.owner_tag_key, owned.path_prefix, owned.previous_owner_tag_key
        ),
    })
}
