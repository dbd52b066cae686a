//! Batch platform batch routes (`/api/v1/batches...`). Wire layer: each route decodes the
//! platform's camelCase request, calls the same batch-service function as its
//! `cardhsm.v1.BatchService` twin (see grpc/batches.rs), and encodes. The ZIP download streams
//! the service's chunks into the HTTP body as the service produces them (never held whole).

use super::super::Routes;
use super::super::auth::{Rule, guarded};
use super::super::error::schema::PlainErrorAnswers;
use super::super::error::{Failure, PlainShape, Problem};
use super::super::extract::{Caller, Form, JsonBody, PathOf, QueryOf, TextBody, parse_json};
use super::auth::{camel_field, renamed};
use crate::service::Services;
use crate::service::batches::{
    AuditEntry, Batch, Created, GeneratorInput, ListFilter, NewBatch, Status as BatchStatus,
};
use crate::service::issuance::Password;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

type Shape = PlainShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;
type CreatedReply = Result<(StatusCode, Json<CreatedBatch>), Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("POST /api/v1/batches", "/cardhsm.v1.BatchService/ListBatches"),
    Rule("PUT /api/v1/batches", "/cardhsm.v1.BatchService/CreateBatch"),
    Rule("POST /api/v1/batches/createSingleCertBatch", "/cardhsm.v1.BatchService/CreateSingleCertBatch"),
    Rule("POST /api/v1/batches/preview", "/cardhsm.v1.BatchService/PreviewBatch"),
    Rule("GET /api/v1/batches/{id}", "/cardhsm.v1.BatchService/GetBatch"),
    Rule("DELETE /api/v1/batches/{id}", "/cardhsm.v1.BatchService/RejectBatch"),
    Rule("GET /api/v1/batches/{id}/processing_info", "/cardhsm.v1.BatchService/GetProcessingInfo"),
    Rule("GET /api/v1/batches/{id}/auditLog", "/cardhsm.v1.BatchService/GetBatchAuditLog"),
    Rule("GET /api/v1/batches/{id}/status", "/cardhsm.v1.BatchService/GetBatchStatus"),
    Rule("GET /api/v1/batches/{id}/download", "/cardhsm.v1.BatchService/DownloadBatch"),
    Rule("GET /api/v1/batches/{id}/devices/auditLog", "/cardhsm.v1.BatchService/GetDeviceAuditLog"),
    Rule("POST /api/v1/batches/upload", "/cardhsm.v1.BatchService/UploadCsrBatch"),
    Rule("POST /api/v1/batches/upload-csv", "/cardhsm.v1.BatchService/UploadCsvBatch"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(list_batches, create_batch))
            .routes(routes!(create_single))
            .routes(routes!(preview))
            .routes(routes!(get_batch, reject_batch))
            .routes(routes!(processing_info))
            .routes(routes!(audit_log))
            .routes(routes!(batch_status))
            .routes(routes!(download))
            .routes(routes!(device_audit_log))
            .routes(routes!(upload_csrs))
            .routes(routes!(upload_csv)),
        RULES,
    )
}

// ---- wire types ----------------------------------------------------------------------

/// A batch's status, as the service spells it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum BatchStatusName {
    PendingCreation,
    PendingIssue,
    IssuedPartly,
    ReadyForDownload,
    ZipRemovedAfterExpiration,
    ProcessingReject,
    ProcessingRevoke,
    Rejected,
    Revoked,
    Broken,
}

impl BatchStatusName {
    const ALL: [BatchStatusName; 10] = [
        BatchStatusName::PendingCreation,
        BatchStatusName::PendingIssue,
        BatchStatusName::IssuedPartly,
        BatchStatusName::ReadyForDownload,
        BatchStatusName::ZipRemovedAfterExpiration,
        BatchStatusName::ProcessingReject,
        BatchStatusName::ProcessingRevoke,
        BatchStatusName::Rejected,
        BatchStatusName::Revoked,
        BatchStatusName::Broken,
    ];

    fn service(self) -> BatchStatus {
        match self {
            BatchStatusName::PendingCreation => BatchStatus::PendingCreation,
            BatchStatusName::PendingIssue => BatchStatus::PendingIssue,
            BatchStatusName::IssuedPartly => BatchStatus::IssuedPartly,
            BatchStatusName::ReadyForDownload => BatchStatus::ReadyForDownload,
            BatchStatusName::ZipRemovedAfterExpiration => BatchStatus::ZipRemoved,
            BatchStatusName::ProcessingReject => BatchStatus::ProcessingReject,
            BatchStatusName::ProcessingRevoke => BatchStatus::ProcessingRevoke,
            BatchStatusName::Rejected => BatchStatus::Rejected,
            BatchStatusName::Revoked => BatchStatus::Revoked,
            BatchStatusName::Broken => BatchStatus::Broken,
        }
    }

    /// A stored status (BROKEN for one this build does not know, as gRPC's GetBatchStatus).
    fn of(stored: &str) -> BatchStatusName {
        let s = BatchStatus::parse(stored).unwrap_or(BatchStatus::Broken);
        BatchStatusName::ALL.into_iter().find(|n| n.service() == s).unwrap_or(BatchStatusName::Broken)
    }
}

/// A batch as the platform shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchView {
    id: String,
    name: String,
    /// GENERATOR, SINGLE, CSV or CSR.
    kind: String,
    status: BatchStatusName,
    /// Why it is BROKEN, REJECTED or REVOKED ("" otherwise).
    status_reason: String,
    organization_id: String,
    authority_id: String,
    profile_id: String,
    key_type: String,
    batch_size: u32,
    issued: u32,
    failed: u32,
    created_by: String,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
    /// When the engine finished it (null while it works).
    finished_at: Option<i64>,
    /// The first download (null before it).
    first_downloaded_at: Option<i64>,
    generator_id: String,
}

impl From<Batch> for BatchView {
    fn from(b: Batch) -> Self {
        BatchView {
            status: BatchStatusName::of(&b.status),
            id: b.id,
            name: b.name,
            kind: b.kind,
            status_reason: b.status_reason,
            organization_id: b.organization_id,
            authority_id: b.authority_id,
            profile_id: b.profile_id,
            key_type: b.key_type,
            batch_size: b.batch_size,
            issued: b.issued,
            failed: b.failed,
            created_by: b.created_by,
            created_at: b.created_at,
            updated_at: b.updated_at,
            finished_at: b.finished_at,
            first_downloaded_at: b.first_downloaded_at,
            generator_id: b.generator_id,
        }
    }
}

/// A created batch, with the PKCS#12 password when the request left it empty (shown once).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedBatch {
    batch: BatchView,
    /// The generated password of every PKCS#12 of the batch; null when the request set one
    /// or the batch is of CSRs.
    pkcs12_password: Option<String>,
}

impl std::fmt::Debug for CreatedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedBatch").field("batch", &self.batch).finish_non_exhaustive()
    }
}

fn created(c: Created) -> (StatusCode, Json<CreatedBatch>) {
    (
        StatusCode::CREATED,
        Json(CreatedBatch {
            batch: c.batch.into(),
            pkcs12_password: c.generated_password.map(|p| p.0.as_str().to_owned()),
        }),
    )
}

/// The serial generator's parameters.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
struct BatchGeneratorParams {
    start_value: i64,
    increment: i64,
}

/// `PUT /api/v1/batches` and `POST /api/v1/batches/preview` (CreateBatch / PreviewBatch). No
/// Debug: it carries the PKCS#12 password.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
struct BatchCreateBody {
    organization_id: String,
    authority_id: String,
    profile_id: String,
    batch_name: String,
    /// "serial".
    generator_id: String,
    generator_params: BatchGeneratorParams,
    batch_size: u32,
    /// The profile's parameters by name; the generator fills its target (commonName).
    profile_params: HashMap<String, String>,
    /// Empty: the profile's first key algorithm.
    key_type: String,
    /// Empty: generated and answered once.
    pkcs12_password: String,
    /// 0: the profile's validity.
    validity_years: u32,
}

impl BatchCreateBody {
    /// As grpc/batches.rs `generated` builds them from CreateBatchRequest.
    fn into_parts(self) -> (NewBatch, GeneratorInput) {
        (
            NewBatch {
                organization_id: self.organization_id,
                authority_id: self.authority_id,
                profile_id: self.profile_id,
                name: self.batch_name,
                params: self.profile_params,
                key_type: self.key_type,
                pkcs12_password: Password(Zeroizing::new(self.pkcs12_password)),
                validity_years: self.validity_years,
            },
            GeneratorInput {
                generator_id: self.generator_id,
                start_value: self.generator_params.start_value,
                increment: self.generator_params.increment,
                batch_size: self.batch_size,
            },
        )
    }
}

/// `POST /api/v1/batches/createSingleCertBatch`, and the `csrBatchRequest` part of the uploads
/// (there `profileId` comes from the query, and a CSR batch takes no key type or password).
/// No Debug: it carries the PKCS#12 password.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
struct BatchSingleBody {
    organization_id: String,
    authority_id: String,
    profile_id: String,
    batch_name: String,
    profile_params: HashMap<String, String>,
    key_type: String,
    pkcs12_password: String,
    validity_years: u32,
}

impl BatchSingleBody {
    fn into_new(self) -> NewBatch {
        NewBatch {
            organization_id: self.organization_id,
            authority_id: self.authority_id,
            profile_id: self.profile_id,
            name: self.batch_name,
            params: self.profile_params,
            key_type: self.key_type,
            pkcs12_password: Password(Zeroizing::new(self.pkcs12_password)),
            validity_years: self.validity_years,
        }
    }
}

/// `POST /api/v1/batches`: the grid's filters, paging and sort (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
struct BatchListBody {
    batch_id: String,
    organization_id: String,
    /// Unix seconds, inclusive.
    created_from: i64,
    created_to: i64,
    size_from: u32,
    size_to: u32,
    status: Option<BatchStatusName>,
    /// Part of the name.
    name: String,
    /// From 0.
    page: u32,
    /// 1..100 (0: 20).
    size: u32,
    /// created_at (default), name, batch_size or status.
    sort_by: String,
    descending: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchPage {
    batches: Vec<BatchView>,
    /// Every batch the filters match (all pages).
    total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchPreview {
    /// The parameter values the first device gets.
    first_device_params: HashMap<String, String>,
    first_subject_dn: String,
    /// The first generated values.
    serials: Vec<String>,
    batch_size: u32,
    available_balance: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchProcessingInfo {
    /// Devices still to issue.
    active: u32,
    success: u32,
    failed: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchStatusReply {
    status: BatchStatusName,
    /// For people: "Ready for download", "Processing", "Failed", ...
    text: String,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchAuditLogEntry {
    log_id: i64,
    batch_id: String,
    /// What happened (e.g. batch.create, batch.download).
    #[serde(rename = "type")]
    kind: String,
    user: String,
    /// Unix seconds.
    time: i64,
    message: String,
}

fn audit(entries: Vec<AuditEntry>) -> Vec<BatchAuditLogEntry> {
    entries
        .into_iter()
        .map(|e| BatchAuditLogEntry {
            log_id: e.log_id,
            batch_id: e.batch_id,
            kind: e.kind,
            user: e.user,
            time: e.time,
            message: e.message,
        })
        .collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct BatchId {
    /// The batch id.
    id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PositionQuery {
    /// The device's position in the batch, from 0.
    position: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct ProfileQuery {
    /// The profile the batch issues with.
    profile_id: String,
}

// ---- handlers ------------------------------------------------------------------------

/// Lists batches with filters, paging and sort (BatchService.ListBatches).
#[utoipa::path(post, path = "/api/v1/batches", tag = "platform", request_body = BatchListBody,
    responses(
        (status = 200, description = "One page of batches", body = BatchPage),
        PlainErrorAnswers,
    ))]
async fn list_batches(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(b, _): JsonBody<BatchListBody, Shape>,
) -> Reply<BatchPage> {
    let filter = ListFilter {
        batch_id: b.batch_id,
        organization_id: b.organization_id,
        created_from: b.created_from,
        created_to: b.created_to,
        size_from: b.size_from,
        size_to: b.size_to,
        status: b.status.map(BatchStatusName::service),
        name: b.name,
        page: b.page,
        size: b.size,
        sort_by: b.sort_by,
        descending: b.descending,
    };
    let (batches, total) = services.batches.list(&caller, filter).await.map_err(camel_field)?;
    Ok(Json(BatchPage { batches: batches.into_iter().map(BatchView::from).collect(), total }))
}

/// Creates a batch from the serial generator (BatchService.CreateBatch).
#[utoipa::path(put, path = "/api/v1/batches", tag = "platform", request_body = BatchCreateBody,
    responses(
        (status = 201, description = "Created; the engine issues it", body = CreatedBatch),
        PlainErrorAnswers,
    ))]
async fn create_batch(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(b, _): JsonBody<BatchCreateBody, Shape>,
) -> CreatedReply {
    let (new, g) = b.into_parts();
    let c = services.batches.create_generated(&caller, new, g).await.map_err(camel_field)?;
    Ok(created(c))
}

/// Creates a batch of one certificate (BatchService.CreateSingleCertBatch).
#[utoipa::path(post, path = "/api/v1/batches/createSingleCertBatch", tag = "platform",
    request_body = BatchSingleBody,
    responses(
        (status = 201, description = "Created; the engine issues it", body = CreatedBatch),
        PlainErrorAnswers,
    ))]
async fn create_single(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(b, _): JsonBody<BatchSingleBody, Shape>,
) -> CreatedReply {
    let c = services.batches.create_single(&caller, b.into_new()).await.map_err(camel_field)?;
    Ok(created(c))
}

/// What a CreateBatch with this body would make, without making it (BatchService.PreviewBatch).
#[utoipa::path(post, path = "/api/v1/batches/preview", tag = "platform", request_body = BatchCreateBody,
    responses(
        (status = 200, description = "The preview", body = BatchPreview),
        PlainErrorAnswers,
    ))]
async fn preview(
    State(services): State<Services>,
    Caller(caller): Caller,
    JsonBody(b, _): JsonBody<BatchCreateBody, Shape>,
) -> Reply<BatchPreview> {
    let (new, g) = b.into_parts();
    let v = services.batches.preview(&caller, new, g).await.map_err(camel_field)?;
    Ok(Json(BatchPreview {
        first_device_params: v.first_device_params,
        first_subject_dn: v.first_subject_dn,
        serials: v.serials,
        batch_size: v.batch_size,
        available_balance: v.available_balance,
    }))
}

/// One batch (BatchService.GetBatch).
#[utoipa::path(get, path = "/api/v1/batches/{id}", tag = "platform", params(BatchId),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        PlainErrorAnswers,
    ))]
async fn get_batch(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
) -> Reply<BatchView> {
    Ok(Json(services.batches.get(&caller, &p.id).await.map_err(camel_field)?.into()))
}

/// Rejects a batch before its first download, the reason as the text body; the balance is
/// restored (BatchService.RejectBatch).
#[utoipa::path(delete, path = "/api/v1/batches/{id}", tag = "platform", params(BatchId),
    request_body(content = String, content_type = "text/plain", description = "Why it is rejected"),
    responses(
        (status = 200, description = "The batch, rejecting", body = BatchView),
        PlainErrorAnswers,
    ))]
async fn reject_batch(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
    TextBody(reason, _): TextBody<Shape>,
) -> Reply<BatchView> {
    Ok(Json(services.batches.reject(&caller, &p.id, &reason).await.map_err(camel_field)?.into()))
}

/// Devices still to issue, issued and failed (BatchService.GetProcessingInfo).
#[utoipa::path(get, path = "/api/v1/batches/{id}/processing_info", tag = "platform", params(BatchId),
    responses(
        (status = 200, description = "The counts", body = BatchProcessingInfo),
        PlainErrorAnswers,
    ))]
async fn processing_info(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
) -> Reply<BatchProcessingInfo> {
    let (active, success, failed) =
        services.batches.processing_info(&caller, &p.id).await.map_err(camel_field)?;
    Ok(Json(BatchProcessingInfo { active, success, failed }))
}

/// The batch's audit log (BatchService.GetBatchAuditLog).
#[utoipa::path(get, path = "/api/v1/batches/{id}/auditLog", tag = "platform", params(BatchId),
    responses(
        (status = 200, description = "The entries, oldest first", body = Vec<BatchAuditLogEntry>),
        PlainErrorAnswers,
    ))]
async fn audit_log(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
) -> Reply<Vec<BatchAuditLogEntry>> {
    Ok(Json(audit(services.batches.batch_audit_log(&caller, &p.id).await.map_err(camel_field)?)))
}

/// The batch's status, for people too (BatchService.GetBatchStatus).
#[utoipa::path(get, path = "/api/v1/batches/{id}/status", tag = "platform", params(BatchId),
    responses(
        (status = 200, description = "The status", body = BatchStatusReply),
        PlainErrorAnswers,
    ))]
async fn batch_status(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
) -> Reply<BatchStatusReply> {
    let b = services.batches.get(&caller, &p.id).await.map_err(camel_field)?;
    let status = BatchStatusName::of(&b.status);
    Ok(Json(BatchStatusReply { status, text: status.service().text().into(), reason: b.status_reason }))
}

/// The batch's ZIP: one PKCS#12 per device (PEM certificates for CSR batches) and
/// manifest.csv, streamed as it is made (BatchService.DownloadBatch). The first download
/// ends the chance to reject the batch.
#[utoipa::path(get, path = "/api/v1/batches/{id}/download", tag = "platform", params(BatchId),
    responses(
        (status = 200, description = "The ZIP", content_type = "application/zip", body = Vec<u8>),
        PlainErrorAnswers,
    ))]
async fn download(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
) -> Result<Response, Failure<Shape>> {
    let rx = services.batches.download(&caller, &p.id).await.map_err(camel_field)?;
    // A failure after the first chunk can only cut the body short (the status is sent); the
    // client sees a truncated transfer, as a gRPC client sees the stream's error.
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/zip")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"batch-{}.zip\"", p.id.trim())) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// One device's audit log (BatchService.GetDeviceAuditLog).
#[utoipa::path(get, path = "/api/v1/batches/{id}/devices/auditLog", tag = "platform",
    params(BatchId, PositionQuery),
    responses(
        (status = 200, description = "The entries, oldest first", body = Vec<BatchAuditLogEntry>),
        PlainErrorAnswers,
    ))]
async fn device_audit_log(
    State(services): State<Services>,
    Caller(caller): Caller,
    PathOf(p, _): PathOf<BatchId, Shape>,
    QueryOf(q, _): QueryOf<PositionQuery, Shape>,
) -> Reply<Vec<BatchAuditLogEntry>> {
    let entries = services.batches.device_audit_log(&caller, &p.id, q.position).await.map_err(camel_field)?;
    Ok(Json(audit(entries)))
}

/// The multipart request of the uploads: `csrBatchRequest` (JSON, [`BatchSingleBody`]; its
/// `profileId` is the query's) and the one `files` part.
fn upload_parts(form: &Form<Shape>, profile_id: String) -> Result<(NewBatch, Vec<u8>), Failure<Shape>> {
    const REQUEST: &str = "csrBatchRequest";
    // The part's own problem (broken JSON, a wrong type), with the field named inside the part.
    let request: BatchSingleBody = parse_json(&form.required(REQUEST)?.data).map_err(|mut p: Problem| {
        p.field = Some(p.field.as_deref().map_or_else(|| REQUEST.to_owned(), |f| format!("{REQUEST}.{f}")));
        p.message = format!("{REQUEST}: {}", p.message);
        Failure::<Shape>::from(p)
    })?;
    let mut files = form.all("files");
    let file = files.next().ok_or_else(|| Failure::invalid("files", "is required"))?;
    if files.next().is_some() {
        return Err(Failure::invalid("files", "send one file (a PEM of many CSRs, or a ZIP of them)"));
    }
    let new = NewBatch { profile_id, ..request.into_new() };
    Ok((new, file.data.to_vec()))
}

/// Creates a batch from uploaded CSRs: one PEM holding many, or a ZIP of CSR files
/// (BatchService.UploadCsrBatch). The certificates keep the requesters' subjects.
#[utoipa::path(post, path = "/api/v1/batches/upload", tag = "platform", params(ProfileQuery),
    request_body(content = BatchUploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Created; the engine issues it", body = CreatedBatch),
        PlainErrorAnswers,
    ))]
async fn upload_csrs(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(q, _): QueryOf<ProfileQuery, Shape>,
    form: Form<Shape>,
) -> CreatedReply {
    let (new, files) = upload_parts(&form, q.profile_id)?;
    // As gRPC's UploadCsrBatch: a CSR batch has no key type or PKCS#12 password.
    let new = NewBatch { key_type: String::new(), pkcs12_password: Password::default(), ..new };
    let c = services.batches.create_from_csrs(&caller, new, files).await.map_err(camel_field)?;
    Ok(created(c))
}

/// Creates a batch from a CSV file, one device per row, a header row naming the profile's
/// parameters (BatchService.UploadCsvBatch).
#[utoipa::path(post, path = "/api/v1/batches/upload-csv", tag = "platform", params(ProfileQuery),
    request_body(content = BatchUploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Created; the engine issues it", body = CreatedBatch),
        PlainErrorAnswers,
    ))]
async fn upload_csv(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(q, _): QueryOf<ProfileQuery, Shape>,
    form: Form<Shape>,
) -> CreatedReply {
    let (new, file) = upload_parts(&form, q.profile_id)?;
    // The service names the CSV `file` (gRPC's field); here the part is `files`.
    let c = services
        .batches
        .create_from_csv(&caller, new, file)
        .await
        .map_err(|e| renamed(e, crate::service::batches::inputs::CSV_FIELD, "files"))?;
    Ok(created(c))
}

/// The multipart form of the uploads (for the document).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "only describes the form for the OpenAPI document")]
struct BatchUploadForm {
    /// JSON: organizationId, authorityId, batchName, profileParams, validityYears (and for CSV
    /// keyType, pkcs12Password).
    csr_batch_request: BatchSingleBody,
    /// The CSRs (a PEM of many, or a ZIP) or the CSV file.
    #[schema(value_type = String, format = Binary)]
    files: Vec<u8>,
}
