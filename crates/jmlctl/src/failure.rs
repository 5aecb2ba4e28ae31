//! How a command fails: a one-line message and the exit code a script can
//! act on (see the crate's opening comment for the codes), and the mapping
//! from the coordinator's gRPC status to them.

/// A failure with its exit code.
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// The one-line message printed on stderr.
    pub message: String,
}

pub fn failed(message: impl Into<String>) -> Failure {
    Failure { code: 1, message: message.into() }
}

pub fn bad_input(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

pub fn from_status(status: tonic::Status) -> Failure {
    let message = format!("{}: {}", status.code().description(), status.message());
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::Unauthenticated => bad_input(message),
        tonic::Code::Unavailable if status.message().contains("connect") || status.message().contains("transport") => {
            Failure { code: 3, message: format!("coordinator unreachable: {}", status.message()) }
        }
        tonic::Code::Unavailable => Failure { code: 3, message },
        _ => failed(message),
    }
}

/// Exit code: the request was sent and no answer came back (connection cut,
/// coordinator crash): whether it was applied is unknown.
pub const OUTCOME_UNKNOWN: u8 = 5;

/// Maps the failure of a request that changes state, once connected: a
/// status the coordinator sent is its answer ([`from_status`]); a transport
/// failure after sending (no status from the coordinator) leaves the outcome
/// unknown, never "failed" or "unreachable".
pub fn from_send_status(status: tonic::Status) -> Failure {
    let transport = std::error::Error::source(&status).is_some()
        || matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded);
    if transport {
        return Failure {
            code: OUTCOME_UNKNOWN,
            message: format!(
                "outcome unknown: the request was sent but no answer came back ({}: {}); retry with the same event id or record: it is always safe",
                status.code().description(),
                status.message()
            ),
        };
    }
    from_status(status)
}
