//! Token state shared by a [`crate::CardhsmClient`] and its clones: the access/refresh token pair,
//! its expiry, and the tonic interceptor that puts `authorization: Bearer <access token>` on every
//! authenticated request. The client decides when to refresh; this module only holds and attaches.

use crate::secret::SecretString;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Refresh the access token when it expires within this many seconds.
pub const REFRESH_MARGIN_SECS: i64 = 30;

/// An access token with the refresh token that renews it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    /// Sent as `authorization: Bearer <access_token>`.
    pub access_token: SecretString,
    /// Exchanged for a new pair by `AuthService.Refresh`.
    pub refresh_token: SecretString,
    /// Unix seconds when the access token expires.
    pub access_expires_at: i64,
}

/// Called with the new pair whenever the client's tokens change (login or refresh).
pub type TokenListener = Arc<dyn Fn(&TokenPair) + Send + Sync>;

/// What the client knows about its credentials.
#[derive(Default)]
pub(crate) struct AuthState {
    pub(crate) access: Option<SecretString>,
    pub(crate) refresh: Option<SecretString>,
    /// Unix seconds; `None` when unknown (a bare access token).
    pub(crate) expires_at: Option<i64>,
    /// Bumped on every change, so concurrent callers refresh once, not once each.
    pub(crate) generation: u64,
}

impl AuthState {
    pub(crate) fn pair(&self) -> Option<TokenPair> {
        Some(TokenPair {
            access_token: self.access.clone()?,
            refresh_token: self.refresh.clone()?,
            access_expires_at: self.expires_at?,
        })
    }

    /// Whether the access token should be refreshed before use at `now`.
    pub(crate) fn needs_refresh(&self, now: i64) -> bool {
        self.refresh.is_some() && self.expires_at.is_some_and(|at| now + REFRESH_MARGIN_SECS >= at)
    }
}

/// State shared by a client and its clones.
#[derive(Default)]
pub(crate) struct Shared {
    state: RwLock<AuthState>,
    /// Held while refreshing, so one refresh token is never spent twice.
    pub(crate) refresh_lock: tokio::sync::Mutex<()>,
    listener: RwLock<Option<TokenListener>>,
}

impl Shared {
    pub(crate) fn with_state(state: AuthState) -> Arc<Self> {
        Arc::new(Self { state: RwLock::new(state), ..Self::default() })
    }

    // A panic while holding the lock cannot leave AuthState half-written (every write is a
    // plain field assignment), so a poisoned lock is still good to use.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, AuthState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, AuthState> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_listener(&self, listener: Option<TokenListener>) {
        *self.listener.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = listener;
    }

    pub(crate) fn notify(&self, pair: &TokenPair) {
        let listener = self.listener.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(listener) = listener {
            listener(pair);
        }
    }
}

/// Attaches `authorization: Bearer <access token>` (marked sensitive) to each request; requests
/// go out without the header while the client holds no access token.
#[derive(Clone)]
pub struct AuthInterceptor {
    shared: Arc<Shared>,
}

impl AuthInterceptor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let state = self.shared.read();
        if let Some(token) = &state.access {
            let header = SecretString::new(format!("Bearer {}", token.expose()));
            let mut value = MetadataValue::try_from(header.expose()).map_err(|_| {
                Status::invalid_argument("the access token has characters that cannot go in a header")
            })?;
            value.set_sensitive(true);
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

impl fmt::Debug for AuthInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthInterceptor").finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(expires_at: Option<i64>, refresh: bool) -> AuthState {
        AuthState {
            access: Some("a".into()),
            refresh: refresh.then(|| "r".into()),
            expires_at,
            generation: 0,
        }
    }

    #[test]
    fn refresh_is_due_within_thirty_seconds_of_expiry() {
        assert!(!state(Some(1_000), true).needs_refresh(1_000 - 31));
        assert!(state(Some(1_000), true).needs_refresh(1_000 - 30));
        assert!(state(Some(1_000), true).needs_refresh(2_000));
    }

    #[test]
    fn no_refresh_without_refresh_token_or_expiry() {
        assert!(!state(Some(1_000), false).needs_refresh(2_000));
        assert!(!state(None, true).needs_refresh(2_000));
    }

    #[test]
    fn interceptor_attaches_bearer_header() {
        let shared = Shared::with_state(state(None, false));
        let mut interceptor = AuthInterceptor::new(shared);
        let request = interceptor.call(Request::new(())).ok();
        let header = request.as_ref().and_then(|r| r.metadata().get("authorization"));
        assert_eq!(header.and_then(|v| v.to_str().ok()), Some("Bearer a"));
        assert!(header.is_some_and(MetadataValue::is_sensitive));
    }

    #[test]
    fn interceptor_sends_nothing_without_token() {
        let mut interceptor = AuthInterceptor::new(Shared::with_state(AuthState::default()));
        let request = interceptor.call(Request::new(())).ok();
        assert!(request.is_some_and(|r| r.metadata().get("authorization").is_none()));
    }

    #[test]
    fn interceptor_rejects_token_with_newline() {
        let shared = Shared::with_state(AuthState { access: Some("a\nb".into()), ..AuthState::default() });
        let status = AuthInterceptor::new(shared).call(Request::new(())).err();
        assert_eq!(status.map(|s| s.code()), Some(tonic::Code::InvalidArgument));
    }
}
