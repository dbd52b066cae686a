//! The one place where service errors become gRPC statuses. Bad input carries a
//! `google.rpc.BadRequest` detail naming the field; internal faults are logged here and
//! answered with a generic message, so no back-end detail leaks to clients.

use crate::service::ServiceError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub fn to_status(err: ServiceError) -> Status {
    match err {
        ServiceError::InvalidArgument { field, message } => Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid {field}: {message}"),
            ErrorDetails::with_bad_request_violation(field, message),
        ),
        ServiceError::NotFound(m) => Status::not_found(m),
        ServiceError::AlreadyExists(m) => Status::already_exists(m),
        ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
        ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
        ServiceError::PermissionDenied(m) => Status::permission_denied(m),
        ServiceError::Unavailable(m) => Status::unavailable(m),
        ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
        ServiceError::Internal(m) => {
            let incident = uuid::Uuid::new_v4();
            tracing::error!(%incident, error = %m, "internal error");
            Status::internal(format!("internal error (incident {incident}); see the daemon log"))
        }
    }
}

/// Shorthand for handlers: `service_call().await.map_err(to_status)?`.
pub type GrpcResult<T> = Result<tonic::Response<T>, Status>;
