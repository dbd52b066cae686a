//! `cardhsm.v1.SessionService`: decode, call the auth service, encode.

use super::auth_layer::principal;
use super::convert::{role_from_pb, role_to_pb};
use super::status::{GrpcResult, to_status};
use crate::service::{ServiceError, Services};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};

#[derive(Debug, Clone)]
pub struct SessionApi(pub Services);

fn session_to_pb(s: crate::service::auth::SessionView) -> pb::ActiveSession {
    pb::ActiveSession {
        id: s.id,
        name: s.username,
        realm: s.realm,
        roles: s.roles.into_iter().map(role_to_pb).collect(),
        source_ip: s.source_ip,
        agent: s.agent,
        sign_in_time: s.signed_in_at,
        login_node: s.login_node,
        last_activity: s.last_activity,
    }
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for SessionApi {
    async fn list_active_sessions(
        &self,
        req: Request<pb::ListActiveSessionsRequest>,
    ) -> GrpcResult<pb::ListActiveSessionsResponse> {
        let r = req.into_inner();
        let page = self.0.auth.list_sessions(r.number, r.start, &r.name).await.map_err(to_status)?;
        Ok(Response::new(pb::ListActiveSessionsResponse {
            total_matched: page.total_matched,
            total_returned: page.sessions.len() as u32,
            is_last_record: page.is_last_record,
            sessions: page.sessions.into_iter().map(session_to_pb).collect(),
        }))
    }

    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> GrpcResult<pb::DeleteSessionResponse> {
        let p = principal(&req)?;
        self.0.auth.delete_session(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }

    async fn delete_all_sessions(
        &self,
        req: Request<pb::DeleteAllSessionsRequest>,
    ) -> GrpcResult<pb::DeleteAllSessionsResponse> {
        let p = principal(&req)?;
        let deleted = self.0.auth.delete_all_sessions(&p).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteAllSessionsResponse { deleted }))
    }

    async fn set_idle_timeout(
        &self,
        req: Request<pb::SetIdleTimeoutRequest>,
    ) -> GrpcResult<pb::SetIdleTimeoutResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let role = role_from_pb(r.role)
            .ok_or_else(|| to_status(ServiceError::invalid("role", format!("{} is not a role", r.role))))?;
        let all = self.0.auth.set_idle_timeout(&p, role, r.minutes).await.map_err(to_status)?;
        Ok(Response::new(pb::SetIdleTimeoutResponse {
            timeouts: all
                .into_iter()
                .map(|(role, minutes)| pb::IdleTimeout { role: role_to_pb(role), minutes })
                .collect(),
        }))
    }
}
