//! Group memberships: read for one account (Read, Apply) or for a whole page
//! of `List` at once.
//!
//! For one account, the managed groups are one `(member=<DN>)` search under
//! `groups_base_dn`, and the groups outside them one search under
//! `membership_search_base` (OpenLDAP: `member`, `uniqueMember`, `memberUid`;
//! AD: nested membership by the in-chain rule).
//!
//! For a page (issue #21), each of those becomes one search per batch of
//! [`MEMBERSHIP_BATCH`] entries, an OR of the same terms for every entry of the
//! batch, sent with the matched-values control (RFC 3876) so that a group of
//! 100,000 members answers only the values that name the batch (and its
//! name: the control drops every value no item matches). The answer is
//! joined to the entries in memory: member DNs by their normalised form, and
//! `memberUid` by the exact account name (its schema's caseExactIA5Match).
//! The page falls back to the per-account searches whenever the join cannot
//! be trusted: a group the server returned that the join attributes to no
//! entry of the batch, or any member value returned that names no entry of
//! the batch (a DN spelled in a way the normalisation does not see as equal,
//! or a server that ignored the non-critical control), an answer over the server's size limit, or a filter the client
//! cannot encode. AD's nested membership cannot be attributed from a batch
//! (the group names the nested group, not the account), so on AD only the
//! managed groups are batched.

use std::collections::{HashMap, HashSet};

use connector_kit::contract as pb;
use connector_kit::readback::normalise_dn;
use ldap3::Scope;

use super::{
    ADMIN_COUNT, DOMAIN_USERS_RID, GROUP, IN_CHAIN, LdapConnector, MEMBER_OF, PRIMARY_GROUP_ID, PRIVILEGED_RIDS,
};
use crate::config::DirectoryMode;
use crate::escape;
use crate::target::{Directory, DirectoryEntry, TargetError};

/// Entries whose memberships one search reads. Keeps each filter near 100 KiB.
pub const MEMBERSHIP_BATCH: usize = 250;

/// The memberships of one page of entries, joined from batched searches.
#[derive(Debug, Default)]
pub struct PageMemberships {
    /// Managed groups, (name, DN), by the normalised DN of a member.
    managed: HashMap<String, Vec<(String, String)>>,
    /// Groups anywhere under the membership search base holding a member;
    /// `None` when they are read per account (AD).
    unmanaged: Option<UnmanagedGroups>,
}

#[derive(Debug, Default)]
struct UnmanagedGroups {
    groups: Vec<DirectoryEntry>,
    /// Indices into `groups` by the normalised DN of a member.
    by_dn: HashMap<String, Vec<usize>>,
    /// Indices into `groups` by `memberUid` value.
    by_uid: HashMap<String, Vec<usize>>,
}

impl PageMemberships {
    /// The managed groups holding `member_dn`, in the order the server answered.
    pub fn managed_of(&self, member_dn: &str) -> Vec<(String, String)> {
        self.managed.get(&normalise_dn(member_dn)).cloned().unwrap_or_default()
    }

    /// The groups that may hold the account as an unmanaged membership, as
    /// the per-account search would answer them; `None` when they must be
    /// read per account.
    pub fn unmanaged_of(&self, member_dn: &str, account_name: &str) -> Option<Vec<DirectoryEntry>> {
        let unmanaged = self.unmanaged.as_ref()?;
        let mut indices: Vec<usize> = unmanaged.by_dn.get(&normalise_dn(member_dn)).cloned().unwrap_or_default();
        indices.extend(unmanaged.by_uid.get(account_name).into_iter().flatten().copied());
        indices.sort_unstable();
        indices.dedup();
        Some(indices.into_iter().map(|i| unmanaged.groups[i].clone()).collect())
    }

    /// Joins managed `groups` to the normalised member DNs in `wanted`;
    /// `false` when a group holds none of them or a member value that is
    /// none of them (the join cannot be trusted: read per account).
    fn join_managed(
        &mut self,
        groups: Vec<DirectoryEntry>,
        name_attribute: &str,
        member_attribute: &str,
        wanted: &HashSet<String>,
    ) -> bool {
        for group in groups {
            // A group without a name is no managed group (as per account).
            let Some(name) = group.first(name_attribute).map(str::to_owned) else { continue };
            let mut attributed = false;
            for member in group.values(member_attribute) {
                let key = normalise_dn(member);
                if !wanted.contains(&key) {
                    // The matched-values control returns only the values
                    // that name the batch: a value the join cannot
                    // attribute is an entry spelled in a form the
                    // normalisation misses (or a server that ignored the
                    // control). Its membership would be lost: read per account.
                    return false;
                }
                attributed = true;
                let held = self.managed.entry(key).or_default();
                if !held.iter().any(|(_, dn)| *dn == group.dn) {
                    held.push((name.clone(), group.dn.clone()));
                }
            }
            if !attributed {
                return false;
            }
        }
        true
    }

    /// Joins the groups of the unmanaged search to the batch's member DNs
    /// (`wanted`) and account names; `false` as for [`Self::join_managed`].
    fn join_unmanaged(
        &mut self,
        groups: Vec<DirectoryEntry>,
        dn_attributes: &[String],
        wanted: &HashSet<String>,
        names: &HashSet<String>,
    ) -> bool {
        let unmanaged = self.unmanaged.get_or_insert_with(UnmanagedGroups::default);
        for group in groups {
            let index = unmanaged.groups.len();
            let mut attributed = false;
            for attribute in dn_attributes {
                for member in group.values(attribute) {
                    let key = normalise_dn(member);
                    if !wanted.contains(&key) {
                        // As in `join_managed`: a value not attributed is a
                        // membership the join would lose.
                        return false;
                    }
                    attributed = true;
                    unmanaged.by_dn.entry(key).or_default().push(index);
                }
            }
            for uid in group.values(MEMBER_UID) {
                if !names.contains(uid) {
                    return false;
                }
                attributed = true;
                unmanaged.by_uid.entry(uid.clone()).or_default().push(index);
            }
            if !attributed {
                return false;
            }
            unmanaged.groups.push(group);
        }
        true
    }
}

const MEMBER_UID: &str = "memberUid";
const PLAIN_MEMBER_ATTRIBUTES: [&str; 2] = ["member", "uniqueMember"];

impl LdapConnector {
    /// The groups holding `member_dn`, as (name, group DN).
    pub(super) async fn memberships(
        &self,
        directory: &mut Directory,
        member_dn: &str,
    ) -> Result<Vec<(String, String)>, TargetError> {
        let config = self.config();
        let filter = escape::class_and_equality(&config.group_object_class(), &config.member_attribute, member_dn);
        let entries = directory
            .search(&config.groups_base_dn, Scope::Subtree, &filter, std::slice::from_ref(&config.group_name_attribute))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                entry.first(&config.group_name_attribute).map(str::to_owned).map(|name| (name, entry.dn))
            })
            .collect())
    }

    /// Whether a group outside the managed ones is privileged: named (or its
    /// DN listed) in `privileged_groups`, or marked by the directory itself.
    fn is_privileged_group(&self, dn: &str, name: Option<&str>, admin_count: Option<&str>) -> bool {
        let privileged = &self.inner.privileged;
        name.is_some_and(|n| privileged.contains(&n.to_lowercase()))
            || privileged.contains(&normalise_dn(dn))
            || admin_count == Some("1")
    }

    /// The member attributes (DN-valued) the unmanaged search asks for,
    /// OpenLDAP mode: the configured one, `member` and `uniqueMember`.
    fn dn_member_attributes(&self) -> Vec<String> {
        let mut attributes = vec![self.config().member_attribute.clone()];
        for plain in PLAIN_MEMBER_ATTRIBUTES {
            if !attributes.iter().any(|a| a.eq_ignore_ascii_case(plain)) {
                attributes.push(plain.to_owned());
            }
        }
        attributes
    }

    /// The groups under `membership_search_base` that hold `entry`, one search.
    pub(super) async fn unmanaged_groups(
        &self,
        directory: &mut Directory,
        entry: &DirectoryEntry,
        account_name: &str,
    ) -> Result<Vec<DirectoryEntry>, TargetError> {
        let config = self.config();
        let dn = escape::filter_value(&entry.dn);
        let (filter, attributes) = match config.mode {
            DirectoryMode::Openldap => (
                format!(
                    "(|({}={dn})(member={dn})(uniqueMember={dn})(memberUid={}))",
                    config.member_attribute,
                    escape::filter_value(account_name)
                ),
                vec![config.group_name_attribute.clone()],
            ),
            DirectoryMode::ActiveDirectory => (
                format!("({}:{IN_CHAIN}:={dn})", config.member_attribute),
                vec![config.group_name_attribute.clone(), ADMIN_COUNT.to_owned()],
            ),
        };
        directory.search(&config.membership_search_base(), Scope::Subtree, &filter, &attributes).await
    }

    /// Every group `groups` (the answer of [`Self::unmanaged_groups`]),
    /// `memberOf` and AD's primary group say `entry` belongs to that is not
    /// one of the `managed` group DNs (normalised), as unmanaged entitlements
    /// whose id is the group's DN.
    pub(super) fn unmanaged_entitlements(
        &self,
        groups: &[DirectoryEntry],
        entry: &DirectoryEntry,
        managed: &HashSet<String>,
    ) -> Vec<pb::Entitlement> {
        let config = self.config();
        let mut seen: HashSet<String> = managed.clone();
        let mut unmanaged = Vec::new();
        for group in groups {
            if seen.insert(normalise_dn(&group.dn)) {
                let privileged = self.is_privileged_group(
                    &group.dn,
                    group.first(&config.group_name_attribute),
                    group.first(ADMIN_COUNT),
                );
                unmanaged.push(pb::Entitlement { kind: GROUP.into(), id: group.dn.clone(), privileged });
            }
        }
        // `memberOf` names groups the search may not reach (another subtree).
        for group_dn in entry.values(MEMBER_OF) {
            if seen.insert(normalise_dn(group_dn)) {
                let name = group_dn.split(',').next().and_then(|rdn| rdn.split_once('=')).map(|(_, v)| v.trim());
                let privileged = self.is_privileged_group(group_dn, name, None);
                unmanaged.push(pb::Entitlement { kind: GROUP.into(), id: group_dn.clone(), privileged });
            }
        }
        // AD: the primary group is membership that neither `member` nor
        // `memberOf` shows.
        if let Some(rid) = entry.first(PRIMARY_GROUP_ID)
            && rid != DOMAIN_USERS_RID
        {
            unmanaged.push(pb::Entitlement {
                kind: GROUP.into(),
                id: format!("{PRIMARY_GROUP_ID}:{rid}"),
                privileged: PRIVILEGED_RIDS.contains(&rid),
            });
        }
        unmanaged
    }

    /// The memberships of a page of `List` (see the module doc); `None` when
    /// the page must be read per account.
    pub(super) async fn page_memberships(
        &self,
        directory: &mut Directory,
        entries: &[DirectoryEntry],
    ) -> Result<Option<PageMemberships>, TargetError> {
        let config = self.config();
        let name_attribute = config.account_name_attribute();
        // The matched-values filter keeps the member values naming the batch
        // and every value of the group's name (slapd answers only the values
        // some item matches, whatever the attribute).
        let matched = |terms: &str| format!("({terms}({}=*))", config.group_name_attribute);
        let mut page = PageMemberships::default();
        for batch in entries.chunks(MEMBERSHIP_BATCH) {
            let wanted: HashSet<String> = batch.iter().map(|e| normalise_dn(&e.dn)).collect();
            // The managed groups.
            let terms: String = batch.iter().map(|e| escape::equality(&config.member_attribute, &e.dn)).collect();
            let filter = format!("(&(objectClass={})(|{terms}))", config.group_object_class());
            let attributes = [config.group_name_attribute.clone(), config.member_attribute.clone()];
            let Some(groups) =
                directory.search_matched(&config.groups_base_dn, &filter, &attributes, &matched(&terms)).await?
            else {
                return Ok(None);
            };
            if !page.join_managed(groups, &config.group_name_attribute, &config.member_attribute, &wanted) {
                tracing::debug!("a managed group matched no entry of the page: memberships read per account");
                return Ok(None);
            }
            if config.mode != DirectoryMode::Openldap {
                continue;
            }
            // Every group holding the account, as the per-account search asks.
            let dn_attributes = self.dn_member_attributes();
            let names: HashSet<String> =
                batch.iter().filter_map(|e| e.values(&name_attribute).first().cloned()).collect();
            let mut terms = String::new();
            for entry in batch {
                for attribute in &dn_attributes {
                    terms.push_str(&escape::equality(attribute, &entry.dn));
                }
                let name = entry.values(&name_attribute).first().map(String::as_str).unwrap_or_default();
                terms.push_str(&escape::equality(MEMBER_UID, name));
            }
            let mut attributes = vec![config.group_name_attribute.clone()];
            attributes.extend(dn_attributes.iter().cloned());
            attributes.push(MEMBER_UID.to_owned());
            let Some(groups) = directory
                .search_matched(&config.membership_search_base(), &format!("(|{terms})"), &attributes, &matched(&terms))
                .await?
            else {
                return Ok(None);
            };
            if !page.join_unmanaged(groups, &dn_attributes, &wanted, &names) {
                tracing::debug!("a group matched no entry of the page: memberships read per account");
                return Ok(None);
            }
        }
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn group(dn: &str, values: &[(&str, &[&str])]) -> DirectoryEntry {
        DirectoryEntry {
            dn: dn.into(),
            text: values
                .iter()
                .map(|(a, v)| (a.to_ascii_lowercase(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect::<HashMap<_, _>>(),
            binary: HashSet::new(),
        }
    }

    #[test]
    fn managed_groups_join_by_normalised_dn() {
        let wanted: HashSet<String> =
            ["uid=a,ou=people,dc=x", "uid=b,ou=people,dc=x"].iter().map(|d| normalise_dn(d)).collect();
        let mut page = PageMemberships::default();
        let groups = vec![
            group("cn=staff,ou=groups,dc=x", &[("cn", &["staff"]), ("member", &["UID=a, ou=People,dc=x"])]),
            group(
                "cn=ops,ou=groups,dc=x",
                &[("cn", &["ops"]), ("member", &["uid=a,ou=people,dc=x", "uid=b,ou=people,dc=x"])],
            ),
        ];
        assert!(page.join_managed(groups, "cn", "member", &wanted));
        let names = |dn: &str| page.managed_of(dn).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names("uid=a,ou=people,dc=x"), ["staff", "ops"]);
        assert_eq!(names("uid=B,ou=people,dc=x"), ["ops"]);
        assert!(names("uid=c,ou=people,dc=x").is_empty());
    }

    #[test]
    fn a_group_the_join_cannot_attribute_makes_the_page_fall_back() {
        let wanted: HashSet<String> = [normalise_dn("uid=a,ou=people,dc=x")].into();
        let mut page = PageMemberships::default();
        // The server matched it (say by an escape the normalisation spells
        // differently); the join does not see whom it holds.
        let groups = vec![group("cn=odd,dc=x", &[("cn", &["odd"]), ("member", &["uid=\\61,ou=people,dc=x"])])];
        assert!(!page.join_managed(groups.clone(), "cn", "member", &wanted));
        let names = HashSet::from(["a".to_owned()]);
        assert!(!PageMemberships::default().join_unmanaged(groups, &["member".into()], &wanted, &names));
    }

    #[test]
    fn unmanaged_groups_join_by_dn_and_exact_member_uid() {
        let wanted: HashSet<String> = [normalise_dn("uid=a,ou=people,dc=x")].into();
        let names = HashSet::from(["a".to_owned(), "b".to_owned()]);
        let groups = vec![
            group("cn=shell,dc=x", &[("memberUid", &["b"])]),
            group("cn=dbas,dc=x", &[("uniqueMember", &["uid=a,ou=people,dc=x"]), ("memberUid", &["a"])]),
        ];
        let mut page = PageMemberships::default();
        assert!(page.join_unmanaged(groups, &["member".into(), "uniqueMember".into()], &wanted, &names));
        let dns = |dn: &str, name: &str| {
            page.unmanaged_of(dn, name).unwrap_or_default().into_iter().map(|g| g.dn).collect::<Vec<_>>()
        };
        assert_eq!(dns("uid=a,ou=people,dc=x", "a"), ["cn=dbas,dc=x"]);
        assert_eq!(dns("uid=b,ou=people,dc=x", "b"), ["cn=shell,dc=x"]);
        // memberUid compares exactly, as its schema says.
        assert!(dns("uid=B2,ou=people,dc=x", "B").is_empty());
    }
}
