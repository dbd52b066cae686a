//! The one error type of the client library: every failure of connecting, calling the daemon,
//! refreshing tokens or handling the session file ends up as a [`ClientError`], which keeps the
//! gRPC code and message of the daemon's answer.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use tonic::{Code, Status};

/// Anything that went wrong in the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The daemon (or tonic on its behalf) answered with a non-OK gRPC status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(Box<Status>),

    /// The endpoint is not a usable `http://` or `https://` URL, or TLS options do not fit it.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No connection to the endpoint could be made.
    #[error("cannot connect to {endpoint}: {}", error_chain(.source))]
    Connect {
        /// The endpoint connected to.
        endpoint: String,
        /// The transport failure.
        #[source]
        source: tonic::transport::Error,
    },

    /// A TLS file (CA certificate, client certificate or key) could not be read.
    #[error("cannot read {what} {}: {source}", .path.display())]
    ReadFile {
        /// Which file this is ("CA file", "client certificate", "client key").
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },

    /// A refresh was needed but the client holds no refresh token.
    #[error("no refresh token: log in first")]
    NoRefreshToken,

    /// No session file exists.
    #[error("not logged in: run `cardhsm login`")]
    NotLoggedIn,

    /// No location for the session file could be worked out from the environment.
    #[error("no place for the session file: set CARDHSM_SESSION_FILE, XDG_CONFIG_HOME or HOME")]
    NoSessionPath,

    /// The session file could not be read, written or removed.
    #[error("session file {}: {source}", .path.display())]
    SessionIo {
        /// The session file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },

    /// The session file is not what `cardhsm login` writes.
    #[error("session file {} is not valid: {source}; run `cardhsm login` again", .path.display())]
    SessionFormat {
        /// The session file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The gRPC code of this error: the daemon's for [`ClientError::Rpc`], `UNAVAILABLE` for a
    /// failed connection, `UNAUTHENTICATED` for a missing login, `None` for local failures.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Rpc(status) => Some(status.code()),
            Self::Connect { .. } => Some(Code::Unavailable),
            Self::NoRefreshToken | Self::NotLoggedIn => Some(Code::Unauthenticated),
            _ => None,
        }
    }

    /// The daemon's status, with its message, details and metadata, when there is one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc(status) => Some(status),
            _ => None,
        }
    }

    /// The daemon's message for [`ClientError::Rpc`]; the whole description otherwise.
    pub fn message(&self) -> String {
        match self {
            Self::Rpc(status) => status.message().to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}

/// The canonical upper-case name of a gRPC code (`PERMISSION_DENIED`), as the gRPC spec spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `error: cause: cause …` — transport errors say little at the top level.
fn error_chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_error_keeps_code_and_message() {
        let err = ClientError::from(Status::permission_denied("role user may not call RevokeCard"));
        assert_eq!(err.code(), Some(Code::PermissionDenied));
        assert_eq!(err.message(), "role user may not call RevokeCard");
        assert_eq!(err.to_string(), "PERMISSION_DENIED: role user may not call RevokeCard");
        assert!(err.status().is_some());
    }

    #[test]
    fn local_errors_have_no_status() {
        let err = ClientError::NotLoggedIn;
        assert_eq!(err.to_string(), "not logged in: run `cardhsm login`");
        assert!(err.status().is_none());
        assert_eq!(err.code(), Some(Code::Unauthenticated));
    }

    #[test]
    fn code_names_are_upper_snake() {
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}
