//! A stand-in cardhsmd for the client crate's own tests: a real tonic server on 127.0.0.1 that
//! implements the auth rules the client relies on (bearer tokens, rotating refresh tokens, expiry)
//! and a few card/user calls. It lets these tests drive refresh and retry deterministically; the
//! acceptance tests against the real daemon live in the workspace's `tests/` crate.

#![allow(dead_code, reason = "each test binary uses a different part")]

use cardhsm_client::v1::auth_service_server::{AuthService, AuthServiceServer};
use cardhsm_client::v1::card_service_server::{CardService, CardServiceServer};
use cardhsm_client::v1::user_service_server::{UserService, UserServiceServer};
use cardhsm_client::v1::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// What the fake daemon remembers and counts.
#[derive(Debug, Default)]
pub struct FakeState {
    next: u32,
    /// access token → username
    pub access: HashMap<String, String>,
    /// refresh token → username
    pub refresh: HashMap<String, String>,
    /// `expires_in` of every login/refresh answer.
    pub expires_in: u32,
    pub logins: u32,
    pub refreshes: u32,
    /// Logout calls that reached the fake with a valid access token.
    pub logouts: u32,
    /// Calls turned away for a bad or missing access token.
    pub unauthenticated: u32,
    /// Requests as received.
    pub revoke_requests: Vec<RevokeCardRequest>,
    pub created_users: Vec<CreateUserRequest>,
}

#[derive(Debug, Clone)]
pub struct Fake {
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every access token handed out so far invalid (as if they had expired).
    pub fn expire_access_tokens(&self) {
        self.state().access.clear();
    }

    /// Makes every refresh token invalid too.
    pub fn expire_refresh_tokens(&self) {
        self.state().refresh.clear();
    }

    fn issue(&self, username: &str) -> LoginResponse {
        let mut state = self.state();
        state.next += 1;
        let n = state.next;
        let access = format!("access-{n}");
        let refresh = format!("refresh-{n}");
        state.access.insert(access.clone(), username.to_owned());
        state.refresh.insert(refresh.clone(), username.to_owned());
        LoginResponse {
            access_token: access,
            refresh_token: refresh,
            expires_in: state.expires_in,
            token_type: "Bearer".into(),
            roles: vec![Role::Admin.into()],
            session_id: format!("session-{n}"),
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let token = header.and_then(|h| h.strip_prefix("Bearer "));
        let mut state = self.state();
        match token.and_then(|t| state.access.get(t)).cloned() {
            Some(user) => Ok(user),
            None => {
                state.unauthenticated += 1;
                Err(Status::unauthenticated("access token expired or unknown"))
            }
        }
    }
}

fn card(id: &str) -> CardInfo {
    CardInfo {
        id: id.to_owned(),
        serial_number: "SN-0001".into(),
        label: "alice's card".into(),
        state: CardState::Active.into(),
        owner: "alice@corp.example".into(),
        token_present: true,
        policy: "default".into(),
        keys: vec![CardKey {
            key_id: "01".into(),
            label: "auth".into(),
            algorithm: "EC:P-256".into(),
            public_key_der: vec![0x30, 0x59],
            certificate: None,
        }],
        created_at: 1_700_000_000,
        updated_at: 1_700_000_100,
        ..CardInfo::default()
    }
}

#[tonic::async_trait]
impl AuthService for Fake {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        let request = request.into_inner();
        self.state().logins += 1;
        if request.username != ADMIN || request.password != ADMIN_PASSWORD {
            return Err(Status::unauthenticated("wrong username or password"));
        }
        Ok(Response::new(self.issue(&request.username)))
    }

    async fn refresh(&self, request: Request<RefreshRequest>) -> Result<Response<LoginResponse>, Status> {
        let token = request.into_inner().refresh_token;
        let user = {
            let mut state = self.state();
            state.refreshes += 1;
            // Rotation: a refresh token works once.
            state.refresh.remove(&token)
        };
        match user {
            Some(user) => Ok(Response::new(self.issue(&user))),
            None => Err(Status::unauthenticated("refresh token expired or already used")),
        }
    }

    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
        let user = self.caller(&request)?;
        Ok(Response::new(WhoAmIResponse {
            user_id: format!("id-{user}"),
            username: user,
            roles: vec![Role::Admin.into()],
            expires_at: 1_900_000_000,
            session_id: String::new(),
            api_key_id: String::new(),
        }))
    }

    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        self.caller(&request)?;
        self.state().logouts += 1;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn change_password(
        &self,
        _: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn realm_auth(&self, _: Request<RealmAuthRequest>) -> Result<Response<RealmAuthResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_api_keys(
        &self,
        _: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn revoke_api_key(
        &self,
        _: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<RevokeApiKeyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn request_password_reset(
        &self,
        _: Request<RequestPasswordResetRequest>,
    ) -> Result<Response<RequestPasswordResetResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn reset_password(
        &self,
        _: Request<ResetPasswordRequest>,
    ) -> Result<Response<ResetPasswordResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn validate_code(
        &self,
        _: Request<ValidateCodeRequest>,
    ) -> Result<Response<ValidateCodeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl CardService for Fake {
    async fn list_cards(
        &self,
        request: Request<ListCardsRequest>,
    ) -> Result<Response<ListCardsResponse>, Status> {
        self.caller(&request)?;
        let cards = vec![card("c-1"), card("c-2")];
        Ok(Response::new(ListCardsResponse {
            cards,
            page: Some(PageResponse { next_page_token: "page-2".into(), total_count: 3 }),
        }))
    }

    async fn get_card(&self, request: Request<GetCardRequest>) -> Result<Response<CardInfo>, Status> {
        self.caller(&request)?;
        let id = request.into_inner().id;
        if id == "c-1" {
            Ok(Response::new(card(&id)))
        } else {
            Err(Status::not_found(format!("card {id} not found")))
        }
    }

    async fn register_card(&self, _: Request<RegisterCardRequest>) -> Result<Response<CardInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn issue_card(&self, _: Request<IssueCardRequest>) -> Result<Response<CardInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn disable_card(&self, _: Request<CardActionRequest>) -> Result<Response<CardInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn enable_card(&self, _: Request<CardActionRequest>) -> Result<Response<CardInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn revoke_card(&self, request: Request<RevokeCardRequest>) -> Result<Response<CardInfo>, Status> {
        self.caller(&request)?;
        let request = request.into_inner();
        self.state().revoke_requests.push(request.clone());
        Ok(Response::new(CardInfo {
            state: CardState::Revoked.into(),
            revoke_reason: request.reason,
            ..card(&request.id)
        }))
    }

    async fn pre_update_card(&self, _: Request<PreUpdateCardRequest>) -> Result<Response<CardInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(ListTokensResponse {
            tokens: vec![TokenInfo {
                slot_id: 1,
                label: "card-1".into(),
                serial_number: "SN-0001".into(),
                present: true,
                available: true,
                role: "card".into(),
                card_id: "c-1".into(),
                ..TokenInfo::default()
            }],
        }))
    }

    async fn list_readers(
        &self,
        request: Request<ListReadersRequest>,
    ) -> Result<Response<ListReadersResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(ListReadersResponse {
            readers: vec![
                Reader {
                    name: "Virtual PCD 00 00".into(),
                    card_present: true,
                    atr: "3b8880".into(),
                    card_serial: "8899aabbccddeeff".into(),
                },
                Reader { name: "Virtual PCD 00 01".into(), ..Reader::default() },
            ],
            service_available: true,
        }))
    }

    async fn change_pin(&self, _: Request<ChangePinRequest>) -> Result<Response<PinChanged>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn unblock_pin(&self, _: Request<UnblockPinRequest>) -> Result<Response<PinChanged>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchReadersStream = tonic::codegen::BoxStream<ReaderEvent>;

    async fn watch_readers(
        &self,
        _: Request<WatchReadersRequest>,
    ) -> Result<Response<Self::WatchReadersStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl UserService for Fake {
    async fn create_user(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        self.caller(&request)?;
        let request = request.into_inner();
        self.state().created_users.push(request.clone());
        Ok(Response::new(User {
            id: format!("id-{}", request.username),
            username: request.username,
            roles: request.roles,
            enabled: true,
            created_at: 1_700_000_000,
            ..Default::default()
        }))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(ListUsersResponse { users: vec![], page: Some(PageResponse::default()) }))
    }

    async fn set_user_enabled(&self, _: Request<SetUserEnabledRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_user(&self, _: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_current_user(&self, _: Request<GetCurrentUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn check_username(
        &self,
        _: Request<CheckUsernameRequest>,
    ) -> Result<Response<CheckUsernameResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn remove_user(
        &self,
        _: Request<RemoveUserRequest>,
    ) -> Result<Response<RemoveUserResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_user(&self, _: Request<UpdateUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_current_user(
        &self,
        _: Request<UpdateCurrentUserRequest>,
    ) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_email(&self, _: Request<UpdateEmailRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_credentials(
        &self,
        _: Request<UpdateCredentialsRequest>,
    ) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn check_email(
        &self,
        _: Request<CheckEmailRequest>,
    ) -> Result<Response<CheckEmailResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A running fake daemon; stops when dropped.
#[derive(Debug)]
pub struct FakeDaemon {
    pub fake: Fake,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeDaemon {
    /// Starts a fake daemon on a free loopback port (access tokens valid for `expires_in` s).
    pub async fn start(expires_in: u32) -> std::io::Result<Self> {
        let fake = Fake { state: Arc::new(Mutex::new(FakeState { expires_in, ..FakeState::default() })) };
        let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = incoming.local_addr()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .add_service(AuthServiceServer::new(fake.clone()))
            .add_service(CardServiceServer::new(fake.clone()))
            .add_service(UserServiceServer::new(fake.clone()))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        tokio::spawn(server);
        Ok(Self { fake, addr, shutdown: Some(shutdown) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
