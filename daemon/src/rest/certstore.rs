//! REST routes of the device certificate store (`/api/cert/user`, `/api/cert/ca`), on the
//! certificate-store service, answering in the `{"success": true, "result": {...}}` envelope
//! (errors in [`CertShape`]).
//!
//! Where the certificates live: the token the optional `token` query parameter names (serial
//! number or label, as in gRPC), else the daemon's own token (`role = "daemon"`). The two
//! stores of the device API are the two halves of that token: `user` is the certificates
//! stored with their private key (imported with `blob-pk`), `ca` the certificates stored
//! alone (trusted CA certificates, imported without a key). Each route sees and deletes only
//! its own half.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::schema::CertErrorAnswers;
use super::error::{CertShape, Failure};
use super::extract::{Caller, Form, QueryOf};
use crate::pki::{self, NameParts};
use crate::service::Services;
use crate::service::certstore::{Holding, ImportRequest, Imported, StoredCertificate};
use crate::service::issuance::Password;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

type Shape = CertShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;

const LIST: &str = "/cardhsm.v1.CertificateStoreService/ListCertificates";
const IMPORT: &str = "/cardhsm.v1.CertificateStoreService/ImportCertificate";
const DELETE: &str = "/cardhsm.v1.CertificateStoreService/DeleteCertificate";

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("GET /api/cert/user", LIST),
    Rule("PUT /api/cert/user", IMPORT),
    Rule("DELETE /api/cert/user", DELETE),
    Rule("GET /api/cert/ca", LIST),
    Rule("PUT /api/cert/ca", IMPORT),
    Rule("DELETE /api/cert/ca", DELETE),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(list_user, put_user, delete_user))
            .routes(routes!(list_ca, put_ca, delete_ca)),
        RULES,
    )
}

/// The service's field names → the device API's form parts.
fn wire_field(failure: Failure<Shape>) -> Failure<Shape> {
    failure.rename_field(|field| match field {
        "cert" => Some("blob-cert".to_owned()),
        "private_key" => Some("blob-pk".to_owned()),
        _ => None,
    })
}

/// A subject or issuer, split as the device API splits it ("" for an absent attribute).
#[derive(Debug, Serialize, ToSchema)]
struct DnParts {
    #[serde(rename = "CN")]
    cn: String,
    #[serde(rename = "O")]
    o: String,
    #[serde(rename = "OU")]
    ou: String,
    #[serde(rename = "L")]
    l: String,
    /// State or province.
    #[serde(rename = "S")]
    s: String,
    #[serde(rename = "C")]
    c: String,
}

impl From<NameParts> for DnParts {
    fn from(p: NameParts) -> Self {
        DnParts {
            cn: p.cn.unwrap_or_default(),
            o: p.o.unwrap_or_default(),
            ou: p.ou.unwrap_or_default(),
            l: p.l.unwrap_or_default(),
            s: p.s.unwrap_or_default(),
            c: p.c.unwrap_or_default(),
        }
    }
}

/// One certificate of the store.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeviceCertificate {
    /// SHA-1 of the DER, lower-case hex.
    fingerprint: String,
    subject: DnParts,
    issuer: DnParts,
    /// The CKA_ID of the certificate object (and of its key pair), hex.
    id: String,
    /// Not before, seconds since 1970.
    start_date: i64,
    /// Not after, seconds since 1970.
    end_date: i64,
    /// Cannot be deleted.
    protected: bool,
    /// Users may not pick it for a service.
    system_use_only: bool,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl From<StoredCertificate> for DeviceCertificate {
    fn from(s: StoredCertificate) -> Self {
        let c = s.cert;
        DeviceCertificate {
            subject: pki::name_parts(&c.subject).into(),
            issuer: pki::name_parts(&c.issuer).into(),
            fingerprint: c.sha1_fingerprint,
            id: pki::to_hex(&s.id),
            start_date: unix(c.not_before),
            end_date: unix(c.not_after),
            protected: s.protected,
            system_use_only: s.system_use_only,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct CertificateList {
    certificates: Vec<DeviceCertificate>,
}

/// `{"success": true, "result": {"certificates": [...]}}`.
#[derive(Debug, Serialize, ToSchema)]
struct ListReply {
    /// Always true.
    success: bool,
    result: CertificateList,
}

#[derive(Debug, Serialize, ToSchema)]
struct ImportResult {
    /// The stored certificate's SHA-1 fingerprint.
    fingerprint: String,
    /// The fingerprint of the certificate it replaced (the same certificate imported again,
    /// or another under the same id); null when it replaced nothing.
    replaced: Option<String>,
}

/// `{"success": true, "result": {"fingerprint": ..., "replaced": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
struct ImportReply {
    /// Always true.
    success: bool,
    result: ImportResult,
}

impl From<Imported> for ImportReply {
    fn from(done: Imported) -> Self {
        ImportReply {
            success: true,
            result: ImportResult {
                fingerprint: done.certificate.cert.sha1_fingerprint,
                replaced: done.replaced,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct DeleteResult {
    /// The fingerprints of the certificates deleted (with the id, every certificate under
    /// that CKA_ID goes).
    deleted: Vec<String>,
}

/// `{"success": true, "result": {"deleted": [...]}}`.
#[derive(Debug, Serialize, ToSchema)]
struct DeleteReply {
    /// Always true.
    success: bool,
    result: DeleteResult,
}

/// The token a request addresses, and for GET an optional selector.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// A certificate id (CKA_ID, hex) or SHA-1 / SHA-256 fingerprint; absent lists all.
    #[serde(default)]
    id: Option<String>,
    /// The token (serial number or label); absent means the daemon's token.
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// The certificate id (CKA_ID, hex) or SHA-1 / SHA-256 fingerprint.
    id: String,
    /// The token (serial number or label); absent means the daemon's token.
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The token (serial number or label); absent means the daemon's token.
    #[serde(default)]
    token: Option<String>,
}

/// The multipart form of PUT /api/cert/user, for the document only (the handler reads the
/// parts itself, so a missing or bad part is named in the store's error shape).
#[derive(ToSchema)]
#[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
struct UserUpload {
    /// The certificate, DER or PEM.
    #[serde(rename = "blob-cert")]
    #[schema(format = Binary, value_type = String)]
    blob_cert: Vec<u8>,
    /// Its private key: PKCS#8 (plain or encrypted with `password`), PKCS#1 or SEC1, DER or
    /// PEM. It must match the certificate.
    #[serde(rename = "blob-pk")]
    #[schema(format = Binary, value_type = String)]
    blob_pk: Vec<u8>,
    /// The password of an encrypted key.
    password: Option<String>,
    /// The CKA_ID to store them under (hex); default the key identifier of the public key.
    id: Option<String>,
}

/// The multipart form of PUT /api/cert/ca (document only).
#[derive(ToSchema)]
#[allow(dead_code, reason = "only describes the body for the OpenAPI document")]
struct CaUpload {
    /// The CA certificate, DER or PEM.
    #[serde(rename = "blob-cert")]
    #[schema(format = Binary, value_type = String)]
    blob_cert: Vec<u8>,
    /// The CKA_ID to store it under (hex); default the key identifier of its public key.
    id: Option<String>,
}

/// The token a query names, else the daemon's token.
async fn token(services: &Services, token: Option<String>) -> Result<String, Failure<Shape>> {
    Ok(super::named_or_daemon_token(services, token).await?)
}

async fn list(services: &Services, query: ListQuery, holding: Holding) -> Reply<ListReply> {
    let token = token(services, query.token).await?;
    let found =
        services.certstore.list_holding(&token, query.id.as_deref().unwrap_or(""), Some(holding)).await?;
    let certificates = found.into_iter().map(DeviceCertificate::from).collect();
    Ok(Json(ListReply { success: true, result: CertificateList { certificates } }))
}

async fn delete(
    services: &Services,
    caller: &crate::service::Principal,
    query: DeleteQuery,
    holding: Holding,
) -> Reply<DeleteReply> {
    let token = token(services, query.token).await?;
    let deleted = services.certstore.delete_holding(caller, &token, &query.id, Some(holding)).await?;
    Ok(Json(DeleteReply { success: true, result: DeleteResult { deleted } }))
}

/// The user certificates (stored with their private key), or the one `id` names.
#[utoipa::path(get, path = "/api/cert/user", tag = "certstore", params(ListQuery),
    responses(
        (status = 200, description = "The certificates", body = ListReply),
        CertErrorAnswers,
    ))]
async fn list_user(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<ListQuery, Shape>,
) -> Reply<ListReply> {
    list(&services, query, Holding::WithPrivateKey).await
}

/// Imports a certificate with its private key (the key pair and the certificate under one
/// CKA_ID). The same certificate again, or another under the same id, replaces it.
#[utoipa::path(put, path = "/api/cert/user", tag = "certstore", params(TokenQuery),
    request_body(content = UserUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored", body = ImportReply),
        CertErrorAnswers,
    ))]
async fn put_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<TokenQuery, Shape>,
    form: Form<Shape>,
) -> Reply<ImportReply> {
    let cert = form.required("blob-cert")?.data.to_vec();
    let private_key = Zeroizing::new(form.required("blob-pk")?.data.to_vec());
    let password = Password(Zeroizing::new(form.text("password")?.unwrap_or_default()));
    let id = form.text("id")?.unwrap_or_default();
    let token = token(&services, query.token).await?;
    let request = ImportRequest {
        token,
        cert,
        private_key,
        password,
        id,
        label: String::new(),
        protected: false,
        system_use_only: false,
    };
    let done = services.certstore.import(&caller, request).await.map_err(|e| wire_field(e.into()))?;
    Ok(Json(done.into()))
}

/// Deletes the user certificate `id` names, with its private key.
#[utoipa::path(delete, path = "/api/cert/user", tag = "certstore", params(DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = DeleteReply),
        CertErrorAnswers,
    ))]
async fn delete_user(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<DeleteQuery, Shape>,
) -> Reply<DeleteReply> {
    delete(&services, &caller, query, Holding::WithPrivateKey).await
}

/// The CA certificates (stored without a private key), or the one `id` names.
#[utoipa::path(get, path = "/api/cert/ca", tag = "certstore", params(ListQuery),
    responses(
        (status = 200, description = "The certificates", body = ListReply),
        CertErrorAnswers,
    ))]
async fn list_ca(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<ListQuery, Shape>,
) -> Reply<ListReply> {
    list(&services, query, Holding::CertificateOnly).await
}

/// Imports a CA certificate (no private key). It may replace only another CA certificate.
#[utoipa::path(put, path = "/api/cert/ca", tag = "certstore", params(TokenQuery),
    request_body(content = CaUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored", body = ImportReply),
        CertErrorAnswers,
    ))]
async fn put_ca(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<TokenQuery, Shape>,
    form: Form<Shape>,
) -> Reply<ImportReply> {
    let cert = form.required("blob-cert")?;
    if form.get("blob-pk").is_some() {
        return Err(Failure::invalid(
            "blob-pk",
            "a CA certificate is stored without a private key (PUT /api/cert/user takes one)",
        ));
    }
    let id = form.text("id")?.unwrap_or_default();
    let token = token(&services, query.token).await?;
    let done = services
        .certstore
        .import_certificate_only(&caller, &token, &cert.data, &id)
        .await
        .map_err(|e| wire_field(e.into()))?;
    Ok(Json(done.into()))
}

/// Deletes the CA certificate `id` names.
#[utoipa::path(delete, path = "/api/cert/ca", tag = "certstore", params(DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = DeleteReply),
        CertErrorAnswers,
    ))]
async fn delete_ca(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<DeleteQuery, Shape>,
) -> Reply<DeleteReply> {
    delete(&services, &caller, query, Holding::CertificateOnly).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::error::ErrorShape;
    use crate::service::ServiceError;
    use axum::http::StatusCode;

    #[test]
    fn service_fields_are_named_as_the_form_parts_and_described_without_the_prefix() {
        let f = wire_field(ServiceError::invalid("cert", "invalid certificate: truncated").into());
        let body = CertShape::body(StatusCode::BAD_REQUEST, &f.problem);
        assert_eq!(body["error"]["param"], "blob-cert");
        assert_eq!(body["error"]["description"], "invalid certificate: truncated");
        let f = wire_field(ServiceError::invalid("private_key", "is required").into());
        let body = CertShape::body(StatusCode::BAD_REQUEST, &f.problem);
        assert_eq!((&body["error"]["param"], &body["error"]["code"]), (&"blob-pk".into(), &11.into()));
        let f = wire_field(ServiceError::invalid("password", "wrong password").into());
        assert_eq!(f.problem.field.as_deref(), Some("password"));
    }
}
