//! Cases for accounts the mesh did not create (#17, spec section 8): `List`
//! shows an account made directly on the target without a correlation key,
//! and `Apply` with `link` takes it over only as the caller saw it.

use super::*;
use crate::correlation::ACCOUNT_NAME;

/// Every listed account named `account_name` (case-insensitively), asking for
/// every correlation attribute the connector declares.
async fn listed(run: &Run<'_>, account_name: &str, step: &str) -> Result<Vec<pb::AccountState>, Violation> {
    let mut correlation_attributes = vec![ACCOUNT_NAME.to_owned()];
    correlation_attributes.extend(run.description.correlation_attributes.iter().cloned());
    let request =
        pb::ListRequest { page_size: run.target.fixture.list_page_size, correlation_attributes, ..Default::default() };
    let mut stream =
        run.target.client.list_request(request).await.map_err(|e| run.fail(format!("{step}: List failed: {e}")))?;
    let mut found = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(page)) => found.extend(page.accounts.into_iter().filter(|state| {
                state.account.as_ref().is_some_and(|a| a.account_name.to_lowercase() == account_name.to_lowercase())
            })),
            Ok(None) => return Ok(found),
            Err(status) => return Err(run.fail(format!("{step}: List stream failed: {status}"))),
        }
    }
}

/// `List` by account name (`ListRequest.account_name`): a typed refusal of
/// a name the target cannot hold counts as "nothing found".
async fn lookup(run: &Run<'_>, account_name: &str) -> Result<Vec<pb::AccountState>, Violation> {
    let request = pb::ListRequest {
        page_size: 10,
        correlation_attributes: vec![ACCOUNT_NAME.to_owned()],
        account_name: account_name.to_owned(),
    };
    let refused = |error: &ConnectorError| error.kind == ErrorKind::InvalidArgument;
    let mut stream = match run.target.client.list_request(request).await {
        Ok(stream) => stream,
        Err(error) if refused(&error) => return Ok(Vec::new()),
        Err(error) => return Err(run.fail(format!("List by name {account_name:?} failed: {error}"))),
    };
    let mut found = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(page)) => found.extend(page.accounts),
            Ok(None) => return Ok(found),
            Err(status) if refused(&ConnectorError::from_status(&status)) => return Ok(Vec::new()),
            Err(status) => return Err(run.fail(format!("List by name {account_name:?} failed: {status}"))),
        }
    }
}

/// The one listed account named `account_name`, which must carry no key.
async fn listed_untagged(run: &Run<'_>, account_name: &str, step: &str) -> Result<pb::AccountState, Violation> {
    let mut found = listed(run, account_name, step).await?;
    if found.len() != 1 {
        return Err(run.fail(format!(
            "{step}: List showed the account made directly on the target {} times, not once",
            found.len()
        )));
    }
    let state = found.remove(0);
    let key = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    if !key.is_empty() {
        return Err(run.fail(format!("{step}: the untagged account is listed with the correlation key {key:?}")));
    }
    if state.fingerprint.is_empty() {
        return Err(run.fail(format!("{step}: the listed account has no fingerprint")));
    }
    Ok(state)
}

/// Creates an untagged account through the backdoor; `None` when the case
/// must be skipped.
async fn create_untagged(run: &Run<'_>, account_name: &str) -> Result<Option<Outcome>, Violation> {
    let Some(backdoor) = run.target.fixture.backdoor.clone() else {
        return Ok(Some(Outcome::Skipped("the fixture gives no direct access to the target".into())));
    };
    let mail = format!("{account_name}@example.org");
    match backdoor.create_untagged(account_name, &mail).await {
        Ok(true) => Ok(None),
        Ok(false) => Ok(Some(Outcome::Skipped("the backdoor cannot create accounts directly".into()))),
        Err(error) => Err(run.fail(format!("creating an account directly on the target failed: {error:#}"))),
    }
}

async fn delete_untagged(run: &Run<'_>, account_name: &str) {
    if let Some(backdoor) = run.target.fixture.backdoor.clone()
        && let Err(error) = backdoor.delete_untagged(account_name).await
    {
        eprintln!("conformance cleanup of the untagged {account_name:?} failed: {error:#}");
    }
}

/// An account made directly on the target without a correlation key is in
/// `List`, once, with an empty key, a fingerprint and its name as the
/// `account_name` correlation attribute (and its mail where `mail` is
/// declared); `List` by its name finds it alone, by a wildcard nothing; an
/// undeclared correlation attribute is refused.
pub async fn scope_lists_untagged_accounts(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("scope_lists_untagged_accounts", target).await?;
    if !run.capabilities().scope_listing {
        return Ok(Outcome::Skipped("the connector does not declare `scope_listing`".into()));
    }
    let account_name = run.account("untagged").account_name;
    if let Some(skipped) = create_untagged(&run, &account_name).await? {
        return Ok(skipped);
    }
    let result = async {
        let state = listed_untagged(&run, &account_name, "list the scope").await?;
        let name = state.correlation_attributes.get(ACCOUNT_NAME).cloned().unwrap_or_default();
        if name.to_lowercase() != account_name.to_lowercase() {
            return Err(
                run.fail(format!("the `account_name` correlation attribute is {name:?}, not the account's name"))
            );
        }
        if run.description.correlation_attributes.iter().any(|a| a == "mail") {
            let mail = state.correlation_attributes.get("mail").cloned().unwrap_or_default();
            if mail.to_lowercase() != format!("{account_name}@example.org").to_lowercase() {
                return Err(run.fail(format!("the `mail` correlation attribute is {mail:?}, not the account's mail")));
            }
        }
        let by_name = lookup(&run, &account_name).await?;
        if by_name.len() != 1 || by_name[0].fingerprint != state.fingerprint {
            return Err(run.fail(format!(
                "List by account name found {} accounts (wanted the one listed, with the same fingerprint)",
                by_name.len()
            )));
        }
        for hostile in ["*", "cf*", "*)(objectClass=*", "\" or userName pr or \""] {
            if !lookup(&run, hostile).await.map(|found| found.is_empty()).unwrap_or(true) {
                return Err(run.fail(format!("List by the account name {hostile:?} matched an account")));
            }
        }
        let undeclared = pb::ListRequest {
            page_size: 1,
            correlation_attributes: vec!["no-such-attribute".into()],
            ..Default::default()
        };
        let refused = match target.client.list_request(undeclared).await {
            Err(error) => error.kind == ErrorKind::InvalidArgument,
            Ok(mut stream) => match stream.message().await {
                Err(status) => ConnectorError::from_status(&status).kind == ErrorKind::InvalidArgument,
                Ok(_) => false,
            },
        };
        if !refused {
            return Err(run.fail("List accepted an undeclared correlation attribute"));
        }
        Ok(Outcome::Passed)
    }
    .await;
    delete_untagged(&run, &account_name).await;
    result
}

/// `Apply` without `link` refuses an untagged account; `link` with a stale
/// fingerprint is refused and writes nothing; `link` with the listed
/// fingerprint writes the key and converges, `Read` shows the key; a retried
/// link changes nothing.
pub async fn link_takes_over_untagged_account(target: &ConformanceTarget) -> Result<Outcome, Violation> {
    let run = Run::start("link_takes_over_untagged_account", target).await?;
    if !run.capabilities().link {
        return Ok(Outcome::Skipped("the connector does not declare `link`".into()));
    }
    if !run.capabilities().scope_listing {
        return Ok(Outcome::Skipped("`link` needs `scope_listing` to see the account first".into()));
    }
    let account = run.account("adopt");
    if let Some(skipped) = create_untagged(&run, &account.account_name).await? {
        return Ok(skipped);
    }
    let result = with_cleanup!(run, {
        let before = listed_untagged(&run, &account.account_name, "before the link").await?;
        let desired = run.desired(&account, vec![run.entitlement(0)?]);
        let link = |fingerprint: &str| pb::ApplyRequest {
            command_id: run.command_id(),
            desired: Some(desired.clone()),
            link: Some(pb::LinkAccount { expected_fingerprint: fingerprint.to_owned() }),
            ..Default::default()
        };
        match target.client.apply(&run.command_id(), desired.clone()).await {
            Err(error) if error.kind == ErrorKind::Conflict => {}
            Err(error) => return Err(run.fail(format!("Apply of an untagged account: expected CONFLICT, got {error}"))),
            Ok(_) => return Err(run.fail("Apply without `link` took over an account without a correlation key")),
        }
        let stale = "0".repeat(64);
        match target.client.apply_request(link(&stale)).await {
            Err(error) if error.kind == ErrorKind::Conflict => {}
            Err(error) => {
                return Err(run.fail(format!("a link with a stale fingerprint: expected CONFLICT, got {error}")));
            }
            Ok(_) => return Err(run.fail("a link with a stale fingerprint was accepted")),
        }
        let unchanged = listed_untagged(&run, &account.account_name, "after the refused link").await?;
        if unchanged.fingerprint != before.fingerprint {
            return Err(run.fail("a refused link (or Apply) changed the account on the target"));
        }
        run.track(&desired);
        let acknowledgement = target
            .client
            .apply_request(link(&before.fingerprint))
            .await
            .map_err(|e| run.fail(format!("link with the listed fingerprint failed: {e}")))?;
        if !acknowledgement.changes.iter().any(|c| c.action == "link") {
            return Err(run.fail("the link's acknowledgement has no `link` change"));
        }
        run.expect_read_back(&desired, "after the link").await?;
        let again = target
            .client
            .apply_request(link(&before.fingerprint))
            .await
            .map_err(|e| run.fail(format!("a retried link failed: {e}")))?;
        run.expect_no_changes(&again, "retried link")?;
        let relisted = listed(&run, &account.account_name, "after the link").await?;
        let keys: Vec<&str> =
            relisted.iter().map(|s| s.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default()).collect();
        if keys != [account.person_id.as_str()] {
            return Err(run.fail(format!("after the link List shows the account with keys {keys:?}")));
        }
        Ok(Outcome::Passed)
    });
    delete_untagged(&run, &account.account_name).await;
    result
}
