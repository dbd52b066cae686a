//! Batch platform certificate and device routes (`/api/v1/certificates/...`,
//! `/api/v1/devices`). Wire layer: each route decodes the platform's camelCase request, calls
//! the same issuance / batch service function as its gRPC twin (IssuanceService.Find- and
//! RevokeCertificates, RevokeCertificate; BatchService.GetDeviceStatistics), and encodes.

use super::super::Routes;
use super::super::auth::{Rule, guarded};
use super::super::error::schema::PlainErrorAnswers;
use super::super::error::{Failure, PlainShape};
use super::super::extract::{Caller, JsonBody, PathOf, QueryOf};
use super::auth::camel_field;
use crate::service::Services;
use crate::service::issuance::{Certificate, Status};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Shape = PlainShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("POST /api/v1/certificates/find", "/cardhsm.v1.IssuanceService/FindCertificates"),
    Rule("POST /api/v1/certificates/revoke", "/cardhsm.v1.IssuanceService/RevokeCertificates"),
    Rule("POST /api/v1/certificates/{profileId}/revoke", "/cardhsm.v1.IssuanceService/RevokeCertificate"),
    Rule("GET /api/v1/devices", "/cardhsm.v1.BatchService/GetDeviceStatistics"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(find))
            .routes(routes!(revoke_ids))
            .routes(routes!(revoke_serial))
            .routes(routes!(devices)),
        RULES,
    )
}

/// A certificate's state as the platform lists it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum IssuedCertificateStatus {
    Valid,
    Revoked,
    OnHold,
    Expired,
}

/// A certificate as the platform lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IssuedCertificate {
    id: String,
    common_name: String,
    /// Lower-case hex.
    serial_number: String,
    /// Unix seconds.
    created_at: i64,
    status: IssuedCertificateStatus,
    authority_id: String,
    profile_id: String,
    /// RFC 5280 reason code (null unless revoked or on hold).
    revocation_reason: Option<i64>,
    /// Unix seconds (null unless revoked or on hold).
    revoked_at: Option<i64>,
    not_after: i64,
    subject_dn: String,
}

impl From<Certificate> for IssuedCertificate {
    /// As grpc/issuance.rs `summary_to_pb`: a valid certificate past its end is EXPIRED.
    fn from(c: Certificate) -> Self {
        let status = match c.status {
            Status::Revoked => IssuedCertificateStatus::Revoked,
            Status::OnHold => IssuedCertificateStatus::OnHold,
            Status::Valid if c.not_after < crate::store::now() => IssuedCertificateStatus::Expired,
            Status::Valid => IssuedCertificateStatus::Valid,
        };
        IssuedCertificate {
            id: c.id,
            common_name: c.common_name,
            serial_number: c.serial,
            created_at: c.created_at,
            status,
            authority_id: c.authority_id,
            profile_id: c.profile_id,
            revocation_reason: c.revocation_reason,
            revoked_at: c.revoked_at,
            not_after: c.not_after,
            subject_dn: c.subject_dn,
        }
    }
}

/// `POST /api/v1/certificates/find`: filters and a page (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
struct CertificateFindBody {
    /// The exact common name.
    common_name: String,
    /// Hex.
    serial_number: String,
    /// 0: the default page size.
    page_size: u32,
    /// The previous answer's `nextPageToken` ("" for the first page).
    page_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IssuedCertificatePage {
    certificates: Vec<IssuedCertificate>,
    /// "" on the last page.
    next_page_token: String,
    total_count: u64,
}

/// Finds issued certificates (IssuanceService.FindCertificates).
#[utoipa::path(post, path = "/api/v1/certificates/find", tag = "platform", request_body = CertificateFindBody,
    responses(
        (status = 200, description = "One page of certificates", body = IssuedCertificatePage),
        PlainErrorAnswers,
    ))]
async fn find(
    State(services): State<Services>,
    Caller(_caller): Caller,
    JsonBody(b, _): JsonBody<CertificateFindBody, Shape>,
) -> Reply<IssuedCertificatePage> {
    let (rows, next, total) = services
        .issuance
        .find(&b.common_name, &b.serial_number, b.page_size, &b.page_token)
        .await
        .map_err(camel_field)?;
    Ok(Json(IssuedCertificatePage {
        certificates: rows.into_iter().map(IssuedCertificate::from).collect(),
        next_page_token: next,
        total_count: total,
    }))
}

/// `POST /api/v1/certificates/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CertificateRevokeBody {
    /// Certificate ids.
    ids: Vec<String>,
    /// RFC 5280 reason code (0-10; 7 is unused).
    reason_code: u32,
}

#[derive(Debug, Serialize, ToSchema)]
struct RevokedCertificates {
    /// The certificates as they are now.
    certificates: Vec<IssuedCertificate>,
}

/// Revokes certificates by id, all or none; the CRL is renewed in the same transaction
/// (IssuanceService.RevokeCertificates).
#[utoipa::path(post, path = "/api/v1/certificates/revoke", tag = "platform", request_body = CertificateRevokeBody,
    responses(
        (status = 200, description = "Revoked", body = RevokedCertificates),
        PlainErrorAnswers,
    ))]
async fn revoke_ids(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(b, _): JsonBody<CertificateRevokeBody, Shape>,
) -> Reply<RevokedCertificates> {
    let done = services.issuance.revoke_ids(&caller, b.reason_code, &b.ids).await.map_err(camel_field)?;
    Ok(Json(RevokedCertificates { certificates: done.into_iter().map(IssuedCertificate::from).collect() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct ProfilePath {
    /// The profile the certificate was issued with.
    profile_id: String,
}

/// `POST /api/v1/certificates/{profileId}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CertificateRevokeSerialBody {
    /// Hex.
    serial_number: String,
    /// RFC 5280 reason code (0-10; 7 is unused).
    reason_code: u32,
}

/// Revokes one certificate by profile and serial (IssuanceService.RevokeCertificate).
#[utoipa::path(post, path = "/api/v1/certificates/{profileId}/revoke", tag = "platform",
    params(ProfilePath), request_body = CertificateRevokeSerialBody,
    responses(
        (status = 200, description = "Revoked", body = IssuedCertificate),
        PlainErrorAnswers,
    ))]
async fn revoke_serial(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<ProfilePath, Shape>,
    JsonBody(b, _): JsonBody<CertificateRevokeSerialBody, Shape>,
) -> Reply<IssuedCertificate> {
    let done = services
        .issuance
        .revoke_serial(&caller, &p.profile_id, &b.serial_number, b.reason_code)
        .await
        .map_err(camel_field)?;
    Ok(Json(done.into()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", default)]
struct DevicesQuery {
    /// One organization ("" or absent: every organization the caller may see).
    organization_id: String,
    /// YYYY-MM-DD, UTC (absent: 29 days before `toDay`).
    from_day: String,
    /// YYYY-MM-DD, UTC (absent: today).
    to_day: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DailyDeviceCount {
    /// YYYY-MM-DD.
    day: String,
    ordered: u64,
    issued: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchDeviceStatistics {
    /// Devices ordered in batches over the days.
    ordered: u64,
    /// Device certificates issued over the days.
    issued: u64,
    days: Vec<DailyDeviceCount>,
}

/// Devices of batches ordered and issued per day (BatchService.GetDeviceStatistics), in the
/// caller's organizations or one of them.
#[utoipa::path(get, path = "/api/v1/devices", tag = "platform", params(DevicesQuery),
    responses(
        (status = 200, description = "The counts", body = BatchDeviceStatistics),
        PlainErrorAnswers,
    ))]
async fn devices(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(q, _): QueryOf<DevicesQuery, Shape>,
) -> Reply<BatchDeviceStatistics> {
    let s = services
        .batches
        .statistics(&caller, &q.organization_id, &q.from_day, &q.to_day)
        .await
        .map_err(camel_field)?;
    Ok(Json(BatchDeviceStatistics {
        ordered: s.ordered,
        issued: s.issued,
        days: s
            .days
            .into_iter()
            .map(|(day, ordered, issued)| DailyDeviceCount { day, ordered, issued })
            .collect(),
    }))
}
