//! gRPC handlers of `cardhsm.v1.EcosystemService` and `cardhsm.v1.PrivilegeService`: decode a
//! request, call the ecosystem or privilege service with the caller's principal, encode the
//! answer. Authorization already happened in the auth layer (`service/authz`).

use super::auth_layer::principal;
use super::convert::{role_from_pb, role_to_pb};
use super::status::{GrpcResult, to_status};
use crate::service::privileges::Privilege;
use crate::service::{ServiceError, Services};
use crate::store::ecosystems::{DEFAULT_ECOSYSTEM, EcosystemRecord};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};

#[derive(Debug, Clone)]
pub struct EcosystemApi(pub Services);

#[derive(Debug, Clone)]
pub struct PrivilegeApi(pub Services);

fn ecosystem_to_pb(e: EcosystemRecord) -> pb::Ecosystem {
    pb::Ecosystem {
        id: e.id,
        name: e.name,
        password_min_length: e.password_min_length,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

fn privilege_to_pb(p: Privilege) -> pb::Privilege {
    pb::Privilege {
        role: role_to_pb(p.role),
        ecosystem_id: p.ecosystem_id,
        organization_id: p.organization_id.unwrap_or_default(),
        profiles: p.profiles,
    }
}

fn privilege_from_pb(i: usize, p: pb::Privilege) -> Result<Privilege, ServiceError> {
    let role = role_from_pb(p.role)
        .ok_or_else(|| ServiceError::invalid(format!("privileges[{i}].role"), "is required"))?;
    Ok(Privilege {
        role,
        ecosystem_id: if p.ecosystem_id.is_empty() { DEFAULT_ECOSYSTEM.to_owned() } else { p.ecosystem_id },
        organization_id: Some(p.organization_id).filter(|o| !o.is_empty()),
        profiles: p.profiles,
    })
}

#[tonic::async_trait]
impl pb::ecosystem_service_server::EcosystemService for EcosystemApi {
    async fn get_ecosystem(&self, req: Request<pb::GetEcosystemRequest>) -> GrpcResult<pb::Ecosystem> {
        let e = self.0.ecosystems.get(&principal(&req)?, &req.get_ref().id).await.map_err(to_status)?;
        Ok(Response::new(ecosystem_to_pb(e)))
    }

    async fn update_ecosystem(&self, req: Request<pb::UpdateEcosystemRequest>) -> GrpcResult<pb::Ecosystem> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let e = self
            .0
            .ecosystems
            .set_password_min_length(&actor, &r.id, r.password_min_length)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ecosystem_to_pb(e)))
    }

    async fn get_ecosystem_statistics(
        &self,
        req: Request<pb::GetEcosystemStatisticsRequest>,
    ) -> GrpcResult<pb::EcosystemStatistics> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let s =
            self.0.ecosystems.statistics(&actor, &r.id, &r.from_day, &r.to_day).await.map_err(to_status)?;
        Ok(Response::new(pb::EcosystemStatistics {
            ecosystem_id: s.ecosystem_id,
            organizations: s.organizations,
            capacity: s.capacity,
            balance: s.balance,
            used: s.used,
            days: s
                .days
                .into_iter()
                .map(|(day, ordered, issued)| pb::DailyCount { day, ordered, issued })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::privilege_service_server::PrivilegeService for PrivilegeApi {
    async fn get_user_privileges(
        &self,
        req: Request<pb::GetUserPrivilegesRequest>,
    ) -> GrpcResult<pb::UserPrivileges> {
        let actor = principal(&req)?;
        let user_id = req.into_inner().user_id;
        let privileges = self.0.privileges.get(&actor, &user_id).await.map_err(to_status)?;
        Ok(Response::new(pb::UserPrivileges {
            user_id,
            privileges: privileges.into_iter().map(privilege_to_pb).collect(),
        }))
    }

    async fn set_user_privileges(
        &self,
        req: Request<pb::SetUserPrivilegesRequest>,
    ) -> GrpcResult<pb::UserPrivileges> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let wanted = r
            .privileges
            .into_iter()
            .enumerate()
            .map(|(i, p)| privilege_from_pb(i, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_status)?;
        let privileges = self.0.privileges.set(&actor, &r.user_id, wanted).await.map_err(to_status)?;
        Ok(Response::new(pb::UserPrivileges {
            user_id: r.user_id,
            privileges: privileges.into_iter().map(privilege_to_pb).collect(),
        }))
    }
}
