//! Cases that change what `Read` reports directly on the target, through the
//! fixture's [`Backdoor`](super::super::Backdoor), and require `Read` to show
//! it: one per field (attributes, enabled, credentials, person id,
//! existence; entitlements are `read_is_fresh_from_target`). Each then
//! re-applies the desired state under a fresh command and requires the
//! read-back to match it again, so a connector that skips writes it believes
//! unnecessary (diffing against what it last applied) fails too.

use jml_contract::v1 as pb;

use super::{Run, join};
use crate::ErrorKind;
use crate::conformance::{Backdoor, BackdoorUnsupported, ConformanceTarget, Outcome, Violation};
use crate::readback::{compare, normalise};

/// What a failed backdoor call means: a skip when the backdoor cannot make
/// that edit on its target, else a failure of the set-up.
fn backdoor_failed(run: &Run<'_>, error: anyhow::Error) -> Result<Outcome, Violation> {
    match error.downcast_ref::<BackdoorUnsupported>() {
        Some(unsupported) => Ok(Outcome::Skipped(unsupported.to_string())),
        None => Err(run.fail(format!("the direct edit on the target failed: {error:#}"))),
    }
}

fn backdoor<'t>(run: &Run<'_>, target: &'t ConformanceTarget) -> Option<&'t dyn Backdoor> {
    let _ = run;
    target.fixture.backdoor.as_deref()
}

const NO_BACKDOOR: &str = "the fixture gives no direct access to the target";

/// Every managed attribute the fixture names, changed directly on the target,
/// shows in the next `Read`.
pub async fn read_shows_attributes_changed_on_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_shows_attributes_changed_on_target", target).await?;
    let Some(backdoor) = backdoor(&run, target) else { return Ok(Outcome::Skipped(NO_BACKDOOR.into())) };
    with_cleanup!(run, {
        let account = run.account("oobattr");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        let mut names: Vec<String> = desired.attributes.keys().cloned().collect();
        names.extend((target.fixture.changed_attributes)(&account.account_name).into_keys());
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Outcome::Skipped("the fixture names no attribute".into()));
        }
        for name in &names {
            let base = desired
                .attributes
                .get(name)
                .cloned()
                .or_else(|| (target.fixture.changed_attributes)(&account.account_name).remove(name))
                .unwrap_or_default();
            let value = format!("oob{base}");
            if let Err(error) = backdoor.set_attribute_directly(&account, name, &value).await {
                return backdoor_failed(&run, error);
            }
            let state = run.read(&account, &format!("after setting {name} on the target")).await?;
            let rule = run
                .description
                .attributes
                .iter()
                .find(|spec| &spec.name == name)
                .map(|spec| pb::ValueComparison::try_from(spec.comparison).unwrap_or(pb::ValueComparison::Exact))
                .unwrap_or(pb::ValueComparison::Exact);
            let shown = state.attributes.get(name).map(String::as_str).unwrap_or_default();
            if normalise(rule, shown) != normalise(rule, &value) {
                return Err(run.fail(format!(
                    "Read shows attribute {name} as {shown:?} after the target's value was set to {value:?}: it is not reading the target"
                )));
            }
        }
        run.apply(&desired, "restore the attributes").await?;
        run.expect_read_back(&desired, "after restoring the attributes").await?;
        Ok(Outcome::Passed)
    })
}

/// An account disabled directly on the target reads back disabled, and
/// enabled again reads back enabled.
pub async fn read_shows_enabled_changed_on_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_shows_enabled_changed_on_target", target).await?;
    if !run.capabilities().disable {
        return Ok(Outcome::Skipped("the connector does not declare `disable`".into()));
    }
    let Some(backdoor) = backdoor(&run, target) else { return Ok(Outcome::Skipped(NO_BACKDOOR.into())) };
    with_cleanup!(run, {
        let account = run.account("oobenabled");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        for enabled in [false, true, false] {
            if let Err(error) = backdoor.set_enabled_directly(&account, enabled).await {
                return backdoor_failed(&run, error);
            }
            let state = run.read(&account, "after the direct change").await?;
            if state.enabled != enabled {
                return Err(run.fail(format!(
                    "Read shows enabled={} after the account was {} directly on the target: it is not reading the target",
                    state.enabled,
                    if enabled { "enabled" } else { "disabled" }
                )));
            }
        }
        let acknowledgement = run.apply(&desired, "re-enable").await?;
        if acknowledgement.changes.is_empty() {
            return Err(
                run.fail("re-enable: the account was disabled on the target, the acknowledgement lists no change")
            );
        }
        run.expect_read_back(&desired, "after re-enable").await?;
        Ok(Outcome::Passed)
    })
}

/// The revocation case seen from the target: an account created with every
/// credential revoked gets a credential directly on the target; `Read` must
/// show it; re-applying the same state revokes it (a change acknowledged)
/// and `Read` shows it gone.
pub async fn read_shows_credential_added_on_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_shows_credential_added_on_target", target).await?;
    let caps = run.capabilities();
    if !caps.credential_revocation {
        return Ok(Outcome::Skipped("the connector does not declare `credential_revocation`".into()));
    }
    let Some(backdoor) = backdoor(&run, target) else { return Ok(Outcome::Skipped(NO_BACKDOOR.into())) };
    with_cleanup!(run, {
        let account = run.account("oobcred");
        let mut desired = run.desired(&account, vec![run.entitlement(0)?]);
        desired.credentials = pb::CredentialAction::RevokeAll as i32;
        run.apply(&desired, "create with every credential revoked").await?;
        let credential = match backdoor.add_credential_directly(&account).await {
            Ok(credential) => credential,
            Err(error) => return backdoor_failed(&run, error),
        };
        let state = run.read(&account, "after adding a credential on the target").await?;
        let credentials = state.credentials.clone().unwrap_or_default();
        if !credentials.active.contains(&credential) {
            return Err(run.fail(format!(
                "Read does not show the credential {credential:?} added directly on the target (active: {:?}, complete: {}): \
                 it is not enumerating the target's credentials",
                credentials.active, credentials.complete
            )));
        }
        let acknowledgement = run.apply(&desired, "revoke again").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("revoke again: a credential was active, the acknowledgement lists no change"));
        }
        let state = run.read(&account, "after revoking again").await?;
        let credentials = state.credentials.clone().unwrap_or_default();
        if credentials.active.contains(&credential) {
            return Err(run.fail(format!("after revoking again: {credential:?} is still active")));
        }
        if caps.credential_revocation_verifiable {
            let differences = compare(&run.description, &desired, &state);
            if !differences.is_empty() {
                return Err(run.fail(format!("after revoking again: {}", join(&differences))));
            }
        }
        Ok(Outcome::Passed)
    })
}

/// A correlation key changed directly on the target shows: `Read` of the
/// account reports the new key or refuses it as another person's (CONFLICT),
/// never the old key.
pub async fn read_shows_person_id_changed_on_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_shows_person_id_changed_on_target", target).await?;
    let Some(backdoor) = backdoor(&run, target) else { return Ok(Outcome::Skipped(NO_BACKDOOR.into())) };
    with_cleanup!(run, {
        let account = run.account("oobperson");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        let other = format!("{}-someone-else", run.prefix);
        if let Err(error) = backdoor.set_person_id_directly(&account, &other).await {
            return backdoor_failed(&run, error);
        }
        let verdict = match run.target.client.read(account.clone()).await {
            Err(error) if error.kind == ErrorKind::Conflict => Ok(()),
            Err(error) => Err(run.fail(format!("Read after the key changed failed untyped: {error}"))),
            Ok(state) => {
                let shown = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
                if state.exists && shown == other {
                    Ok(())
                } else {
                    Err(run.fail(format!(
                        "Read shows person id {shown:?} (exists: {}) after the key was changed to {other:?} on the target: it is not reading the target",
                        state.exists
                    )))
                }
            }
        };
        // Put the key back so that cleanup may delete the account.
        backdoor
            .set_person_id_directly(&account, &account.person_id)
            .await
            .map_err(|e| run.fail(format!("restoring the key failed: {e:#}")))?;
        verdict?;
        run.expect_read_back(&desired, "after restoring the key").await?;
        Ok(Outcome::Passed)
    })
}

/// An account deleted directly on the target reads back absent, and
/// re-applying the desired state creates it again.
pub async fn read_shows_account_deleted_on_target(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("read_shows_account_deleted_on_target", target).await?;
    let Some(backdoor) = backdoor(&run, target) else { return Ok(Outcome::Skipped(NO_BACKDOOR.into())) };
    with_cleanup!(run, {
        let account = run.account("oobdelete");
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        run.apply(&desired, "create").await?;
        run.expect_read_back(&desired, "after create").await?;
        if let Err(error) = backdoor.delete_directly(&account).await {
            return backdoor_failed(&run, error);
        }
        let state = run.read(&account, "after deleting on the target").await?;
        if state.exists {
            return Err(run.fail(
                "Read shows the account after it was deleted directly on the target: it is not reading the target",
            ));
        }
        let acknowledgement = run.apply(&desired, "re-create").await?;
        if acknowledgement.changes.is_empty() {
            return Err(run.fail("re-create: the account was gone, the acknowledgement lists no change"));
        }
        run.expect_read_back(&desired, "after re-create").await?;
        Ok(Outcome::Passed)
    })
}
