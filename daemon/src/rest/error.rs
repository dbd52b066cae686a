//! The one place where REST failures become HTTP answers: a service error, a body or query the
//! shim could not decode, or a refused credential, turned into a status code and the error
//! body of the API family the route imitates (each family's clients parse their own shape).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::marker::PhantomData;

use crate::service::ServiceError;

/// What went wrong, independent of how a family spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Well-formed but wrong input; `field` names it.
    Invalid,
    /// The body, query or path could not be decoded at all (not JSON, wrong content type).
    Malformed,
    /// A body over the limit.
    TooLarge,
    /// A body in a media type the route does not take.
    UnsupportedMediaType,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    TooManyRequests,
    Unavailable,
    /// No route for the path, or not for this HTTP method.
    NoRoute,
    MethodNotAllowed,
    Internal,
}

impl Kind {
    /// The status every family uses unless its shape says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Kind::Invalid | Kind::Malformed => StatusCode::BAD_REQUEST,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::NotFound | Kind::NoRoute => StatusCode::NOT_FOUND,
            Kind::AlreadyExists | Kind::FailedPrecondition => StatusCode::CONFLICT,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::PermissionDenied => StatusCode::FORBIDDEN,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failure before it is given a family's shape.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: Kind,
    /// The request field at fault (JSON path, query parameter, multipart part), when known.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(kind: Kind, message: impl Into<String>) -> Problem {
        Problem { kind, field: None, message: message.into() }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let (field, message) = (field.into(), message.into());
        Problem { kind: Kind::Invalid, message: format!("invalid {field}: {message}"), field: Some(field) }
    }
}

impl From<ServiceError> for Problem {
    fn from(err: ServiceError) -> Problem {
        let (kind, message) = match err {
            ServiceError::InvalidArgument { field, message } => return Problem::invalid(field, message),
            ServiceError::NotFound(m) => (Kind::NotFound, m),
            ServiceError::AlreadyExists(m) => (Kind::AlreadyExists, m),
            ServiceError::FailedPrecondition(m) => (Kind::FailedPrecondition, m),
            ServiceError::Unauthenticated(m) => (Kind::Unauthenticated, m),
            ServiceError::PermissionDenied(m) => (Kind::PermissionDenied, m),
            ServiceError::ResourceExhausted(m) => (Kind::TooManyRequests, m),
            ServiceError::Unavailable(m) => (Kind::Unavailable, m),
            ServiceError::Internal(m) => {
                // As on gRPC: the detail goes to the log under an incident id, never to clients.
                let incident = uuid::Uuid::new_v4();
                tracing::error!(%incident, error = %m, "internal error");
                (Kind::Internal, format!("internal error (incident {incident}); see the daemon log"))
            }
        };
        Problem::new(kind, message)
    }
}

/// How one API family spells an error: its status mapping and its body.
pub trait ErrorShape: Send + Sync + 'static {
    fn status(kind: Kind) -> StatusCode {
        kind.status()
    }
    fn body(status: StatusCode, problem: &Problem) -> Value;
}

/// A failure answered in shape `S`. Handlers return `Result<_, Failure<S>>` and use `?` on
/// service calls.
pub struct Failure<S: ErrorShape> {
    pub problem: Problem,
    shape: PhantomData<fn() -> S>,
}

impl<S: ErrorShape> std::fmt::Debug for Failure<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem.fmt(f)
    }
}

impl<S: ErrorShape> From<Problem> for Failure<S> {
    fn from(problem: Problem) -> Self {
        Failure { problem, shape: PhantomData }
    }
}

impl<S: ErrorShape> From<ServiceError> for Failure<S> {
    fn from(err: ServiceError) -> Self {
        Problem::from(err).into()
    }
}

impl<S: ErrorShape> Failure<S> {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem::invalid(field, message).into()
    }
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Problem::new(kind, message).into()
    }

    /// Renames the field at fault, and the `invalid <field>:` its message starts with, when
    /// `rename` maps it: services name fields as the gRPC messages do (`private_key`), each
    /// REST family as its clients send them (`blob-pk`, `privateKey`).
    pub fn rename_field(mut self, rename: impl FnOnce(&str) -> Option<String>) -> Self {
        let problem = &mut self.problem;
        if let Some(new) = problem.field.as_deref().and_then(rename)
            && let Some(old) = problem.field.replace(new.clone())
        {
            problem.message =
                problem.message.replacen(&format!("invalid {old}:"), &format!("invalid {new}:"), 1);
        }
        self
    }
}

impl<S: ErrorShape> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        let status = S::status(self.problem.kind);
        let body = S::body(status, &self.problem);
        let mut response = (status, axum::Json(body)).into_response();
        if self.problem.kind == Kind::Unauthenticated {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer, Basic realm=\"cardhsm\""),
            );
        }
        response
    }
}

/// Card management (`/icmapi`) and the batch platform (`/auth`, `/api/v1/...`):
/// `{"status": 400, "error": "Bad Request", "message": "...", "field": "..."}`.
#[derive(Debug)]
pub struct PlainShape;

impl ErrorShape for PlainShape {
    fn body(status: StatusCode, problem: &Problem) -> Value {
        let mut body = json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or(""),
            "message": problem.message,
        });
        if let Some(field) = &problem.field {
            body["field"] = json!(field);
        }
        body
    }
}

/// The device certificate store (`/api/cert/...`): `{"success": false, "error": {"code": N,
/// "param": "blob-cert", "description": "..."}}`. The codes are those of the device HTTP API
/// the scripts were written for (9 authorisation required, 10 insufficient privileges,
/// 11 missing parameter, 12 invalid parameter value, 13 data too big, 14 processing error,
/// 15 no data available, 2 invalid path, 3 invalid method).
#[derive(Debug)]
pub struct CertShape;

impl CertShape {
    pub fn code(problem: &Problem) -> u32 {
        match problem.kind {
            Kind::NoRoute => 2,
            Kind::MethodNotAllowed => 3,
            Kind::Unauthenticated => 9,
            Kind::PermissionDenied => 10,
            Kind::Invalid if problem.message.contains("required") || problem.message.contains("missing") => {
                11
            }
            Kind::Invalid | Kind::Malformed | Kind::UnsupportedMediaType | Kind::AlreadyExists => 12,
            Kind::TooLarge => 13,
            Kind::NotFound => 15,
            _ => 14,
        }
    }
}

impl ErrorShape for CertShape {
    fn body(_status: StatusCode, problem: &Problem) -> Value {
        // `param` already names the field: the description is what is wrong with it
        // ("invalid certificate: ..."), as the device API words it.
        let description = problem
            .field
            .as_deref()
            .and_then(|f| problem.message.strip_prefix(&format!("invalid {f}: ")))
            .unwrap_or(&problem.message);
        json!({
            "success": false,
            "error": {
                "code": CertShape::code(problem),
                "param": problem.field.clone().unwrap_or_default(),
                "description": description,
            }
        })
    }
}

/// The appliance API (`/api/v1/system/...`, `/api/v1/realm_auth`):
/// `{"result": {"errors": [{"message": "..."}]}}`.
#[derive(Debug)]
pub struct ApplianceShape;

impl ErrorShape for ApplianceShape {
    fn body(_status: StatusCode, problem: &Problem) -> Value {
        json!({ "result": { "errors": [ { "message": problem.message } ] } })
    }
}

/// Administrators (`/v1/admins`): `{"message": "..."}`; invalid values are 422 (the request
/// was understood but its content refused), undecodable bodies, duplicates and rule refusals
/// 400.
#[derive(Debug)]
pub struct AdminShape;

impl ErrorShape for AdminShape {
    fn status(kind: Kind) -> StatusCode {
        match kind {
            Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            // The administrator API answers 400 for a request its rules refuse (a duplicate,
            // the last super administrator, disabling oneself): its clients know no 409.
            Kind::AlreadyExists | Kind::FailedPrecondition => StatusCode::BAD_REQUEST,
            other => other.status(),
        }
    }
    fn body(_status: StatusCode, problem: &Problem) -> Value {
        json!({ "message": problem.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_error_keeps_its_field_and_maps_to_the_familys_status() {
        let f: Failure<AdminShape> = ServiceError::invalid("email", "is not an address").into();
        assert_eq!(f.problem.field.as_deref(), Some("email"));
        assert_eq!(AdminShape::status(f.problem.kind), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(PlainShape::status(f.problem.kind), StatusCode::BAD_REQUEST);
        let body = CertShape::body(StatusCode::BAD_REQUEST, &f.problem);
        assert_eq!(body["error"]["param"], "email");
        assert_eq!(body["error"]["code"], 12);
        assert_eq!(body["success"], false);
    }

    #[test]
    fn an_internal_error_hides_its_detail() {
        let p = Problem::from(ServiceError::Internal("sqlite: disk I/O error at /secret/path".into()));
        assert_eq!(p.kind, Kind::Internal);
        assert!(!p.message.contains("/secret/path"), "{}", p.message);
    }

    #[test]
    fn shapes_spell_the_message_where_their_clients_look() {
        let p = Problem::new(Kind::NotFound, "no card 7");
        assert_eq!(
            ApplianceShape::body(StatusCode::NOT_FOUND, &p)["result"]["errors"][0]["message"],
            "no card 7"
        );
        assert_eq!(AdminShape::body(StatusCode::NOT_FOUND, &p)["message"], "no card 7");
        let plain = PlainShape::body(StatusCode::NOT_FOUND, &p);
        assert_eq!((plain["status"].as_u64(), plain["message"].as_str()), (Some(404), Some("no card 7")));
        assert_eq!(CertShape::body(StatusCode::NOT_FOUND, &p)["error"]["code"], 15);
    }
}

/// The document's descriptions of the error bodies above (one per family); routes list them
/// as `(status = "4XX", body = PlainErrorBody)` and the tests check answers against them.
pub mod schema {
    use utoipa::ToSchema;

    /// [`super::PlainShape`].
    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct PlainErrorBody {
        /// The HTTP status.
        status: u16,
        /// The status's reason phrase.
        error: String,
        message: String,
        /// The request field at fault, when one is.
        field: Option<String>,
    }

    /// [`super::CertShape`].
    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct CertErrorBody {
        /// Always false.
        success: bool,
        error: CertErrorDetail,
    }

    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct CertErrorDetail {
        /// 2 invalid path, 3 invalid method, 9 authorisation required, 10 insufficient
        /// privileges, 11 missing parameter, 12 invalid parameter value, 13 data too big,
        /// 14 processing error, 15 no data available.
        code: u32,
        /// The parameter at fault ("" when none).
        param: String,
        description: String,
    }

    /// [`super::ApplianceShape`].
    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct ApplianceErrorBody {
        result: ApplianceErrors,
    }

    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct ApplianceErrors {
        errors: Vec<ApplianceMessage>,
    }

    /// One message of the appliance API (errors and infos alike).
    #[derive(ToSchema, serde::Serialize, Debug)]
    pub struct ApplianceMessage {
        pub message: String,
    }

    /// The error answers of a route of the plain family, for `responses(..)`.
    #[derive(utoipa::IntoResponses, Debug)]
    #[allow(dead_code, reason = "only describes the answers for the OpenAPI document")]
    pub enum PlainErrorAnswers {
        /// Refused: bad input (naming the field), no or a bad credential, not allowed, not found, a conflict.
        #[response(status = "4XX")]
        Client(PlainErrorBody),
        /// A fault of ours or a back end unavailable.
        #[response(status = "5XX")]
        Server(PlainErrorBody),
    }

    /// The error answers of a route of the certificate store, for `responses(..)`.
    #[derive(utoipa::IntoResponses, Debug)]
    #[allow(dead_code, reason = "only describes the answers for the OpenAPI document")]
    pub enum CertErrorAnswers {
        /// Refused: bad input (naming the parameter), no or a bad credential, not allowed, not found.
        #[response(status = "4XX")]
        Client(CertErrorBody),
        /// A fault of ours or a back end unavailable.
        #[response(status = "5XX")]
        Server(CertErrorBody),
    }

    /// The error answers of a route of the appliance API, for `responses(..)`.
    #[derive(utoipa::IntoResponses, Debug)]
    #[allow(dead_code, reason = "only describes the answers for the OpenAPI document")]
    pub enum ApplianceErrorAnswers {
        /// Refused: bad input (the message names the field), no or a bad credential, not allowed, not found.
        #[response(status = "4XX")]
        Client(ApplianceErrorBody),
        /// A fault of ours or a back end unavailable.
        #[response(status = "5XX")]
        Server(ApplianceErrorBody),
    }

    /// The error answers of a route of the administrator API, for `responses(..)`.
    #[derive(utoipa::IntoResponses, Debug)]
    #[allow(dead_code, reason = "only describes the answers for the OpenAPI document")]
    pub enum AdminErrorAnswers {
        /// Refused: 400 undecodable or duplicate, 401, 403, 404 unknown, 422 invalid values.
        #[response(status = "4XX")]
        Client(AdminErrorBody),
        /// A fault of ours or a back end unavailable.
        #[response(status = "5XX")]
        Server(AdminErrorBody),
    }

    /// [`super::AdminShape`].
    #[derive(ToSchema, Debug)]
    #[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
    pub struct AdminErrorBody {
        message: String,
    }
}
