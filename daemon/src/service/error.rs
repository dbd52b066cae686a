//! The service layer's one error type. The wire layers turn it into a gRPC Status (or an HTTP
//! answer) in one place; the store and token errors are converted into it here.

use crate::store::StoreError;
use crate::token::TokenError;

/// Why a service call failed, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input; `field` names the request field (dotted for nested ones).
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but the target's state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller is over a limit (sign-in throttling); the message says when to try again.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A back end (token, store) is temporarily unusable; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours. The detail is logged; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::InvalidArgument { field: field.into(), message: message.into() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::AlreadyExists(format!("already exists ({m})")),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<TokenError> for ServiceError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound { serial } => {
                ServiceError::NotFound(format!("no token with serial {serial:?}"))
            }
            TokenError::Unavailable { .. } | TokenError::Busy { .. } => {
                ServiceError::Unavailable(e.to_string())
            }
            TokenError::NoPin { serial } => {
                ServiceError::FailedPrecondition(format!("no PIN is configured for token {serial:?}"))
            }
            TokenError::KeyNotFound { .. } => ServiceError::NotFound(e.to_string()),
            // A rejected PIN is the operator's configuration to fix, not a fault of ours.
            TokenError::Pkcs11 { function, code } if code.starts_with("CKR_PIN_") => {
                ServiceError::FailedPrecondition(format!(
                    "the token refused its configured PIN ({function}: {code})"
                ))
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}
