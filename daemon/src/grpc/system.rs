//! gRPC handlers of `cardhsm.v1.SystemService`: decode a request, call the system service with
//! the caller's principal, encode the answer. Authorization already happened in the auth layer
//! (`service/authz`); health entries are served by the standard health service (`grpc/mod.rs`).

use super::auth_layer::principal;
use super::status::{GrpcResult, to_status};
use crate::service::Services;
use crate::service::system::{ImportMode, TokenView};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct SystemApi(pub Services);

pub type ArchiveStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ConfigurationChunk, Status>> + Send>>;

fn token_to_pb(t: TokenView) -> pb::TokenInformation {
    pb::TokenInformation {
        label: t.label,
        serial: t.serial,
        model: t.model,
        present: t.present,
        role: t.role.into(),
    }
}

fn mode_from_pb(mode: i32) -> Option<ImportMode> {
    match pb::ImportMode::try_from(mode) {
        Ok(pb::ImportMode::Normal) => Some(ImportMode::Normal),
        Ok(pb::ImportMode::Full) => Some(ImportMode::Full),
        _ => None,
    }
}

#[tonic::async_trait]
impl pb::system_service_server::SystemService for SystemApi {
    type ExportConfigurationStream = ArchiveStream;

    async fn get_system_information(
        &self,
        _req: Request<pb::GetSystemInformationRequest>,
    ) -> GrpcResult<pb::SystemInformation> {
        let i = self.0.system.information().await.map_err(to_status)?;
        Ok(Response::new(pb::SystemInformation {
            version: i.version,
            build: i.build,
            host_name: i.host_name,
            uptime_seconds: i.uptime_seconds,
            store_schema_version: i.store_schema_version,
            tokens: i.tokens.into_iter().map(token_to_pb).collect(),
        }))
    }

    async fn export_configuration(
        &self,
        req: Request<pb::ExportConfigurationRequest>,
    ) -> GrpcResult<Self::ExportConfigurationStream> {
        let actor = principal(&req)?;
        let password = Zeroizing::new(std::mem::take(&mut req.into_inner().password));
        let chunks = self.0.system.export(&actor, password).await.map_err(to_status)?;
        let stream = tokio_stream::iter(chunks.into_iter().map(|data| Ok(pb::ConfigurationChunk { data })));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn import_configuration(
        &self,
        req: Request<pb::ImportConfigurationRequest>,
    ) -> GrpcResult<pb::ImportConfigurationResponse> {
        let actor = principal(&req)?;
        let mut r = req.into_inner();
        let password = Zeroizing::new(std::mem::take(&mut r.password));
        let archive = std::mem::take(&mut r.archive);
        let outcome =
            self.0.system.import(&actor, archive, password, mode_from_pb(r.mode)).await.map_err(to_status)?;
        let m = outcome.manifest;
        Ok(Response::new(pb::ImportConfigurationResponse {
            daemon_version: m.daemon_version,
            schema_version: m.schema_version,
            created_at: m.created_at,
            tokens: m
                .tokens
                .into_iter()
                .map(|t| pb::TokenInformation {
                    label: t.label,
                    serial: t.serial,
                    model: String::new(),
                    present: false,
                    role: t.role,
                })
                .collect(),
            restarting: true,
        }))
    }
}
