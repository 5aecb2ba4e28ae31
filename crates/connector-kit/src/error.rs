//! The typed connector error and its one mapping to and from `tonic::Status`.

use std::fmt;
use std::time::Duration;

use jml_contract::v1 as pb;
use prost::Message;
use tonic::{Code, Status};

/// Why a connector call failed. Stable: clients act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request or a value in it is invalid for this target.
    InvalidArgument,
    /// Something the desired state names does not exist on the target.
    NotFound,
    /// The target holds a conflicting object, or a precondition failed.
    Conflict,
    /// The target could not be reached or failed transiently.
    Unavailable,
    /// The target asked us to slow down.
    Throttled,
    /// The connector's own credentials were refused.
    PermissionDenied,
    /// The target (or the call) took too long.
    Timeout,
    /// The target cannot do what was asked.
    Unsupported,
    /// A bug or an answer the connector does not understand.
    Internal,
    /// The command's lease epoch is below the highest seen for the account.
    StaleLease,
    /// A manual target's state cannot be known: no valid attestation.
    Unattested,
}

impl ErrorKind {
    /// Whether an error of this kind is worth retrying by default.
    pub fn retryable_by_default(self) -> bool {
        matches!(self, Self::Unavailable | Self::Throttled | Self::Timeout)
    }

    /// The stable gRPC code for this kind.
    pub fn code(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::Conflict => Code::FailedPrecondition,
            Self::Unavailable => Code::Unavailable,
            Self::Throttled => Code::ResourceExhausted,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::Timeout => Code::DeadlineExceeded,
            Self::Unsupported => Code::Unimplemented,
            Self::Internal => Code::Internal,
            Self::StaleLease => Code::FailedPrecondition,
            Self::Unattested => Code::FailedPrecondition,
        }
    }

    fn from_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::NotFound => Self::NotFound,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => Self::Conflict,
            Code::Unavailable | Code::Cancelled => Self::Unavailable,
            Code::ResourceExhausted => Self::Throttled,
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied,
            Code::DeadlineExceeded => Self::Timeout,
            Code::Unimplemented => Self::Unsupported,
            _ => Self::Internal,
        }
    }

    fn to_proto(self) -> pb::ErrorKind {
        match self {
            Self::InvalidArgument => pb::ErrorKind::InvalidArgument,
            Self::NotFound => pb::ErrorKind::NotFound,
            Self::Conflict => pb::ErrorKind::Conflict,
            Self::Unavailable => pb::ErrorKind::Unavailable,
            Self::Throttled => pb::ErrorKind::Throttled,
            Self::PermissionDenied => pb::ErrorKind::PermissionDenied,
            Self::Timeout => pb::ErrorKind::Timeout,
            Self::Unsupported => pb::ErrorKind::Unsupported,
            Self::Internal => pb::ErrorKind::Internal,
            Self::StaleLease => pb::ErrorKind::StaleLease,
            Self::Unattested => pb::ErrorKind::Unattested,
        }
    }

    fn from_proto(kind: pb::ErrorKind) -> Option<Self> {
        Some(match kind {
            pb::ErrorKind::Unspecified => return None,
            pb::ErrorKind::InvalidArgument => Self::InvalidArgument,
            pb::ErrorKind::NotFound => Self::NotFound,
            pb::ErrorKind::Conflict => Self::Conflict,
            pb::ErrorKind::Unavailable => Self::Unavailable,
            pb::ErrorKind::Throttled => Self::Throttled,
            pb::ErrorKind::PermissionDenied => Self::PermissionDenied,
            pb::ErrorKind::Timeout => Self::Timeout,
            pb::ErrorKind::Unsupported => Self::Unsupported,
            pb::ErrorKind::Internal => Self::Internal,
            pb::ErrorKind::StaleLease => Self::StaleLease,
            pb::ErrorKind::Unattested => Self::Unattested,
        })
    }

    /// A short stable name, used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Throttled => "throttled",
            Self::PermissionDenied => "permission_denied",
            Self::Timeout => "timeout",
            Self::Unsupported => "unsupported",
            Self::Internal => "internal",
            Self::StaleLease => "stale_lease",
            Self::Unattested => "unattested",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed connector error. Its message never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}{}: {message}", field.as_deref().map(|f| format!(" at {f}")).unwrap_or_default())]
pub struct ConnectorError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Whether retrying the same command may succeed.
    pub retryable: bool,
    /// How long the target asked us to wait.
    pub retry_after: Option<Duration>,
    /// The request field at fault, as a path.
    pub field: Option<String>,
    /// A human-readable message without secrets.
    pub message: String,
}

impl ConnectorError {
    /// An error of `kind`, retryable as the kind is by default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, retryable: kind.retryable_by_default(), retry_after: None, field: None, message: message.into() }
    }

    /// The request (or `field` of it) is invalid.
    pub fn invalid_argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message).with_field(field)
    }

    /// Something named does not exist on the target.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The target holds a conflicting object.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// The target is unreachable or failed transiently.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// The target asked us to slow down, maybe saying for how long.
    pub fn throttled(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self { retry_after, ..Self::new(ErrorKind::Throttled, message) }
    }

    /// The connector's credentials were refused.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// The target took too long.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// The target cannot do this.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// A bug or an unexpected answer.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A manual target's state cannot be known (no valid attestation).
    pub fn unattested(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unattested, message)
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Overrides whether the error is retryable.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Sets how long the target asked us to wait.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The proto form carried in gRPC status details.
    pub fn to_proto(&self) -> pb::ConnectorError {
        pb::ConnectorError {
            kind: self.kind.to_proto() as i32,
            retryable: self.retryable,
            retry_after: self.retry_after.and_then(|d| prost_types::Duration::try_from(d).ok()),
            field: self.field.clone().unwrap_or_default(),
            message: self.message.clone(),
        }
    }

    /// The one mapping to a gRPC status: a stable code, the message, and the
    /// proto error in the details.
    pub fn to_status(&self) -> Status {
        let details = self.to_proto().encode_to_vec();
        Status::with_details(self.kind.code(), self.to_string(), details.into())
    }

    /// Reads a status back into a typed error: from its details when a
    /// connector sent them, else from its code (transport failures).
    pub fn from_status(status: &Status) -> Self {
        if let Ok(detail) = pb::ConnectorError::decode(status.details())
            && let Some(kind) = pb::ErrorKind::try_from(detail.kind).ok().and_then(ErrorKind::from_proto)
        {
            return Self {
                kind,
                retryable: detail.retryable,
                retry_after: detail.retry_after.and_then(|d| Duration::try_from(d).ok()),
                field: (!detail.field.is_empty()).then_some(detail.field),
                message: detail.message,
            };
        }
        // Every error a connector itself answers carries the typed details
        // above. A status without them was made on the way: by the transport
        // (a connector killed mid-call surfaces as UNKNOWN "transport error"),
        // a proxy or the gRPC library. UNKNOWN is then a broken call, worth
        // retrying like UNAVAILABLE; the other codes keep their meaning.
        let kind = match status.code() {
            Code::Unknown => ErrorKind::Unavailable,
            code => ErrorKind::from_code(code),
        };
        Self::new(kind, format!("{}: {}", status.code(), status.message()))
    }
}

impl From<ConnectorError> for Status {
    fn from(error: ConnectorError) -> Self {
        error.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_every_field() {
        let error =
            ConnectorError::throttled("slow down", Some(Duration::from_millis(1500))).with_field("desired.account");
        let status = error.to_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(ConnectorError::from_status(&status), error);
    }

    #[test]
    fn status_without_details_maps_from_code() {
        let error = ConnectorError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(error.kind, ErrorKind::Unavailable);
        assert!(error.retryable);
        let error = ConnectorError::from_status(&Status::unknown("transport error"));
        assert_eq!(error.kind, ErrorKind::Unavailable, "a call broken on the way is retryable");
        assert!(error.retryable);
        let error = ConnectorError::from_status(&Status::invalid_argument("bad"));
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
        assert!(!error.retryable);
    }
}
