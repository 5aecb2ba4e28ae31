//! The `Connector` trait a connector implements once for its target.

use std::future::Future;

use futures::stream::BoxStream;
use jml_contract::v1::{AccountRef, AccountState, ApplyResponse, DescribeResponse, DesiredAccount};

use crate::ConnectorError;

/// A stream of pages of managed accounts, as `List` produces them.
pub type AccountStream = BoxStream<'static, Result<Vec<AccountState>, ConnectorError>>;

/// One target's implementation of the provisioning contract.
///
/// The gRPC adapter validates every request against [`Connector::describe`]
/// before calling the connector (see [`crate::validate`]), so an implementation
/// receives a desired state whose presence, credential action, attribute names
/// and entitlement kinds are known to be well formed. It must still escape
/// every value it places in a DN, filter, URL path or target name.
pub trait Connector: Send + Sync + 'static {
    /// What this connector is. Must not call the target.
    fn describe(&self) -> DescribeResponse;

    /// A real check against the target (a bind, a GET). Health reports
    /// SERVING only after it succeeds.
    fn preflight(&self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Converge one account to `desired`. Idempotent: applying the same state
    /// again makes no change and reports none. `command_id` is for logs and
    /// target-side idempotency keys; the adapter fills it into the answer.
    fn apply(
        &self,
        command_id: &str,
        desired: &DesiredAccount,
    ) -> impl Future<Output = Result<ApplyResponse, ConnectorError>> + Send;

    /// Read one account fresh from the target, normalised by the declared
    /// comparison rules. An account that does not exist is `exists: false`,
    /// not an error.
    fn read(&self, account: &AccountRef) -> impl Future<Output = Result<AccountState, ConnectorError>> + Send;

    /// Every account in the declared scope, paged from the target in pages of
    /// about `page_size`, in bounded memory.
    fn list(&self, page_size: u32) -> AccountStream;

    /// [`Connector::list`] with the values of `correlation_attributes` (each
    /// one `Describe` declares; the adapter checks) filled into each
    /// account's `correlation_attributes`. The default lists without them,
    /// which is right only for a connector declaring none.
    fn list_scope(&self, page_size: u32, correlation_attributes: &[String]) -> AccountStream {
        let _ = correlation_attributes;
        self.list(page_size)
    }

    /// The account named `account_name` in the declared scope, whether or
    /// not it carries a key, as `list_scope` would show it (with the
    /// requested correlation attributes); `None` when there is none. The
    /// default refuses: only a connector declaring `scope_listing` is asked.
    fn find_in_scope(
        &self,
        account_name: &str,
        correlation_attributes: &[String],
    ) -> impl Future<Output = Result<Option<AccountState>, ConnectorError>> + Send {
        let _ = (account_name, correlation_attributes);
        async { Err(ConnectorError::unsupported("this connector cannot look accounts up in its scope")) }
    }

    /// Takes over the existing account `desired` names, which carries no
    /// correlation key (or already this person's), then converges it to
    /// `desired` (see `ApplyRequest.link` and [`crate::correlation`]). Only
    /// called when `Describe` declares `link`.
    fn link(
        &self,
        command_id: &str,
        desired: &DesiredAccount,
        expected_fingerprint: &str,
    ) -> impl Future<Output = Result<ApplyResponse, ConnectorError>> + Send {
        let _ = (command_id, desired, expected_fingerprint);
        async { Err(ConnectorError::unsupported("this connector cannot link existing accounts")) }
    }
}
