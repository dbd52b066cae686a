//! gRPC handlers of `cardhsm.v1.OrganizationService`: decode a request, call the organization
//! service with the caller's principal, encode the answer. Authorization already happened in
//! the auth layer (`service/authz`); no logic lives here.

use super::auth_layer::principal;
use super::status::{GrpcResult, to_status};
use crate::service::Services;
use crate::service::organizations::{OrganizationAuthorityView, OrganizationInput, OrganizationView, Status};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};

#[derive(Debug, Clone)]
pub struct OrganizationApi(pub Services);

fn status_to_pb(s: Status) -> i32 {
    match s {
        Status::Active => pb::OrganizationStatus::Active as i32,
        Status::Inactive => pb::OrganizationStatus::Inactive as i32,
    }
}

/// UNSPECIFIED is "not given"; a value outside the enum goes to the service, which refuses it
/// naming `status`.
fn status_from_pb(v: i32) -> Option<Result<Status, i32>> {
    match pb::OrganizationStatus::try_from(v) {
        Ok(pb::OrganizationStatus::Unspecified) => None,
        Ok(pb::OrganizationStatus::Active) => Some(Ok(Status::Active)),
        Ok(pb::OrganizationStatus::Inactive) => Some(Ok(Status::Inactive)),
        Err(_) => Some(Err(v)),
    }
}

fn org_to_pb(o: OrganizationView) -> pb::Organization {
    pb::Organization {
        id: o.id,
        name: o.name,
        parameters: o.parameters.into_iter().collect(),
        status: status_to_pb(o.status),
        created_at: o.created_at,
        updated_at: o.updated_at,
    }
}

fn authority_to_pb(a: OrganizationAuthorityView) -> pb::OrganizationAuthority {
    pb::OrganizationAuthority {
        authority_id: a.authority_id,
        authority_name: a.authority_name,
        balance: a.balance,
        used: a.used,
        available: a.available,
        enabled: a.enabled,
    }
}

fn input(
    name: String,
    parameters: std::collections::HashMap<String, String>,
    status: i32,
) -> OrganizationInput {
    OrganizationInput { name, parameters: parameters.into_iter().collect(), status: status_from_pb(status) }
}

#[tonic::async_trait]
impl pb::organization_service_server::OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        req: Request<pb::CreateOrganizationRequest>,
    ) -> GrpcResult<pb::Organization> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let o = self
            .0
            .organizations
            .create(&p, input(r.name, r.parameters, r.status))
            .await
            .map_err(to_status)?;
        Ok(Response::new(org_to_pb(o)))
    }

    async fn update_organization(
        &self,
        req: Request<pb::UpdateOrganizationRequest>,
    ) -> GrpcResult<pb::Organization> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let o = self
            .0
            .organizations
            .update(&p, &r.id, input(r.name, r.parameters, r.status))
            .await
            .map_err(to_status)?;
        Ok(Response::new(org_to_pb(o)))
    }

    async fn get_organization(
        &self,
        req: Request<pb::GetOrganizationRequest>,
    ) -> GrpcResult<pb::Organization> {
        let o = self.0.organizations.get(&principal(&req)?, &req.get_ref().id).await.map_err(to_status)?;
        Ok(Response::new(org_to_pb(o)))
    }

    async fn list_organizations(
        &self,
        req: Request<pb::ListOrganizationsRequest>,
    ) -> GrpcResult<pb::ListOrganizationsResponse> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let page = self.0.organizations.list(&actor, r.page, r.size).await.map_err(to_status)?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: page.organizations.into_iter().map(org_to_pb).collect(),
            total: page.total,
        }))
    }

    async fn get_organization_for_current_user(
        &self,
        req: Request<pb::GetOrganizationForCurrentUserRequest>,
    ) -> GrpcResult<pb::Organization> {
        let o = self.0.organizations.for_current_user(&principal(&req)?).await.map_err(to_status)?;
        Ok(Response::new(org_to_pb(o)))
    }

    async fn list_organization_items(
        &self,
        req: Request<pb::ListOrganizationItemsRequest>,
    ) -> GrpcResult<pb::ListOrganizationItemsResponse> {
        let items = self.0.organizations.items(&principal(&req)?).await.map_err(to_status)?;
        Ok(Response::new(pb::ListOrganizationItemsResponse {
            items: items.into_iter().map(|(id, name)| pb::OrganizationItem { id, name }).collect(),
        }))
    }

    async fn check_organization(
        &self,
        req: Request<pb::CheckOrganizationRequest>,
    ) -> GrpcResult<pb::CheckOrganizationResponse> {
        let available =
            self.0.organizations.name_available(&req.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(pb::CheckOrganizationResponse { available }))
    }

    async fn add_organization_authority(
        &self,
        req: Request<pb::AddOrganizationAuthorityRequest>,
    ) -> GrpcResult<pb::OrganizationAuthority> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let a = self
            .0
            .organizations
            .add_authority(&p, &r.organization_id, &r.authority_id, r.balance, r.enabled)
            .await
            .map_err(to_status)?;
        Ok(Response::new(authority_to_pb(a)))
    }

    async fn update_organization_authority(
        &self,
        req: Request<pb::UpdateOrganizationAuthorityRequest>,
    ) -> GrpcResult<pb::OrganizationAuthority> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let a = self
            .0
            .organizations
            .update_authority(&p, &r.organization_id, &r.authority_id, r.balance, r.enabled)
            .await
            .map_err(to_status)?;
        Ok(Response::new(authority_to_pb(a)))
    }

    async fn remove_organization_authority(
        &self,
        req: Request<pb::RemoveOrganizationAuthorityRequest>,
    ) -> GrpcResult<pb::RemoveOrganizationAuthorityResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        self.0
            .organizations
            .remove_authority(&p, &r.organization_id, &r.authority_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RemoveOrganizationAuthorityResponse {}))
    }

    async fn list_organization_authorities(
        &self,
        req: Request<pb::ListOrganizationAuthoritiesRequest>,
    ) -> GrpcResult<pb::ListOrganizationAuthoritiesResponse> {
        let found = self
            .0
            .organizations
            .authorities(&principal(&req)?, &req.get_ref().organization_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListOrganizationAuthoritiesResponse {
            authorities: found.into_iter().map(authority_to_pb).collect(),
        }))
    }
}
