//! REST routes of the appliance API (`/api/v1/system/...`, `/api/v1/realm_auth`): active
//! sessions, API keys, device-certificate CSRs with keys generated in the HSM, health, system
//! information, and backup and restore. Each route decodes, calls the service its gRPC twin
//! calls (`grpc/sessions.rs`, `grpc/handlers.rs` RealmAuth, `grpc/certstore.rs`,
//! `grpc/system.rs`), and encodes in the appliance's kebab-case shapes; answers that carry no
//! data are `{"result": {"info": [{"message": …}]}}`, errors `{"result": {"errors": [...]}}`.

use super::Routes;
use super::auth::{PUBLIC, Rule, guarded};
use super::error::schema::{ApplianceErrorAnswers, ApplianceErrorBody, ApplianceMessage};
use super::error::{ApplianceShape, Failure, Kind, Problem};
use super::extract::{Caller, Client, JsonBody, PathOf, QueryOf};
use crate::pki::{self, NameParts, PEM_CERTIFICATE, PEM_CERTIFICATE_REQUEST, pem_encode};
use crate::service::auth::SessionView;
use crate::service::certstore::{CsrKeyType, CsrRequest, Curve, StoredCertificate};
use crate::service::system::{ImportMode, TokenView};
use crate::service::{ServiceError, Services};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

type Shape = ApplianceShape;
type Reply<T> = Result<T, Failure<Shape>>;

/// The header carrying the backup archive's password (never the query string: those end up
/// in access logs).
const ARCHIVE_PASSWORD_HEADER: &str = "x-archive-password";

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("GET /api/v1/system/active-users", "/cardhsm.v1.SessionService/ListActiveSessions"),
    Rule("DELETE /api/v1/system/active-users", "/cardhsm.v1.SessionService/DeleteAllSessions"),
    Rule("DELETE /api/v1/system/active-users/session/{id}", "/cardhsm.v1.SessionService/DeleteSession"),
    // RealmAuth checks the username and password itself, like its gRPC twin.
    Rule("POST /api/v1/realm_auth", PUBLIC),
    Rule(
        "POST /api/v1/system/certificates/device-certificate-csrs",
        "/cardhsm.v1.CertificateStoreService/CreateCsr",
    ),
    Rule(
        "POST /api/v1/system/certificates/device-certificate-csrs/{csr}/certificate",
        "/cardhsm.v1.CertificateStoreService/CompleteCsr",
    ),
    Rule(
        "DELETE /api/v1/system/certificates/device-certificates/{subject}",
        "/cardhsm.v1.CertificateStoreService/DeleteCertificateBySubject",
    ),
    // Load balancers probe it without credentials, like the standard gRPC health service.
    Rule("GET /api/v1/system/healthcheck", PUBLIC),
    Rule("GET /api/v1/system/system-information", "/cardhsm.v1.SystemService/GetSystemInformation"),
    Rule("GET /api/v1/system/binary-configuration", "/cardhsm.v1.SystemService/ExportConfiguration"),
    Rule("PUT /api/v1/system/binary-configuration", "/cardhsm.v1.SystemService/ImportConfiguration"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(list_active_users, delete_all_sessions))
            .routes(routes!(delete_session))
            .routes(routes!(realm_auth))
            .routes(routes!(create_csr))
            .routes(routes!(complete_csr))
            .routes(routes!(delete_device_certificates))
            .routes(routes!(healthcheck))
            .routes(routes!(system_information))
            .routes(routes!(export_configuration, import_configuration)),
        RULES,
    )
}

/// `{"result": {"info": [{"message": …}]}}`: a success that carries no data.
#[derive(Debug, Serialize, ToSchema)]
struct ApplianceInfo {
    result: ApplianceInfoResult,
}

#[derive(Debug, Serialize, ToSchema)]
struct ApplianceInfoResult {
    info: Vec<ApplianceMessage>,
}

fn info(message: impl Into<String>) -> Json<ApplianceInfo> {
    Json(ApplianceInfo {
        result: ApplianceInfoResult { info: vec![ApplianceMessage { message: message.into() }] },
    })
}

/// A service error naming its own field (`rsa_bits`) renamed to this API's wire name
/// (`key-length`), so the client is told the field it sent.
fn wire_names(names: &'static [(&'static str, &'static str)]) -> impl Fn(ServiceError) -> Failure<Shape> {
    move |err| {
        Failure::from(err).rename_field(|field| {
            names.iter().find(|(ours, _)| *ours == field).map(|(_, wire)| (*wire).to_owned())
        })
    }
}

// ---------------------------------------------------------------- active sessions

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ActiveUsersQuery {
    /// How many records to return (1 to 200; 200 when absent).
    number: Option<u32>,
    /// How many matching records to skip (0 when absent).
    start: Option<u32>,
    /// Only the sessions of this user (any case).
    name: Option<String>,
}

/// `GET /api/v1/system/active-users`.
#[derive(Debug, Serialize, ToSchema)]
struct ActiveUsersBody {
    #[serde(rename = "active-users")]
    active_users: ActiveUsers,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ActiveUsers {
    active_user_records: ActiveUserRecords,
    /// Sessions matching the filter, on every page.
    total_matched_record_number: u32,
    /// Sessions in this answer.
    total_returned_record_number: u32,
    /// Whether this page holds the last matching session.
    is_last_record: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ActiveUserRecords {
    active_user_record: Vec<ActiveUserRecord>,
}

/// One signed-in session (an API key's included).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ActiveUserRecord {
    /// The session id (what `DELETE .../active-users/session/{id}` takes).
    id: String,
    /// The user name.
    name: String,
    /// The realm of an API key; "" for an interactive sign-in.
    realm: String,
    roles: Vec<String>,
    source_ip: String,
    /// The client's User-Agent.
    agent: String,
    /// Unix seconds.
    sign_in_time: i64,
    login_node: String,
    /// Unix seconds.
    last_activity: i64,
}

impl From<SessionView> for ActiveUserRecord {
    fn from(s: SessionView) -> Self {
        ActiveUserRecord {
            id: s.id,
            name: s.username,
            realm: s.realm,
            roles: s.roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
            source_ip: s.source_ip,
            agent: s.agent,
            sign_in_time: s.signed_in_at,
            login_node: s.login_node,
            last_activity: s.last_activity,
        }
    }
}

/// Active sessions, oldest sign-in first, one page.
#[utoipa::path(get, path = "/api/v1/system/active-users", tag = "appliance", params(ActiveUsersQuery),
    responses(
        (status = 200, description = "One page of active sessions", body = ActiveUsersBody),
        ApplianceErrorAnswers,
    ))]
async fn list_active_users(
    State(services): State<Services>,
    QueryOf(q, _): QueryOf<ActiveUsersQuery, Shape>,
) -> Reply<Json<ActiveUsersBody>> {
    let page = services
        .auth
        .list_sessions(q.number.unwrap_or(0), q.start.unwrap_or(0), q.name.as_deref().unwrap_or(""))
        .await?;
    Ok(Json(ActiveUsersBody {
        active_users: ActiveUsers {
            total_matched_record_number: page.total_matched,
            total_returned_record_number: page.sessions.len() as u32,
            is_last_record: page.is_last_record,
            active_user_records: ActiveUserRecords {
                active_user_record: page.sessions.into_iter().map(ActiveUserRecord::from).collect(),
            },
        },
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AllQuery {
    /// Must be present (`?all`): ends every session but the caller's own.
    #[param(required = true)]
    all: Option<String>,
}

/// Ends every session except the caller's own.
#[utoipa::path(delete, path = "/api/v1/system/active-users", tag = "appliance", params(AllQuery),
    responses(
        (status = 204, description = "Every other session ended"),
        ApplianceErrorAnswers,
    ))]
async fn delete_all_sessions(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(q, _): QueryOf<AllQuery, Shape>,
) -> Reply<StatusCode> {
    if q.all.is_none() {
        return Err(Failure::invalid("all", "is required (DELETE /api/v1/system/active-users?all)"));
    }
    services.auth.delete_all_sessions(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SessionPath {
    /// The session id, as listed.
    id: String,
}

/// Ends one session (an API key's too: the key stops working).
#[utoipa::path(delete, path = "/api/v1/system/active-users/session/{id}", tag = "appliance",
    params(SessionPath),
    responses(
        (status = 204, description = "The session ended"),
        ApplianceErrorAnswers,
    ))]
async fn delete_session(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<SessionPath, Shape>,
) -> Reply<StatusCode> {
    services.auth.delete_session(&caller, &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- API keys

/// A realm sign-in. Debug leaves the password out.
#[derive(Deserialize, ToSchema)]
struct ApplianceRealmAuthRequest {
    /// A realm of `[[auth.realms]]`.
    realm: String,
    username: String,
    password: String,
}

impl std::fmt::Debug for ApplianceRealmAuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceRealmAuthRequest")
            .field("realm", &self.realm)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The API key: send it as the HTTP Basic user name with an empty password. Debug leaves it
/// out.
#[derive(Serialize, ToSchema)]
struct ApplianceApiKey {
    api_key: String,
}

impl std::fmt::Debug for ApplianceApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceApiKey").finish_non_exhaustive()
    }
}

/// Signs in to a realm and hands out an API key carrying the realm's roles (the user must
/// hold them all). The key lives until its session is deleted.
#[utoipa::path(post, path = "/api/v1/realm_auth", tag = "appliance", security(()),
    request_body = ApplianceRealmAuthRequest,
    responses(
        (status = 200, description = "The API key (shown once)", body = ApplianceApiKey),
        ApplianceErrorAnswers,
    ))]
async fn realm_auth(
    State(services): State<Services>,
    Client(client): Client,
    JsonBody(mut r, _): JsonBody<ApplianceRealmAuthRequest, Shape>,
) -> Reply<Json<ApplianceApiKey>> {
    let password = Zeroizing::new(std::mem::take(&mut r.password));
    let key = services.auth.realm_auth(&r.realm, &r.username, password, client).await?;
    Ok(Json(ApplianceApiKey { api_key: key.key.to_string() }))
}

// ---------------------------------------------------------------- device certificates

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The token (serial number or label) holding the device certificates and their keys;
    /// default the daemon's own token (appliance clients send none).
    token: Option<String>,
}

impl TokenQuery {
    /// The token named, else the daemon's token.
    async fn token(&self, services: &Services) -> Result<String, Failure<Shape>> {
        Ok(super::named_or_daemon_token(services, self.token.clone()).await?)
    }
}

/// The key family of a CSR.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
enum ApplianceKeyType {
    #[serde(rename = "ECC")]
    Ecc,
    #[serde(rename = "RSA")]
    Rsa,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
enum ApplianceEccCurve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
}

/// A device-certificate CSR: the subject as separate fields, the key to generate in the HSM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ApplianceCsrRequest {
    subject_common_name: String,
    subject_organization: Option<String>,
    subject_organization_unit: Option<String>,
    subject_locality: Option<String>,
    subject_state: Option<String>,
    subject_country: Option<String>,
    key_type: Option<ApplianceKeyType>,
    /// For ECC keys; P-256 when absent.
    ecc_curve: Option<ApplianceEccCurve>,
    /// RSA modulus bits (2048 when absent).
    key_length: Option<u32>,
}

/// The CSR created.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ApplianceCsr {
    /// The CSR's id (what `.../device-certificate-csrs/{csr}/certificate` takes).
    id: String,
    /// The CKA_ID of the key pair on the token, hex.
    key_id: String,
    /// `EC:P-256`, `RSA:2048`, …
    key_algorithm: String,
    /// PEM.
    csr: String,
}

/// Creates a key pair in the HSM and a CSR it signs, pending its certificate.
#[utoipa::path(post, path = "/api/v1/system/certificates/device-certificate-csrs", tag = "appliance",
    params(TokenQuery), request_body = ApplianceCsrRequest,
    responses(
        (status = 201, description = "The CSR", body = ApplianceCsr),
        ApplianceErrorAnswers,
    ))]
async fn create_csr(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(q, _): QueryOf<TokenQuery, Shape>,
    JsonBody(b, _): JsonBody<ApplianceCsrRequest, Shape>,
) -> Reply<(StatusCode, Json<ApplianceCsr>)> {
    if b.subject_common_name.trim().is_empty() {
        return Err(Failure::invalid("subject-common-name", "is required"));
    }
    let subject = pki::format_parts(&NameParts {
        cn: Some(b.subject_common_name),
        o: b.subject_organization,
        ou: b.subject_organization_unit,
        l: b.subject_locality,
        s: b.subject_state,
        c: b.subject_country,
    });
    let request = CsrRequest {
        token: q.token(&services).await?,
        subject,
        key_type: b.key_type.map(|k| match k {
            ApplianceKeyType::Ecc => CsrKeyType::Ecdsa,
            ApplianceKeyType::Rsa => CsrKeyType::Rsa,
        }),
        curve: b.ecc_curve.map(|c| match c {
            ApplianceEccCurve::P256 => Curve::P256,
            ApplianceEccCurve::P384 => Curve::P384,
        }),
        rsa_bits: b.key_length.unwrap_or(0),
    };
    let csr = services.certstore.create_csr(&caller, request).await.map_err(wire_names(&[
        ("subject", "subject-common-name"),
        ("key_type", "key-type"),
        ("curve", "ecc-curve"),
        ("rsa_bits", "key-length"),
    ]))?;
    Ok((
        StatusCode::CREATED,
        Json(ApplianceCsr {
            id: csr.id,
            key_id: pki::to_hex(&csr.object_id),
            key_algorithm: csr.key_algorithm,
            csr: pem_encode(PEM_CERTIFICATE_REQUEST, &csr.csr_der),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct CsrPath {
    /// The CSR's id.
    csr: String,
}

/// The signed certificate for a pending CSR.
#[derive(Debug, Deserialize, ToSchema)]
struct ApplianceCertificateRequest {
    /// PEM (or base64 DER).
    certificate: String,
}

/// A device certificate on the token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ApplianceDeviceCertificate {
    /// CKA_ID, hex.
    id: String,
    label: String,
    /// RFC 4514.
    subject: String,
    issuer: String,
    /// Hex.
    serial_number: String,
    /// SHA-1 of the DER, hex.
    fingerprint: String,
    sha256_fingerprint: String,
    /// Unix seconds.
    start_date: i64,
    end_date: i64,
    has_private_key: bool,
    /// PEM.
    certificate: String,
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl From<StoredCertificate> for ApplianceDeviceCertificate {
    fn from(s: StoredCertificate) -> Self {
        let c = s.cert;
        ApplianceDeviceCertificate {
            id: pki::to_hex(&s.id),
            label: s.label,
            subject: c.subject_dn,
            issuer: c.issuer_dn,
            serial_number: c.serial_hex,
            fingerprint: c.sha1_fingerprint,
            sha256_fingerprint: c.sha256_fingerprint,
            start_date: unix(c.not_before),
            end_date: unix(c.not_after),
            has_private_key: s.has_private_key,
            certificate: pem_encode(PEM_CERTIFICATE, &c.der),
        }
    }
}

/// Binds the signed certificate to the key pair of a pending CSR (stored on the token under
/// the key's CKA_ID).
#[utoipa::path(post, path = "/api/v1/system/certificates/device-certificate-csrs/{csr}/certificate",
    tag = "appliance", params(CsrPath, TokenQuery), request_body = ApplianceCertificateRequest,
    responses(
        (status = 200, description = "The stored certificate", body = ApplianceDeviceCertificate),
        ApplianceErrorAnswers,
    ))]
async fn complete_csr(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<CsrPath, Shape>,
    QueryOf(q, _): QueryOf<TokenQuery, Shape>,
    JsonBody(b, _): JsonBody<ApplianceCertificateRequest, Shape>,
) -> Reply<Json<ApplianceDeviceCertificate>> {
    let stored = services
        .certstore
        .complete_csr(&caller, &q.token(&services).await?, &p.csr, b.certificate.as_bytes())
        .await
        .map_err(wire_names(&[("csr_id", "csr")]))?;
    Ok(Json(ApplianceDeviceCertificate::from(stored)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SubjectPath {
    /// The subject common name.
    subject: String,
}

/// Deletes every device certificate whose subject CN is `subject` (with its key pair), and
/// every pending CSR for that CN.
#[utoipa::path(delete, path = "/api/v1/system/certificates/device-certificates/{subject}",
    tag = "appliance", params(SubjectPath, TokenQuery),
    responses(
        (status = 200, description = "What was deleted", body = ApplianceInfo),
        ApplianceErrorAnswers,
    ))]
async fn delete_device_certificates(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<SubjectPath, Shape>,
    QueryOf(q, _): QueryOf<TokenQuery, Shape>,
) -> Reply<Json<ApplianceInfo>> {
    let done = services
        .certstore
        .delete_by_subject(&caller, &q.token(&services).await?, &p.subject)
        .await
        .map_err(wire_names(&[("subject_cn", "subject")]))?;
    Ok(info(format!(
        "deleted {} certificate(s) and {} pending CSR(s) with CN {:?}",
        done.certificates.len(),
        done.csrs.len(),
        p.subject
    )))
}

// ---------------------------------------------------------------- system

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ApplianceHealthDetailParam {
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HealthQuery {
    /// `all`: every subsystem's state.
    status: Option<ApplianceHealthDetailParam>,
}

/// Every subsystem's state (`?status=all`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ApplianceHealthDetail {
    /// OK.
    status: String,
    subsystems: Vec<ApplianceSubsystem>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ApplianceSubsystem {
    /// `cardhsm.store`, `cardhsm.token.<serial>`, `cardhsm.readers`.
    name: String,
    /// SERVING, NOT_SERVING or UNKNOWN (not monitored).
    status: String,
}

/// The health answer: a plain OK, or every subsystem's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum ApplianceHealth {
    Info(ApplianceInfo),
    Detail(ApplianceHealthDetail),
}

fn serving(s: Option<bool>) -> &'static str {
    match s {
        Some(true) => "SERVING",
        Some(false) => "NOT_SERVING",
        None => "UNKNOWN",
    }
}

/// Whether this node can do its work: the store and every configured token serve (PC/SC
/// readers are listed but do not count). 503 names the subsystems that do not serve.
#[utoipa::path(get, path = "/api/v1/system/healthcheck", tag = "appliance", security(()),
    params(HealthQuery),
    responses(
        (status = 200, description = "Healthy", body = ApplianceHealth),
        (status = "4XX", body = ApplianceErrorBody),
        (status = "5XX", description = "503: not healthy", body = ApplianceErrorBody),
    ))]
async fn healthcheck(
    State(services): State<Services>,
    QueryOf(q, _): QueryOf<HealthQuery, Shape>,
) -> Reply<Json<ApplianceHealth>> {
    let health = services.system.health().await;
    if !health.healthy {
        let down: Vec<String> = health
            .entries
            .iter()
            .filter(|e| e.serving == Some(false))
            .map(|e| format!("{} is {}", e.name, serving(e.serving)))
            .collect();
        return Err(Failure::new(Kind::Unavailable, format!("not healthy: {}", down.join("; "))));
    }
    Ok(Json(match q.status {
        None => ApplianceHealth::Info(info("OK").0),
        Some(ApplianceHealthDetailParam::All) => ApplianceHealth::Detail(ApplianceHealthDetail {
            status: "OK".into(),
            subsystems: health
                .entries
                .into_iter()
                .map(|e| ApplianceSubsystem { status: serving(e.serving).to_owned(), name: e.name })
                .collect(),
        }),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct ApplianceSystemInformation {
    version: String,
    build: String,
    host_name: String,
    uptime_seconds: u64,
    store_schema_version: i64,
    tokens: Vec<ApplianceToken>,
}

/// A configured token.
#[derive(Debug, Serialize, ToSchema)]
struct ApplianceToken {
    label: String,
    serial: String,
    model: String,
    present: bool,
    /// `daemon` or `card`.
    role: String,
}

impl From<TokenView> for ApplianceToken {
    fn from(t: TokenView) -> Self {
        ApplianceToken {
            label: t.label,
            serial: t.serial,
            model: t.model,
            present: t.present,
            role: t.role.into(),
        }
    }
}

/// Version, build, host, uptime, store schema and the configured tokens.
#[utoipa::path(get, path = "/api/v1/system/system-information", tag = "appliance",
    responses(
        (status = 200, description = "System information", body = ApplianceSystemInformation),
        ApplianceErrorAnswers,
    ))]
async fn system_information(State(services): State<Services>) -> Reply<Json<ApplianceSystemInformation>> {
    let i = services.system.information().await?;
    Ok(Json(ApplianceSystemInformation {
        version: i.version,
        build: i.build,
        host_name: i.host_name,
        uptime_seconds: i.uptime_seconds,
        store_schema_version: i.store_schema_version,
        tokens: i.tokens.into_iter().map(ApplianceToken::from).collect(),
    }))
}

/// The archive password from its header (never from the query string).
fn archive_password(headers: &HeaderMap) -> Result<Zeroizing<String>, Failure<Shape>> {
    match headers.get(ARCHIVE_PASSWORD_HEADER) {
        None => Err(Failure::invalid("X-Archive-Password", "is required (the archive's password)")),
        Some(v) => v
            .to_str()
            .map(|s| Zeroizing::new(s.to_owned()))
            .map_err(|_| Failure::invalid("X-Archive-Password", "is not visible ASCII")),
    }
}

/// Exports the store and configuration as an archive encrypted with the password of the
/// `X-Archive-Password` header (keys stay in the HSM).
#[utoipa::path(get, path = "/api/v1/system/binary-configuration", tag = "appliance",
    params(("X-Archive-Password" = String, Header, description = "The password to encrypt the archive with")),
    responses(
        (status = 200, description = "The encrypted archive", content_type = "application/octet-stream", body = Vec<u8>),
        ApplianceErrorAnswers,
    ))]
async fn export_configuration(
    State(services): State<Services>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Reply<impl IntoResponse> {
    let password = archive_password(&headers)?;
    let chunks = services
        .system
        .export(&caller, password)
        .await
        .map_err(wire_names(&[("password", "X-Archive-Password")]))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"cardhsm-configuration.bin\""),
        ],
        chunks.concat(),
    ))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ApplianceImportMode {
    /// Keeps this daemon's `[server]` section (listen addresses, TLS).
    Normal,
    /// Takes the archive's whole configuration.
    Full,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    import: ApplianceImportMode,
}

/// Restores an archive made by `GET binary-configuration` (password in `X-Archive-Password`),
/// then the daemon restarts itself on it. A damaged archive, a wrong password or mode changes
/// nothing.
#[utoipa::path(put, path = "/api/v1/system/binary-configuration", tag = "appliance",
    params(ImportQuery,
        ("X-Archive-Password" = String, Header, description = "The archive's password")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The archive"),
    responses(
        (status = 200, description = "Restored; the daemon restarts", body = ApplianceInfo),
        ApplianceErrorAnswers,
    ))]
async fn import_configuration(
    State(services): State<Services>,
    Caller(caller): Caller,
    query: Result<QueryOf<ImportQuery, Shape>, Failure<Shape>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Json<ApplianceInfo>> {
    // The query is checked once the body is read: an HTTP/1 answer sent with the request body
    // unread closes the connection, and the client may lose the answer to the reset.
    let QueryOf(q, _) = query?;
    let password = archive_password(&headers)?;
    let archive = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(Kind::TooLarge, "the archive is larger than this server accepts")
        } else {
            Problem::new(Kind::Malformed, format!("cannot read the archive: {}", r.body_text()))
        }
    })?;
    let mode = match q.import {
        ApplianceImportMode::Normal => ImportMode::Normal,
        ApplianceImportMode::Full => ImportMode::Full,
    };
    let outcome = services
        .system
        .import(&caller, archive.to_vec(), password, Some(mode))
        .await
        .map_err(wire_names(&[("password", "X-Archive-Password")]))?;
    let m = outcome.manifest;
    Ok(info(format!(
        "configuration of cardhsm {} (store schema {}, made at {}) restored; the daemon restarts",
        m.daemon_version, m.schema_version, m.created_at
    )))
}
