//! gRPC handlers: decode a request, call the service with the caller's principal, encode the
//! answer. No logic lives here.

use super::auth_layer::principal;
use super::convert::{card_to_pb, role_from_pb, role_to_pb, state_filter_from_pb, token_to_pb};
use super::status::{GrpcResult, to_status};
use crate::service::cards::Registration;
use crate::service::{ServiceError, Services};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};
use zeroize::Zeroizing;

/// `cardhsm.v1.AuthService`.
#[derive(Debug, Clone)]
pub struct AuthApi(pub Services);

fn tokens_to_pb(t: crate::service::auth::Tokens) -> pb::LoginResponse {
    pb::LoginResponse {
        access_token: t.access_token.to_string(),
        refresh_token: t.refresh_token.to_string(),
        expires_in: t.expires_in,
        token_type: "Bearer".into(),
        roles: t.roles.into_iter().map(role_to_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn login(&self, req: Request<pb::LoginRequest>) -> GrpcResult<pb::LoginResponse> {
        let r = req.into_inner();
        let tokens = self.0.auth.login(&r.username, Zeroizing::new(r.password)).await.map_err(to_status)?;
        Ok(Response::new(tokens_to_pb(tokens)))
    }

    async fn refresh(&self, req: Request<pb::RefreshRequest>) -> GrpcResult<pb::LoginResponse> {
        let r = req.into_inner();
        let tokens = self.0.auth.refresh(Zeroizing::new(r.refresh_token)).await.map_err(to_status)?;
        Ok(Response::new(tokens_to_pb(tokens)))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> GrpcResult<pb::WhoAmIResponse> {
        let p = principal(&req)?;
        Ok(Response::new(pb::WhoAmIResponse {
            user_id: p.user_id,
            username: p.username,
            roles: p.roles.into_iter().map(role_to_pb).collect(),
            expires_at: p.expires_at,
        }))
    }
}

/// `cardhsm.v1.CardService`.
#[derive(Debug, Clone)]
pub struct CardApi(pub Services);

impl CardApi {
    async fn info(&self, card: crate::service::cards::Card) -> pb::CardInfo {
        let present = self.0.cards.present_tokens().await.contains(&card.token_serial);
        card_to_pb(card, present)
    }
}

#[tonic::async_trait]
impl pb::card_service_server::CardService for CardApi {
    async fn list_cards(&self, req: Request<pb::ListCardsRequest>) -> GrpcResult<pb::ListCardsResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let state = state_filter_from_pb(r.state).map_err(|_| {
            to_status(ServiceError::invalid("state", format!("{} is not a card state", r.state)))
        })?;
        let page = r.page.unwrap_or_default();
        let (cards, next, total) = self
            .0
            .cards
            .list(&p, &r.owner, state, page.page_size, &page.page_token)
            .await
            .map_err(to_status)?;
        let present = self.0.cards.present_tokens().await;
        Ok(Response::new(pb::ListCardsResponse {
            cards: cards
                .into_iter()
                .map(|c| {
                    let here = present.contains(&c.token_serial);
                    card_to_pb(c, here)
                })
                .collect(),
            page: Some(pb::PageResponse { next_page_token: next, total_count: total }),
        }))
    }

    async fn get_card(&self, req: Request<pb::GetCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let card = self.0.cards.get(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn register_card(&self, req: Request<pb::RegisterCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let reg = Registration {
            token_serial: r.token_serial,
            owner: r.owner,
            label: r.label,
            pac_number: r.pac_number,
            policy: r.policy,
        };
        let card = self.0.cards.register(&p, reg).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn issue_card(&self, req: Request<pb::IssueCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let card = self.0.cards.issue(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn disable_card(&self, req: Request<pb::CardActionRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let card = self.0.cards.disable(&p, &r.id, &r.comment).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn enable_card(&self, req: Request<pb::CardActionRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let card = self.0.cards.enable(&p, &r.id, &r.comment).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn revoke_card(&self, req: Request<pb::RevokeCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let card = self.0.cards.revoke(&p, &r.id, r.reason, &r.comment).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn pre_update_card(&self, req: Request<pb::PreUpdateCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let card = self.0.cards.pre_update(&p, &r.id, &r.policy).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn list_tokens(&self, _req: Request<pb::ListTokensRequest>) -> GrpcResult<pb::ListTokensResponse> {
        let tokens = self.0.cards.list_tokens().await.map_err(to_status)?;
        Ok(Response::new(pb::ListTokensResponse { tokens: tokens.into_iter().map(token_to_pb).collect() }))
    }
}

/// `cardhsm.v1.UserService`.
#[derive(Debug, Clone)]
pub struct UserApi(pub Services);

fn user_to_pb(u: crate::service::users::UserView) -> pb::User {
    pb::User {
        id: u.id,
        username: u.username,
        roles: u.roles.into_iter().map(role_to_pb).collect(),
        enabled: u.enabled,
        created_at: u.created_at,
    }
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for UserApi {
    async fn create_user(&self, req: Request<pb::CreateUserRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let mut roles = Vec::with_capacity(r.roles.len());
        for (i, v) in r.roles.iter().enumerate() {
            let role = role_from_pb(*v).ok_or_else(|| {
                to_status(ServiceError::invalid(format!("roles[{i}]"), format!("{v} is not a role")))
            })?;
            roles.push(role);
        }
        let user = self
            .0
            .users
            .create(&p, &r.username, Zeroizing::new(r.password), roles)
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> GrpcResult<pb::ListUsersResponse> {
        let page = req.into_inner().page.unwrap_or_default();
        let (users, next, total) =
            self.0.users.list(page.page_size, &page.page_token).await.map_err(to_status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user_to_pb).collect(),
            page: Some(pb::PageResponse { next_page_token: next, total_count: total }),
        }))
    }
}
