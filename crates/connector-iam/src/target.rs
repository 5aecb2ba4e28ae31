//! The client of the real target: IAM through the official AWS SDK for Rust.
//!
//! [`IamTarget`] holds one `aws_sdk_iam::Client` (HTTPS with rustls on ring,
//! the SDK's standard retry strategy with jittered exponential backoff for
//! throttling and transient errors, an operation timeout) and offers the few
//! IAM operations the connector needs, each answering with a typed
//! [`ConnectorError`] (see [`classify`]). Listings go through the SDK's
//! paginators. Credentials come from the standard AWS provider chain and are
//! never logged: the connector neither reads nor formats them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iam::Client;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{StatusType, Tag};
use connector_kit::ConnectorError;
use connector_kit::validate::printable;
use futures::stream::BoxStream;

use crate::config::IamConfig;

/// AWS error codes that mean "slow down".
const THROTTLING_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Maps any SDK error of `operation` to a typed connector error. The AWS
/// message is kept (it names no secret) but cut short; the error code decides
/// the kind: throttling (or HTTP 429) is THROTTLED and retryable,
/// `NoSuchEntity` NOT_FOUND, `EntityAlreadyExists`/`DeleteConflict` CONFLICT,
/// refused credentials PERMISSION_DENIED, validation errors
/// INVALID_ARGUMENT, server errors and transport failures UNAVAILABLE,
/// timeouts TIMEOUT.
pub fn classify<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> ConnectorError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|raw| raw.status().as_u16());
    match error {
        SdkError::ConstructionFailure(_) => {
            ConnectorError::internal(format!("{operation}: the request could not be built"))
        }
        SdkError::TimeoutError(_) => ConnectorError::timeout(format!("{operation}: IAM did not answer in time")),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                ConnectorError::timeout(format!("{operation}: IAM did not answer in time"))
            } else {
                ConnectorError::unavailable(format!("{operation}: IAM could not be reached"))
            }
        }
        _ => {
            let code = error.code().unwrap_or_default();
            let message = error.message().map(short).unwrap_or_default();
            let described = if code.is_empty() {
                format!("{operation}: HTTP {}", status.unwrap_or_default())
            } else {
                format!("{operation}: {code}: {message}")
            };
            classify_code(code, status, described)
        }
    }
}

fn classify_code(code: &str, status: Option<u16>, message: String) -> ConnectorError {
    if THROTTLING_CODES.contains(&code) || status == Some(429) {
        return ConnectorError::throttled(message, None);
    }
    match code {
        "NoSuchEntity" => ConnectorError::not_found(message),
        "EntityAlreadyExists" | "DeleteConflict" | "UnmodifiableEntity" | "LimitExceeded" => {
            ConnectorError::conflict(message)
        }
        "ConcurrentModification" => ConnectorError::conflict(message).with_retryable(true),
        "AccessDenied"
        | "AccessDeniedException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => ConnectorError::permission_denied(message),
        "ValidationError" | "InvalidInput" | "MalformedPolicyDocument" | "InvalidParameterValue" => {
            ConnectorError::invalid_argument("desired", message)
        }
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" => ConnectorError::unavailable(message),
        _ => match status {
            Some(500..=599) => ConnectorError::unavailable(message),
            Some(401 | 403) => ConnectorError::permission_denied(message),
            _ => ConnectorError::internal(message),
        },
    }
}

fn short(message: &str) -> String {
    let cut: String = message.chars().take(200).filter(|c| !c.is_control()).collect();
    if message.chars().count() > 200 { format!("{cut}…") } else { cut }
}

fn is_no_such_entity<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    error.code() == Some("NoSuchEntity")
}

/// The outcome of a removal, where the thing already being absent
/// (`NoSuchEntity`) is success: removals are idempotent.
fn absent_is_success<T, E>(operation: &str, result: Result<T, SdkError<E, HttpResponse>>) -> Result<(), ConnectorError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_no_such_entity(&error) => Ok(()),
        Err(error) => Err(classify(operation, &error)),
    }
}

fn time(value: Option<&aws_sdk_iam::primitives::DateTime>) -> Option<SystemTime> {
    value.and_then(|t| SystemTime::try_from(*t).ok())
}

/// One IAM user as `GetUser` (or `ListUsers` plus `ListUserTags`) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamUser {
    /// The user name as IAM spells it.
    pub user_name: String,
    /// IAM's stable id (`AIDA...`): the target-native id.
    pub user_id: String,
    /// The user's path.
    pub path: String,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// When the user was created.
    pub created: Option<SystemTime>,
    /// When the password was last used, where IAM reports it.
    pub password_last_used: Option<SystemTime>,
}

impl IamUser {
    fn from_sdk(user: &aws_sdk_iam::types::User) -> Self {
        Self {
            user_name: user.user_name().to_owned(),
            user_id: user.user_id().to_owned(),
            path: user.path().to_owned(),
            tags: tags(user.tags()),
            created: time(Some(user.create_date())),
            password_last_used: time(user.password_last_used()),
        }
    }
}

fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
}

/// One credential a user holds, by IAM's id (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCredential {
    /// The credential's id (access key id, certificate id, SSH key id, ...).
    pub id: String,
    /// Whether IAM shows it `Active`.
    pub active: bool,
}

fn active(status: Option<&StatusType>) -> bool {
    matches!(status, Some(StatusType::Active))
}

/// Every credential kind an IAM user can hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldCredentials {
    /// Whether a console password (login profile) exists.
    pub login_profile: bool,
    /// Access keys.
    pub access_keys: Vec<HeldCredential>,
    /// X.509 signing certificates.
    pub signing_certificates: Vec<HeldCredential>,
    /// SSH public keys (CodeCommit).
    pub ssh_public_keys: Vec<HeldCredential>,
    /// Service-specific credentials (CodeCommit, Keyspaces, Bedrock).
    pub service_specific_credentials: Vec<HeldCredential>,
    /// MFA devices by serial number (an ARN for virtual devices).
    pub mfa_devices: Vec<String>,
}

/// What an IAM user holds besides its own record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserHoldings {
    /// Group names.
    pub groups: Vec<String>,
    /// Attached managed policy ARNs.
    pub policies: Vec<String>,
    /// Inline policy names (the session cut-off policy left out).
    pub inline_policies: Vec<String>,
    /// Credentials.
    pub credentials: HeldCredentials,
    /// The session cut-off read back: the time before which every session
    /// credential is denied, as IAM shows it in the cut-off policy.
    pub session_cutoff: Option<aws_sdk_iam::primitives::DateTime>,
}

/// The name of the inline policy that cuts off a revoked user's sessions.
pub const SESSION_CUTOFF_POLICY: &str = "jml-revoke-older-sessions";

/// The documented deny-all that invalidates every temporary credential issued
/// before `before` (the condition key `aws:TokenIssueTime`).
pub fn session_cutoff_document(before: &aws_sdk_iam::primitives::DateTime) -> String {
    let at = before.fmt(aws_sdk_iam::primitives::DateTimeFormat::DateTime).unwrap_or_default();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "RevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "DateLessThan": { "aws:TokenIssueTime": at } }
        }]
    })
    .to_string()
}

/// The cut-off time of a policy document, only when the document is exactly
/// the deny-all [`session_cutoff_document`] writes (anything else proves
/// nothing). IAM returns documents URL-encoded.
pub fn parse_session_cutoff(document: &str) -> Option<aws_sdk_iam::primitives::DateTime> {
    let decoded = percent_decode(document)?;
    let value: serde_json::Value = serde_json::from_str(&decoded).ok()?;
    let statements = value.get("Statement")?.as_array()?;
    let [statement] = statements.as_slice() else { return None };
    let is = |key: &str, expected: &str| statement.get(key).and_then(serde_json::Value::as_str) == Some(expected);
    if !(is("Effect", "Deny") && is("Action", "*") && is("Resource", "*")) {
        return None;
    }
    let condition = statement.get("Condition")?.as_object()?;
    if condition.len() != 1 {
        return None;
    }
    let before = condition.get("DateLessThan")?.get("aws:TokenIssueTime")?.as_str()?;
    aws_sdk_iam::primitives::DateTime::from_str(before, aws_sdk_iam::primitives::DateTimeFormat::DateTime).ok()
}

/// `%XX` decoding (IAM's URL-encoded policy documents); `None` when malformed.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The IAM client the connector drives.
#[derive(Debug, Clone)]
pub struct IamTarget {
    client: Client,
    lacks_service_specific_credentials: bool,
}

impl IamTarget {
    /// Builds the SDK client from the configuration and the standard AWS
    /// credential provider chain. Makes no call.
    pub async fn connect(config: &IamConfig) -> Self {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts)
                    .with_initial_backoff(config.initial_backoff()),
            )
            .timeout_config(TimeoutConfig::builder().operation_timeout(config.operation_timeout()).build());
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk_config = loader.load().await;
        Self::from_client(Client::new(&sdk_config), config.target_lacks_service_specific_credentials)
    }

    /// Wraps an SDK client built elsewhere.
    pub fn from_client(client: Client, lacks_service_specific_credentials: bool) -> Self {
        Self { client, lacks_service_specific_credentials }
    }

    /// The SDK client (for tests that inspect the target directly).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A real call: one `ListUsers` page of at most one user under `path`.
    #[tracing::instrument(name = "iam.preflight", skip_all)]
    pub async fn preflight(&self, path: &str) -> Result<(), ConnectorError> {
        self.client
            .list_users()
            .path_prefix(path)
            .max_items(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("ListUsers", &e))
    }

    /// The user named `user_name`, or `None`.
    #[tracing::instrument(name = "iam.get_user", skip_all)]
    pub async fn get_user(&self, user_name: &str) -> Result<Option<IamUser>, ConnectorError> {
        match self.client.get_user().user_name(user_name).send().await {
            Ok(output) => Ok(output.user().map(IamUser::from_sdk)),
            Err(error) if is_no_such_entity(&error) => Ok(None),
            Err(error) => Err(classify("GetUser", &error)),
        }
    }

    /// Every user whose path starts with `path_prefix`, fetched lazily by the
    /// SDK paginator in pages of `page_size`. Tags are not included
    /// (`ListUsers` does not return them). The stream ends after an error.
    pub fn list_users(&self, path_prefix: &str, page_size: u32) -> BoxStream<'static, Result<IamUser, ConnectorError>> {
        let max_items = i32::try_from(page_size.clamp(1, 1000)).unwrap_or(1000);
        let items =
            self.client.list_users().path_prefix(path_prefix).max_items(max_items).into_paginator().items().send();
        Box::pin(futures::stream::unfold(Some(items), |items| async move {
            let mut items = items?;
            match items.next().await? {
                Ok(user) => Some((Ok(IamUser::from_sdk(&user)), Some(items))),
                Err(error) => Some((Err(classify("ListUsers", &error)), None)),
            }
        }))
    }

    /// A user's tags.
    #[tracing::instrument(name = "iam.user_tags", skip_all)]
    pub async fn user_tags(&self, user_name: &str) -> Result<BTreeMap<String, String>, ConnectorError> {
        let all: Vec<Tag> = self
            .client
            .list_user_tags()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListUserTags", &e))?;
        Ok(tags(&all))
    }

    /// Creates a user in `path` with `tags`.
    #[tracing::instrument(name = "iam.create_user", skip_all)]
    pub async fn create_user(
        &self,
        user_name: &str,
        path: &str,
        user_tags: &BTreeMap<String, String>,
    ) -> Result<IamUser, ConnectorError> {
        let mut request = self.client.create_user().user_name(user_name).path(path);
        for (key, value) in user_tags {
            request = request.tags(Tag::builder().key(key).value(value).build().map_err(build_error)?);
        }
        let output = request.send().await.map_err(|e| classify("CreateUser", &e))?;
        output
            .user()
            .map(IamUser::from_sdk)
            .ok_or_else(|| ConnectorError::internal("CreateUser answered without a user"))
    }

    /// Sets tags on a user.
    #[tracing::instrument(name = "iam.tag_user", skip_all)]
    pub async fn tag_user(&self, user_name: &str, user_tags: &BTreeMap<String, String>) -> Result<(), ConnectorError> {
        if user_tags.is_empty() {
            return Ok(());
        }
        let mut request = self.client.tag_user().user_name(user_name);
        for (key, value) in user_tags {
            request = request.tags(Tag::builder().key(key).value(value).build().map_err(build_error)?);
        }
        request.send().await.map(|_| ()).map_err(|e| classify("TagUser", &e))
    }

    /// Removes tags from a user.
    #[tracing::instrument(name = "iam.untag_user", skip_all)]
    pub async fn untag_user(&self, user_name: &str, keys: &[String]) -> Result<(), ConnectorError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut request = self.client.untag_user().user_name(user_name);
        for key in keys {
            request = request.tag_keys(key);
        }
        request.send().await.map(|_| ()).map_err(|e| classify("UntagUser", &e))
    }

    /// Deletes a user; absent is success.
    #[tracing::instrument(name = "iam.delete_user", skip_all)]
    pub async fn delete_user(&self, user_name: &str) -> Result<(), ConnectorError> {
        absent_is_success("DeleteUser", self.client.delete_user().user_name(user_name).send().await)
    }

    /// Whether the group exists; answers IAM's spelling of its name.
    #[tracing::instrument(name = "iam.group", skip_all)]
    pub async fn group(&self, group_name: &str) -> Result<Option<String>, ConnectorError> {
        match self.client.get_group().group_name(group_name).max_items(1).send().await {
            Ok(output) => {
                Ok(Some(output.group().map(|g| g.group_name().to_owned()).unwrap_or_else(|| group_name.into())))
            }
            Err(error) if is_no_such_entity(&error) => Ok(None),
            Err(error) => Err(classify("GetGroup", &error)),
        }
    }

    /// Whether the managed policy exists.
    #[tracing::instrument(name = "iam.policy_exists", skip_all)]
    pub async fn policy_exists(&self, arn: &str) -> Result<bool, ConnectorError> {
        match self.client.get_policy().policy_arn(arn).send().await {
            Ok(_) => Ok(true),
            Err(error) if is_no_such_entity(&error) => Ok(false),
            Err(error) => Err(classify("GetPolicy", &error)),
        }
    }

    /// Everything a user holds: groups, policies, inline policies, credentials.
    /// Fetched concurrently.
    #[tracing::instrument(name = "iam.holdings", skip_all)]
    pub async fn holdings(&self, user_name: &str) -> Result<UserHoldings, ConnectorError> {
        let (groups, policies, mut inline_policies, credentials) = futures::try_join!(
            self.groups_for_user(user_name),
            self.attached_policies(user_name),
            self.inline_policies(user_name),
            self.credentials(user_name),
        )?;
        let mut session_cutoff = None;
        if let Some(position) = inline_policies.iter().position(|name| name == SESSION_CUTOFF_POLICY) {
            // A document other than the one the connector writes stays an
            // inline policy like any other (reported and removed).
            match self.inline_policy_document(user_name, SESSION_CUTOFF_POLICY).await? {
                Some(document) => {
                    if let Some(before) = parse_session_cutoff(&document) {
                        inline_policies.remove(position);
                        session_cutoff = Some(before);
                    }
                }
                None => {
                    inline_policies.remove(position);
                }
            }
        }
        Ok(UserHoldings { groups, policies, inline_policies, credentials, session_cutoff })
    }

    /// An inline policy's document as IAM returns it; `None` when absent.
    #[tracing::instrument(name = "iam.get_user_policy", skip_all)]
    pub async fn inline_policy_document(
        &self,
        user_name: &str,
        policy_name: &str,
    ) -> Result<Option<String>, ConnectorError> {
        match self.client.get_user_policy().user_name(user_name).policy_name(policy_name).send().await {
            Ok(answer) => Ok(Some(answer.policy_document().to_owned())),
            Err(error) => {
                let error = classify("GetUserPolicy", &error);
                if error.kind == connector_kit::ErrorKind::NotFound { Ok(None) } else { Err(error) }
            }
        }
    }

    /// Writes (or replaces) an inline policy.
    #[tracing::instrument(name = "iam.put_user_policy", skip_all)]
    pub async fn put_inline_policy(
        &self,
        user_name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), ConnectorError> {
        self.client
            .put_user_policy()
            .user_name(user_name)
            .policy_name(policy_name)
            .policy_document(document)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PutUserPolicy", &e))
    }

    #[tracing::instrument(name = "iam.groups_for_user", skip_all)]
    async fn groups_for_user(&self, user_name: &str) -> Result<Vec<String>, ConnectorError> {
        let groups = self
            .client
            .list_groups_for_user()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListGroupsForUser", &e))?;
        Ok(groups.iter().map(|g| g.group_name().to_owned()).collect())
    }

    #[tracing::instrument(name = "iam.attached_policies", skip_all)]
    async fn attached_policies(&self, user_name: &str) -> Result<Vec<String>, ConnectorError> {
        let policies = self
            .client
            .list_attached_user_policies()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAttachedUserPolicies", &e))?;
        Ok(policies.iter().filter_map(|p| p.policy_arn().map(str::to_owned)).collect())
    }

    #[tracing::instrument(name = "iam.inline_policies", skip_all)]
    async fn inline_policies(&self, user_name: &str) -> Result<Vec<String>, ConnectorError> {
        self.client
            .list_user_policies()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListUserPolicies", &e))
    }

    /// Every credential of every kind the user holds.
    #[tracing::instrument(name = "iam.credentials", skip_all)]
    pub async fn credentials(&self, user_name: &str) -> Result<HeldCredentials, ConnectorError> {
        let (
            login_profile,
            access_keys,
            signing_certificates,
            ssh_public_keys,
            service_specific_credentials,
            mfa_devices,
        ) = futures::try_join!(
            self.login_profile(user_name),
            self.access_keys(user_name),
            self.signing_certificates(user_name),
            self.ssh_public_keys(user_name),
            self.service_specific_credentials(user_name),
            self.mfa_devices(user_name),
        )?;
        Ok(HeldCredentials {
            login_profile,
            access_keys,
            signing_certificates,
            ssh_public_keys,
            service_specific_credentials,
            mfa_devices,
        })
    }

    #[tracing::instrument(name = "iam.login_profile", skip_all)]
    async fn login_profile(&self, user_name: &str) -> Result<bool, ConnectorError> {
        match self.client.get_login_profile().user_name(user_name).send().await {
            Ok(_) => Ok(true),
            Err(error) if is_no_such_entity(&error) => Ok(false),
            Err(error) => Err(classify("GetLoginProfile", &error)),
        }
    }

    #[tracing::instrument(name = "iam.access_keys", skip_all)]
    async fn access_keys(&self, user_name: &str) -> Result<Vec<HeldCredential>, ConnectorError> {
        let keys = self
            .client
            .list_access_keys()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAccessKeys", &e))?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                k.access_key_id().map(|id| HeldCredential { id: id.to_owned(), active: active(k.status()) })
            })
            .collect())
    }

    #[tracing::instrument(name = "iam.signing_certificates", skip_all)]
    async fn signing_certificates(&self, user_name: &str) -> Result<Vec<HeldCredential>, ConnectorError> {
        let certificates = self
            .client
            .list_signing_certificates()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListSigningCertificates", &e))?;
        Ok(certificates
            .iter()
            .map(|c| HeldCredential { id: c.certificate_id().to_owned(), active: active(Some(c.status())) })
            .collect())
    }

    #[tracing::instrument(name = "iam.ssh_public_keys", skip_all)]
    async fn ssh_public_keys(&self, user_name: &str) -> Result<Vec<HeldCredential>, ConnectorError> {
        let keys = self
            .client
            .list_ssh_public_keys()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListSSHPublicKeys", &e))?;
        Ok(keys
            .iter()
            .map(|k| HeldCredential { id: k.ssh_public_key_id().to_owned(), active: active(Some(k.status())) })
            .collect())
    }

    #[tracing::instrument(name = "iam.service_specific_credentials", skip_all)]
    async fn service_specific_credentials(&self, user_name: &str) -> Result<Vec<HeldCredential>, ConnectorError> {
        if self.lacks_service_specific_credentials {
            return Ok(Vec::new());
        }
        let mut held = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let output = self
                .client
                .list_service_specific_credentials()
                .user_name(user_name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("ListServiceSpecificCredentials", &e))?;
            held.extend(output.service_specific_credentials().iter().map(|c| HeldCredential {
                id: c.service_specific_credential_id().to_owned(),
                active: active(Some(c.status())),
            }));
            match output.marker() {
                Some(next) if output.is_truncated() && !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(held),
            }
        }
    }

    #[tracing::instrument(name = "iam.mfa_devices", skip_all)]
    async fn mfa_devices(&self, user_name: &str) -> Result<Vec<String>, ConnectorError> {
        let devices = self
            .client
            .list_mfa_devices()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListMFADevices", &e))?;
        Ok(devices.iter().map(|d| d.serial_number().to_owned()).collect())
    }

    /// Deletes the console password; absent is success.
    #[tracing::instrument(name = "iam.delete_login_profile", skip_all)]
    pub async fn delete_login_profile(&self, user_name: &str) -> Result<(), ConnectorError> {
        absent_is_success("DeleteLoginProfile", self.client.delete_login_profile().user_name(user_name).send().await)
    }

    /// Sets an access key `Inactive`.
    #[tracing::instrument(name = "iam.deactivate_access_key", skip_all)]
    pub async fn deactivate_access_key(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        self.client
            .update_access_key()
            .user_name(user_name)
            .access_key_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateAccessKey", &e))
    }

    /// Deletes an access key; absent is success.
    #[tracing::instrument(name = "iam.delete_access_key", skip_all)]
    pub async fn delete_access_key(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeleteAccessKey",
            self.client.delete_access_key().user_name(user_name).access_key_id(id).send().await,
        )
    }

    /// Sets a signing certificate `Inactive`.
    #[tracing::instrument(name = "iam.deactivate_signing_certificate", skip_all)]
    pub async fn deactivate_signing_certificate(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        self.client
            .update_signing_certificate()
            .user_name(user_name)
            .certificate_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateSigningCertificate", &e))
    }

    /// Deletes a signing certificate; absent is success.
    #[tracing::instrument(name = "iam.delete_signing_certificate", skip_all)]
    pub async fn delete_signing_certificate(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeleteSigningCertificate",
            self.client.delete_signing_certificate().user_name(user_name).certificate_id(id).send().await,
        )
    }

    /// Sets an SSH public key `Inactive`.
    #[tracing::instrument(name = "iam.deactivate_ssh_public_key", skip_all)]
    pub async fn deactivate_ssh_public_key(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        self.client
            .update_ssh_public_key()
            .user_name(user_name)
            .ssh_public_key_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateSSHPublicKey", &e))
    }

    /// Deletes an SSH public key; absent is success.
    #[tracing::instrument(name = "iam.delete_ssh_public_key", skip_all)]
    pub async fn delete_ssh_public_key(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeleteSSHPublicKey",
            self.client.delete_ssh_public_key().user_name(user_name).ssh_public_key_id(id).send().await,
        )
    }

    /// Sets a service-specific credential `Inactive`.
    #[tracing::instrument(name = "iam.deactivate_service_specific_credential", skip_all)]
    pub async fn deactivate_service_specific_credential(
        &self,
        user_name: &str,
        id: &str,
    ) -> Result<(), ConnectorError> {
        self.client
            .update_service_specific_credential()
            .user_name(user_name)
            .service_specific_credential_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateServiceSpecificCredential", &e))
    }

    /// Deletes a service-specific credential; absent is success.
    #[tracing::instrument(name = "iam.delete_service_specific_credential", skip_all)]
    pub async fn delete_service_specific_credential(&self, user_name: &str, id: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeleteServiceSpecificCredential",
            self.client
                .delete_service_specific_credential()
                .user_name(user_name)
                .service_specific_credential_id(id)
                .send()
                .await,
        )
    }

    /// Deactivates an MFA device (removes its association with the user) and,
    /// for a virtual device, deletes it. Absent is success.
    #[tracing::instrument(name = "iam.remove_mfa_device", skip_all)]
    pub async fn remove_mfa_device(&self, user_name: &str, serial_number: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeactivateMFADevice",
            self.client.deactivate_mfa_device().user_name(user_name).serial_number(serial_number).send().await,
        )?;
        if is_virtual_mfa(serial_number) {
            absent_is_success(
                "DeleteVirtualMFADevice",
                self.client.delete_virtual_mfa_device().serial_number(serial_number).send().await,
            )?;
        }
        Ok(())
    }

    /// Deletes an inline policy; absent is success.
    #[tracing::instrument(name = "iam.delete_inline_policy", skip_all)]
    pub async fn delete_inline_policy(&self, user_name: &str, policy_name: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DeleteUserPolicy",
            self.client.delete_user_policy().user_name(user_name).policy_name(policy_name).send().await,
        )
    }

    /// Attaches a managed policy.
    #[tracing::instrument(name = "iam.attach_policy", skip_all)]
    pub async fn attach_policy(&self, user_name: &str, arn: &str) -> Result<(), ConnectorError> {
        self.client
            .attach_user_policy()
            .user_name(user_name)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("AttachUserPolicy", &e))
    }

    /// Detaches a managed policy; not attached is success.
    #[tracing::instrument(name = "iam.detach_policy", skip_all)]
    pub async fn detach_policy(&self, user_name: &str, arn: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "DetachUserPolicy",
            self.client.detach_user_policy().user_name(user_name).policy_arn(arn).send().await,
        )
    }

    /// Adds the user to a group.
    #[tracing::instrument(name = "iam.add_to_group", skip_all)]
    pub async fn add_to_group(&self, user_name: &str, group_name: &str) -> Result<(), ConnectorError> {
        self.client
            .add_user_to_group()
            .user_name(user_name)
            .group_name(group_name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("AddUserToGroup", &e))
    }

    /// Removes the user from a group; not a member is success.
    #[tracing::instrument(name = "iam.remove_from_group", skip_all)]
    pub async fn remove_from_group(&self, user_name: &str, group_name: &str) -> Result<(), ConnectorError> {
        absent_is_success(
            "RemoveUserFromGroup",
            self.client.remove_user_from_group().user_name(user_name).group_name(group_name).send().await,
        )
    }
}

/// Whether an MFA serial number names a virtual device (an IAM ARN), which
/// must be deleted, not only deactivated.
pub fn is_virtual_mfa(serial_number: &str) -> bool {
    serial_number.starts_with("arn:") && serial_number.contains(":mfa/")
}

fn build_error(error: aws_sdk_iam::error::BuildError) -> ConnectorError {
    ConnectorError::internal(format!("could not build an IAM request: {}", printable(&error.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::error::ErrorMetadata;
    use aws_sdk_iam::operation::get_user::GetUserError;
    use connector_kit::ErrorKind;

    fn service_error(code: &str, status: u16) -> SdkError<GetUserError, HttpResponse> {
        let error = GetUserError::generic(ErrorMetadata::builder().code(code).message("details").build());
        let raw = HttpResponse::new(
            status.try_into().expect("status code"),
            aws_smithy_types::body::SdkBody::from("<ErrorResponse/>"),
        );
        SdkError::service_error(error, raw)
    }

    #[test]
    fn throttling_is_a_retryable_throttled_error() {
        for (code, status) in [("Throttling", 400), ("ThrottlingException", 400), ("", 429), ("Other", 429)] {
            let error = classify("GetUser", &service_error(code, status));
            assert_eq!(error.kind, ErrorKind::Throttled, "{code} {status}");
            assert!(error.retryable, "{code} {status}");
        }
    }

    #[test]
    fn aws_codes_map_to_stable_kinds() {
        for (code, status, kind, retryable) in [
            ("NoSuchEntity", 404, ErrorKind::NotFound, false),
            ("EntityAlreadyExists", 409, ErrorKind::Conflict, false),
            ("DeleteConflict", 409, ErrorKind::Conflict, false),
            ("AccessDenied", 403, ErrorKind::PermissionDenied, false),
            ("InvalidClientTokenId", 403, ErrorKind::PermissionDenied, false),
            ("ValidationError", 400, ErrorKind::InvalidArgument, false),
            ("ServiceFailure", 500, ErrorKind::Unavailable, true),
            ("", 503, ErrorKind::Unavailable, true),
            ("Strange", 400, ErrorKind::Internal, false),
        ] {
            let error = classify("GetUser", &service_error(code, status));
            assert_eq!((error.kind, error.retryable), (kind, retryable), "{code} {status}");
            assert!(error.message.starts_with("GetUser"), "{}", error.message);
        }
    }

    #[test]
    fn virtual_mfa_devices_are_recognised() {
        assert!(is_virtual_mfa("arn:aws:iam::123456789012:mfa/alice"));
        assert!(!is_virtual_mfa("GAHT12345678"));
        assert!(!is_virtual_mfa("arn:aws:iam::123456789012:u2f/user/alice/key"));
    }
}
