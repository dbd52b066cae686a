//! gRPC handlers of `cardhsm.v1.AdminService`: decode a request, call the admin service with
//! the caller's principal, encode the answer. Authorization already happened in the auth layer
//! (`service/authz`); no logic lives here.

use super::auth_layer::principal;
use super::status::{GrpcResult, to_status};
use crate::service::Services;
use crate::service::admins::{AdminInput, AdminRole, AdminView, BulkAction, BulkOutcome};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};

#[derive(Debug, Clone)]
pub struct AdminApi(pub Services);

fn role_to_pb(r: AdminRole) -> i32 {
    (match r {
        AdminRole::Administrator => pb::AdminRole::Administrator,
        AdminRole::SuperAdministrator => pb::AdminRole::SuperAdministrator,
    }) as i32
}

/// UNSPECIFIED is "not given"; a value outside the enum goes to the service, which refuses it
/// naming `role`.
fn role_from_pb(v: i32) -> Option<Result<AdminRole, i32>> {
    match pb::AdminRole::try_from(v) {
        Ok(pb::AdminRole::Unspecified) => None,
        Ok(pb::AdminRole::Administrator) => Some(Ok(AdminRole::Administrator)),
        Ok(pb::AdminRole::SuperAdministrator) => Some(Ok(AdminRole::SuperAdministrator)),
        Err(_) => Some(Err(v)),
    }
}

fn admin_to_pb(a: AdminView) -> pb::Admin {
    pb::Admin {
        uuid: a.id,
        username: a.username,
        name: a.name,
        surname: a.surname,
        email: a.email,
        role: role_to_pb(a.role),
        enabled: a.enabled,
        description: a.description,
        certificate_fingerprint: a.certificate_fingerprint,
        certificate_subject: a.certificate_subject,
        certificate_issuer: a.certificate_issuer,
        certificate_serial: a.certificate_serial,
        certificate_not_after: a.certificate_not_after,
        certificate: STANDARD.encode(&a.certificate_der),
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

fn bulk_to_pb(o: BulkOutcome) -> pb::BulkAdminsResponse {
    pb::BulkAdminsResponse { processed: o.processed, not_found: o.not_found }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn list_admins(&self, req: Request<pb::ListAdminsRequest>) -> GrpcResult<pb::ListAdminsResponse> {
        let r = req.into_inner();
        let page = r.page.unwrap_or_default();
        let out = self.0.admins.list(page.page_size, &page.page_token, &r.search).await.map_err(to_status)?;
        Ok(Response::new(pb::ListAdminsResponse {
            admins: out.admins.into_iter().map(admin_to_pb).collect(),
            page: Some(pb::PageResponse { next_page_token: out.next_page_token, total_count: out.total }),
        }))
    }

    async fn get_admin(&self, req: Request<pb::GetAdminRequest>) -> GrpcResult<pb::Admin> {
        let a = self.0.admins.get(&req.into_inner().uuid).await.map_err(to_status)?;
        Ok(Response::new(admin_to_pb(a)))
    }

    async fn create_admin(&self, req: Request<pb::CreateAdminRequest>) -> GrpcResult<pb::Admin> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let input = AdminInput {
            username: r.username,
            name: r.name,
            surname: r.surname,
            email: r.email,
            role: role_from_pb(r.role),
            enabled: r.enabled,
            description: r.description,
            certificate: r.certificate,
            certificate_uuid: r.certificate_uuid,
        };
        let a = self.0.admins.create(&p, input).await.map_err(to_status)?;
        Ok(Response::new(admin_to_pb(a)))
    }

    async fn edit_admin(&self, req: Request<pb::EditAdminRequest>) -> GrpcResult<pb::Admin> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let input = AdminInput {
            username: r.username,
            name: r.name,
            surname: r.surname,
            email: r.email,
            role: role_from_pb(r.role),
            enabled: false,
            description: r.description,
            certificate: r.certificate,
            certificate_uuid: r.certificate_uuid,
        };
        let a = self.0.admins.edit(&p, &r.uuid, input).await.map_err(to_status)?;
        Ok(Response::new(admin_to_pb(a)))
    }

    async fn delete_admin(
        &self,
        req: Request<pb::DeleteAdminRequest>,
    ) -> GrpcResult<pb::DeleteAdminResponse> {
        let p = principal(&req)?;
        self.0.admins.delete(&p, &req.into_inner().uuid).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteAdminResponse {}))
    }

    async fn enable_admin(&self, req: Request<pb::EnableAdminRequest>) -> GrpcResult<pb::Admin> {
        let p = principal(&req)?;
        let a = self.0.admins.set_enabled(&p, &req.into_inner().uuid, true).await.map_err(to_status)?;
        Ok(Response::new(admin_to_pb(a)))
    }

    async fn disable_admin(&self, req: Request<pb::DisableAdminRequest>) -> GrpcResult<pb::Admin> {
        let p = principal(&req)?;
        let a = self.0.admins.set_enabled(&p, &req.into_inner().uuid, false).await.map_err(to_status)?;
        Ok(Response::new(admin_to_pb(a)))
    }

    async fn enable_admins(&self, req: Request<pb::BulkAdminsRequest>) -> GrpcResult<pb::BulkAdminsResponse> {
        let p = principal(&req)?;
        let o =
            self.0.admins.bulk(&p, &req.into_inner().uuids, BulkAction::Enable).await.map_err(to_status)?;
        Ok(Response::new(bulk_to_pb(o)))
    }

    async fn disable_admins(
        &self,
        req: Request<pb::BulkAdminsRequest>,
    ) -> GrpcResult<pb::BulkAdminsResponse> {
        let p = principal(&req)?;
        let o =
            self.0.admins.bulk(&p, &req.into_inner().uuids, BulkAction::Disable).await.map_err(to_status)?;
        Ok(Response::new(bulk_to_pb(o)))
    }

    async fn delete_admins(&self, req: Request<pb::BulkAdminsRequest>) -> GrpcResult<pb::BulkAdminsResponse> {
        let p = principal(&req)?;
        let o =
            self.0.admins.bulk(&p, &req.into_inner().uuids, BulkAction::Delete).await.map_err(to_status)?;
        Ok(Response::new(bulk_to_pb(o)))
    }
}
