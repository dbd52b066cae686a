//! Batch platform directory routes (`/api/v1/...`): authorities and balances, ecosystems,
//! generators, organizations, profiles and users. Wire layer: each route decodes, calls the
//! same service function as its gRPC twin (`grpc/organizations`, `grpc/ecosystems`,
//! `grpc/handlers` UserApi, `grpc/issuance`, `grpc/batches`), and encodes in camelCase.
//! Passwords in user bodies are moved into `Zeroizing` buffers and never reach a Debug print.

use super::super::Routes;
use super::super::auth::{Rule, guarded};
use super::super::error::schema::PlainErrorAnswers;
use super::super::error::{Failure, PlainShape};
use super::super::extract::{Caller, JsonBody, PathOf, QueryOf};
use super::auth::camel_field;
use crate::service::issuance::profiles::{Parameter, Profile, eku_name, key_usage_name};
use crate::service::organizations::{OrganizationAuthorityView, OrganizationInput, OrganizationView, Status};
use crate::service::privileges::Privilege;
use crate::service::users::{ListFilter, ProfileChange, UserView};
use crate::service::{Role, Services};
use crate::store::ecosystems::{DEFAULT_ECOSYSTEM, EcosystemRecord};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

type Shape = PlainShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;
type Created<T> = Result<(StatusCode, Json<T>), Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]).
pub const RULES: &[Rule] = &[
    // Authorities and balances: an organization's assignments, as ListOrganizationAuthorities.
    Rule("GET /api/v1/authorities/allowed", "/cardhsm.v1.OrganizationService/ListOrganizationAuthorities"),
    Rule(
        "GET /api/v1/authorities/{id}/balanceused/{org}",
        "/cardhsm.v1.OrganizationService/ListOrganizationAuthorities",
    ),
    Rule(
        "GET /api/v1/authorities/{id}/balanceavailable/{org}",
        "/cardhsm.v1.OrganizationService/ListOrganizationAuthorities",
    ),
    Rule(
        "GET /api/v1/authorities/{id}/balanceavailable",
        "/cardhsm.v1.OrganizationService/ListOrganizationAuthorities",
    ),
    // Ecosystems.
    Rule("GET /api/v1/ecosystems/ecosystem", "/cardhsm.v1.EcosystemService/GetEcosystem"),
    Rule("PUT /api/v1/ecosystems/ecosystem", "/cardhsm.v1.EcosystemService/UpdateEcosystem"),
    Rule("GET /api/v1/ecosystems/ecosystem/balance", "/cardhsm.v1.EcosystemService/GetEcosystemStatistics"),
    Rule("GET /api/v1/ecosystems/statistics", "/cardhsm.v1.EcosystemService/GetEcosystemStatistics"),
    Rule("GET /api/v1/ecosystems/users", "/cardhsm.v1.UserService/ListUsers"),
    Rule("GET /api/v1/ecosystems/users/{id}", "/cardhsm.v1.UserService/GetUser"),
    // Generators.
    Rule("GET /api/v1/generators", "/cardhsm.v1.BatchService/ListGenerators"),
    // Organizations.
    Rule("GET /api/v1/organizations", "/cardhsm.v1.OrganizationService/ListOrganizations"),
    Rule("POST /api/v1/organizations", "/cardhsm.v1.OrganizationService/CreateOrganization"),
    Rule(
        "GET /api/v1/organizations/current",
        "/cardhsm.v1.OrganizationService/GetOrganizationForCurrentUser",
    ),
    Rule("GET /api/v1/organizations/items", "/cardhsm.v1.OrganizationService/ListOrganizationItems"),
    Rule("GET /api/v1/organizations/check", "/cardhsm.v1.OrganizationService/CheckOrganization"),
    Rule("GET /api/v1/organizations/{id}", "/cardhsm.v1.OrganizationService/GetOrganization"),
    Rule("PUT /api/v1/organizations/{id}", "/cardhsm.v1.OrganizationService/UpdateOrganization"),
    Rule(
        "GET /api/v1/organizations/{id}/authorities",
        "/cardhsm.v1.OrganizationService/ListOrganizationAuthorities",
    ),
    Rule(
        "POST /api/v1/organizations/{id}/authorities",
        "/cardhsm.v1.OrganizationService/AddOrganizationAuthority",
    ),
    Rule(
        "PUT /api/v1/organizations/{id}/authorities/{authorityId}",
        "/cardhsm.v1.OrganizationService/UpdateOrganizationAuthority",
    ),
    Rule(
        "DELETE /api/v1/organizations/{id}/authorities/{authorityId}",
        "/cardhsm.v1.OrganizationService/RemoveOrganizationAuthority",
    ),
    // Profiles.
    Rule("GET /api/v1/profiles", "/cardhsm.v1.IssuanceService/ListProfiles"),
    Rule("GET /api/v1/profiles/{id}", "/cardhsm.v1.IssuanceService/GetProfile"),
    Rule("GET /api/v1/profiles/{id}/parameters", "/cardhsm.v1.IssuanceService/GetProfileParameters"),
    Rule("GET /api/v1/profiles/{id}/subjectDn", "/cardhsm.v1.IssuanceService/GetProfileSubjectDn"),
    // Users.
    Rule("GET /api/v1/users", "/cardhsm.v1.UserService/ListUsers"),
    Rule("POST /api/v1/users", "/cardhsm.v1.UserService/CreateUser"),
    Rule("GET /api/v1/users/current", "/cardhsm.v1.UserService/GetCurrentUser"),
    Rule("PUT /api/v1/users/current", "/cardhsm.v1.UserService/UpdateCurrentUser"),
    Rule("PUT /api/v1/users/current/email", "/cardhsm.v1.UserService/UpdateEmail"),
    Rule("PUT /api/v1/users/current/credentials", "/cardhsm.v1.UserService/UpdateCredentials"),
    Rule("GET /api/v1/users/checkEmail", "/cardhsm.v1.UserService/CheckEmail"),
    Rule("GET /api/v1/users/checkUsername", "/cardhsm.v1.UserService/CheckUsername"),
    Rule("GET /api/v1/users/{id}", "/cardhsm.v1.UserService/GetUser"),
    Rule("PUT /api/v1/users/{id}", "/cardhsm.v1.UserService/UpdateUser"),
    Rule("DELETE /api/v1/users/{id}", "/cardhsm.v1.UserService/RemoveUser"),
    Rule("PUT /api/v1/users/{id}/enabled", "/cardhsm.v1.UserService/SetUserEnabled"),
    Rule("GET /api/v1/users/{id}/privileges", "/cardhsm.v1.PrivilegeService/GetUserPrivileges"),
    Rule("PUT /api/v1/users/{id}/privileges", "/cardhsm.v1.PrivilegeService/SetUserPrivileges"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            // Authorities and balances.
            .routes(routes!(allowed_authorities))
            .routes(routes!(balance_used))
            .routes(routes!(balance_available_in))
            .routes(routes!(balance_available))
            // Ecosystems.
            .routes(routes!(get_ecosystem, update_ecosystem))
            .routes(routes!(ecosystem_balance))
            .routes(routes!(ecosystem_statistics))
            .routes(routes!(ecosystem_users))
            .routes(routes!(ecosystem_user))
            // Generators.
            .routes(routes!(generators))
            // Organizations.
            .routes(routes!(list_organizations, create_organization))
            .routes(routes!(current_organization))
            .routes(routes!(organization_items))
            .routes(routes!(check_organization))
            .routes(routes!(get_organization, update_organization))
            .routes(routes!(organization_authorities, add_organization_authority))
            .routes(routes!(update_organization_authority, remove_organization_authority))
            // Profiles.
            .routes(routes!(list_profiles))
            .routes(routes!(get_profile))
            .routes(routes!(profile_parameters))
            .routes(routes!(profile_subject_dn))
            // Users.
            .routes(routes!(list_users, create_user))
            .routes(routes!(current_user, update_current_user))
            .routes(routes!(update_email))
            .routes(routes!(update_credentials))
            .routes(routes!(check_email))
            .routes(routes!(check_username))
            .routes(routes!(get_user, update_user, remove_user))
            .routes(routes!(set_user_enabled))
            .routes(routes!(get_privileges, set_privileges)),
        RULES,
    )
}

// ---------------------------------------------------------------------------------------------
// Shared wire types
// ---------------------------------------------------------------------------------------------

/// A role as the platform spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum RoleName {
    SuperAdmin,
    Admin,
    Operator,
    EcoAdmin,
    OrgAdmin,
    User,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::SuperAdmin => Role::SuperAdmin,
            RoleName::Admin => Role::Admin,
            RoleName::Operator => Role::Operator,
            RoleName::EcoAdmin => Role::EcoAdmin,
            RoleName::OrgAdmin => Role::OrgAdmin,
            RoleName::User => Role::User,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::SuperAdmin => RoleName::SuperAdmin,
            Role::Admin => RoleName::Admin,
            Role::Operator => RoleName::Operator,
            Role::EcoAdmin => RoleName::EcoAdmin,
            Role::OrgAdmin => RoleName::OrgAdmin,
            Role::User => RoleName::User,
        }
    }
}

/// `{"available": true}`: whether a name or email is still free.
#[derive(Debug, Serialize, ToSchema)]
struct Availability {
    available: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct IdPath {
    id: String,
}

// ---------------------------------------------------------------------------------------------
// Authorities and balances
// ---------------------------------------------------------------------------------------------

/// An authority assigned to an organization, with its balance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AssignedAuthority {
    authority_id: String,
    authority_name: String,
    /// What the organization was given.
    balance: i64,
    /// Certificates issued against it.
    used: i64,
    /// What is left, less what batches still issuing have reserved.
    available: i64,
    enabled: bool,
}

impl From<OrganizationAuthorityView> for AssignedAuthority {
    fn from(a: OrganizationAuthorityView) -> Self {
        AssignedAuthority {
            authority_id: a.authority_id,
            authority_name: a.authority_name,
            balance: a.balance,
            used: a.used,
            available: a.available,
            enabled: a.enabled,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AllowedQuery {
    /// The organization; absent: the caller's own.
    organization_id: Option<String>,
}

/// The authorities an organization may issue from now (its enabled assignments).
#[utoipa::path(get, path = "/api/v1/authorities/allowed", tag = "platform", params(AllowedQuery),
    responses(
        (status = 200, description = "The authorities, with their balances", body = Vec<AssignedAuthority>),
        PlainErrorAnswers,
    ))]
async fn allowed_authorities(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<AllowedQuery, Shape>,
) -> Reply<Vec<AssignedAuthority>> {
    let found = services
        .organizations
        .allowed_authorities(&caller, query.organization_id.as_deref())
        .await
        .map_err(camel_field)?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AuthorityOrgPath {
    /// The authority.
    id: String,
    /// The organization.
    org: String,
}

/// What an organization has issued from an authority.
#[utoipa::path(get, path = "/api/v1/authorities/{id}/balanceused/{org}", tag = "platform",
    params(AuthorityOrgPath),
    responses(
        (status = 200, description = "Certificates issued against the balance", body = i64, content_type = "application/json"),
        PlainErrorAnswers,
    ))]
async fn balance_used(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<AuthorityOrgPath, Shape>,
) -> Reply<i64> {
    let a =
        services.organizations.authority(&caller, Some(&path.org), &path.id).await.map_err(camel_field)?;
    Ok(Json(a.used))
}

/// What an organization may still issue from an authority.
#[utoipa::path(get, path = "/api/v1/authorities/{id}/balanceavailable/{org}", tag = "platform",
    params(AuthorityOrgPath),
    responses(
        (status = 200, description = "The available balance", body = i64, content_type = "application/json"),
        PlainErrorAnswers,
    ))]
async fn balance_available_in(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<AuthorityOrgPath, Shape>,
) -> Reply<i64> {
    let a =
        services.organizations.authority(&caller, Some(&path.org), &path.id).await.map_err(camel_field)?;
    Ok(Json(a.available))
}

/// What the caller's own organization may still issue from an authority.
#[utoipa::path(get, path = "/api/v1/authorities/{id}/balanceavailable", tag = "platform",
    params(IdPath),
    responses(
        (status = 200, description = "The available balance", body = i64, content_type = "application/json"),
        PlainErrorAnswers,
    ))]
async fn balance_available(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<i64> {
    let a = services.organizations.authority(&caller, None, &path.id).await.map_err(camel_field)?;
    Ok(Json(a.available))
}

// ---------------------------------------------------------------------------------------------
// Ecosystems
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Ecosystem {
    id: String,
    name: String,
    password_min_length: u32,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

impl From<EcosystemRecord> for Ecosystem {
    fn from(e: EcosystemRecord) -> Self {
        Ecosystem {
            id: e.id,
            name: e.name,
            password_min_length: e.password_min_length,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EcosystemQuery {
    /// The ecosystem; absent: "default".
    id: Option<String>,
}

/// An ecosystem.
#[utoipa::path(get, path = "/api/v1/ecosystems/ecosystem", tag = "platform", params(EcosystemQuery),
    responses(
        (status = 200, description = "The ecosystem", body = Ecosystem),
        PlainErrorAnswers,
    ))]
async fn get_ecosystem(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<EcosystemQuery, Shape>,
) -> Reply<Ecosystem> {
    let e = services
        .ecosystems
        .get(&caller, query.id.as_deref().unwrap_or_default())
        .await
        .map_err(camel_field)?;
    Ok(Json(e.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EcosystemUpdate {
    /// The ecosystem; absent: "default".
    id: Option<String>,
    /// 1 to 50.
    password_min_length: u32,
}

/// Sets an ecosystem's minimum password length.
#[utoipa::path(put, path = "/api/v1/ecosystems/ecosystem", tag = "platform",
    request_body = EcosystemUpdate,
    responses(
        (status = 200, description = "The ecosystem", body = Ecosystem),
        PlainErrorAnswers,
    ))]
async fn update_ecosystem(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<EcosystemUpdate, Shape>,
) -> Reply<Ecosystem> {
    let e = services
        .ecosystems
        .set_password_min_length(&caller, body.id.as_deref().unwrap_or_default(), body.password_min_length)
        .await
        .map_err(camel_field)?;
    Ok(Json(e.into()))
}

/// An ecosystem's balance: what its organizations were given, used and have left.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EcosystemBalance {
    ecosystem_id: String,
    /// The sum of the balances assigned to its organizations.
    capacity: i64,
    /// What is left of it.
    balance: i64,
    used: i64,
}

/// An ecosystem's balance.
#[utoipa::path(get, path = "/api/v1/ecosystems/ecosystem/balance", tag = "platform",
    params(EcosystemQuery),
    responses(
        (status = 200, description = "The balance", body = EcosystemBalance),
        PlainErrorAnswers,
    ))]
async fn ecosystem_balance(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<EcosystemQuery, Shape>,
) -> Reply<EcosystemBalance> {
    let s = services
        .ecosystems
        .statistics(&caller, query.id.as_deref().unwrap_or_default(), "", "")
        .await
        .map_err(camel_field)?;
    Ok(Json(EcosystemBalance {
        ecosystem_id: s.ecosystem_id,
        capacity: s.capacity,
        balance: s.balance,
        used: s.used,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct StatisticsQuery {
    /// The ecosystem; absent: "default".
    id: Option<String>,
    /// YYYY-MM-DD; absent: 30 days before `toDay`.
    from_day: Option<String>,
    /// YYYY-MM-DD; absent: today (UTC).
    to_day: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DailyCount {
    /// YYYY-MM-DD.
    day: String,
    /// Devices in batches created that day.
    ordered: u64,
    /// Certificates issued that day.
    issued: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EcosystemStatistics {
    ecosystem_id: String,
    organizations: u64,
    capacity: i64,
    balance: i64,
    used: i64,
    days: Vec<DailyCount>,
}

/// An ecosystem's statistics: balances and devices ordered and issued per day.
#[utoipa::path(get, path = "/api/v1/ecosystems/statistics", tag = "platform", params(StatisticsQuery),
    responses(
        (status = 200, description = "The statistics", body = EcosystemStatistics),
        PlainErrorAnswers,
    ))]
async fn ecosystem_statistics(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<StatisticsQuery, Shape>,
) -> Reply<EcosystemStatistics> {
    let s = services
        .ecosystems
        .statistics(
            &caller,
            query.id.as_deref().unwrap_or_default(),
            query.from_day.as_deref().unwrap_or_default(),
            query.to_day.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(camel_field)?;
    Ok(Json(EcosystemStatistics {
        ecosystem_id: s.ecosystem_id,
        organizations: s.organizations,
        capacity: s.capacity,
        balance: s.balance,
        used: s.used,
        days: s.days.into_iter().map(|(day, ordered, issued)| DailyCount { day, ordered, issued }).collect(),
    }))
}

/// The users an ecosystem administrator reaches (as `GET /api/v1/users`).
#[utoipa::path(get, path = "/api/v1/ecosystems/users", tag = "platform", params(UsersQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        PlainErrorAnswers,
    ))]
async fn ecosystem_users(
    services: State<Services>,
    caller: Caller,
    query: QueryOf<UsersQuery, Shape>,
) -> Reply<UserPage> {
    list_users(services, caller, query).await
}

/// One user an ecosystem administrator reaches (as `GET /api/v1/users/{id}`).
#[utoipa::path(get, path = "/api/v1/ecosystems/users/{id}", tag = "platform",
    params(IdPath, UserQuery),
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn ecosystem_user(
    services: State<Services>,
    caller: Caller,
    path: PathOf<IdPath, Shape>,
    query: QueryOf<UserQuery, Shape>,
) -> Reply<User> {
    get_user(services, caller, path, query).await
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct GeneratorsQuery {
    profile_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GeneratorParameter {
    name: String,
    input_type: String,
    required: bool,
    /// The default.
    value: String,
    description: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Generator {
    id: String,
    name: String,
    description: String,
    /// The profile parameter it fills.
    target_parameter: String,
    parameters: Vec<GeneratorParameter>,
}

/// The serial generators a profile's batches may use.
#[utoipa::path(get, path = "/api/v1/generators", tag = "platform", params(GeneratorsQuery),
    responses(
        (status = 200, description = "The generators", body = Vec<Generator>),
        PlainErrorAnswers,
    ))]
async fn generators(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<GeneratorsQuery, Shape>,
) -> Reply<Vec<Generator>> {
    let found = services.batches.generators(&caller, &query.profile_id).map_err(camel_field)?;
    Ok(Json(
        found
            .into_iter()
            .map(|g| Generator {
                id: g.id.into(),
                name: g.name.into(),
                description: g.description.into(),
                target_parameter: g.target_parameter.into(),
                parameters: g
                    .parameters
                    .into_iter()
                    .map(|(name, input_type, required, value, description)| GeneratorParameter {
                        name: name.into(),
                        input_type: input_type.into(),
                        required,
                        value: value.into(),
                        description: description.into(),
                    })
                    .collect(),
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Organizations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum OrganizationStatus {
    Active,
    Inactive,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Organization {
    id: String,
    name: String,
    /// ORGANIZATION, CITY, STATE, COUNTRY, MANUFACTURER_ID (only those set).
    parameters: BTreeMap<String, String>,
    status: OrganizationStatus,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

impl From<OrganizationView> for Organization {
    fn from(o: OrganizationView) -> Self {
        Organization {
            id: o.id,
            name: o.name,
            parameters: o.parameters,
            status: match o.status {
                Status::Active => OrganizationStatus::Active,
                Status::Inactive => OrganizationStatus::Inactive,
            },
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// What create and update take.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OrganizationBody {
    /// 1 to 128 characters, unique system-wide in any case.
    name: String,
    /// ORGANIZATION, CITY, STATE, COUNTRY (two capitals), MANUFACTURER_ID (1 to 3 digits).
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    /// Absent: ACTIVE on create, unchanged on update.
    status: Option<OrganizationStatus>,
}

impl From<OrganizationBody> for OrganizationInput {
    fn from(b: OrganizationBody) -> Self {
        OrganizationInput {
            name: b.name,
            parameters: b.parameters,
            status: b.status.map(|s| {
                Ok(match s {
                    OrganizationStatus::Active => Status::Active,
                    OrganizationStatus::Inactive => Status::Inactive,
                })
            }),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 0-based page index.
    page: Option<u32>,
    /// Page size: absent 20, at most 50.
    size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OrganizationPage {
    content: Vec<Organization>,
    /// Every organization the caller may see.
    total_elements: u64,
}

/// The organizations the caller may see, by name, one page at a time.
#[utoipa::path(get, path = "/api/v1/organizations", tag = "platform", params(PageQuery),
    responses(
        (status = 200, description = "A page of organizations", body = OrganizationPage),
        PlainErrorAnswers,
    ))]
async fn list_organizations(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<PageQuery, Shape>,
) -> Reply<OrganizationPage> {
    let page = services
        .organizations
        .list(&caller, query.page.unwrap_or(0), query.size.unwrap_or(0))
        .await
        .map_err(camel_field)?;
    Ok(Json(OrganizationPage {
        content: page.organizations.into_iter().map(Into::into).collect(),
        total_elements: page.total,
    }))
}

/// Creates an organization.
#[utoipa::path(post, path = "/api/v1/organizations", tag = "platform", request_body = OrganizationBody,
    responses(
        (status = 201, description = "The organization", body = Organization),
        PlainErrorAnswers,
    ))]
async fn create_organization(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<OrganizationBody, Shape>,
) -> Created<Organization> {
    let o = services.organizations.create(&caller, body.into()).await.map_err(camel_field)?;
    Ok((StatusCode::CREATED, Json(o.into())))
}

/// The caller's own organization.
#[utoipa::path(get, path = "/api/v1/organizations/current", tag = "platform",
    responses(
        (status = 200, description = "The organization", body = Organization),
        PlainErrorAnswers,
    ))]
async fn current_organization(
    State(services): State<Services>,
    Caller(caller): Caller,
) -> Reply<Organization> {
    let o = services.organizations.for_current_user(&caller).await.map_err(camel_field)?;
    Ok(Json(o.into()))
}

#[derive(Debug, Serialize, ToSchema)]
struct OrganizationItem {
    id: String,
    name: String,
}

/// Every organization the caller may see as id and name, by name.
#[utoipa::path(get, path = "/api/v1/organizations/items", tag = "platform",
    responses(
        (status = 200, description = "The organizations", body = Vec<OrganizationItem>),
        PlainErrorAnswers,
    ))]
async fn organization_items(
    State(services): State<Services>,
    Caller(caller): Caller,
) -> Reply<Vec<OrganizationItem>> {
    let items = services.organizations.items(&caller).await.map_err(camel_field)?;
    Ok(Json(items.into_iter().map(|(id, name)| OrganizationItem { id, name }).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NameQuery {
    name: String,
}

/// Whether an organization name is still free.
#[utoipa::path(get, path = "/api/v1/organizations/check", tag = "platform", params(NameQuery),
    responses(
        (status = 200, description = "Whether the name is free", body = Availability),
        PlainErrorAnswers,
    ))]
async fn check_organization(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<NameQuery, Shape>,
) -> Reply<Availability> {
    let available = services.organizations.name_available(&query.name).await.map_err(camel_field)?;
    Ok(Json(Availability { available }))
}

/// One organization.
#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The organization", body = Organization),
        PlainErrorAnswers,
    ))]
async fn get_organization(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<Organization> {
    let o = services.organizations.get(&caller, &path.id).await.map_err(camel_field)?;
    Ok(Json(o.into()))
}

/// Replaces an organization's name and parameters (and status, when given).
#[utoipa::path(put, path = "/api/v1/organizations/{id}", tag = "platform", params(IdPath),
    request_body = OrganizationBody,
    responses(
        (status = 200, description = "The organization", body = Organization),
        PlainErrorAnswers,
    ))]
async fn update_organization(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    JsonBody(body, _): JsonBody<OrganizationBody, Shape>,
) -> Reply<Organization> {
    let o = services.organizations.update(&caller, &path.id, body.into()).await.map_err(camel_field)?;
    Ok(Json(o.into()))
}

/// The authorities assigned to an organization, with their balances.
#[utoipa::path(get, path = "/api/v1/organizations/{id}/authorities", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The assignments", body = Vec<AssignedAuthority>),
        PlainErrorAnswers,
    ))]
async fn organization_authorities(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<Vec<AssignedAuthority>> {
    let found = services.organizations.authorities(&caller, &path.id).await.map_err(camel_field)?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewAssignment {
    authority_id: String,
    /// At least 0.
    balance: i64,
    enabled: bool,
}

/// Assigns an authority to an organization with a balance.
#[utoipa::path(post, path = "/api/v1/organizations/{id}/authorities", tag = "platform", params(IdPath),
    request_body = NewAssignment,
    responses(
        (status = 201, description = "The assignment", body = AssignedAuthority),
        PlainErrorAnswers,
    ))]
async fn add_organization_authority(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    JsonBody(body, _): JsonBody<NewAssignment, Shape>,
) -> Created<AssignedAuthority> {
    let a = services
        .organizations
        .add_authority(&caller, &path.id, &body.authority_id, body.balance, body.enabled)
        .await
        .map_err(camel_field)?;
    Ok((StatusCode::CREATED, Json(a.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
struct AssignmentPath {
    /// The organization.
    id: String,
    authority_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AssignmentChange {
    /// Absent: unchanged; at least 0.
    balance: Option<i64>,
    /// Absent: unchanged.
    enabled: Option<bool>,
}

/// Changes an assignment's balance and/or enabled flag.
#[utoipa::path(put, path = "/api/v1/organizations/{id}/authorities/{authorityId}", tag = "platform",
    params(AssignmentPath), request_body = AssignmentChange,
    responses(
        (status = 200, description = "The assignment", body = AssignedAuthority),
        PlainErrorAnswers,
    ))]
async fn update_organization_authority(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<AssignmentPath, Shape>,
    JsonBody(body, _): JsonBody<AssignmentChange, Shape>,
) -> Reply<AssignedAuthority> {
    let a = services
        .organizations
        .update_authority(&caller, &path.id, &path.authority_id, body.balance, body.enabled)
        .await
        .map_err(camel_field)?;
    Ok(Json(a.into()))
}

/// Takes an authority from an organization.
#[utoipa::path(delete, path = "/api/v1/organizations/{id}/authorities/{authorityId}", tag = "platform",
    params(AssignmentPath),
    responses(
        (status = 204, description = "Removed"),
        PlainErrorAnswers,
    ))]
async fn remove_organization_authority(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<AssignmentPath, Shape>,
) -> Result<StatusCode, Failure<Shape>> {
    services
        .organizations
        .remove_authority(&caller, &path.id, &path.authority_id)
        .await
        .map_err(camel_field)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProfileParameter {
    name: String,
    input_type: String,
    required: bool,
    placeholder: String,
    validation_pattern: String,
    /// Shown when the value does not match.
    message: String,
    /// The default.
    value: String,
    title: String,
    /// BATCH, REQUEST, CSR, CSR_SUBJECT, ORGANIZATION.
    scopes: Vec<String>,
    dynamic: bool,
}

impl From<&Parameter> for ProfileParameter {
    fn from(p: &Parameter) -> Self {
        ProfileParameter {
            name: p.name.clone(),
            input_type: p.input_type.clone(),
            required: p.required,
            placeholder: p.placeholder.clone(),
            validation_pattern: p.validation_pattern.clone(),
            message: p.message.clone(),
            value: p.value.clone(),
            title: p.title.clone(),
            scopes: p.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            dynamic: p.dynamic,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProfileBody {
    id: String,
    name: String,
    key_algorithms: Vec<String>,
    /// The authority it is bound to; "" when any.
    authority_name: String,
    subject_dn: String,
    key_usages: Vec<String>,
    extended_key_usages: Vec<String>,
    validity_years: u32,
    max_validity_years: u32,
    parameters: Vec<ProfileParameter>,
}

impl From<&Profile> for ProfileBody {
    fn from(p: &Profile) -> Self {
        ProfileBody {
            id: p.id.clone(),
            name: p.name.clone(),
            key_algorithms: p.key_algorithms.clone(),
            authority_name: p.authority_name.clone().unwrap_or_default(),
            subject_dn: p.subject_dn.clone(),
            key_usages: p.key_usage.iter().map(|u| key_usage_name(*u).to_owned()).collect(),
            extended_key_usages: p.extended_key_usage.iter().map(|e| eku_name(*e)).collect(),
            validity_years: p.validity_years,
            max_validity_years: p.max_validity_years,
            parameters: p.parameters.iter().map(Into::into).collect(),
        }
    }
}

/// Every certificate profile.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "platform",
    responses(
        (status = 200, description = "The profiles", body = Vec<ProfileBody>),
        PlainErrorAnswers,
    ))]
async fn list_profiles(State(services): State<Services>) -> Reply<Vec<ProfileBody>> {
    Ok(Json(services.issuance.profiles().iter().map(Into::into).collect()))
}

/// One profile.
#[utoipa::path(get, path = "/api/v1/profiles/{id}", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The profile", body = ProfileBody),
        PlainErrorAnswers,
    ))]
async fn get_profile(
    State(services): State<Services>,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<ProfileBody> {
    Ok(Json(services.issuance.profile(&path.id).map_err(camel_field)?.into()))
}

/// A profile's parameters.
#[utoipa::path(get, path = "/api/v1/profiles/{id}/parameters", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The parameters", body = Vec<ProfileParameter>),
        PlainErrorAnswers,
    ))]
async fn profile_parameters(
    State(services): State<Services>,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<Vec<ProfileParameter>> {
    let p = services.issuance.profile(&path.id).map_err(camel_field)?;
    Ok(Json(p.parameters.iter().map(Into::into).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SubjectDn {
    /// The subject DN template, e.g. `CN={commonName},O={organization}`.
    subject_dn: String,
}

/// A profile's subject DN template.
#[utoipa::path(get, path = "/api/v1/profiles/{id}/subjectDn", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The template", body = SubjectDn),
        PlainErrorAnswers,
    ))]
async fn profile_subject_dn(
    State(services): State<Services>,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<SubjectDn> {
    let p = services.issuance.profile(&path.id).map_err(camel_field)?;
    Ok(Json(SubjectDn { subject_dn: p.subject_dn.clone() }))
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    username: String,
    roles: Vec<RoleName>,
    enabled: bool,
    /// Unix seconds.
    created_at: i64,
    /// "" when unset (as the next three).
    first_name: String,
    last_name: String,
    phone: String,
    email: String,
}

impl From<UserView> for User {
    fn from(u: UserView) -> Self {
        User {
            id: u.id,
            username: u.username,
            roles: u.roles.into_iter().map(Into::into).collect(),
            enabled: u.enabled,
            created_at: u.created_at,
            first_name: u.first_name,
            last_name: u.last_name,
            phone: u.phone,
            email: u.email,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct UsersQuery {
    /// Users holding a privilege in this organization (required for organization admins).
    organization_id: Option<String>,
    /// Users holding this role.
    role: Option<RoleName>,
    /// Case-insensitive substring of the login, names or email.
    search_line: Option<String>,
    /// Absent: the default page size.
    page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserPage {
    content: Vec<User>,
    /// Every user the filters match.
    total_elements: u64,
    /// "" on the last page.
    next_page_token: String,
}

/// A page of users.
#[utoipa::path(get, path = "/api/v1/users", tag = "platform", params(UsersQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        PlainErrorAnswers,
    ))]
async fn list_users(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<UsersQuery, Shape>,
) -> Reply<UserPage> {
    let filter = ListFilter {
        organization_id: query.organization_id.unwrap_or_default(),
        role: query.role.map(Into::into),
        search_line: query.search_line.unwrap_or_default(),
    };
    let (users, next, total) = services
        .users
        .list(&caller, filter, query.page_size.unwrap_or(0), query.page_token.as_deref().unwrap_or_default())
        .await
        .map_err(camel_field)?;
    Ok(Json(UserPage {
        content: users.into_iter().map(Into::into).collect(),
        total_elements: total,
        next_page_token: next,
    }))
}

/// `POST /api/v1/users` (passwords redacted from Debug).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    /// `^\w{5,30}$`, or a user@domain name for card holders.
    username: String,
    /// By the password policy.
    password: String,
    /// When given, must equal `password`.
    repeated_password: Option<String>,
    roles: Vec<RoleName>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "platform", request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn create_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<NewUser, Shape>,
) -> Created<User> {
    let NewUser { username, password, repeated_password, roles, first_name, last_name, phone, email } = body;
    // Moved, not copied, into buffers wiped on drop.
    let (password, repeated) = (Zeroizing::new(password), repeated_password.map(Zeroizing::new));
    let profile = ProfileChange {
        first_name: Some(first_name.unwrap_or_default()),
        last_name: Some(last_name.unwrap_or_default()),
        phone: Some(phone.unwrap_or_default()),
        email: Some(email.unwrap_or_default()),
    };
    let roles = roles.into_iter().map(Into::into).collect();
    let user = services
        .users
        .create(&caller, &username, password, repeated, roles, profile)
        .await
        .map_err(camel_field)?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/current", tag = "platform",
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn current_user(State(services): State<Services>, Caller(caller): Caller) -> Reply<User> {
    Ok(Json(services.users.get(&caller.user_id).await.map_err(camel_field)?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CurrentUserChange {
    /// Absent: unchanged; "": cleared (as the others).
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
}

/// The caller edits their own names and phone.
#[utoipa::path(put, path = "/api/v1/users/current", tag = "platform", request_body = CurrentUserChange,
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn update_current_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<CurrentUserChange, Shape>,
) -> Reply<User> {
    let user = services
        .users
        .update_current(&caller, body.first_name, body.last_name, body.phone)
        .await
        .map_err(camel_field)?;
    Ok(Json(user.into()))
}

/// `PUT /api/v1/users/current/email` (the password redacted from Debug).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EmailChange {
    email: String,
    current_password: String,
}

impl std::fmt::Debug for EmailChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChange")
            .field("email", &self.email)
            .field("current_password", &"<redacted>")
            .finish()
    }
}

/// The caller changes their email, with their current password.
#[utoipa::path(put, path = "/api/v1/users/current/email", tag = "platform", request_body = EmailChange,
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn update_email(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<EmailChange, Shape>,
) -> Reply<User> {
    let EmailChange { email, current_password } = body;
    let user = services
        .users
        .update_email(&caller, &email, Zeroizing::new(current_password))
        .await
        .map_err(camel_field)?;
    Ok(Json(user.into()))
}

/// `PUT /api/v1/users/current/credentials` (passwords redacted from Debug).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CredentialsChange {
    current_password: String,
    /// Absent: the login stays.
    new_username: Option<String>,
    /// Absent: the password stays; otherwise by the policy, and repeated.
    new_password: Option<String>,
    repeated_new_password: Option<String>,
}

impl std::fmt::Debug for CredentialsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsChange").field("new_username", &self.new_username).finish_non_exhaustive()
    }
}

/// The caller changes their login and/or password, with their current password. Either change
/// ends every session and API key of the user.
#[utoipa::path(put, path = "/api/v1/users/current/credentials", tag = "platform",
    request_body = CredentialsChange,
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn update_credentials(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(body, _): JsonBody<CredentialsChange, Shape>,
) -> Reply<User> {
    let CredentialsChange { current_password, new_username, new_password, repeated_new_password } = body;
    let user = services
        .users
        .update_credentials(
            &caller,
            Zeroizing::new(current_password),
            new_username.as_deref().unwrap_or_default(),
            Zeroizing::new(new_password.unwrap_or_default()),
            Zeroizing::new(repeated_new_password.unwrap_or_default()),
        )
        .await
        .map_err(camel_field)?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EmailQuery {
    email: String,
}

/// Whether an email is well formed and not used by any user.
#[utoipa::path(get, path = "/api/v1/users/checkEmail", tag = "platform", params(EmailQuery),
    responses(
        (status = 200, description = "Whether the email is free", body = Availability),
        PlainErrorAnswers,
    ))]
async fn check_email(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<EmailQuery, Shape>,
) -> Reply<Availability> {
    let available = services.users.email_available(&query.email).await.map_err(camel_field)?;
    Ok(Json(Availability { available }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsernameQuery {
    username: String,
}

/// Whether a login is well formed and free.
#[utoipa::path(get, path = "/api/v1/users/checkUsername", tag = "platform", params(UsernameQuery),
    responses(
        (status = 200, description = "Whether the login is free", body = Availability),
        PlainErrorAnswers,
    ))]
async fn check_username(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<UsernameQuery, Shape>,
) -> Reply<Availability> {
    let available = services.users.username_available(&query.username).await.map_err(camel_field)?;
    Ok(Json(Availability { available }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Optional: the user must hold a privilege in this organization.
    organization_id: Option<String>,
}

/// One user (organization admins: the users of their organizations).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "platform", params(IdPath, UserQuery),
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn get_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    QueryOf(query, _): QueryOf<UserQuery, Shape>,
) -> Reply<User> {
    let user = services
        .users
        .get_scoped(&caller, &path.id, query.organization_id.as_deref().unwrap_or_default())
        .await
        .map_err(camel_field)?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserChange {
    /// Absent: unchanged; "": cleared (as the others).
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

/// Edits a user's names, phone and email.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "platform", params(IdPath),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn update_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    JsonBody(body, _): JsonBody<UserChange, Shape>,
) -> Reply<User> {
    let change = ProfileChange {
        first_name: body.first_name,
        last_name: body.last_name,
        phone: body.phone,
        email: body.email,
    };
    let user = services.users.update(&caller, &path.id, change).await.map_err(camel_field)?;
    Ok(Json(user.into()))
}

/// Removes a user; their sessions and API keys end at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "platform", params(IdPath),
    responses(
        (status = 204, description = "Removed"),
        PlainErrorAnswers,
    ))]
async fn remove_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Result<StatusCode, Failure<Shape>> {
    services.users.remove(&caller, &path.id).await.map_err(camel_field)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
struct Enabled {
    enabled: bool,
}

/// Enables or disables a user (disabling ends their sessions and API keys at once).
#[utoipa::path(put, path = "/api/v1/users/{id}/enabled", tag = "platform", params(IdPath),
    request_body = Enabled,
    responses(
        (status = 200, description = "The user", body = User),
        PlainErrorAnswers,
    ))]
async fn set_user_enabled(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    JsonBody(body, _): JsonBody<Enabled, Shape>,
) -> Reply<User> {
    let user = services.users.set_enabled(&caller, &path.id, body.enabled).await.map_err(camel_field)?;
    Ok(Json(user.into()))
}

/// One privilege: a role in an ecosystem and organization.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PrivilegeBody {
    role: RoleName,
    ecosystem_id: String,
    /// Null for ECO_ADMIN.
    organization_id: Option<String>,
    /// USER only: the profiles it may issue with.
    profiles: Vec<String>,
}

impl From<Privilege> for PrivilegeBody {
    fn from(p: Privilege) -> Self {
        PrivilegeBody {
            role: p.role.into(),
            ecosystem_id: p.ecosystem_id,
            organization_id: p.organization_id,
            profiles: p.profiles,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserPrivileges {
    user_id: String,
    privileges: Vec<PrivilegeBody>,
}

/// A user's privileges (one's own, or of a user in reach).
#[utoipa::path(get, path = "/api/v1/users/{id}/privileges", tag = "platform", params(IdPath),
    responses(
        (status = 200, description = "The privileges", body = UserPrivileges),
        PlainErrorAnswers,
    ))]
async fn get_privileges(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
) -> Reply<UserPrivileges> {
    let found = services.privileges.get(&caller, &path.id).await.map_err(camel_field)?;
    Ok(Json(UserPrivileges { user_id: path.id, privileges: found.into_iter().map(Into::into).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PrivilegeGrant {
    /// USER, ORG_ADMIN or ECO_ADMIN.
    role: RoleName,
    /// Absent: "default".
    ecosystem_id: Option<String>,
    /// Required for USER and ORG_ADMIN; absent for ECO_ADMIN.
    organization_id: Option<String>,
    /// USER only.
    #[serde(default)]
    profiles: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct PrivilegeGrants {
    privileges: Vec<PrivilegeGrant>,
}

/// Replaces a user's privileges with those given.
#[utoipa::path(put, path = "/api/v1/users/{id}/privileges", tag = "platform", params(IdPath),
    request_body = PrivilegeGrants,
    responses(
        (status = 200, description = "The privileges", body = UserPrivileges),
        PlainErrorAnswers,
    ))]
async fn set_privileges(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(path, _): PathOf<IdPath, Shape>,
    JsonBody(body, _): JsonBody<PrivilegeGrants, Shape>,
) -> Reply<UserPrivileges> {
    // As the gRPC twin: an empty ecosystem is the default one, an empty organization none.
    let wanted = body
        .privileges
        .into_iter()
        .map(|p| Privilege {
            role: p.role.into(),
            ecosystem_id: p
                .ecosystem_id
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ECOSYSTEM.to_owned()),
            organization_id: p.organization_id.filter(|o| !o.is_empty()),
            profiles: p.profiles,
        })
        .collect();
    let found = services.privileges.set(&caller, &path.id, wanted).await.map_err(camel_field)?;
    Ok(Json(UserPrivileges { user_id: path.id, privileges: found.into_iter().map(Into::into).collect() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each route documents as path parameters exactly the `{…}` of its template, and every
    /// parameter under its camelCase wire name (a field whose serde name and documented name
    /// disagree would describe a parameter the route never reads).
    #[test]
    fn documented_parameters_match_the_templates_and_are_camel_case() {
        let doc = serde_json::to_value(crate::rest::openapi_document()).expect("document");
        for Rule(route, _) in RULES {
            let (method, path) = route.split_once(' ').expect("METHOD /path");
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(op.is_object(), "{route} is not documented");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut documented: Vec<&str> =
                params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
            let mut wanted: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
            documented.sort_unstable();
            wanted.sort_unstable();
            assert_eq!(documented, wanted, "{route}");
            for p in &params {
                let name = p["name"].as_str().unwrap_or_default();
                assert!(!name.is_empty() && !name.contains('_'), "{route}: parameter {name:?}");
            }
        }
    }
}
