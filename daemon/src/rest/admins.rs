//! REST routes of the administrator API (`/v1/admins`), on the admin service: each route
//! decodes the administrator product's camelCase JSON, calls what its gRPC twin in
//! `grpc/admins.rs` calls, and encodes. Errors are `{"message": …}` (400 undecodable or
//! duplicate, 404 unknown, 422 a refused value).

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::schema::AdminErrorAnswers;
use super::error::{AdminShape, Failure};
use super::extract::{Caller, JsonBody, PathOf, QueryOf};
use crate::service::Services;
use crate::service::admins::{AdminInput, AdminRole, AdminView, BulkAction, BulkOutcome};
use crate::service::paging::MAX_PAGE_SIZE;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Shape = AdminShape;
type Reply<T> = Result<T, Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("GET /v1/admins", "/cardhsm.v1.AdminService/ListAdmins"),
    Rule("POST /v1/admins", "/cardhsm.v1.AdminService/CreateAdmin"),
    Rule("GET /v1/admins/{uuid}", "/cardhsm.v1.AdminService/GetAdmin"),
    Rule("PUT /v1/admins/{uuid}", "/cardhsm.v1.AdminService/EditAdmin"),
    Rule("DELETE /v1/admins/{uuid}", "/cardhsm.v1.AdminService/DeleteAdmin"),
    Rule("PATCH /v1/admins/{uuid}/enable", "/cardhsm.v1.AdminService/EnableAdmin"),
    Rule("PATCH /v1/admins/{uuid}/disable", "/cardhsm.v1.AdminService/DisableAdmin"),
    Rule("PATCH /v1/admins/enable", "/cardhsm.v1.AdminService/EnableAdmins"),
    Rule("PATCH /v1/admins/disable", "/cardhsm.v1.AdminService/DisableAdmins"),
    Rule("DELETE /v1/admins/delete", "/cardhsm.v1.AdminService/DeleteAdmins"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(list_admins, create_admin))
            .routes(routes!(get_admin, edit_admin, delete_admin))
            .routes(routes!(enable_admin))
            .routes(routes!(disable_admin))
            .routes(routes!(enable_admins))
            .routes(routes!(disable_admins))
            .routes(routes!(delete_admins)),
        RULES,
    )
}

/// An administrator's role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
enum AdminRoleDto {
    /// Reads administrators; holds ADMIN.
    Administrator,
    /// Also manages administrators; holds SUPER_ADMIN and ADMIN.
    SuperAdministrator,
}

impl From<AdminRole> for AdminRoleDto {
    fn from(r: AdminRole) -> Self {
        match r {
            AdminRole::Administrator => AdminRoleDto::Administrator,
            AdminRole::SuperAdministrator => AdminRoleDto::SuperAdministrator,
        }
    }
}

impl From<AdminRoleDto> for AdminRole {
    fn from(r: AdminRoleDto) -> Self {
        match r {
            AdminRoleDto::Administrator => AdminRole::Administrator,
            AdminRoleDto::SuperAdministrator => AdminRole::SuperAdministrator,
        }
    }
}

/// An administrator.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdminDto {
    uuid: String,
    username: String,
    name: String,
    surname: String,
    email: String,
    role: AdminRoleDto,
    enabled: bool,
    description: String,
    /// The certificate DER, base64: a client presenting it over TLS is this administrator.
    certificate: String,
    /// SHA-256 of the DER, lower-case hex.
    certificate_fingerprint: String,
    /// RFC 4514.
    certificate_subject: String,
    certificate_issuer: String,
    /// Lower-case hex.
    certificate_serial: String,
    /// Unix seconds.
    certificate_not_after: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<AdminView> for AdminDto {
    fn from(a: AdminView) -> Self {
        AdminDto {
            uuid: a.id,
            username: a.username,
            name: a.name,
            surname: a.surname,
            email: a.email,
            role: a.role.into(),
            enabled: a.enabled,
            description: a.description,
            certificate: STANDARD.encode(&a.certificate_der),
            certificate_fingerprint: a.certificate_fingerprint,
            certificate_subject: a.certificate_subject,
            certificate_issuer: a.certificate_issuer,
            certificate_serial: a.certificate_serial,
            certificate_not_after: a.certificate_not_after,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A new administrator (POST) or an administrator's new values (PUT: `enabled` is ignored,
/// and without a certificate the current one stays).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdminRequestDto {
    username: String,
    name: String,
    surname: String,
    email: String,
    role: Option<AdminRoleDto>,
    /// New administrators start disabled unless this is true.
    enabled: Option<bool>,
    description: Option<String>,
    /// The certificate DER, base64 (or give `certificateUuid`).
    #[serde(alias = "certificate")]
    admin_certificate: Option<String>,
    /// The uuid of a certificate the daemon issued.
    certificate_uuid: Option<String>,
}

impl AdminRequestDto {
    fn into_input(self) -> AdminInput {
        AdminInput {
            username: self.username,
            name: self.name,
            surname: self.surname,
            email: self.email,
            role: self.role.map(|r| Ok(r.into())),
            enabled: self.enabled.unwrap_or(false),
            description: self.description.unwrap_or_default(),
            certificate: self.admin_certificate.unwrap_or_default(),
            certificate_uuid: self.certificate_uuid.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only administrators whose username, name, surname or email contains this (any case).
    search: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct UuidPath {
    /// The administrator's uuid.
    uuid: String,
}

/// What a bulk call did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdminBulkResult {
    /// The administrators processed (each once).
    processed: Vec<String>,
    /// The uuids no administrator has, in the order given.
    not_found: Vec<String>,
}

impl From<BulkOutcome> for AdminBulkResult {
    fn from(o: BulkOutcome) -> Self {
        AdminBulkResult { processed: o.processed, not_found: o.not_found }
    }
}

/// Every administrator (every page), by username.
#[utoipa::path(get, path = "/v1/admins", tag = "admins", params(ListQuery),
    responses(
        (status = 200, description = "The administrators", body = Vec<AdminDto>),
        AdminErrorAnswers,
    ))]
async fn list_admins(
    State(services): State<Services>,
    QueryOf(q, _): QueryOf<ListQuery, Shape>,
) -> Reply<Json<Vec<AdminDto>>> {
    let search = q.search.unwrap_or_default();
    let mut admins = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = services.admins.list(MAX_PAGE_SIZE, &page_token, &search).await?;
        admins.extend(page.admins.into_iter().map(AdminDto::from));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(Json(admins))
}

/// Creates an administrator.
#[utoipa::path(post, path = "/v1/admins", tag = "admins", request_body = AdminRequestDto,
    responses(
        (status = 201, description = "The administrator", body = AdminDto),
        AdminErrorAnswers,
    ))]
async fn create_admin(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(r, _): JsonBody<AdminRequestDto, Shape>,
) -> Reply<(StatusCode, Json<AdminDto>)> {
    let a = services.admins.create(&caller, r.into_input()).await?;
    Ok((StatusCode::CREATED, Json(AdminDto::from(a))))
}

/// One administrator.
#[utoipa::path(get, path = "/v1/admins/{uuid}", tag = "admins", params(UuidPath),
    responses(
        (status = 200, description = "The administrator", body = AdminDto),
        AdminErrorAnswers,
    ))]
async fn get_admin(
    State(services): State<Services>,
    PathOf(p, _): PathOf<UuidPath, Shape>,
) -> Reply<Json<AdminDto>> {
    Ok(Json(AdminDto::from(services.admins.get(&p.uuid).await?)))
}

/// Replaces an administrator's username, name, surname, email, role and description (the
/// certificate only when one is given).
#[utoipa::path(put, path = "/v1/admins/{uuid}", tag = "admins", params(UuidPath),
    request_body = AdminRequestDto,
    responses(
        (status = 200, description = "The administrator", body = AdminDto),
        AdminErrorAnswers,
    ))]
async fn edit_admin(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<UuidPath, Shape>,
    JsonBody(r, _): JsonBody<AdminRequestDto, Shape>,
) -> Reply<Json<AdminDto>> {
    let mut input = r.into_input();
    // As on gRPC: edit never changes `enabled` (enable and disable do).
    input.enabled = false;
    Ok(Json(AdminDto::from(services.admins.edit(&caller, &p.uuid, input).await?)))
}

/// Deletes an administrator (never oneself, nor the last enabled super administrator).
#[utoipa::path(delete, path = "/v1/admins/{uuid}", tag = "admins", params(UuidPath),
    responses(
        (status = 204, description = "Deleted"),
        AdminErrorAnswers,
    ))]
async fn delete_admin(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<UuidPath, Shape>,
) -> Reply<StatusCode> {
    services.admins.delete(&caller, &p.uuid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables an administrator.
#[utoipa::path(patch, path = "/v1/admins/{uuid}/enable", tag = "admins", params(UuidPath),
    responses(
        (status = 200, description = "The administrator", body = AdminDto),
        AdminErrorAnswers,
    ))]
async fn enable_admin(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<UuidPath, Shape>,
) -> Reply<Json<AdminDto>> {
    Ok(Json(AdminDto::from(services.admins.set_enabled(&caller, &p.uuid, true).await?)))
}

/// Disables an administrator (never oneself, nor the last enabled super administrator).
#[utoipa::path(patch, path = "/v1/admins/{uuid}/disable", tag = "admins", params(UuidPath),
    responses(
        (status = 200, description = "The administrator", body = AdminDto),
        AdminErrorAnswers,
    ))]
async fn disable_admin(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<UuidPath, Shape>,
) -> Reply<Json<AdminDto>> {
    Ok(Json(AdminDto::from(services.admins.set_enabled(&caller, &p.uuid, false).await?)))
}

async fn bulk(
    services: &Services,
    caller: &Caller,
    uuids: &[String],
    action: BulkAction,
) -> Reply<Json<AdminBulkResult>> {
    Ok(Json(services.admins.bulk(&caller.0, uuids, action).await?.into()))
}

/// Enables every administrator of the list (one transaction); unknown uuids are reported.
#[utoipa::path(patch, path = "/v1/admins/enable", tag = "admins", request_body = Vec<String>,
    responses(
        (status = 200, description = "What was done", body = AdminBulkResult),
        AdminErrorAnswers,
    ))]
async fn enable_admins(
    State(services): State<Services>,
    caller: Caller,
    JsonBody(uuids, _): JsonBody<Vec<String>, Shape>,
) -> Reply<Json<AdminBulkResult>> {
    bulk(&services, &caller, &uuids, BulkAction::Enable).await
}

/// Disables every administrator of the list (one transaction); unknown uuids are reported.
#[utoipa::path(patch, path = "/v1/admins/disable", tag = "admins", request_body = Vec<String>,
    responses(
        (status = 200, description = "What was done", body = AdminBulkResult),
        AdminErrorAnswers,
    ))]
async fn disable_admins(
    State(services): State<Services>,
    caller: Caller,
    JsonBody(uuids, _): JsonBody<Vec<String>, Shape>,
) -> Reply<Json<AdminBulkResult>> {
    bulk(&services, &caller, &uuids, BulkAction::Disable).await
}

/// Deletes every administrator of the list (one transaction); unknown uuids are reported.
#[utoipa::path(delete, path = "/v1/admins/delete", tag = "admins", request_body = Vec<String>,
    responses(
        (status = 200, description = "What was done", body = AdminBulkResult),
        AdminErrorAnswers,
    ))]
async fn delete_admins(
    State(services): State<Services>,
    caller: Caller,
    JsonBody(uuids, _): JsonBody<Vec<String>, Shape>,
) -> Reply<Json<AdminBulkResult>> {
    bulk(&services, &caller, &uuids, BulkAction::Delete).await
}
