//! `List`: the accounts of the scope, a page at a time. Each page's group
//! memberships ([`super::membership`]) and password absence
//! ([`super::credentials`]) are read in batches, then its entries are read
//! back `list_concurrency` at a time.

use std::sync::Arc;

use connector_kit::{AccountStream, correlation};
use futures::{StreamExt, TryStreamExt};

use super::LdapConnector;
use crate::target::{Directory, PagedSearch, TargetError};
use connector_kit::contract as pb;

impl LdapConnector {
    /// `List`: the scope a page at a time, each page's memberships and
    /// password absence read in batches, its entries read back concurrently.
    pub(super) fn list_pages(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let requested: Arc<[String]> = correlation_attributes.into();
        enum Listing {
            Start,
            Running(Directory, Box<PagedSearch>),
            Done,
        }
        let this = self.clone();
        let page_size = page_size.max(1);
        Box::pin(futures::stream::unfold(Listing::Start, move |state| {
            let this = this.clone();
            let requested = requested.clone();
            async move {
                let (directory, mut search) = match state {
                    Listing::Done => return None,
                    Listing::Running(directory, search) => (directory, *search),
                    Listing::Start => match this.start_list(page_size).await {
                        Ok(started) => started,
                        Err(error) => return Some((Err(error), Listing::Done)),
                    },
                };
                let mut entries = Vec::new();
                let mut finished = false;
                while entries.len() < page_size as usize {
                    match search.next().await {
                        Ok(Some(entry)) => entries.push(entry),
                        Ok(None) => {
                            finished = true;
                            break;
                        }
                        Err(error) => return Some((Err(error.error), Listing::Done)),
                    }
                }
                if entries.is_empty() {
                    return None;
                }
                let concurrency = this.config().list_concurrency;
                // The page's membership searches and its password-absence
                // search are independent: both in flight at once.
                let (mut for_groups, mut for_passwords) = (directory.clone(), directory.clone());
                let (memberships, absent) = tokio::join!(
                    this.page_memberships(&mut for_groups, &entries),
                    this.page_passwords_absent(&mut for_passwords, &entries)
                );
                let memberships = match memberships {
                    Ok(memberships) => memberships.map(Arc::new),
                    Err(error) => return Some((Err(error.error), Listing::Done)),
                };
                let absent = match absent {
                    Ok(absent) => Arc::new(absent),
                    Err(error) => return Some((Err(error.error), Listing::Done)),
                };
                let page: Result<Vec<pb::AccountState>, TargetError> = futures::stream::iter(entries)
                    .map(|entry| {
                        let this = this.clone();
                        let mut directory = directory.clone();
                        let requested = requested.clone();
                        let memberships = memberships.clone();
                        let absent = absent.clone();
                        async move {
                            let mut state = this
                                .account_state(&mut directory, &entry, None, memberships.as_deref(), Some(&absent))
                                .await?;
                            let name = state.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
                            state.correlation_attributes =
                                correlation::collect(&requested, &name, |attribute| entry.values(attribute).to_vec());
                            Ok::<_, TargetError>(state)
                        }
                    })
                    .buffered(concurrency)
                    .try_collect()
                    .await;
                match page {
                    Ok(page) => {
                        let next = if finished { Listing::Done } else { Listing::Running(directory, Box::new(search)) };
                        Some((Ok(page), next))
                    }
                    Err(error) => Some((Err(error.error), Listing::Done)),
                }
            }
        }))
    }
}
