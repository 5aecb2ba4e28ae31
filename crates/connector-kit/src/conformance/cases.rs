//! The conformance cases. Each is a plain `async fn(&ConformanceTarget)`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use jml_contract::v1 as pb;
use rand::Rng;

use super::{ConformanceTarget, Outcome, Violation};
use crate::readback::{Difference, compare};
use crate::{CONTRACT_VERSION, ConnectorError, ErrorKind};

/// The values every connector must either round-trip exactly or refuse with a
/// typed INVALID_ARGUMENT: LDAP DN and filter specials, SCIM filter and URL
/// path specials, NUL, surrounding spaces, non-ASCII, and a 10 kB string.
pub fn hostile_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "*",
        "(",
        ")",
        "\\",
        ",",
        "=",
        "+",
        "\"",
        "#",
        ";",
        "<",
        ">",
        "\0",
        " leading",
        "trailing ",
        "Zoë Ünïcødé 名前",
        "*)(uid=*",
        ")(|(objectClass=*)",
        "cn=admin,dc=example,dc=org",
        "a\\2a",
        "\" or userName pr or \"",
        "../../x",
        "a/b?c#d",
        "%2e%2e%2f",
        "#hash",
        "x\r\ny",
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    values.push("x".repeat(10 * 1024));
    values
}

/// Per-case state: a fresh random prefix, the accounts created, cleanup.
struct Run<'a> {
    case: &'static str,
    target: &'a ConformanceTarget,
    description: pb::DescribeResponse,
    prefix: String,
    created: Mutex<BTreeMap<(String, String), pb::AccountRef>>,
    commands: AtomicU64,
}

impl<'a> Run<'a> {
    async fn start(case: &'static str, target: &'a ConformanceTarget) -> Result<Run<'a>, Violation> {
        let description =
            target.client.describe().await.map_err(|e| Violation { case, message: format!("Describe failed: {e}") })?;
        let prefix = format!("cf{:08x}", rand::rng().random::<u32>());
        Ok(Self { case, target, description, prefix, created: Mutex::default(), commands: AtomicU64::new(0) })
    }

    fn fail(&self, message: impl Into<String>) -> Violation {
        Violation { case: self.case, message: message.into() }
    }

    fn capabilities(&self) -> pb::Capabilities {
        self.description.capabilities.unwrap_or_default()
    }

    fn account(&self, suffix: &str) -> pb::AccountRef {
        pb::AccountRef {
            person_id: format!("{}-{suffix}", self.prefix),
            account_name: (self.target.fixture.account_name)(format!("{}{suffix}", self.prefix)),
        }
    }

    fn entitlement(&self, index: usize) -> Result<pb::Entitlement, Violation> {
        self.target
            .fixture
            .entitlements
            .get(index)
            .cloned()
            .ok_or_else(|| self.fail(format!("the fixture must name at least {} entitlements", index + 1)))
    }

    fn desired(&self, account: &pb::AccountRef, entitlements: Vec<pb::Entitlement>) -> pb::DesiredAccount {
        pb::DesiredAccount {
            account: Some(account.clone()),
            presence: pb::Presence::Present as i32,
            enabled: true,
            attributes: (self.target.fixture.attributes)(&account.account_name).into_iter().collect(),
            entitlements,
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        }
    }

    fn absent(&self, account: &pb::AccountRef) -> pb::DesiredAccount {
        pb::DesiredAccount {
            account: Some(account.clone()),
            presence: pb::Presence::Absent as i32,
            enabled: false,
            attributes: Default::default(),
            entitlements: vec![],
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        }
    }

    fn command_id(&self) -> String {
        format!("{}-c{}", self.prefix, self.commands.fetch_add(1, Ordering::Relaxed))
    }

    fn track(&self, desired: &pb::DesiredAccount) {
        if let Some(account) = &desired.account
            && let Ok(mut created) = self.created.lock()
        {
            created.insert((account.person_id.clone(), account.account_name.clone()), account.clone());
        }
    }

    async fn try_apply_as(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
    ) -> Result<pb::ApplyResponse, ConnectorError> {
        self.track(desired);
        self.target.client.apply(command_id, desired.clone()).await
    }

    async fn try_apply(&self, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        self.try_apply_as(&self.command_id(), desired).await
    }

    async fn apply_as(
        &self,
        command_id: &str,
        desired: &pb::DesiredAccount,
        step: &str,
    ) -> Result<pb::ApplyResponse, Violation> {
        let acknowledgement = self
            .try_apply_as(command_id, desired)
            .await
            .map_err(|e| self.fail(format!("{step}: Apply failed: {e}")))?;
        if acknowledgement.command_id != command_id {
            return Err(self.fail(format!(
                "{step}: the acknowledgement names command {:?}, not {command_id:?}",
                acknowledgement.command_id
            )));
        }
        Ok(acknowledgement)
    }

    async fn apply(&self, desired: &pb::DesiredAccount, step: &str) -> Result<pb::ApplyResponse, Violation> {
        self.apply_as(&self.command_id(), desired, step).await
    }

    async fn read(&self, account: &pb::AccountRef, step: &str) -> Result<pb::AccountState, Violation> {
        self.target.client.read(account.clone()).await.map_err(|e| self.fail(format!("{step}: Read failed: {e}")))
    }

    /// Reads back and requires equality with `desired`.
    async fn expect_read_back(&self, desired: &pb::DesiredAccount, step: &str) -> Result<pb::AccountState, Violation> {
        let account = desired.account.clone().unwrap_or_default();
        let state = self.read(&account, step).await?;
        let differences = compare(&self.description, desired, &state);
        if !differences.is_empty() {
            return Err(self.fail(format!("{step}: read-back differs from the desired state: {}", join(&differences))));
        }
        if state.exists {
            let person_id = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
            if person_id != account.person_id {
                return Err(self.fail(format!(
                    "{step}: read-back carries person id {person_id:?}, not the correlation key {:?}",
                    account.person_id
                )));
            }
        }
        Ok(state)
    }

    fn expect_no_changes(&self, acknowledgement: &pb::ApplyResponse, step: &str) -> Result<(), Violation> {
        if acknowledgement.changes.is_empty() {
            Ok(())
        } else {
            let changes: Vec<String> =
                acknowledgement.changes.iter().map(|c| format!("{} {}", c.action, c.subject)).collect();
            Err(self.fail(format!("{step}: re-applying the same state reported changes: {}", changes.join(", "))))
        }
    }

    fn expect_invalid(&self, result: Result<pb::ApplyResponse, ConnectorError>, step: &str) -> Result<(), Violation> {
        match result {
            Err(error) if error.kind == ErrorKind::InvalidArgument && !error.retryable => Ok(()),
            Err(error) => Err(self.fail(format!("{step}: expected a non-retryable INVALID_ARGUMENT, got {error}"))),
            Ok(_) => Err(self.fail(format!("{step}: expected INVALID_ARGUMENT, the connector accepted it"))),
        }
    }

    /// Deletes (or, without delete, disables) every account this run touched.
    async fn cleanup(&self) {
        let accounts: Vec<pb::AccountRef> =
            self.created.lock().map(|c| c.values().cloned().collect()).unwrap_or_default();
        let caps = self.capabilities();
        for account in accounts {
            let mut desired = self.absent(&account);
            if !caps.delete {
                desired.presence = pb::Presence::Present as i32;
                desired.attributes = (self.target.fixture.attributes)(&account.account_name).into_iter().collect();
            }
            if let Err(error) = self.target.client.apply(&self.command_id(), desired).await
                && error.kind != ErrorKind::InvalidArgument
            {
                eprintln!("conformance cleanup of {:?} failed: {error}", account.account_name);
            }
        }
    }
}

fn join(differences: &[Difference]) -> String {
    differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

macro_rules! with_cleanup {
    ($run:ident, $body:block) => {{
        let result: Result<Outcome, Violation> = async { $body }.await;
        $run.cleanup().await;
        result
    }};
}

// After `with_cleanup!`, which it uses.
mod out_of_band;

pub use out_of_band::*;

/// `Describe` names the contract version, the kind, the target, the
/// capabilities, and every entitlement kind the fixture uses.
pub async fn describe_is_complete(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("describe_is_complete", target).await?;
    let d = &run.description;
    if d.contract_version != CONTRACT_VERSION {
        return Err(run.fail(format!("contract_version is {:?}, not {CONTRACT_VERSION:?}", d.contract_version)));
    }
    if d.connector_kind.is_empty() || d.target_id.is_empty() {
        return Err(run.fail("connector_kind and target_id must be set"));
    }
    if d.capabilities.is_none() {
        return Err(run.fail("capabilities must be set"));
    }
    let kinds: BTreeSet<&str> = d.entitlement_kinds.iter().map(|k| k.kind.as_str()).collect();
    if kinds.len() != d.entitlement_kinds.len() {
        return Err(run.fail("entitlement kinds must be unique"));
    }
    for entitlement in &target.fixture.entitlements {
        if !kinds.contains(entitlement.kind.as_str()) {
            return Err(run.fail(format!("entitlement kind {:?} is used but not declared", entitlement.kind)));
        }
    }
    if target.fixture.entitlements.len() < 3 {
        return Err(run.fail("the fixture must name at least three entitlements"));
    }
    Ok(Outcome::Passed)
}

/// Create: the acknowledgement names the command, the changes and the native
/// id; the read-back equals the desired state and carries the correlation key.
pub async fn create_then_read_back_matches(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("create_then_read_back_matches", target).await?;
    with_cleanup!(run, {
        let account = run.account("create");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        let acknowledgement = run.apply(&desired, "create").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("create: the acknowledgement lists no change"));
        }
        if acknowledgement.target_native_id.is_empty() {
            return Err(run.fail("create: the acknowledgement has no target-native id"));
        }
        let state = run.expect_read_back(&desired, "after create").await?;
        if state.target_native_id != acknowledgement.target_native_id {
            return Err(run.fail("read-back's target-native id differs from the acknowledgement's"));
        }
        Ok(Outcome::Passed)
    })
}

/// Applying the same command again, or the same state under a new command,
/// changes nothing and acknowledges the same account.
pub async fn reapply_same_command_is_idempotent(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("reapply_same_command_is_idempotent", target).await?;
    with_cleanup!(run, {
        let account = run.account("idem");
        let desired = run.desired(&account, vec![run.entitlement(0)?, run.entitlement(1)?]);
        let command_id = run.command_id();
        let first = run.apply_as(&command_id, &desired, "first apply").await?;
        let again = run.apply_as(&command_id, &desired, "same command again").await?;
        run.expect_no_changes(&again, "same command again")?;
        if again.target_native_id != first.target_native_id {
            return Err(run.fail("the repeated command acknowledged another target-native id"));
        }
        let fresh = run.apply(&desired, "same state, new command").await?;
        run.expect_no_changes(&fresh, "same state, new command")?;
        run.expect_read_back(&desired, "after re-apply").await?;
        Ok(Outcome::Passed)
    })
}

/// A command id reused with a different desired state is refused and changes nothing.
pub async fn command_id_reuse_with_other_state_is_refused(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("command_id_reuse_with_other_state_is_refused", target).await?;
    with_cleanup!(run, {
        let account = run.account("reuse");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        let command_id = run.command_id();
        run.apply_as(&command_id, &desired, "first apply").await?;
        let mut other = desired.clone();
        other.entitlements = vec![run.entitlement(1)?];
        run.expect_invalid(run.try_apply_as(&command_id, &other).await, "reused command id")?;
        run.expect_read_back(&desired, "after the refused command").await?;
        Ok(Outcome::Passed)
    })
}

/// A mover: entitlements swapped and attributes changed; what is no longer
/// granted is gone on read-back.
pub async fn mover_swaps_entitlements_and_attributes(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("mover_swaps_entitlements_and_attributes", target).await?;
    with_cleanup!(run, {
        let account = run.account("mover");
        let before = run.desired(&account, vec![run.entitlement(0)?, run.entitlement(1)?]);
        run.apply(&before, "joiner").await?;
        run.expect_read_back(&before, "after joiner").await?;
        let mut after = run.desired(&account, vec![run.entitlement(1)?, run.entitlement(2)?]);
        after.attributes = (target.fixture.changed_attributes)(&account.account_name).into_iter().collect();
        let acknowledgement = run.apply(&after, "mover").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("mover: the acknowledgement lists no change"));
        }
        let state = run.expect_read_back(&after, "after mover").await?;
        let removed = run.entitlement(0)?;
        if state.entitlements.iter().any(|e| e.kind == removed.kind && e.id.eq_ignore_ascii_case(&removed.id)) {
            return Err(run.fail("mover: the entitlement no longer granted is still held"));
        }
        Ok(Outcome::Passed)
    })
}

/// Disable keeps the account and shows it disabled; enable restores it.
pub async fn disable_then_enable(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("disable_then_enable", target).await?;
    if !run.capabilities().disable {
        return Ok(Outcome::Skipped("the connector does not declare `disable`".into()));
    }
    with_cleanup!(run, {
        let account = run.account("disable");
        let mut desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        desired.enabled = false;
        let acknowledgement = run.apply(&desired, "disable").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("disable: the acknowledgement lists no change"));
        }
        run.expect_read_back(&desired, "after disable").await?;
        run.expect_no_changes(&run.apply(&desired, "disable again").await?, "disable again")?;
        desired.enabled = true;
        run.apply(&desired, "enable").await?;
        run.expect_read_back(&desired, "after enable").await?;
        Ok(Outcome::Passed)
    })
}

/// A leaver's state: disabled, no entitlements, every credential revoked.
/// Read-back shows no active credential; re-applying changes nothing.
pub async fn revoke_credentials(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("revoke_credentials", target).await?;
    let caps = run.capabilities();
    if !caps.credential_revocation {
        return Ok(Outcome::Skipped("the connector does not declare `credential_revocation`".into()));
    }
    with_cleanup!(run, {
        let account = run.account("revoke");
        let mut desired = run.desired(&account, vec![run.entitlement(0)?, run.entitlement(1)?]);
        run.apply(&desired, "create").await?;
        desired.enabled = !caps.disable;
        desired.entitlements.clear();
        desired.credentials = pb::CredentialAction::RevokeAll as i32;
        run.apply(&desired, "revoke").await?;
        let state = run.read(&account, "after revoke").await?;
        let credentials = state.credentials.clone().unwrap_or_default();
        if !credentials.active.is_empty() {
            return Err(run.fail(format!("after revoke: credentials still active: {:?}", credentials.active)));
        }
        let differences = compare(&run.description, &desired, &state);
        let tolerated = !caps.credential_revocation_verifiable;
        let unexplained: Vec<Difference> =
            differences.into_iter().filter(|d| !(tolerated && *d == Difference::CredentialsUnproven)).collect();
        if !unexplained.is_empty() {
            return Err(run.fail(format!("after revoke: {}", join(&unexplained))));
        }
        if caps.credential_revocation_verifiable && !credentials.complete {
            return Err(run.fail("declares verifiable revocation but read-back says the listing is incomplete"));
        }
        run.expect_no_changes(&run.apply(&desired, "revoke again").await?, "revoke again")?;
        Ok(Outcome::Passed)
    })
}

/// Delete removes the account; deleting again changes nothing; an account
/// that never existed reads back as absent, not as an error.
pub async fn delete_removes_account(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("delete_removes_account", target).await?;
    if !run.capabilities().delete {
        return Ok(Outcome::Skipped("the connector does not declare `delete`".into()));
    }
    with_cleanup!(run, {
        let account = run.account("delete");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        let absent = run.absent(&account);
        let acknowledgement = run.apply(&absent, "delete").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("delete: the acknowledgement lists no change"));
        }
        run.expect_read_back(&absent, "after delete").await?;
        run.expect_no_changes(&run.apply(&absent, "delete again").await?, "delete again")?;
        let never = run.account("never");
        let state = run.read(&never, "never created").await?;
        if state.exists {
            return Err(run.fail("an account that was never created reads back as existing"));
        }
        Ok(Outcome::Passed)
    })
}

/// `Read` reads the target, not a cache: an edit made directly on the target
/// shows in the next read-back, and the next apply reverts it.
pub async fn read_is_fresh_from_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_is_fresh_from_target", target).await?;
    let Some(backdoor) = target.fixture.backdoor.clone() else {
        return Ok(Outcome::Skipped("the fixture gives no direct access to the target".into()));
    };
    with_cleanup!(run, {
        let account = run.account("fresh");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        run.expect_read_back(&desired, "after create").await?;
        let ad_hoc = run.entitlement(1)?;
        backdoor
            .grant_directly(&account, &ad_hoc)
            .await
            .map_err(|e| run.fail(format!("the direct edit on the target failed: {e:#}")))?;
        let state = run.read(&account, "after the direct edit").await?;
        let differences = compare(&run.description, &desired, &state);
        let expected = Difference::ExcessEntitlement { kind: ad_hoc.kind.clone(), id: ad_hoc.id.clone() };
        let shows_edit = differences.iter().any(|d| match (d, &expected) {
            (Difference::ExcessEntitlement { kind, id }, Difference::ExcessEntitlement { kind: k, id: i }) => {
                kind == k && id.eq_ignore_ascii_case(i)
            }
            _ => false,
        });
        if !shows_edit {
            return Err(run.fail(format!(
                "Read does not show an entitlement granted directly on the target (differences: [{}]): it is not reading the target",
                join(&differences)
            )));
        }
        run.apply(&desired, "revert the direct edit").await?;
        run.expect_read_back(&desired, "after revert").await?;
        Ok(Outcome::Passed)
    })
}

/// `List` streams every managed account in pages no larger than asked, and
/// finds exactly the accounts this run created, each once, each as desired.
pub async fn list_finds_exactly_what_was_created(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("list_finds_exactly_what_was_created", target).await?;
    if !run.capabilities().list {
        return Ok(Outcome::Skipped("the connector does not declare `list`".into()));
    }
    with_cleanup!(run, {
        let count = target.fixture.list_accounts;
        let entitlement = run.entitlement(0)?;
        let mut wanted = BTreeMap::new();
        let desired_states: Vec<pb::DesiredAccount> =
            (0..count).map(|n| run.desired(&run.account(&format!("l{n:05}")), vec![entitlement.clone()])).collect();
        let run_ref = &run;
        let results: Vec<Result<pb::ApplyResponse, Violation>> = futures::stream::iter(desired_states.iter())
            .map(|desired| async move { run_ref.apply(desired, "create for list").await })
            .buffer_unordered(16)
            .collect()
            .await;
        for result in results {
            result?;
        }
        for desired in &desired_states {
            let account = desired.account.clone().unwrap_or_default();
            wanted.insert(account.person_id.clone(), desired.clone());
        }
        let page_size = target.fixture.list_page_size;
        let mut stream = target.client.list(page_size).await.map_err(|e| run.fail(format!("List failed: {e}")))?;
        let mut seen = BTreeSet::new();
        let mut pages = 0usize;
        loop {
            let page = match stream.message().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(status) => return Err(run.fail(format!("List stream failed: {status}"))),
            };
            pages += 1;
            if page.accounts.len() > page_size as usize {
                return Err(run.fail(format!(
                    "a List page held {} accounts, more than the {page_size} asked",
                    page.accounts.len()
                )));
            }
            for state in page.accounts {
                let person_id = state.account.as_ref().map(|a| a.person_id.clone()).unwrap_or_default();
                if !person_id.starts_with(&format!("{}-", run.prefix)) {
                    continue;
                }
                let Some(desired) = wanted.get(&person_id) else {
                    return Err(run.fail(format!("List returned {person_id:?}, which this run did not create")));
                };
                if !seen.insert(person_id.clone()) {
                    return Err(run.fail(format!("List returned {person_id:?} twice")));
                }
                let differences = compare(&run.description, desired, &state);
                if !differences.is_empty() {
                    return Err(
                        run.fail(format!("List shows {person_id:?} unlike its desired state: {}", join(&differences)))
                    );
                }
            }
        }
        if seen.len() != count {
            let missing: Vec<&String> = wanted.keys().filter(|k| !seen.contains(*k)).take(5).collect();
            return Err(run
                .fail(format!("List found {} of the {count} accounts created; missing e.g. {missing:?}", seen.len())));
        }
        if count > page_size as usize && pages < 2 {
            return Err(run.fail("List returned everything in one page"));
        }
        eprintln!("list: {count} accounts found in {pages} pages");
        Ok(Outcome::Passed)
    })
}

/// Hostile values in an attribute, an account name and a person id either
/// round-trip exactly or are refused with INVALID_ARGUMENT; afterwards an
/// untouched sentinel account is unchanged and only accepted accounts exist.
pub async fn hostile_values_round_trip_or_are_refused(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("hostile_values_round_trip_or_are_refused", target).await?;
    with_cleanup!(run, {
        let sentinel = run.account("sentinel");
        let sentinel_state = run.desired(&sentinel, vec![run.entitlement(0)?]);
        run.apply(&sentinel_state, "create the sentinel").await?;
        let mut accepted = BTreeSet::new();
        let mut refused = 0usize;
        for (index, value) in hostile_values().into_iter().enumerate() {
            let mut trials = Vec::new();
            if let Some(attribute) = &target.fixture.hostile_attribute {
                let account = run.account(&format!("ha{index}"));
                let mut desired = run.desired(&account, vec![]);
                desired.attributes.insert(attribute.clone(), value.clone());
                trials.push(("attribute", desired));
            }
            let account = pb::AccountRef {
                person_id: format!("{}-hn{index}", run.prefix),
                account_name: format!("{}hn{index}{value}", run.prefix),
            };
            trials.push(("account name", run.desired(&account, vec![])));
            let account = pb::AccountRef {
                person_id: format!("{}-hp{index}{value}", run.prefix),
                account_name: (target.fixture.account_name)(format!("{}hp{index}", run.prefix)),
            };
            trials.push(("person id", run.desired(&account, vec![])));
            for (place, desired) in trials {
                let step = format!("hostile value #{index} {:?} in the {place}", crate::validate::printable(&value));
                match run.try_apply(&desired).await {
                    Ok(_) => {
                        run.expect_read_back(&desired, &step).await?;
                        let account = desired.account.clone().unwrap_or_default();
                        accepted.insert(account.person_id);
                    }
                    Err(error) if error.kind == ErrorKind::InvalidArgument && !error.retryable => refused += 1,
                    Err(error) => {
                        return Err(run.fail(format!("{step}: neither accepted nor refused as invalid: {error}")));
                    }
                }
            }
        }
        run.expect_read_back(&sentinel_state, "the sentinel after the hostile values").await?;
        if run.capabilities().list {
            let mut stream = target.client.list(500).await.map_err(|e| run.fail(format!("List failed: {e}")))?;
            while let Some(page) = stream.message().await.map_err(|s| run.fail(format!("List stream failed: {s}")))? {
                for state in page.accounts {
                    let person_id = state.account.map(|a| a.person_id).unwrap_or_default();
                    if person_id.starts_with(&run.prefix)
                        && person_id != sentinel.person_id
                        && !accepted.contains(&person_id)
                    {
                        return Err(run.fail(format!("an account the run did not create was found: {person_id:?}")));
                    }
                }
            }
        }
        eprintln!("hostile values: {} accepted and round-tripped, {refused} refused", accepted.len());
        Ok(Outcome::Passed)
    })
}

/// Lookups with wildcard and injection names match nothing: they read back
/// absent (or are refused), and deleting by such a name leaves a real
/// account alone.
pub async fn hostile_lookups_match_nothing(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("hostile_lookups_match_nothing", target).await?;
    with_cleanup!(run, {
        let sentinel = run.account("victim");
        let desired = run.desired(&sentinel, vec![run.entitlement(0)?]);
        run.apply(&desired, "create the victim").await?;
        let names = [
            "*".to_string(),
            format!("{}*", run.prefix),
            format!("{}*)(objectClass=*", run.prefix),
            format!("{}\\2a", run.prefix),
            format!("{}\" or userName sw \"", run.prefix),
            format!("../{}", sentinel.account_name),
            format!("{}%2A", run.prefix),
        ];
        for name in &names {
            for account in [
                pb::AccountRef { person_id: format!("{}-x", run.prefix), account_name: name.clone() },
                pb::AccountRef { person_id: name.clone(), account_name: format!("{}x", run.prefix) },
            ] {
                match target.client.read(account.clone()).await {
                    Ok(state) if state.exists => {
                        return Err(run.fail(format!("Read of {account:?} found an account: the name was interpreted")));
                    }
                    Ok(_) => {}
                    Err(error) if error.kind == ErrorKind::InvalidArgument => {}
                    Err(error) => return Err(run.fail(format!("Read of {account:?} failed untyped: {error}"))),
                }
                let absent = run.absent(&account);
                match target.client.apply(&run.command_id(), absent).await {
                    Ok(_) => {}
                    Err(error) if error.kind == ErrorKind::InvalidArgument => {}
                    Err(error) => return Err(run.fail(format!("deleting {account:?} failed untyped: {error}"))),
                }
            }
        }
        run.expect_read_back(&desired, "the victim after hostile lookups and deletes").await?;
        Ok(Outcome::Passed)
    })
}

/// Invalid desired states get INVALID_ARGUMENT and create nothing.
pub async fn invalid_desired_state_is_refused(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("invalid_desired_state_is_refused", target).await?;
    with_cleanup!(run, {
        let account = run.account("invalid");
        let valid = run.desired(&account, vec![run.entitlement(0)?]);
        let mut cases: Vec<(&str, pb::ApplyRequest)> = Vec::new();
        let request = |desired: Option<pb::DesiredAccount>| pb::ApplyRequest {
            command_id: run.command_id(),
            desired,
            ..Default::default()
        };
        cases.push(("no desired state", request(None)));
        let mut d = valid.clone();
        d.presence = pb::Presence::Unspecified as i32;
        cases.push(("presence unspecified", request(Some(d))));
        let mut d = valid.clone();
        d.credentials = 42;
        cases.push(("unknown credential action", request(Some(d))));
        let mut d = valid.clone();
        d.account = None;
        cases.push(("no account", request(Some(d))));
        let mut d = valid.clone();
        d.account = Some(pb::AccountRef { person_id: account.person_id.clone(), account_name: String::new() });
        cases.push(("empty account name", request(Some(d))));
        let mut d = valid.clone();
        d.attributes.insert("no_such_attribute_xyz".into(), "x".into());
        cases.push(("unknown attribute", request(Some(d))));
        let mut d = valid.clone();
        d.entitlements.push(pb::Entitlement { kind: "no-such-kind".into(), id: "x".into(), privileged: false });
        cases.push(("unknown entitlement kind", request(Some(d))));
        let mut d = valid.clone();
        d.entitlements.push(valid.entitlements[0].clone());
        cases.push(("duplicate entitlement", request(Some(d))));
        let empty_id =
            pb::ApplyRequest { command_id: String::new(), desired: Some(valid.clone()), ..Default::default() };
        cases.push(("empty command id", empty_id));
        for (step, request) in cases {
            run.track(&valid);
            run.expect_invalid(target.client.apply_request(request).await, step)?;
        }
        let state = run.read(&account, "after the invalid requests").await?;
        if state.exists {
            return Err(run.fail("an invalid request created the account"));
        }
        Ok(Outcome::Passed)
    })
}

/// An entitlement that does not exist on the target is a typed, non-retryable
/// error, and nothing is half-written: the account is not created.
pub async fn unknown_entitlement_is_a_typed_error(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("unknown_entitlement_is_a_typed_error", target).await?;
    with_cleanup!(run, {
        let account = run.account("unknownent");
        let known = run.entitlement(0)?;
        let missing = pb::Entitlement {
            kind: known.kind.clone(),
            id: format!("{}-no-such-entitlement", run.prefix),
            privileged: false,
        };
        let desired = run.desired(&account, vec![known, missing]);
        match run.try_apply(&desired).await {
            Err(error)
                if matches!(error.kind, ErrorKind::NotFound | ErrorKind::InvalidArgument) && !error.retryable => {}
            Err(error) => {
                return Err(run.fail(format!("expected a non-retryable NOT_FOUND or INVALID_ARGUMENT, got {error}")));
            }
            Ok(_) => return Err(run.fail("an entitlement that does not exist was acknowledged")),
        }
        let state = run.read(&account, "after the refused apply").await?;
        if state.exists {
            return Err(
                run.fail("the account was created although its entitlements could not be granted (half-written)")
            );
        }
        Ok(Outcome::Passed)
    })
}

// After `with_cleanup!`, which it uses.
mod adoption;
pub use adoption::*;
