//! gRPC handlers: decode a request, call the service with the caller's principal, encode the
//! answer. No logic lives here.

use super::auth_layer::principal;
use super::convert::{card_to_pb, role_from_pb, role_to_pb, state_filter_from_pb, token_to_pb};
use super::status::{GrpcResult, to_status};
use crate::service::auth::ClientInfo;
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
        session_id: t.session_id,
    }
}

fn api_key_to_pb(k: crate::service::auth::ApiKeyView) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        realm: k.realm,
        owner: k.owner,
        roles: k.roles.into_iter().map(role_to_pb).collect(),
        created_at: k.created_at,
        last_used: k.last_used,
    }
}

/// Where a sign-in comes from: the connection's remote address and the `user-agent` metadata.
pub(super) fn client_info<T>(req: &Request<T>) -> ClientInfo {
    ClientInfo {
        source_ip: req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        agent: req
            .metadata()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect())
            .unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn login(&self, req: Request<pb::LoginRequest>) -> GrpcResult<pb::LoginResponse> {
        let client = client_info(&req);
        let r = req.into_inner();
        let tokens =
            self.0.auth.login(&r.username, Zeroizing::new(r.password), client).await.map_err(to_status)?;
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
            session_id: p.session_id,
            api_key_id: p.api_key_id.unwrap_or_default(),
        }))
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> GrpcResult<pb::LogoutResponse> {
        let p = principal(&req)?;
        self.0.auth.logout(&p).await.map_err(to_status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> GrpcResult<pb::ChangePasswordResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        self.0
            .auth
            .change_password(
                &p,
                Zeroizing::new(r.old_password),
                Zeroizing::new(r.new_password),
                Zeroizing::new(r.repeated_new_password),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn realm_auth(&self, req: Request<pb::RealmAuthRequest>) -> GrpcResult<pb::RealmAuthResponse> {
        let client = client_info(&req);
        let r = req.into_inner();
        let key = self
            .0
            .auth
            .realm_auth(&r.realm, &r.username, Zeroizing::new(r.password), client)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RealmAuthResponse {
            api_key: key.key.to_string(),
            key: Some(api_key_to_pb(key.info)),
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> GrpcResult<pb::ListApiKeysResponse> {
        let p = principal(&req)?;
        let keys = self.0.auth.list_api_keys(&p);
        Ok(Response::new(pb::ListApiKeysResponse { keys: keys.into_iter().map(api_key_to_pb).collect() }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> GrpcResult<pb::RevokeApiKeyResponse> {
        let p = principal(&req)?;
        self.0.auth.revoke_api_key(&p, &req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeApiKeyResponse {}))
    }

    async fn request_password_reset(
        &self,
        req: Request<pb::RequestPasswordResetRequest>,
    ) -> GrpcResult<pb::RequestPasswordResetResponse> {
        let r = req.into_inner();
        let sent = self.0.password_reset.request(&r.username).await.map_err(to_status)?;
        Ok(Response::new(pb::RequestPasswordResetResponse { sent }))
    }

    async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> GrpcResult<pb::ResetPasswordResponse> {
        let client = client_info(&req);
        let r = req.into_inner();
        self.0
            .password_reset
            .reset(
                Zeroizing::new(r.code),
                Zeroizing::new(r.new_password),
                Zeroizing::new(r.repeated_new_password),
                &client,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    async fn validate_code(
        &self,
        req: Request<pb::ValidateCodeRequest>,
    ) -> GrpcResult<pb::ValidateCodeResponse> {
        let client = client_info(&req);
        let r = req.into_inner();
        let valid =
            self.0.password_reset.validate(Zeroizing::new(r.code), &client).await.map_err(to_status)?;
        Ok(Response::new(pb::ValidateCodeResponse { valid }))
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
            reader: r.reader,
        };
        let card = self.0.cards.register(&p, reg).await.map_err(to_status)?;
        Ok(Response::new(self.info(card).await))
    }

    async fn issue_card(&self, req: Request<pb::IssueCardRequest>) -> GrpcResult<pb::CardInfo> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let id = self.0.cards.resolve(&r.id, &r.reader).await.map_err(to_status)?;
        let card = self.0.cards.issue(&p, &id).await.map_err(to_status)?;
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

    async fn list_readers(
        &self,
        _req: Request<pb::ListReadersRequest>,
    ) -> GrpcResult<pb::ListReadersResponse> {
        let (readers, service_available) = self.0.readers.list().map_err(to_status)?;
        Ok(Response::new(pb::ListReadersResponse {
            readers: readers.into_iter().map(super::convert::reader_to_pb).collect(),
            service_available,
        }))
    }

    async fn change_pin(&self, req: Request<pb::ChangePinRequest>) -> GrpcResult<pb::PinChanged> {
        let p = principal(&req)?;
        let mut r = req.into_inner();
        let (old, new) =
            (Zeroizing::new(std::mem::take(&mut r.old_pin)), Zeroizing::new(std::mem::take(&mut r.new_pin)));
        self.0.cards.change_pin(&p, &r.id, old, new).await.map_err(to_status)?;
        Ok(Response::new(pb::PinChanged { id: r.id }))
    }

    async fn unblock_pin(&self, req: Request<pb::UnblockPinRequest>) -> GrpcResult<pb::PinChanged> {
        let p = principal(&req)?;
        let mut r = req.into_inner();
        let (puk, new) =
            (Zeroizing::new(std::mem::take(&mut r.puk)), Zeroizing::new(std::mem::take(&mut r.new_pin)));
        self.0.cards.unblock_pin(&p, &r.id, puk, new).await.map_err(to_status)?;
        Ok(Response::new(pb::PinChanged { id: r.id }))
    }

    type WatchReadersStream = super::convert::ReaderEventStream;

    async fn watch_readers(
        &self,
        _req: Request<pb::WatchReadersRequest>,
    ) -> GrpcResult<Self::WatchReadersStream> {
        let events = self.0.readers.watch().map_err(to_status)?;
        Ok(Response::new(super::convert::reader_event_stream(events)))
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
        first_name: u.first_name,
        last_name: u.last_name,
        phone: u.phone,
        email: u.email,
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
        let profile = crate::service::users::ProfileChange {
            first_name: Some(r.first_name),
            last_name: Some(r.last_name),
            phone: Some(r.phone),
            email: Some(r.email),
        };
        let repeated = (!r.repeated_password.is_empty()).then(|| Zeroizing::new(r.repeated_password));
        let user = self
            .0
            .users
            .create(&p, &r.username, Zeroizing::new(r.password), repeated, roles, profile)
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> GrpcResult<pb::ListUsersResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let page = r.page.unwrap_or_default();
        let role = match r.role {
            0 => None,
            v => Some(
                role_from_pb(v)
                    .ok_or_else(|| to_status(ServiceError::invalid("role", format!("{v} is not a role"))))?,
            ),
        };
        let filter = crate::service::users::ListFilter {
            organization_id: r.organization_id,
            role,
            search_line: r.search_line,
        };
        let (users, next, total) =
            self.0.users.list(&p, filter, page.page_size, &page.page_token).await.map_err(to_status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user_to_pb).collect(),
            page: Some(pb::PageResponse { next_page_token: next, total_count: total }),
        }))
    }

    async fn set_user_enabled(&self, req: Request<pb::SetUserEnabledRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let user = self.0.users.set_enabled(&p, &r.id, r.enabled).await.map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> GrpcResult<pb::User> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let user = self.0.users.get_scoped(&actor, &r.id, &r.organization_id).await.map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn get_current_user(&self, req: Request<pb::GetCurrentUserRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let user = self.0.users.get(&p.user_id).await.map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn check_username(
        &self,
        req: Request<pb::CheckUsernameRequest>,
    ) -> GrpcResult<pb::CheckUsernameResponse> {
        let available =
            self.0.users.username_available(&req.into_inner().username).await.map_err(to_status)?;
        Ok(Response::new(pb::CheckUsernameResponse { available }))
    }

    async fn remove_user(&self, req: Request<pb::RemoveUserRequest>) -> GrpcResult<pb::RemoveUserResponse> {
        let p = principal(&req)?;
        let id = req.into_inner().id;
        self.0.users.remove(&p, &id).await.map_err(to_status)?;
        Ok(Response::new(pb::RemoveUserResponse { id }))
    }

    async fn update_user(&self, req: Request<pb::UpdateUserRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let change = crate::service::users::ProfileChange {
            first_name: r.first_name,
            last_name: r.last_name,
            phone: r.phone,
            email: r.email,
        };
        let user = self.0.users.update(&p, &r.id, change).await.map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn update_current_user(&self, req: Request<pb::UpdateCurrentUserRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let user =
            self.0.users.update_current(&p, r.first_name, r.last_name, r.phone).await.map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn update_email(&self, req: Request<pb::UpdateEmailRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let user = self
            .0
            .users
            .update_email(&p, &r.email, Zeroizing::new(r.current_password))
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn update_credentials(&self, req: Request<pb::UpdateCredentialsRequest>) -> GrpcResult<pb::User> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let user = self
            .0
            .users
            .update_credentials(
                &p,
                Zeroizing::new(r.current_password),
                &r.new_username,
                Zeroizing::new(r.new_password),
                Zeroizing::new(r.repeated_new_password),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn check_email(&self, req: Request<pb::CheckEmailRequest>) -> GrpcResult<pb::CheckEmailResponse> {
        let available = self.0.users.email_available(&req.into_inner().email).await.map_err(to_status)?;
        Ok(Response::new(pb::CheckEmailResponse { available }))
    }
}
