//! gRPC handlers of `cardhsm.v1.BatchService`: decode a request, call the batch service with
//! the caller's principal, encode the answer (streams: ZIP chunks, progress events).
//! Authorization by role already happened in the auth layer; the service checks the
//! organization scope and the profile.

use super::auth_layer::principal;
use super::status::{GrpcResult, to_status};
use crate::service::Services;
use crate::service::batches::{
    Batch, Created, GeneratorInput, Kind, ListFilter, NewBatch, Progress, Status as BatchStatus,
};
use crate::service::issuance::Password;
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct BatchApi(pub Services);

pub type ChunkStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DownloadChunk, Status>> + Send>>;
pub type ProgressStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BatchProgress, Status>> + Send>>;

fn status_to_pb(s: BatchStatus) -> pb::BatchStatus {
    match s {
        BatchStatus::PendingCreation => pb::BatchStatus::PendingCreation,
        BatchStatus::PendingIssue => pb::BatchStatus::PendingIssue,
        BatchStatus::IssuedPartly => pb::BatchStatus::IssuedPartly,
        BatchStatus::ReadyForDownload => pb::BatchStatus::ReadyForDownload,
        BatchStatus::ZipRemoved => pb::BatchStatus::ZipRemovedAfterExpiration,
        BatchStatus::ProcessingReject => pb::BatchStatus::ProcessingReject,
        BatchStatus::ProcessingRevoke => pb::BatchStatus::ProcessingRevoke,
        BatchStatus::Rejected => pb::BatchStatus::Rejected,
        BatchStatus::Revoked => pb::BatchStatus::Revoked,
        BatchStatus::Broken => pb::BatchStatus::Broken,
    }
}

/// UNSPECIFIED = no filter; an unknown value is refused naming `status`.
fn status_from_pb(v: i32) -> Result<Option<BatchStatus>, Status> {
    let s = pb::BatchStatus::try_from(v).map_err(|_| {
        to_status(crate::service::ServiceError::invalid("status", format!("{v} is not a batch status")))
    })?;
    Ok(BatchStatus::ALL.into_iter().find(|x| status_to_pb(*x) == s))
}

fn kind_to_pb(k: Option<Kind>) -> i32 {
    (match k {
        Some(Kind::Generator) => pb::BatchKind::Generator,
        Some(Kind::Single) => pb::BatchKind::Single,
        Some(Kind::Csv) => pb::BatchKind::Csv,
        Some(Kind::Csr) => pb::BatchKind::Csr,
        None => pb::BatchKind::Unspecified,
    }) as i32
}

fn batch_to_pb(b: Batch) -> pb::Batch {
    pb::Batch {
        status: BatchStatus::parse(&b.status).map_or(pb::BatchStatus::Unspecified, status_to_pb) as i32,
        kind: kind_to_pb(Kind::parse(&b.kind)),
        id: b.id,
        name: b.name,
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
        finished_at: b.finished_at.unwrap_or(0),
        first_downloaded_at: b.first_downloaded_at.unwrap_or(0),
        generator_id: b.generator_id,
    }
}

fn created_to_pb(c: Created) -> pb::CreateBatchResponse {
    pb::CreateBatchResponse {
        batch: Some(batch_to_pb(c.batch)),
        pkcs12_password: c.generated_password.map(|p| p.0.as_str().to_owned()).unwrap_or_default(),
    }
}

fn progress_to_pb(p: Progress) -> pb::BatchProgress {
    pb::BatchProgress {
        batch_id: p.batch_id,
        status: status_to_pb(p.status) as i32,
        batch_size: p.batch_size,
        issued: p.issued,
        failed: p.failed,
        done: p.done,
    }
}

fn password(s: String) -> Password {
    Password(Zeroizing::new(s))
}

fn audit_to_pb(entries: Vec<crate::service::batches::AuditEntry>) -> pb::AuditLogResponse {
    pb::AuditLogResponse {
        entries: entries
            .into_iter()
            .map(|e| pb::AuditLogEntry {
                log_id: e.log_id,
                batch_id: e.batch_id,
                r#type: e.kind,
                user: e.user,
                time: e.time,
                message: e.message,
            })
            .collect(),
    }
}

/// CreateBatch and PreviewBatch share a request.
fn generated(r: pb::CreateBatchRequest) -> (NewBatch, GeneratorInput) {
    let g = r.generator_params.unwrap_or_default();
    (
        NewBatch {
            organization_id: r.organization_id,
            authority_id: r.authority_id,
            profile_id: r.profile_id,
            name: r.batch_name,
            params: r.profile_params,
            key_type: r.key_type,
            pkcs12_password: password(r.pkcs12_password),
            validity_years: r.validity_years,
        },
        GeneratorInput {
            generator_id: r.generator_id,
            start_value: g.start_value,
            increment: g.increment,
            batch_size: r.batch_size,
        },
    )
}

#[tonic::async_trait]
impl pb::batch_service_server::BatchService for BatchApi {
    type DownloadBatchStream = ChunkStream;
    type WatchBatchStream = ProgressStream;

    async fn create_batch(
        &self,
        req: Request<pb::CreateBatchRequest>,
    ) -> GrpcResult<pb::CreateBatchResponse> {
        let p = principal(&req)?;
        let (new, g) = generated(req.into_inner());
        let c = self.0.batches.create_generated(&p, new, g).await.map_err(to_status)?;
        Ok(Response::new(created_to_pb(c)))
    }

    async fn create_single_cert_batch(
        &self,
        req: Request<pb::CreateSingleCertBatchRequest>,
    ) -> GrpcResult<pb::CreateBatchResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let new = NewBatch {
            organization_id: r.organization_id,
            authority_id: r.authority_id,
            profile_id: r.profile_id,
            name: r.batch_name,
            params: r.profile_params,
            key_type: r.key_type,
            pkcs12_password: password(r.pkcs12_password),
            validity_years: r.validity_years,
        };
        let c = self.0.batches.create_single(&p, new).await.map_err(to_status)?;
        Ok(Response::new(created_to_pb(c)))
    }

    async fn upload_csr_batch(
        &self,
        req: Request<pb::UploadCsrBatchRequest>,
    ) -> GrpcResult<pb::CreateBatchResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let new = NewBatch {
            organization_id: r.organization_id,
            authority_id: r.authority_id,
            profile_id: r.profile_id,
            name: r.batch_name,
            params: r.profile_params,
            validity_years: r.validity_years,
            ..NewBatch::default()
        };
        let c = self.0.batches.create_from_csrs(&p, new, r.files).await.map_err(to_status)?;
        Ok(Response::new(created_to_pb(c)))
    }

    async fn upload_csv_batch(
        &self,
        req: Request<pb::UploadCsvBatchRequest>,
    ) -> GrpcResult<pb::CreateBatchResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let new = NewBatch {
            organization_id: r.organization_id,
            authority_id: r.authority_id,
            profile_id: r.profile_id,
            name: r.batch_name,
            params: r.profile_params,
            key_type: r.key_type,
            pkcs12_password: password(r.pkcs12_password),
            validity_years: r.validity_years,
        };
        let c = self.0.batches.create_from_csv(&p, new, r.file).await.map_err(to_status)?;
        Ok(Response::new(created_to_pb(c)))
    }

    async fn list_generators(
        &self,
        req: Request<pb::ListGeneratorsRequest>,
    ) -> GrpcResult<pb::ListGeneratorsResponse> {
        let p = principal(&req)?;
        let found = self.0.batches.generators(&p, &req.into_inner().profile_id).map_err(to_status)?;
        Ok(Response::new(pb::ListGeneratorsResponse {
            generators: found
                .into_iter()
                .map(|g| pb::Generator {
                    id: g.id.into(),
                    name: g.name.into(),
                    description: g.description.into(),
                    target_parameter: g.target_parameter.into(),
                    parameters: g
                        .parameters
                        .into_iter()
                        .map(|(name, input_type, required, value, description)| pb::GeneratorParameter {
                            name: name.into(),
                            input_type: input_type.into(),
                            required,
                            value: value.into(),
                            description: description.into(),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn preview_batch(
        &self,
        req: Request<pb::CreateBatchRequest>,
    ) -> GrpcResult<pb::PreviewBatchResponse> {
        let p = principal(&req)?;
        let (new, g) = generated(req.into_inner());
        let v = self.0.batches.preview(&p, new, g).await.map_err(to_status)?;
        Ok(Response::new(pb::PreviewBatchResponse {
            first_device_params: v.first_device_params,
            first_subject_dn: v.first_subject_dn,
            serials: v.serials,
            batch_size: v.batch_size,
            available_balance: v.available_balance,
        }))
    }

    async fn list_batches(
        &self,
        req: Request<pb::ListBatchesRequest>,
    ) -> GrpcResult<pb::ListBatchesResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let filter = ListFilter {
            batch_id: r.batch_id,
            organization_id: r.organization_id,
            created_from: r.created_from,
            created_to: r.created_to,
            size_from: r.size_from,
            size_to: r.size_to,
            status: status_from_pb(r.status)?,
            name: r.name,
            page: r.page,
            size: r.size,
            sort_by: r.sort_by,
            descending: r.descending,
        };
        let (batches, total) = self.0.batches.list(&p, filter).await.map_err(to_status)?;
        Ok(Response::new(pb::ListBatchesResponse {
            batches: batches.into_iter().map(batch_to_pb).collect(),
            total,
        }))
    }

    async fn get_batch(&self, req: Request<pb::GetBatchRequest>) -> GrpcResult<pb::Batch> {
        let p = principal(&req)?;
        let b = self.0.batches.get(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(batch_to_pb(b)))
    }

    async fn get_batch_status(
        &self,
        req: Request<pb::GetBatchRequest>,
    ) -> GrpcResult<pb::BatchStatusResponse> {
        let p = principal(&req)?;
        let b = self.0.batches.get(&p, &req.into_inner().id).await.map_err(to_status)?;
        let s = BatchStatus::parse(&b.status).unwrap_or(BatchStatus::Broken);
        Ok(Response::new(pb::BatchStatusResponse {
            status: status_to_pb(s) as i32,
            text: s.text().into(),
            reason: b.status_reason,
        }))
    }

    async fn get_processing_info(&self, req: Request<pb::GetBatchRequest>) -> GrpcResult<pb::ProcessingInfo> {
        let p = principal(&req)?;
        let (active, success, failed) =
            self.0.batches.processing_info(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(pb::ProcessingInfo { active, success, failed }))
    }

    async fn get_batch_audit_log(
        &self,
        req: Request<pb::GetBatchAuditLogRequest>,
    ) -> GrpcResult<pb::AuditLogResponse> {
        let p = principal(&req)?;
        let entries =
            self.0.batches.batch_audit_log(&p, &req.into_inner().batch_id).await.map_err(to_status)?;
        Ok(Response::new(audit_to_pb(entries)))
    }

    async fn get_device_audit_log(
        &self,
        req: Request<pb::GetDeviceAuditLogRequest>,
    ) -> GrpcResult<pb::AuditLogResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let entries =
            self.0.batches.device_audit_log(&p, &r.batch_id, r.position).await.map_err(to_status)?;
        Ok(Response::new(audit_to_pb(entries)))
    }

    async fn get_device_statistics(
        &self,
        req: Request<pb::GetDeviceStatisticsRequest>,
    ) -> GrpcResult<pb::DeviceStatistics> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let s = self
            .0
            .batches
            .statistics(&p, &r.organization_id, &r.from_day, &r.to_day)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeviceStatistics {
            ordered: s.ordered,
            issued: s.issued,
            days: s
                .days
                .into_iter()
                .map(|(day, ordered, issued)| pb::DailyDeviceCount { day, ordered, issued })
                .collect(),
        }))
    }

    async fn reject_batch(&self, req: Request<pb::RejectBatchRequest>) -> GrpcResult<pb::Batch> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let b = self.0.batches.reject(&p, &r.id, &r.reason).await.map_err(to_status)?;
        Ok(Response::new(batch_to_pb(b)))
    }

    async fn revoke_batch(&self, req: Request<pb::RevokeBatchRequest>) -> GrpcResult<pb::Batch> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let b = self.0.batches.revoke(&p, &r.id, r.reason, &r.comment).await.map_err(to_status)?;
        Ok(Response::new(batch_to_pb(b)))
    }

    async fn download_batch(
        &self,
        req: Request<pb::DownloadBatchRequest>,
    ) -> GrpcResult<Self::DownloadBatchStream> {
        use tokio_stream::StreamExt;
        let p = principal(&req)?;
        let rx = self.0.batches.download(&p, &req.into_inner().id).await.map_err(to_status)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|data| pb::DownloadChunk { data }).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn watch_batch(&self, req: Request<pb::WatchBatchRequest>) -> GrpcResult<Self::WatchBatchStream> {
        use tokio_stream::StreamExt;
        let p = principal(&req)?;
        let rx = self.0.batches.watch(&p, &req.into_inner().id).await.map_err(to_status)?;
        let stream =
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map(progress_to_pb).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }
}
