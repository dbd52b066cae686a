//! [`CardhsmClient`]: the typed client over the cardhsm.v1 services. It owns the channel from
//! `connect`, logs in, keeps the token pair in shared [`crate::auth`] state, attaches the bearer
//! token through [`AuthInterceptor`], and refreshes transparently before expiry or after one
//! `UNAUTHENTICATED`. The CLI and the end-to-end tests both sit on top of it.

use crate::auth::{AuthInterceptor, AuthState, Shared, TokenListener, TokenPair, now_unix};
use crate::connect::ConnectOptions;
use crate::error::ClientError;
use crate::secret::SecretString;
use cardhsm_proto::v1::auth_service_client::AuthServiceClient;
use cardhsm_proto::v1::card_service_client::CardServiceClient;
use cardhsm_proto::v1::certificate_store_service_client::CertificateStoreServiceClient;
use cardhsm_proto::v1::issuance_service_client::IssuanceServiceClient;
use cardhsm_proto::v1::user_service_client::UserServiceClient;
use cardhsm_proto::v1::{
    Authority, CertificateSummary, CreateAuthorityRequest, Crl, FindCertificatesRequest,
    FindCertificatesResponse, GetAuthorityRequest, GetCrlRequest, GetProfileRequest,
    ImportAuthorityCertificateRequest, IssueCertificateRequest, IssuedCertificate, ListAuthoritiesRequest,
    ListProfilesRequest, Profile, ProfileParameter, RevokeCertificateRequest, RevokeCertificatesRequest,
};
use cardhsm_proto::v1::{
    CardActionRequest, CardInfo, CardState, CreateUserRequest, GetCardRequest, IssueCardRequest,
    ListCardsRequest, ListCardsResponse, ListTokensRequest, ListUsersRequest, ListUsersResponse,
    LoginRequest, LoginResponse, PageRequest, PreUpdateCardRequest, RefreshRequest, RegisterCardRequest,
    RevokeCardRequest, RevokeReason, Role, TokenInfo, User, WhoAmIRequest, WhoAmIResponse,
};
use cardhsm_proto::v1::{
    CompleteCsrRequest, CreateCsrRequest, CreateCsrResponse, DeleteCertificateBySubjectRequest,
    DeleteCertificateBySubjectResponse, DeleteCertificateRequest, ImportCertificateRequest,
    ImportCertificateResponse, ListCertificatesRequest, StoredCertificate,
};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The channel type of every authenticated generated client: a tonic channel behind the
/// [`AuthInterceptor`].
pub type AuthedChannel = InterceptedService<Channel, AuthInterceptor>;

/// What a successful login or refresh tells the caller (the tokens themselves stay inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    /// The roles the daemon granted.
    pub roles: Vec<Role>,
    /// Unix seconds when the new access token expires.
    pub access_expires_at: i64,
}

/// A connection to cardhsmd plus the credentials used on it.
///
/// Clones share the channel *and* the tokens (a refresh through one is seen by all);
/// [`CardhsmClient::with_access_token`] and [`CardhsmClient::with_tokens`] give a client with
/// credentials of its own over the same channel.
#[derive(Clone)]
pub struct CardhsmClient {
    channel: Channel,
    endpoint: Option<String>,
    shared: Arc<Shared>,
}

/// `|channel, request| <Client>::new(channel).<method>(request)` as a retryable call.
macro_rules! rpc {
    ($client:ident, $method:ident) => {
        |channel, request| async move { $client::new(channel).$method(request).await }
    };
}

impl CardhsmClient {
    /// Connects to `endpoint` (`http://…` or `https://…` with the system trust store), not logged in.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, ClientError> {
        Self::connect_with(&ConnectOptions::new(endpoint)).await
    }

    /// Connects with explicit options (CA file, client certificate for mTLS, timeouts).
    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, ClientError> {
        let channel = options.connect().await?;
        Ok(Self { endpoint: Some(options.endpoint().to_owned()), ..Self::from_channel(channel) })
    }

    /// A client over a channel built elsewhere, not logged in.
    pub fn from_channel(channel: Channel) -> Self {
        Self { channel, endpoint: None, shared: Shared::with_state(AuthState::default()) }
    }

    /// This client's channel with a bare access token of its own (no refresh token, unknown
    /// expiry: it is sent as is and never refreshed). Meant for negative tests: expired, forged
    /// or revoked tokens.
    #[must_use]
    pub fn with_access_token(self, token: impl Into<SecretString>) -> Self {
        let state = AuthState { access: Some(token.into()), ..AuthState::default() };
        Self { shared: Shared::with_state(state), ..self }
    }

    /// This client's channel with a token pair of its own (e.g. loaded from a session file).
    #[must_use]
    pub fn with_tokens(self, tokens: TokenPair) -> Self {
        let state = AuthState {
            access: Some(tokens.access_token),
            refresh: Some(tokens.refresh_token),
            expires_at: Some(tokens.access_expires_at),
            generation: 0,
        };
        Self { shared: Shared::with_state(state), ..self }
    }

    /// Calls `listener` with the new pair after every login and refresh (to persist rotated
    /// tokens). Replaces any earlier listener; applies to the clones sharing these tokens.
    pub fn on_tokens_changed(&self, listener: impl Fn(&TokenPair) + Send + Sync + 'static) {
        self.shared.set_listener(Some(Arc::new(listener) as TokenListener));
    }

    /// The current token pair, when logged in (a bare access token gives `None`).
    pub fn tokens(&self) -> Option<TokenPair> {
        self.shared.read().pair()
    }

    /// Whether the client holds an access token.
    pub fn is_authenticated(&self) -> bool {
        self.shared.read().access.is_some()
    }

    /// The endpoint this client connected to (`None` for [`CardhsmClient::from_channel`]).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The underlying channel, without the authorization header.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The interceptor that adds this client's current access token, for other generated clients.
    pub fn interceptor(&self) -> AuthInterceptor {
        AuthInterceptor::new(Arc::clone(&self.shared))
    }

    /// The generated `AuthService` client with the current access token attached; answers are
    /// raw `tonic::Status`, and nothing is refreshed.
    pub fn auth_raw(&self) -> AuthServiceClient<AuthedChannel> {
        AuthServiceClient::new(self.authed_channel())
    }

    /// The generated `CardService` client with the current access token attached (no refresh).
    pub fn cards_raw(&self) -> CardServiceClient<AuthedChannel> {
        CardServiceClient::new(self.authed_channel())
    }

    /// The generated `UserService` client with the current access token attached (no refresh).
    pub fn users_raw(&self) -> UserServiceClient<AuthedChannel> {
        UserServiceClient::new(self.authed_channel())
    }

    /// The generated `IssuanceService` client with the current access token attached (no refresh).
    pub fn issuance_raw(&self) -> IssuanceServiceClient<AuthedChannel> {
        IssuanceServiceClient::new(self.authed_channel())
    }

    // ---- AuthService ----

    /// `AuthService.Login`: exchanges a username and password for a token pair and keeps it.
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginInfo, ClientError> {
        let _refreshing = self.shared.refresh_lock.lock().await;
        let request = LoginRequest { username: username.to_owned(), password: password.to_owned() };
        let response = AuthServiceClient::new(self.channel.clone()).login(request).await?;
        Ok(self.store(response.into_inner()))
    }

    /// `AuthService.Refresh`: spends the refresh token for a new pair now and keeps it.
    pub async fn refresh(&self) -> Result<LoginInfo, ClientError> {
        self.refresh_from(None).await?.ok_or(ClientError::NoRefreshToken)
    }

    /// `AuthService.WhoAmI`: the caller as the daemon sees it.
    pub async fn who_am_i(&self) -> Result<WhoAmIResponse, ClientError> {
        self.authed(WhoAmIRequest {}, rpc!(AuthServiceClient, who_am_i)).await
    }

    // ---- CardService ----

    /// `CardService.ListCards`: one page of `owner`'s cards, optionally in one state only
    /// (`page_size` 0 = the server's default, `page_token` "" = the first page).
    pub async fn list_cards(
        &self,
        owner: &str,
        state: Option<CardState>,
        page_size: u32,
        page_token: &str,
    ) -> Result<ListCardsResponse, ClientError> {
        let request = ListCardsRequest {
            owner: owner.to_owned(),
            state: state.unwrap_or(CardState::Unspecified).into(),
            page: Some(PageRequest { page_size, page_token: page_token.to_owned() }),
        };
        self.authed(request, rpc!(CardServiceClient, list_cards)).await
    }

    /// `CardService.GetCard`.
    pub async fn get_card(&self, id: &str) -> Result<CardInfo, ClientError> {
        self.authed(GetCardRequest { id: id.to_owned() }, rpc!(CardServiceClient, get_card)).await
    }

    /// `CardService.RegisterCard`: binds a token to an owner (state ASSIGNED).
    pub async fn register_card(&self, request: RegisterCardRequest) -> Result<CardInfo, ClientError> {
        self.authed(request, rpc!(CardServiceClient, register_card)).await
    }

    /// `CardService.IssueCard`: generates the card's keys (state ACTIVE).
    pub async fn issue_card(&self, id: &str) -> Result<CardInfo, ClientError> {
        self.authed(
            IssueCardRequest { id: id.to_owned(), reader: String::new() },
            rpc!(CardServiceClient, issue_card),
        )
        .await
    }

    /// `CardService.DisableCard`, with a comment for the audit log ("" for none).
    pub async fn disable_card(&self, id: &str, comment: &str) -> Result<CardInfo, ClientError> {
        let request = CardActionRequest { id: id.to_owned(), comment: comment.to_owned() };
        self.authed(request, rpc!(CardServiceClient, disable_card)).await
    }

    /// `CardService.EnableCard`, with a comment for the audit log ("" for none).
    pub async fn enable_card(&self, id: &str, comment: &str) -> Result<CardInfo, ClientError> {
        let request = CardActionRequest { id: id.to_owned(), comment: comment.to_owned() };
        self.authed(request, rpc!(CardServiceClient, enable_card)).await
    }

    /// `CardService.RevokeCard`.
    pub async fn revoke_card(
        &self,
        id: &str,
        reason: RevokeReason,
        comment: &str,
    ) -> Result<CardInfo, ClientError> {
        let request =
            RevokeCardRequest { id: id.to_owned(), reason: reason.into(), comment: comment.to_owned() };
        self.authed(request, rpc!(CardServiceClient, revoke_card)).await
    }

    /// `CardService.PreUpdateCard`: marks an ACTIVE card for update to `policy` ("" = same policy).
    pub async fn pre_update_card(&self, id: &str, policy: &str) -> Result<CardInfo, ClientError> {
        let request = PreUpdateCardRequest { id: id.to_owned(), policy: policy.to_owned() };
        self.authed(request, rpc!(CardServiceClient, pre_update_card)).await
    }

    /// `CardService.ListTokens`: the PKCS#11 tokens the daemon sees.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        Ok(self.authed(ListTokensRequest {}, rpc!(CardServiceClient, list_tokens)).await?.tokens)
    }

    /// `CardService.ListReaders`: the PC/SC readers, the card in each, and whether pcscd answers.
    pub async fn list_readers(&self) -> Result<cardhsm_proto::v1::ListReadersResponse, ClientError> {
        self.authed(cardhsm_proto::v1::ListReadersRequest {}, rpc!(CardServiceClient, list_readers)).await
    }

    /// `CardService.WatchReaders`: the readers now, then every change, until dropped.
    pub async fn watch_readers(
        &self,
    ) -> Result<tonic::Streaming<cardhsm_proto::v1::ReaderEvent>, ClientError> {
        self.authed(cardhsm_proto::v1::WatchReadersRequest {}, rpc!(CardServiceClient, watch_readers)).await
    }

    // ---- UserService ----

    /// `UserService.CreateUser`.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        roles: &[Role],
    ) -> Result<User, ClientError> {
        let request = CreateUserRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            roles: roles.iter().map(|&role| role.into()).collect(),
            ..Default::default()
        };
        self.authed(request, rpc!(UserServiceClient, create_user)).await
    }

    /// `UserService.ListUsers`: one page of users.
    pub async fn list_users(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<ListUsersResponse, ClientError> {
        let request = ListUsersRequest {
            page: Some(PageRequest { page_size, page_token: page_token.to_owned() }),
            ..Default::default()
        };
        self.authed(request, rpc!(UserServiceClient, list_users)).await
    }

    // ---- IssuanceService ----

    /// `IssuanceService.CreateAuthority`: a CA key pair on the daemon token and a root, an
    /// intermediate or (external) a CSR to have signed.
    pub async fn create_authority(&self, request: CreateAuthorityRequest) -> Result<Authority, ClientError> {
        self.authed(request, rpc!(IssuanceServiceClient, create_authority)).await
    }

    /// `IssuanceService.ImportAuthorityCertificate`: installs an external authority's certificate
    /// (PEM, the authority's certificate first, optionally followed by its issuers).
    pub async fn import_authority_certificate(
        &self,
        id: &str,
        certificate_pem: &str,
    ) -> Result<Authority, ClientError> {
        let request = ImportAuthorityCertificateRequest {
            id: id.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
        };
        self.authed(request, rpc!(IssuanceServiceClient, import_authority_certificate)).await
    }

    /// `IssuanceService.ListAuthorities`.
    pub async fn list_authorities(&self) -> Result<Vec<Authority>, ClientError> {
        let response =
            self.authed(ListAuthoritiesRequest {}, rpc!(IssuanceServiceClient, list_authorities)).await?;
        Ok(response.authorities)
    }

    /// `IssuanceService.GetAuthority`: one authority with its certificate chain.
    pub async fn get_authority(&self, id: &str) -> Result<Authority, ClientError> {
        let request = GetAuthorityRequest { id: id.to_owned() };
        self.authed(request, rpc!(IssuanceServiceClient, get_authority)).await
    }

    /// `IssuanceService.ListProfiles`.
    pub async fn list_profiles(&self) -> Result<Vec<Profile>, ClientError> {
        let response =
            self.authed(ListProfilesRequest {}, rpc!(IssuanceServiceClient, list_profiles)).await?;
        Ok(response.profiles)
    }

    /// `IssuanceService.GetProfile`.
    pub async fn get_profile(&self, id: &str) -> Result<Profile, ClientError> {
        let request = GetProfileRequest { id: id.to_owned() };
        self.authed(request, rpc!(IssuanceServiceClient, get_profile)).await
    }

    /// `IssuanceService.GetProfileParameters`.
    pub async fn get_profile_parameters(&self, id: &str) -> Result<Vec<ProfileParameter>, ClientError> {
        let request = GetProfileRequest { id: id.to_owned() };
        Ok(self.authed(request, rpc!(IssuanceServiceClient, get_profile_parameters)).await?.parameters)
    }

    /// `IssuanceService.GetProfileSubjectDn`: the profile's subject-DN template.
    pub async fn get_profile_subject_dn(&self, id: &str) -> Result<String, ClientError> {
        let request = GetProfileRequest { id: id.to_owned() };
        Ok(self.authed(request, rpc!(IssuanceServiceClient, get_profile_subject_dn)).await?.subject_dn)
    }

    /// `IssuanceService.IssueCertificate`. Build the request with `..Default::default()`: the
    /// message grows optional fields.
    pub async fn issue_certificate(
        &self,
        request: IssueCertificateRequest,
    ) -> Result<IssuedCertificate, ClientError> {
        self.authed(request, rpc!(IssuanceServiceClient, issue_certificate)).await
    }

    /// `IssuanceService.FindCertificates`: one page of certificates by common name and/or serial
    /// ("" = any; `page_size` 0 = the server's default, `page_token` "" = the first page).
    pub async fn find_certificates(
        &self,
        common_name: &str,
        serial_number: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<FindCertificatesResponse, ClientError> {
        let request = FindCertificatesRequest {
            common_name: common_name.to_owned(),
            serial_number: serial_number.to_owned(),
            page: Some(PageRequest { page_size, page_token: page_token.to_owned() }),
        };
        self.authed(request, rpc!(IssuanceServiceClient, find_certificates)).await
    }

    /// `IssuanceService.RevokeCertificates`: revokes (holds, releases) certificates by id with an
    /// RFC 5280 reason code, all or nothing.
    pub async fn revoke_certificates(
        &self,
        ids: &[String],
        reason_code: u32,
    ) -> Result<Vec<CertificateSummary>, ClientError> {
        let request = RevokeCertificatesRequest { reason_code, ids: ids.to_vec() };
        Ok(self.authed(request, rpc!(IssuanceServiceClient, revoke_certificates)).await?.certificates)
    }

    /// `IssuanceService.RevokeCertificate`: one certificate named by profile and serial (hex).
    pub async fn revoke_certificate(
        &self,
        profile_id: &str,
        serial_number: &str,
        reason_code: u32,
    ) -> Result<CertificateSummary, ClientError> {
        let request = RevokeCertificateRequest {
            profile_id: profile_id.to_owned(),
            serial_number: serial_number.to_owned(),
            reason_code,
        };
        self.authed(request, rpc!(IssuanceServiceClient, revoke_certificate)).await
    }

    /// `IssuanceService.GetCrl`: the authority's latest CRL (DER and PEM).
    pub async fn get_crl(&self, authority_id: &str) -> Result<Crl, ClientError> {
        let request = GetCrlRequest { authority_id: authority_id.to_owned() };
        self.authed(request, rpc!(IssuanceServiceClient, get_crl)).await
    }

    // ---- token handling ----

    fn authed_channel(&self) -> AuthedChannel {
        InterceptedService::new(self.channel.clone(), self.interceptor())
    }

    /// Runs one authenticated call: refreshes first when the access token is about to expire,
    /// and after an `UNAUTHENTICATED` answer refreshes and retries once.
    async fn authed<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(AuthedChannel, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let refreshed = self.refresh_if_due().await?;
        let (generation, can_refresh) = {
            let state = self.shared.read();
            (state.generation, state.refresh.is_some())
        };
        match call(self.authed_channel(), request.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::Unauthenticated && can_refresh && !refreshed => {
                self.refresh_from(Some(generation)).await?;
                Ok(call(self.authed_channel(), request).await?.into_inner())
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Refreshes when the access token expires within [`crate::auth::REFRESH_MARGIN_SECS`];
    /// `true` when the token is new (refreshed here or by a concurrent call).
    async fn refresh_if_due(&self) -> Result<bool, ClientError> {
        let (due, generation) = {
            let state = self.shared.read();
            (state.needs_refresh(now_unix()), state.generation)
        };
        if due {
            self.refresh_from(Some(generation)).await?;
        }
        Ok(due)
    }

    /// Spends the refresh token, unless the tokens changed since `seen_generation` (another call
    /// already refreshed: `Ok(None)`).
    async fn refresh_from(&self, seen_generation: Option<u64>) -> Result<Option<LoginInfo>, ClientError> {
        let _refreshing = self.shared.refresh_lock.lock().await;
        let refresh_token = {
            let state = self.shared.read();
            if seen_generation.is_some_and(|seen| seen != state.generation) {
                return Ok(None);
            }
            state.refresh.clone().ok_or(ClientError::NoRefreshToken)?
        };
        let request = RefreshRequest { refresh_token: refresh_token.expose().to_owned() };
        let response = AuthServiceClient::new(self.channel.clone()).refresh(request).await?;
        Ok(Some(self.store(response.into_inner())))
    }

    /// Keeps the pair of a login or refresh answer and tells the listener.
    fn store(&self, mut response: LoginResponse) -> LoginInfo {
        let access_expires_at = now_unix().saturating_add(i64::from(response.expires_in));
        let access = SecretString::new(std::mem::take(&mut response.access_token));
        let refresh = SecretString::new(std::mem::take(&mut response.refresh_token));
        let roles = response.roles.iter().map(|&r| Role::try_from(r).unwrap_or(Role::Unspecified)).collect();
        let pair = {
            let mut state = self.shared.write();
            state.access = Some(access);
            if !refresh.is_empty() {
                state.refresh = Some(refresh);
            }
            state.expires_at = Some(access_expires_at);
            state.generation = state.generation.wrapping_add(1);
            state.pair()
        };
        if let Some(pair) = pair {
            self.shared.notify(&pair);
        }
        LoginInfo { roles, access_expires_at }
    }
}

impl fmt::Debug for CardhsmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.read();
        f.debug_struct("CardhsmClient")
            .field("endpoint", &self.endpoint)
            .field("authenticated", &state.access.is_some())
            .field("access_expires_at", &state.expires_at)
            .finish_non_exhaustive()
    }
}

/// `CertificateStoreService`: the certificates (and their keys) on one token, named by serial or
/// label; certificates by id (hex CKA_ID) or SHA-1 fingerprint.
impl CardhsmClient {
    /// The generated `CertificateStoreService` client with the current access token attached
    /// (no refresh).
    pub fn certstore_raw(&self) -> CertificateStoreServiceClient<AuthedChannel> {
        CertificateStoreServiceClient::new(self.authed_channel())
    }

    /// `CertificateStoreService.ListCertificates`: every certificate on `token`, or those `id`
    /// names ("" = all).
    pub async fn list_token_certificates(
        &self,
        token: &str,
        id: &str,
    ) -> Result<Vec<StoredCertificate>, ClientError> {
        let request = ListCertificatesRequest { token: token.to_owned(), id: id.to_owned() };
        Ok(self.authed(request, rpc!(CertificateStoreServiceClient, list_certificates)).await?.certificates)
    }

    /// `CertificateStoreService.ImportCertificate`: a certificate with its private key. Build the
    /// request with `..Default::default()`.
    pub async fn import_token_certificate(
        &self,
        request: ImportCertificateRequest,
    ) -> Result<ImportCertificateResponse, ClientError> {
        self.authed(request, rpc!(CertificateStoreServiceClient, import_certificate)).await
    }

    /// `CertificateStoreService.DeleteCertificate`: the certificate and its key pair; returns the
    /// deleted fingerprints.
    pub async fn delete_token_certificate(&self, token: &str, id: &str) -> Result<Vec<String>, ClientError> {
        let request = DeleteCertificateRequest { token: token.to_owned(), id: id.to_owned() };
        Ok(self.authed(request, rpc!(CertificateStoreServiceClient, delete_certificate)).await?.deleted)
    }

    /// `CertificateStoreService.CreateCsr`: a key pair generated on the token and a CSR it signed.
    pub async fn create_token_csr(
        &self,
        request: CreateCsrRequest,
    ) -> Result<CreateCsrResponse, ClientError> {
        self.authed(request, rpc!(CertificateStoreServiceClient, create_csr)).await
    }

    /// `CertificateStoreService.CompleteCsr`: stores the certificate (DER or PEM) a CA signed for
    /// a pending CSR.
    pub async fn complete_token_csr(
        &self,
        token: &str,
        csr_id: &str,
        certificate: Vec<u8>,
    ) -> Result<StoredCertificate, ClientError> {
        let request = CompleteCsrRequest { token: token.to_owned(), csr_id: csr_id.to_owned(), certificate };
        self.authed(request, rpc!(CertificateStoreServiceClient, complete_csr)).await
    }

    /// `CertificateStoreService.DeleteCertificateBySubject`: every certificate and pending CSR
    /// whose subject CN is `subject_cn`.
    pub async fn delete_token_certificates_by_subject(
        &self,
        token: &str,
        subject_cn: &str,
    ) -> Result<DeleteCertificateBySubjectResponse, ClientError> {
        let request =
            DeleteCertificateBySubjectRequest { token: token.to_owned(), subject_cn: subject_cn.to_owned() };
        self.authed(request, rpc!(CertificateStoreServiceClient, delete_certificate_by_subject)).await
    }
}

/// Sessions (`SessionService`, administrators), the caller's own session end, and API keys.
impl CardhsmClient {
    /// The generated `SessionService` client with the current access token attached (no refresh).
    pub fn sessions_raw(
        &self,
    ) -> cardhsm_proto::v1::session_service_client::SessionServiceClient<AuthedChannel> {
        cardhsm_proto::v1::session_service_client::SessionServiceClient::new(self.authed_channel())
    }

    /// `AuthService.Logout`: ends this client's session on the daemon (its access tokens stop
    /// working at once, its refresh token is revoked) and forgets the tokens here.
    pub async fn logout(&self) -> Result<(), ClientError> {
        use cardhsm_proto::v1::LogoutRequest;
        self.authed(LogoutRequest {}, rpc!(AuthServiceClient, logout)).await?;
        let mut state = self.shared.write();
        state.access = None;
        state.refresh = None;
        state.expires_at = None;
        state.generation = state.generation.wrapping_add(1);
        Ok(())
    }

    /// `AuthService.ChangePassword`: every session of the user ends, this one included.
    pub async fn change_password(
        &self,
        old_password: &str,
        new_password: &str,
        repeated_new_password: &str,
    ) -> Result<(), ClientError> {
        let request = cardhsm_proto::v1::ChangePasswordRequest {
            old_password: old_password.to_owned(),
            new_password: new_password.to_owned(),
            repeated_new_password: repeated_new_password.to_owned(),
        };
        self.authed(request, rpc!(AuthServiceClient, change_password)).await?;
        Ok(())
    }

    /// `AuthService.RealmAuth`: an API key for `realm` (needs no session). The answer holds the
    /// key itself, shown this once.
    pub async fn realm_auth(
        &self,
        realm: &str,
        username: &str,
        password: &str,
    ) -> Result<cardhsm_proto::v1::RealmAuthResponse, ClientError> {
        let request = cardhsm_proto::v1::RealmAuthRequest {
            realm: realm.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        };
        Ok(AuthServiceClient::new(self.channel.clone()).realm_auth(request).await?.into_inner())
    }

    /// `AuthService.ListApiKeys`: the caller's API keys (an administrator's: everyone's).
    pub async fn list_api_keys(&self) -> Result<Vec<cardhsm_proto::v1::ApiKey>, ClientError> {
        let request = cardhsm_proto::v1::ListApiKeysRequest {};
        Ok(self.authed(request, rpc!(AuthServiceClient, list_api_keys)).await?.keys)
    }

    /// `AuthService.RevokeApiKey`.
    pub async fn revoke_api_key(&self, id: &str) -> Result<(), ClientError> {
        let request = cardhsm_proto::v1::RevokeApiKeyRequest { id: id.to_owned() };
        self.authed(request, rpc!(AuthServiceClient, revoke_api_key)).await?;
        Ok(())
    }

    /// `SessionService.ListActiveSessions`: one page (`number` 0 = 200, from record `start`),
    /// optionally of one user.
    pub async fn list_active_sessions(
        &self,
        number: u32,
        start: u32,
        name: &str,
    ) -> Result<cardhsm_proto::v1::ListActiveSessionsResponse, ClientError> {
        use cardhsm_proto::v1::session_service_client::SessionServiceClient;
        let request = cardhsm_proto::v1::ListActiveSessionsRequest { number, start, name: name.to_owned() };
        self.authed(request, rpc!(SessionServiceClient, list_active_sessions)).await
    }

    /// `SessionService.DeleteSession`.
    pub async fn delete_session(&self, id: &str) -> Result<(), ClientError> {
        use cardhsm_proto::v1::session_service_client::SessionServiceClient;
        let request = cardhsm_proto::v1::DeleteSessionRequest { id: id.to_owned() };
        self.authed(request, rpc!(SessionServiceClient, delete_session)).await?;
        Ok(())
    }

    /// `SessionService.DeleteAllSessions`: every session but the caller's; how many ended.
    pub async fn delete_all_sessions(&self) -> Result<u32, ClientError> {
        use cardhsm_proto::v1::session_service_client::SessionServiceClient;
        let request = cardhsm_proto::v1::DeleteAllSessionsRequest {};
        Ok(self.authed(request, rpc!(SessionServiceClient, delete_all_sessions)).await?.deleted)
    }

    /// `SessionService.SetIdleTimeout` (0 = none); every role's timeout after the change.
    pub async fn set_idle_timeout(
        &self,
        role: Role,
        minutes: u32,
    ) -> Result<Vec<cardhsm_proto::v1::IdleTimeout>, ClientError> {
        use cardhsm_proto::v1::session_service_client::SessionServiceClient;
        let request = cardhsm_proto::v1::SetIdleTimeoutRequest { role: role.into(), minutes };
        Ok(self.authed(request, rpc!(SessionServiceClient, set_idle_timeout)).await?.timeouts)
    }
}

/// Organizations (`OrganizationService`): management by administrators, reads by operators too.
impl CardhsmClient {
    /// `OrganizationService.CreateOrganization`.
    pub async fn create_organization(
        &self,
        request: cardhsm_proto::v1::CreateOrganizationRequest,
    ) -> Result<cardhsm_proto::v1::Organization, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        self.authed(request, rpc!(OrganizationServiceClient, create_organization)).await
    }

    /// `OrganizationService.UpdateOrganization`: replaces name and parameters.
    pub async fn update_organization(
        &self,
        request: cardhsm_proto::v1::UpdateOrganizationRequest,
    ) -> Result<cardhsm_proto::v1::Organization, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        self.authed(request, rpc!(OrganizationServiceClient, update_organization)).await
    }

    /// `OrganizationService.GetOrganization`.
    pub async fn get_organization(&self, id: &str) -> Result<cardhsm_proto::v1::Organization, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        let request = cardhsm_proto::v1::GetOrganizationRequest { id: id.to_owned() };
        self.authed(request, rpc!(OrganizationServiceClient, get_organization)).await
    }

    /// `OrganizationService.ListOrganizations`: page `page` (0-based) of `size` (0 = 20, at most 50).
    pub async fn list_organizations(
        &self,
        page: u32,
        size: u32,
    ) -> Result<cardhsm_proto::v1::ListOrganizationsResponse, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        let request = cardhsm_proto::v1::ListOrganizationsRequest { page, size };
        self.authed(request, rpc!(OrganizationServiceClient, list_organizations)).await
    }

    /// `OrganizationService.CheckOrganization`: whether the name is free.
    pub async fn check_organization(&self, name: &str) -> Result<bool, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        let request = cardhsm_proto::v1::CheckOrganizationRequest { name: name.to_owned() };
        Ok(self.authed(request, rpc!(OrganizationServiceClient, check_organization)).await?.available)
    }

    /// `OrganizationService.ListOrganizationAuthorities`.
    pub async fn list_organization_authorities(
        &self,
        organization_id: &str,
    ) -> Result<Vec<cardhsm_proto::v1::OrganizationAuthority>, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        let request = cardhsm_proto::v1::ListOrganizationAuthoritiesRequest {
            organization_id: organization_id.to_owned(),
        };
        Ok(self
            .authed(request, rpc!(OrganizationServiceClient, list_organization_authorities))
            .await?
            .authorities)
    }

    /// `OrganizationService.AddOrganizationAuthority`.
    pub async fn add_organization_authority(
        &self,
        request: cardhsm_proto::v1::AddOrganizationAuthorityRequest,
    ) -> Result<cardhsm_proto::v1::OrganizationAuthority, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        self.authed(request, rpc!(OrganizationServiceClient, add_organization_authority)).await
    }

    /// `OrganizationService.UpdateOrganizationAuthority`: unset fields stay.
    pub async fn update_organization_authority(
        &self,
        request: cardhsm_proto::v1::UpdateOrganizationAuthorityRequest,
    ) -> Result<cardhsm_proto::v1::OrganizationAuthority, ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        self.authed(request, rpc!(OrganizationServiceClient, update_organization_authority)).await
    }

    /// `OrganizationService.RemoveOrganizationAuthority`.
    pub async fn remove_organization_authority(
        &self,
        organization_id: &str,
        authority_id: &str,
    ) -> Result<(), ClientError> {
        use cardhsm_proto::v1::organization_service_client::OrganizationServiceClient;
        let request = cardhsm_proto::v1::RemoveOrganizationAuthorityRequest {
            organization_id: organization_id.to_owned(),
            authority_id: authority_id.to_owned(),
        };
        self.authed(request, rpc!(OrganizationServiceClient, remove_organization_authority)).await?;
        Ok(())
    }
}

/// Administrators (`AdminService`): administrators read, super administrators change.
impl CardhsmClient {
    /// The generated `AdminService` client with the current access token attached (no refresh).
    pub fn admins_raw(&self) -> cardhsm_proto::v1::admin_service_client::AdminServiceClient<AuthedChannel> {
        cardhsm_proto::v1::admin_service_client::AdminServiceClient::new(self.authed_channel())
    }

    /// `AdminService.ListAdmins`: one page (`page_size` 0 = 100), optionally searched.
    pub async fn list_admins(
        &self,
        page_size: u32,
        page_token: &str,
        search: &str,
    ) -> Result<cardhsm_proto::v1::ListAdminsResponse, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        let request = cardhsm_proto::v1::ListAdminsRequest {
            page: Some(PageRequest { page_size, page_token: page_token.to_owned() }),
            search: search.to_owned(),
        };
        self.authed(request, rpc!(AdminServiceClient, list_admins)).await
    }

    /// `AdminService.GetAdmin`.
    pub async fn get_admin(&self, uuid: &str) -> Result<cardhsm_proto::v1::Admin, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        let request = cardhsm_proto::v1::GetAdminRequest { uuid: uuid.to_owned() };
        self.authed(request, rpc!(AdminServiceClient, get_admin)).await
    }

    /// `AdminService.CreateAdmin`.
    pub async fn create_admin(
        &self,
        request: cardhsm_proto::v1::CreateAdminRequest,
    ) -> Result<cardhsm_proto::v1::Admin, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        self.authed(request, rpc!(AdminServiceClient, create_admin)).await
    }

    /// `AdminService.EditAdmin`.
    pub async fn edit_admin(
        &self,
        request: cardhsm_proto::v1::EditAdminRequest,
    ) -> Result<cardhsm_proto::v1::Admin, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        self.authed(request, rpc!(AdminServiceClient, edit_admin)).await
    }

    /// `AdminService.EnableAdmins`: the unknown uuids come back in `not_found`.
    pub async fn enable_admins(
        &self,
        uuids: Vec<String>,
    ) -> Result<cardhsm_proto::v1::BulkAdminsResponse, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        let request = cardhsm_proto::v1::BulkAdminsRequest { uuids };
        self.authed(request, rpc!(AdminServiceClient, enable_admins)).await
    }

    /// `AdminService.DisableAdmins`: the unknown uuids come back in `not_found`.
    pub async fn disable_admins(
        &self,
        uuids: Vec<String>,
    ) -> Result<cardhsm_proto::v1::BulkAdminsResponse, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        let request = cardhsm_proto::v1::BulkAdminsRequest { uuids };
        self.authed(request, rpc!(AdminServiceClient, disable_admins)).await
    }

    /// `AdminService.DeleteAdmins`: the unknown uuids come back in `not_found`.
    pub async fn delete_admins(
        &self,
        uuids: Vec<String>,
    ) -> Result<cardhsm_proto::v1::BulkAdminsResponse, ClientError> {
        use cardhsm_proto::v1::admin_service_client::AdminServiceClient;
        let request = cardhsm_proto::v1::BulkAdminsRequest { uuids };
        self.authed(request, rpc!(AdminServiceClient, delete_admins)).await
    }
}

/// Any RPC with this client's token handling (refresh before expiry, one retry after
/// UNAUTHENTICATED), for services without typed wrappers here, e.g.
/// `client.call(req, |ch, r| async move { EcosystemServiceClient::new(ch).get_ecosystem(r).await })`.
impl CardhsmClient {
    pub async fn call<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(AuthedChannel, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.authed(request, call).await
    }
}

/// Batches (`BatchService`): one generic call, so the CLI (`cardhsm batch …`) and the tests use
/// the generated client with this client's token handling (refresh before expiry, one retry
/// after UNAUTHENTICATED), streams included.
impl CardhsmClient {
    /// One `BatchService` call: `call` gets a generated client and the request, e.g.
    /// `client.batch_call(req, |mut c, r| async move { c.get_batch(r).await })`.
    pub async fn batch_call<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(cardhsm_proto::v1::batch_service_client::BatchServiceClient<AuthedChannel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        use cardhsm_proto::v1::batch_service_client::BatchServiceClient;
        self.authed(request, |channel, r| call(BatchServiceClient::new(channel), r)).await
    }

    /// The generated `BatchService` client (bearer token attached, no refresh).
    pub fn batches_raw(&self) -> cardhsm_proto::v1::batch_service_client::BatchServiceClient<AuthedChannel> {
        cardhsm_proto::v1::batch_service_client::BatchServiceClient::new(self.authed_channel())
    }
}
