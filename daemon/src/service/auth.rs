//! Authentication: password login (argon2id), signed short-lived access tokens, rotating
//! refresh tokens, sign-in sessions and API keys. The gRPC layer calls
//! [`AuthService::authenticate`] on every request's bearer credential before the request
//! reaches any other service.
//!
//! Every login starts a *session* (its id is the refresh-token family id, and every access
//! token carries it as `sid`); an API key is a session of its realm that lives until revoked.
//! The live sessions, the idle timeouts and each user's credentials not-before are kept in
//! memory (written through to the store, loaded from it at start), so the per-request check
//! that a session still exists and is not idle costs no store read. Last activity is written
//! back to the store at most every [`ACTIVITY_WRITE_BACK_SECS`].

use super::privileges::PrivilegeIndex;
use super::{OrgScope, Principal, Role, ServiceError};
use crate::store::{self, Store, StoreError, api_keys, audit, meta, sessions, tokens, users};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rusqlite::Transaction;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Prefix and version of our access tokens.
const TOKEN_PREFIX: &str = "cha1";
/// Prefix of API keys: `chk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "chk_";
/// The audience our access tokens are for; a token naming another one is refused.
pub const AUDIENCE: &str = "cardhsm";
/// The store key under which the access-token signing key lives.
const SIGNING_KEY: &str = "auth.access_token_hmac_key";
/// Argon2id verifications running at once: each takes ~19 MiB and tens of ms of CPU, so an
/// unbounded burst of logins must not starve the machine.
const CONCURRENT_HASHES: usize = 2;
/// The bootstrap administrator's login name.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// The realm of sessions started by Login.
pub const PASSWORD_REALM: &str = "password";
/// A session's last activity reaches the store at most this often.
pub const ACTIVITY_WRITE_BACK_SECS: i64 = 30;
/// Failed sign-ins of one account within an hour after which every attempt is refused.
pub const MAX_FAILURES_PER_HOUR: usize = 100;
/// The longest lockout after repeated failures.
const MAX_LOCKOUT_SECS: i64 = 900;
/// Idle timeouts are 0 (none) to a week, in minutes.
pub const MAX_IDLE_MINUTES: u32 = 10_080;
/// ListActiveSessions pages hold at most this many records (the default too).
pub const MAX_SESSION_PAGE: u32 = 200;
/// Minimum length of a new password.
pub const MIN_PASSWORD_LEN: usize = 12;

/// What Login and Refresh hand back.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: Zeroizing<String>,
    pub refresh_token: Zeroizing<String>,
    pub expires_in: u32,
    pub roles: Vec<Role>,
    pub session_id: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .field("roles", &self.roles)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// An API key as RealmAuth hands it out: the key itself (shown once) and its record.
#[derive(Clone)]
pub struct NewApiKey {
    pub key: Zeroizing<String>,
    pub info: ApiKeyView,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey").field("info", &self.info).finish_non_exhaustive()
    }
}

/// An API key as listed (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyView {
    pub id: String,
    pub realm: String,
    pub owner: String,
    pub roles: Vec<Role>,
    pub created_at: i64,
    /// 0 = never used.
    pub last_used: i64,
}

/// An active session as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub username: String,
    pub realm: String,
    pub roles: Vec<Role>,
    pub source_ip: String,
    pub agent: String,
    pub signed_in_at: i64,
    pub login_node: String,
    pub last_activity: i64,
}

/// A page of ListActiveSessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    pub total_matched: u32,
    pub is_last_record: bool,
}

/// Where a sign-in comes from, as the connection and its metadata tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub source_ip: String,
    pub agent: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    usr: String,
    rol: Vec<String>,
    /// The session the token belongs to.
    sid: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// A session as the per-request check needs it.
#[derive(Debug)]
struct LiveSession {
    rec: sessions::SessionRecord,
    roles: Vec<Role>,
    /// `rec.expires_at`, moved on by refreshes.
    expires_at: AtomicI64,
    last_activity: AtomicI64,
    /// The last activity value written to the store.
    persisted_activity: AtomicI64,
    /// SHA-256 of the secret part, for an API key session.
    key_hash: Option<[u8; 32]>,
    /// Whether an API key was ever used.
    used: AtomicBool,
}

impl LiveSession {
    fn view(&self) -> SessionView {
        SessionView {
            id: self.rec.id.clone(),
            username: self.rec.username.clone(),
            realm: self.rec.realm.clone(),
            roles: self.roles.clone(),
            source_ip: self.rec.source_ip.clone(),
            agent: self.rec.agent.clone(),
            signed_in_at: self.rec.signed_in_at,
            login_node: self.rec.login_node.clone(),
            last_activity: self.last_activity.load(Ordering::Relaxed),
        }
    }

    fn key_view(&self) -> ApiKeyView {
        ApiKeyView {
            id: self.rec.id.clone(),
            realm: self.rec.realm.clone(),
            owner: self.rec.username.clone(),
            roles: self.roles.clone(),
            created_at: self.rec.signed_in_at,
            last_used: if self.used.load(Ordering::Relaxed) {
                self.last_activity.load(Ordering::Relaxed)
            } else {
                0
            },
        }
    }
}

/// The in-memory view of what makes a credential live.
#[derive(Debug, Default)]
struct Live {
    sessions: HashMap<String, Arc<LiveSession>>,
    /// Idle timeout per role in minutes; a role without an entry has none.
    idle_minutes: HashMap<Role, u32>,
    /// Per user: credentials issued before this (unix seconds) are refused.
    not_before: HashMap<String, i64>,
}

impl Live {
    /// The idle limit of a session with `roles`, in seconds: the shortest non-zero timeout of
    /// its roles. API keys do not idle out.
    fn idle_limit(&self, s: &LiveSession) -> Option<i64> {
        if s.key_hash.is_some() {
            return None;
        }
        s.roles
            .iter()
            .filter_map(|r| self.idle_minutes.get(r).copied())
            .filter(|m| *m > 0)
            .min()
            .map(|m| i64::from(m) * 60)
    }

    /// Why a session is no longer live at `now`, if it is not.
    fn dead(&self, s: &LiveSession, now: i64) -> Option<&'static str> {
        if s.key_hash.is_none() && s.expires_at.load(Ordering::Relaxed) <= now {
            return Some("expired");
        }
        match self.idle_limit(s) {
            Some(limit) if now - s.last_activity.load(Ordering::Relaxed) > limit => Some("idle"),
            _ => None,
        }
    }
}

/// Failed sign-ins per account name.
#[derive(Debug, Default)]
struct Failures {
    /// Times of failures within the last hour.
    recent: VecDeque<i64>,
    /// Failures since the last success (attempts refused by a lockout excluded).
    consecutive: u32,
    locked_until: i64,
}

/// A configured realm.
#[derive(Debug, Clone)]
struct Realm {
    name: String,
    roles: Vec<Role>,
}

/// Login, refresh, sessions, API keys and bearer-credential checks.
pub struct AuthService {
    store: Store,
    /// HMAC-SHA256 keyed with the store's signing key; cloned per use.
    mac: Hmac<Sha256>,
    access_ttl: i64,
    refresh_ttl: i64,
    /// A hash of a random password, verified against when the user is unknown, so that an
    /// unknown user costs the same time as a wrong password.
    decoy_hash: String,
    hashing: Semaphore,
    realms: Vec<Realm>,
    login_node: String,
    throttle_after: u32,
    throttle_secs: i64,
    live: RwLock<Live>,
    failures: Mutex<HashMap<String, Failures>>,
    /// Users' organization privileges, applied to every verified credential.
    privileges: Arc<PrivilegeIndex>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").field("access_ttl", &self.access_ttl).finish_non_exhaustive()
    }
}

/// What happened to the bootstrap administrator at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users already existed; nothing was done.
    AlreadyDone,
    /// Created with the configured password.
    CreatedWithConfiguredPassword,
    /// Created with a generated password, which the caller must show once.
    CreatedWithGeneratedPassword(GeneratedPassword),
}

/// A generated password, shown to the operator exactly once.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedPassword(pub Zeroizing<String>);

impl std::fmt::Debug for GeneratedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl AuthService {
    /// The organization privileges applied to every credential (shared with the services
    /// that change privileges and organizations, which reload it).
    pub fn privilege_index(&self) -> Arc<PrivilegeIndex> {
        self.privileges.clone()
    }

    /// Loads (or creates) the token signing key and the live sessions, idle timeouts and
    /// not-befores. Blocking: called at start-up.
    pub fn open(config: &hsm_config::AuthConfig, store: Store) -> Result<AuthService, ServiceError> {
        let key = store.blocking_write(|tx| {
            meta::get_or_insert_with(tx, SIGNING_KEY, || {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                k
            })
            .map_err(ServiceError::from)
        })?;
        let key = Zeroizing::new(key);
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .map_err(|e| ServiceError::Internal(format!("token signing key: {e}")))?;
        let decoy = random_token(24);
        let realms = config
            .realms
            .iter()
            .map(|r| Realm {
                name: r.name.clone(),
                roles: r.roles.iter().filter_map(|n| Role::parse(n)).collect(),
            })
            .collect();
        let live = store.blocking_write(|tx| {
            let mut live = Live::default();
            let keys: HashMap<String, api_keys::ApiKeyRecord> =
                api_keys::active(tx)?.into_iter().map(|k| (k.id.clone(), k)).collect();
            for rec in sessions::all(tx)? {
                let key = keys.get(&rec.id);
                let key_hash = key.and_then(|k| <[u8; 32]>::try_from(k.key_hash.as_slice()).ok());
                let used = key.and_then(|k| k.last_used);
                let last = used.unwrap_or(rec.last_activity).max(rec.last_activity);
                let s = LiveSession {
                    roles: rec.roles.iter().filter_map(|r| Role::parse(r)).collect(),
                    expires_at: AtomicI64::new(rec.expires_at),
                    last_activity: AtomicI64::new(last),
                    persisted_activity: AtomicI64::new(last),
                    key_hash,
                    used: AtomicBool::new(used.is_some()),
                    rec,
                };
                live.sessions.insert(s.rec.id.clone(), Arc::new(s));
            }
            for (role, minutes) in sessions::idle_timeouts(tx)? {
                if let Some(r) = Role::parse(&role) {
                    live.idle_minutes.insert(r, minutes);
                }
            }
            live.not_before = users::credentials_not_before(tx)?.into_iter().collect();
            Ok::<_, ServiceError>(live)
        })?;
        let privileges = Arc::new(PrivilegeIndex::default());
        store.blocking_write(|tx| privileges.reload(tx))?;
        Ok(AuthService {
            store,
            mac,
            access_ttl: i64::from(config.access_token_ttl_secs),
            refresh_ttl: i64::from(config.refresh_token_ttl_secs),
            decoy_hash: hash_password(&decoy)?,
            hashing: Semaphore::new(CONCURRENT_HASHES),
            realms,
            login_node: host_name(),
            throttle_after: config.login_throttle_after,
            throttle_secs: i64::from(config.login_throttle_secs),
            live: RwLock::new(live),
            failures: Mutex::new(HashMap::new()),
            privileges,
        })
    }

    /// Creates the bootstrap administrator when the store has no user yet. Blocking.
    pub fn bootstrap(&self, configured: Option<hsm_config::Secret>) -> Result<Bootstrap, ServiceError> {
        let (password, generated) = match configured {
            Some(p) if !p.is_empty() => (Zeroizing::new(p.expose().to_owned()), false),
            _ => (Zeroizing::new(random_token(18)), true),
        };
        let hash = hash_password(&password)?;
        let created = self.store.blocking_write(|tx| {
            if users::count(tx)? > 0 {
                return Ok::<bool, ServiceError>(false);
            }
            let now = store::now();
            let id = uuid::Uuid::new_v4().to_string();
            users::insert(
                tx,
                &users::UserRecord {
                    id: id.clone(),
                    username: BOOTSTRAP_ADMIN.into(),
                    password_hash: hash,
                    // The first administrator manages the others too.
                    roles: vec![Role::SuperAdmin.as_str().into(), Role::Admin.as_str().into()],
                    enabled: true,
                    created_at: now,
                    updated_at: now,
                    profile: Default::default(),
                },
            )?;
            audit::append(
                tx,
                audit::AuditEntry {
                    actor: "system",
                    action: "user.bootstrap",
                    target_type: "user",
                    target_id: &id,
                    detail:
                        serde_json::json!({ "username": BOOTSTRAP_ADMIN, "generated_password": generated })
                            .to_string(),
                },
            )?;
            Ok(true)
        })?;
        Ok(match (created, generated) {
            (false, _) => Bootstrap::AlreadyDone,
            (true, false) => Bootstrap::CreatedWithConfiguredPassword,
            (true, true) => Bootstrap::CreatedWithGeneratedPassword(GeneratedPassword(password)),
        })
    }

    /// Checks a username and password and starts a new session (refresh-token family).
    /// An unknown user, a disabled user and a wrong password take the same path (argon2 runs
    /// for unknown users too, against a decoy hash) and answer the same message.
    pub async fn login(
        &self,
        username: &str,
        password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<Tokens, ServiceError> {
        let user = self.check_password(username, password).await?;
        let roles: Vec<Role> = user.roles.iter().filter_map(|r| Role::parse(r)).collect();
        self.sweep().await?;
        let now = store::now();
        let rec = sessions::SessionRecord {
            // Time-ordered (and monotonic within the daemon): sessions signed in within one
            // second still list in sign-in order.
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            username: user.username.clone(),
            realm: PASSWORD_REALM.into(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            source_ip: client.source_ip,
            agent: client.agent,
            login_node: self.login_node.clone(),
            signed_in_at: now,
            last_activity: now,
            expires_at: now + self.refresh_ttl,
        };
        let refresh = Zeroizing::new(random_token(32));
        let hash = sha256(refresh.as_bytes());
        let r = rec.clone();
        self.store
            .write(move |tx| {
                sessions::insert(tx, &r)?;
                tokens::insert(tx, &hash, &r.id, &r.user_id, now, r.expires_at)?;
                tokens::purge_expired(tx, now)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &r.username,
                        action: "auth.login",
                        target_type: "session",
                        target_id: &r.id,
                        detail: serde_json::json!({
                            "user_id": r.user_id, "realm": r.realm, "source_ip": r.source_ip,
                            "agent": r.agent, "login_node": r.login_node,
                        })
                        .to_string(),
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await?;
        self.remember(rec.clone(), roles.clone(), None);
        let access = self.access_token(&rec, &roles, now)?;
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.access_ttl as u32,
            roles,
            session_id: rec.id,
        })
    }

    /// Checks a username and password for `realm` and issues an API key carrying the realm's
    /// roles; the user must hold every one of them. The key is a session of the realm that
    /// does not idle out and lives until revoked.
    pub async fn realm_auth(
        &self,
        realm: &str,
        username: &str,
        password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<NewApiKey, ServiceError> {
        let Some(realm) = self.realms.iter().find(|r| r.name == realm).cloned() else {
            return Err(ServiceError::invalid("realm", format!("no realm is named {realm:?}")));
        };
        let user = self.check_password(username, password).await?;
        let mut held: Vec<Role> = user.roles.iter().filter_map(|r| Role::parse(r)).collect();
        held.extend(self.privileges.of_user(&user.id).iter().map(|p| p.role));
        if let Some(missing) = realm.roles.iter().find(|r| !held.contains(r)) {
            return Err(ServiceError::PermissionDenied(format!(
                "realm {:?} needs role {}, which {} does not hold",
                realm.name,
                missing.as_str(),
                user.username
            )));
        }
        let now = store::now();
        // Time-ordered like session ids (an API key is a session); the secret is separate.
        let id = uuid::Uuid::now_v7().simple().to_string();
        let secret = Zeroizing::new(random_token(32));
        let key_hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let key = Zeroizing::new(format!("{API_KEY_PREFIX}{id}_{}", secret.as_str()));
        let rec = sessions::SessionRecord {
            id: id.clone(),
            user_id: user.id.clone(),
            username: user.username.clone(),
            realm: realm.name.clone(),
            roles: realm.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            source_ip: client.source_ip,
            agent: client.agent,
            login_node: self.login_node.clone(),
            signed_in_at: now,
            last_activity: now,
            expires_at: i64::MAX,
        };
        let r = rec.clone();
        self.store
            .write(move |tx| {
                sessions::insert(tx, &r)?;
                api_keys::insert(
                    tx,
                    &api_keys::ApiKeyRecord {
                        id: r.id.clone(),
                        key_hash: key_hash.to_vec(),
                        user_id: r.user_id.clone(),
                        username: r.username.clone(),
                        realm: r.realm.clone(),
                        roles: r.roles.clone(),
                        created_at: now,
                        last_used: None,
                    },
                )?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &r.username,
                        action: "apikey.create",
                        target_type: "session",
                        target_id: &r.id,
                        detail: serde_json::json!({
                            "user_id": r.user_id, "realm": r.realm, "source_ip": r.source_ip,
                            "agent": r.agent,
                        })
                        .to_string(),
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await?;
        let live = self.remember(rec, realm.roles.clone(), Some(key_hash));
        Ok(NewApiKey { key, info: live.key_view() })
    }

    /// The password check shared by Login, RealmAuth and ChangePassword, throttled per account
    /// name (known or not).
    async fn check_password(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<users::UserRecord, ServiceError> {
        let refused = || ServiceError::Unauthenticated("invalid username or password".into());
        if username.is_empty() || username.len() > 256 || password.is_empty() || password.len() > 1024 {
            return Err(refused());
        }
        let account = username.to_lowercase();
        self.throttle_check(&account, store::now())?;
        let name = username.to_owned();
        let user = self.store.read(move |c| users::by_username(c, &name).map_err(ServiceError::from)).await?;
        let (hash, usable) = match &user {
            Some(u) => (u.password_hash.clone(), u.enabled),
            None => (self.decoy_hash.clone(), false),
        };
        let verified = self.verify_password(password, hash).await?;
        match user {
            Some(u) if verified && usable => {
                self.throttle_success(&account);
                Ok(u)
            }
            _ => {
                self.throttle_failure(&account, store::now());
                Err(refused())
            }
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses an attempt on an account that is locked out or over the hourly limit. An attempt
    /// refused by a lockout counts towards the hourly limit.
    fn throttle_check(&self, account: &str, now: i64) -> Result<(), ServiceError> {
        let mut all = self.failures();
        let Some(f) = all.get_mut(account) else { return Ok(()) };
        while f.recent.front().is_some_and(|t| *t <= now - 3600) {
            f.recent.pop_front();
        }
        if f.recent.len() >= MAX_FAILURES_PER_HOUR {
            let until = f.recent.front().map_or(now, |t| t + 3600);
            return Err(ServiceError::ResourceExhausted(format!(
                "sign-in refused: more than {MAX_FAILURES_PER_HOUR} failed sign-ins for this account in the \
                 last hour; try again in {} s",
                (until - now).max(1)
            )));
        }
        if f.locked_until > now {
            f.recent.push_back(now);
            return Err(ServiceError::ResourceExhausted(format!(
                "sign-in throttled after repeated failures: try again in {} s",
                f.locked_until - now
            )));
        }
        Ok(())
    }

    fn throttle_failure(&self, account: &str, now: i64) {
        let mut all = self.failures();
        if all.len() >= 100_000 {
            // Forget accounts with nothing left in the window, so the table stays bounded.
            all.retain(|_, f| f.locked_until > now || f.recent.back().is_some_and(|t| *t > now - 3600));
        }
        let f = all.entry(account.to_owned()).or_default();
        f.recent.push_back(now);
        f.consecutive = f.consecutive.saturating_add(1);
        if f.consecutive >= self.throttle_after && self.throttle_secs > 0 {
            let doublings = (f.consecutive - self.throttle_after).min(20);
            let delay = (self.throttle_secs << doublings).min(MAX_LOCKOUT_SECS);
            f.locked_until = now + delay;
        }
    }

    fn throttle_success(&self, account: &str) {
        if let Some(f) = self.failures().get_mut(account) {
            f.consecutive = 0;
            f.locked_until = 0;
        }
    }

    /// Exchanges a refresh token for a new pair. The old refresh token is spent; presenting a
    /// spent token again is treated as theft: its whole family is revoked and its session ends.
    pub async fn refresh(&self, refresh_token: Zeroizing<String>) -> Result<Tokens, ServiceError> {
        let refused = || ServiceError::Unauthenticated("refresh token is invalid, expired or revoked".into());
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(refused());
        }
        self.sweep().await?;
        let hash = sha256(refresh_token.as_bytes());
        let now = store::now();
        let new_refresh = Zeroizing::new(random_token(32));
        let new_hash = sha256(new_refresh.as_bytes());
        let refresh_ttl = self.refresh_ttl;
        // The session as it is before this refresh. Of several concurrent refreshes with one
        // token exactly one wins the transaction below; the others are reuses that end the
        // session — possibly before the winner looks at it again. The winner still gets its
        // tokens (dead on arrival, as the family is revoked), so it is judged on this picture.
        let lookup = hash.clone();
        let family = self
            .store
            .read(move |c| tokens::by_hash(c, &lookup).map_err(ServiceError::from))
            .await?
            .map(|r| r.family_id);
        let before = family.and_then(|f| {
            let live = self.read_live();
            live.sessions.get(&f).map(|s| (s.clone(), live.dead(s, now)))
        });
        // Spend the token, mint its successor and move the session on in one transaction; a
        // reuse revokes the family and ends the session.
        let outcome = self
            .store
            .write(move |tx| {
                let Some(rec) = tokens::by_hash(tx, &hash)? else { return Ok(Err(("unknown", None))) };
                if rec.revoked_at.is_some() || rec.expires_at <= now {
                    return Ok(Err(("revoked or expired", None)));
                }
                if !tokens::mark_used(tx, &hash, now)? {
                    tokens::revoke_family(tx, &rec.family_id, now)?;
                    sessions::delete(tx, &rec.family_id)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: "system",
                            action: "auth.refresh_reuse",
                            target_type: "session",
                            target_id: &rec.family_id,
                            detail: serde_json::json!({ "user_id": rec.user_id }).to_string(),
                        },
                    )?;
                    return Ok(Err(("reused", Some(rec.family_id))));
                }
                match users::by_id(tx, &rec.user_id)? {
                    Some(u) if u.enabled => {}
                    _ => return Ok(Err(("user disabled or gone", None))),
                }
                tokens::insert(tx, &new_hash, &rec.family_id, &rec.user_id, now, now + refresh_ttl)?;
                sessions::touch(tx, &rec.family_id, now, Some(now + refresh_ttl))?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: "system",
                        action: "auth.refresh",
                        target_type: "session",
                        target_id: &rec.family_id,
                        detail: serde_json::json!({ "user_id": rec.user_id }).to_string(),
                    },
                )?;
                Ok::<_, StoreError>(Ok(rec.family_id))
            })
            .await?;
        let sid = match outcome {
            Ok(sid) => sid,
            Err((why, ended)) => {
                if let Some(sid) = ended {
                    self.forget(&[sid]);
                }
                tracing::info!(reason = why, "refresh refused");
                return Err(refused());
            }
        };
        // The session must have been live when this refresh started (not deleted, not idle).
        let session = match before {
            Some((s, None)) if s.rec.id == sid => Some(s),
            _ => None,
        };
        let Some(session) = session else {
            self.expire(&sid, "idle");
            return Err(refused());
        };
        session.last_activity.fetch_max(now, Ordering::Relaxed);
        session.persisted_activity.fetch_max(now, Ordering::Relaxed);
        session.expires_at.store(now + self.refresh_ttl, Ordering::Relaxed);
        let (rec, roles) = (session.rec.clone(), session.roles.clone());
        let access = self.access_token(&rec, &roles, now)?;
        Ok(Tokens {
            access_token: access,
            refresh_token: new_refresh,
            expires_in: self.access_ttl as u32,
            roles,
            session_id: sid,
        })
    }

    /// Verifies a bearer credential: an access token (format, signature, audience, validity
    /// window, session live, user's not-before) or an API key (`chk_…`: known, not revoked,
    /// secret matches in constant time, user's not-before). No store access: cheap enough for
    /// every request.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ServiceError> {
        if token.starts_with(API_KEY_PREFIX) {
            return self.authenticate_api_key(token);
        }
        let refused = |why: &str| ServiceError::Unauthenticated(format!("access token {why}"));
        let mut parts = token.split('.');
        let (Some(prefix), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("is malformed"));
        };
        if prefix != TOKEN_PREFIX {
            return Err(refused("is malformed (unknown version or algorithm)"));
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| refused("is malformed"))?;
        let mut mac = self.mac();
        mac.update(prefix.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| refused("signature is invalid"))?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused("is malformed"))?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| refused("is malformed"))?;
        let now = store::now();
        if claims.aud != AUDIENCE {
            return Err(refused("is for another audience"));
        }
        if claims.exp <= now {
            return Err(refused("has expired"));
        }
        if claims.nbf > now {
            return Err(refused("is not valid yet"));
        }
        let session = self.live_session(&claims.sid, &claims.sub, claims.iat, now)?;
        self.touch(&session, now);
        let principal = Principal {
            user_id: claims.sub,
            username: claims.usr,
            roles: claims.rol.iter().filter_map(|r| Role::parse(r)).collect(),
            expires_at: claims.exp,
            session_id: claims.sid,
            api_key_id: None,
            scope: OrgScope::None,
            profiles: Default::default(),
        };
        Ok(self.privileges.apply(principal, None))
    }

    fn authenticate_api_key(&self, token: &str) -> Result<Principal, ServiceError> {
        let refused = || ServiceError::Unauthenticated("API key is invalid or revoked".into());
        let rest = &token[API_KEY_PREFIX.len()..];
        let (id, secret) = rest.split_once('_').ok_or_else(refused)?;
        if id.len() != 32 || secret.is_empty() || secret.len() > 128 {
            return Err(refused());
        }
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let now = store::now();
        let session = {
            let live = self.read_live();
            let s = live.sessions.get(id).cloned().ok_or_else(refused)?;
            let Some(stored) = s.key_hash else { return Err(refused()) };
            if !bool::from(stored.ct_eq(&presented)) {
                return Err(refused());
            }
            if live.not_before.get(&s.rec.user_id).is_some_and(|nb| s.rec.signed_in_at < *nb) {
                return Err(refused());
            }
            s
        };
        session.used.store(true, Ordering::Relaxed);
        self.touch(&session, now);
        let principal = Principal {
            user_id: session.rec.user_id.clone(),
            username: session.rec.username.clone(),
            roles: session.roles.clone(),
            expires_at: 0,
            session_id: session.rec.id.clone(),
            api_key_id: Some(session.rec.id.clone()),
            scope: OrgScope::None,
            profiles: Default::default(),
        };
        Ok(self.privileges.apply(principal, Some(&session.roles)))
    }

    /// The live session `sid` of `user_id` for a credential issued at `iat`.
    fn live_session(
        &self,
        sid: &str,
        user_id: &str,
        iat: i64,
        now: i64,
    ) -> Result<Arc<LiveSession>, ServiceError> {
        let refused = |why: &str| ServiceError::Unauthenticated(format!("access token {why}"));
        let live = self.read_live();
        let Some(s) = live.sessions.get(sid) else {
            return Err(refused("belongs to a session that has ended"));
        };
        if s.rec.user_id != user_id || s.key_hash.is_some() {
            return Err(refused("is malformed"));
        }
        if live.not_before.get(user_id).is_some_and(|nb| iat < *nb) {
            return Err(refused("was revoked"));
        }
        if let Some(why) = live.dead(s, now) {
            drop(live);
            self.expire(sid, why);
            return Err(refused(if why == "idle" {
                "belongs to a session that has been idle too long"
            } else {
                "belongs to a session that has expired"
            }));
        }
        Ok(s.clone())
    }

    /// Records activity in memory; writes it back to the store at most every
    /// [`ACTIVITY_WRITE_BACK_SECS`], off the request's path.
    fn touch(&self, s: &Arc<LiveSession>, now: i64) {
        // Read first: concurrent requests of one session then share the cache line instead of
        // all writing it within the same second.
        if s.last_activity.load(Ordering::Relaxed) < now {
            s.last_activity.fetch_max(now, Ordering::Relaxed);
        }
        let persisted = s.persisted_activity.load(Ordering::Relaxed);
        if now - persisted < ACTIVITY_WRITE_BACK_SECS
            || s.persisted_activity
                .compare_exchange(persisted, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let store = self.store.clone();
        let (id, is_key) = (s.rec.id.clone(), s.key_hash.is_some());
        handle.spawn(async move {
            let written = store
                .write(move |tx| {
                    sessions::touch(tx, &id, now, None)?;
                    if is_key {
                        api_keys::set_last_used(tx, &id, now)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record session activity");
            }
        });
    }

    /// Adds a session to the live view.
    fn remember(
        &self,
        rec: sessions::SessionRecord,
        roles: Vec<Role>,
        key_hash: Option<[u8; 32]>,
    ) -> Arc<LiveSession> {
        let s = Arc::new(LiveSession {
            roles,
            expires_at: AtomicI64::new(rec.expires_at),
            last_activity: AtomicI64::new(rec.last_activity),
            persisted_activity: AtomicI64::new(rec.last_activity),
            key_hash,
            used: AtomicBool::new(false),
            rec,
        });
        self.write_live().sessions.insert(s.rec.id.clone(), s.clone());
        s
    }

    /// Drops sessions from the live view: their credentials stop working at once.
    fn forget(&self, ids: &[String]) {
        let mut live = self.write_live();
        for id in ids {
            live.sessions.remove(id);
        }
    }

    /// Ends a session that is no longer live (idle or expired): gone from memory now, from the
    /// store (with its refresh family and audit record) in the background.
    fn expire(&self, sid: &str, why: &'static str) {
        self.forget(&[sid.to_owned()]);
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let store = self.store.clone();
        let ids = vec![sid.to_owned()];
        handle.spawn(async move {
            if let Err(e) = delete_sessions(&store, ids, "system", "session.expire", why).await {
                tracing::warn!(error = %e, "could not delete an expired session");
            }
        });
    }

    /// Ends every session that has expired or idled out (memory and store).
    async fn sweep(&self) -> Result<(), ServiceError> {
        let now = store::now();
        let dead: Vec<String> = {
            let live = self.read_live();
            live.sessions.values().filter(|s| live.dead(s, now).is_some()).map(|s| s.rec.id.clone()).collect()
        };
        if dead.is_empty() {
            return Ok(());
        }
        self.forget(&dead);
        delete_sessions(&self.store, dead, "system", "session.expire", "idle or expired").await?;
        Ok(())
    }

    fn access_token(
        &self,
        rec: &sessions::SessionRecord,
        roles: &[Role],
        now: i64,
    ) -> Result<Zeroizing<String>, ServiceError> {
        self.sign(&Claims {
            sub: rec.user_id.clone(),
            usr: rec.username.clone(),
            rol: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            sid: rec.id.clone(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + self.access_ttl,
        })
    }

    /// Ends the caller's session (for an API key: revokes the key).
    pub async fn logout(&self, caller: &Principal) -> Result<(), ServiceError> {
        let ids = vec![caller.session_id.clone()];
        self.forget(&ids);
        delete_sessions(&self.store, ids, &caller.username, "auth.logout", "logout").await?;
        Ok(())
    }

    /// Changes the caller's password after checking the old one (throttled like a sign-in).
    /// Every session and API key of the user ends.
    pub async fn change_password(
        &self,
        caller: &Principal,
        old: Zeroizing<String>,
        new: Zeroizing<String>,
        repeated: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        let min = super::password_policy::min_length(&self.store, Some(&caller.user_id)).await?;
        super::password_policy::check("new_password", &new, "repeated_new_password", Some(&repeated), min)?;
        let user = self.verify_current_password(caller, "old_password", old).await?;
        let hash = self.hash_new_password(new).await?;
        let id = user.id.clone();
        self.end_user_credentials(&caller.username, &user.id, "user.password_change", move |tx| {
            users::set_password_hash(tx, &id, &hash)?;
            Ok(())
        })
        .await
    }

    /// Checks the caller's current password before a change to their own account (throttled
    /// like a sign-in); a wrong one is INVALID_ARGUMENT on `field`.
    pub async fn verify_current_password(
        &self,
        caller: &Principal,
        field: &str,
        password: Zeroizing<String>,
    ) -> Result<users::UserRecord, ServiceError> {
        let user = self.check_password(&caller.username, password).await.map_err(|e| match e {
            ServiceError::Unauthenticated(m) if m == "invalid username or password" => {
                ServiceError::invalid(field, "is not the current password")
            }
            other => other,
        })?;
        if user.id != caller.user_id {
            return Err(ServiceError::invalid(field, "is not the current password"));
        }
        Ok(user)
    }

    /// Forgets the sign-in failures of `username` (after a password reset: the owner proved
    /// who they are another way).
    pub fn clear_sign_in_throttle(&self, username: &str) {
        self.failures().remove(&username.to_lowercase());
    }

    /// Applies `change` to user `user_id` and, in the same transaction, ends every session and
    /// API key of the user and sets the user's credentials not-before to now, so that every
    /// access token and key issued before stops working at once. For password changes,
    /// disabling and deleting users.
    pub async fn end_user_credentials<F>(
        &self,
        actor: &str,
        user_id: &str,
        action: &'static str,
        change: F,
    ) -> Result<(), ServiceError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<(), ServiceError> + Send + 'static,
    {
        let now = store::now();
        let ids: Vec<String> = {
            let live = self.read_live();
            live.sessions.values().filter(|s| s.rec.user_id == user_id).map(|s| s.rec.id.clone()).collect()
        };
        let (actor_s, user, ids_tx) = (actor.to_owned(), user_id.to_owned(), ids.clone());
        self.store
            .write(move |tx| {
                change(tx)?;
                users::set_credentials_not_before(tx, &user, now)?;
                end_sessions_tx(tx, &ids_tx, now)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor_s,
                        action,
                        target_type: "user",
                        target_id: &user,
                        detail: serde_json::json!({ "sessions_ended": ids_tx, "not_before": now })
                            .to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        let mut live = self.write_live();
        live.not_before.insert(user_id.to_owned(), now);
        for id in &ids {
            live.sessions.remove(id);
        }
        // A session that started while the transaction ran was issued before `now` ends too.
        live.sessions.retain(|_, s| s.rec.user_id != user_id || s.rec.signed_in_at >= now);
        Ok(())
    }

    /// Active sessions (API keys included), oldest sign-in first. `number` 0 = 200.
    pub async fn list_sessions(
        &self,
        number: u32,
        start: u32,
        name: &str,
    ) -> Result<SessionPage, ServiceError> {
        if number > MAX_SESSION_PAGE {
            return Err(ServiceError::invalid("number", format!("must be at most {MAX_SESSION_PAGE}")));
        }
        if name.len() > 256 {
            return Err(ServiceError::invalid("name", "must be at most 256 bytes"));
        }
        self.sweep().await?;
        let number = if number == 0 { MAX_SESSION_PAGE } else { number } as usize;
        let mut all: Vec<SessionView> = {
            let live = self.read_live();
            live.sessions
                .values()
                .filter(|s| name.is_empty() || s.rec.username.eq_ignore_ascii_case(name))
                .map(|s| s.view())
                .collect()
        };
        all.sort_by(|a, b| (a.signed_in_at, &a.id).cmp(&(b.signed_in_at, &b.id)));
        let total = all.len();
        let start = (start as usize).min(total);
        let page: Vec<SessionView> = all.into_iter().skip(start).take(number).collect();
        let is_last_record = start + page.len() >= total;
        Ok(SessionPage { total_matched: total as u32, is_last_record, sessions: page })
    }

    /// Ends one session (an API key's included). NOT_FOUND when there is none.
    pub async fn delete_session(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        if id.is_empty() {
            return Err(ServiceError::invalid("id", "is required"));
        }
        if !self.read_live().sessions.contains_key(id) {
            return Err(ServiceError::NotFound(format!("no active session {id:?}")));
        }
        let ids = vec![id.to_owned()];
        self.forget(&ids);
        delete_sessions(&self.store, ids, &actor.username, "session.delete", "deleted").await?;
        Ok(())
    }

    /// Ends every session except the caller's own; returns how many ended.
    pub async fn delete_all_sessions(&self, actor: &Principal) -> Result<u32, ServiceError> {
        let ids: Vec<String> = {
            let live = self.read_live();
            live.sessions.keys().filter(|id| **id != actor.session_id).cloned().collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len() as u32;
        self.forget(&ids);
        delete_sessions(&self.store, ids, &actor.username, "session.delete_all", "deleted").await?;
        Ok(n)
    }

    /// Sets a role's idle timeout (0 = none); answers every role's timeout after the change.
    pub async fn set_idle_timeout(
        &self,
        actor: &Principal,
        role: Role,
        minutes: u32,
    ) -> Result<Vec<(Role, u32)>, ServiceError> {
        if minutes > MAX_IDLE_MINUTES {
            return Err(ServiceError::invalid(
                "minutes",
                format!("{minutes} is out of range 0..={MAX_IDLE_MINUTES}"),
            ));
        }
        let actor = actor.username.clone();
        self.store
            .write(move |tx| {
                sessions::set_idle_timeout(tx, role.as_str(), minutes)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor,
                        action: "session.idle_timeout",
                        target_type: "role",
                        target_id: role.as_str(),
                        detail: serde_json::json!({ "minutes": minutes }).to_string(),
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await?;
        let mut live = self.write_live();
        live.idle_minutes.insert(role, minutes);
        Ok(Role::ALL.iter().map(|r| (*r, live.idle_minutes.get(r).copied().unwrap_or(0))).collect())
    }

    /// API keys: administrators see all, others their own.
    pub fn list_api_keys(&self, caller: &Principal) -> Vec<ApiKeyView> {
        let live = self.read_live();
        let mut keys: Vec<ApiKeyView> = live
            .sessions
            .values()
            .filter(|s| s.key_hash.is_some())
            .filter(|s| caller.has_role(Role::Admin) || s.rec.user_id == caller.user_id)
            .map(|s| s.key_view())
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// Revokes an API key (administrators: any; others: their own). NOT_FOUND otherwise.
    pub async fn revoke_api_key(&self, caller: &Principal, id: &str) -> Result<(), ServiceError> {
        if id.is_empty() {
            return Err(ServiceError::invalid("id", "is required"));
        }
        let visible = self.read_live().sessions.get(id).is_some_and(|s| {
            s.key_hash.is_some() && (caller.has_role(Role::Admin) || s.rec.user_id == caller.user_id)
        });
        if !visible {
            return Err(ServiceError::NotFound(format!("no API key {id:?}")));
        }
        let ids = vec![id.to_owned()];
        self.forget(&ids);
        delete_sessions(&self.store, ids, &caller.username, "apikey.revoke", "revoked").await?;
        Ok(())
    }

    fn read_live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_live(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Hashes a new password (argon2id), off the executor and within the hashing bound.
    pub async fn hash_new_password(&self, password: Zeroizing<String>) -> Result<String, ServiceError> {
        let _permit =
            self.hashing.acquire().await.map_err(|_| ServiceError::Internal("hashing closed".into()))?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    async fn verify_password(&self, password: Zeroizing<String>, hash: String) -> Result<bool, ServiceError> {
        let _permit =
            self.hashing.acquire().await.map_err(|_| ServiceError::Internal("hashing closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&hash).map_err(|e| ServiceError::Internal(format!("stored hash: {e}")))?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    fn sign(&self, claims: &Claims) -> Result<Zeroizing<String>, ServiceError> {
        let payload = serde_json::to_vec(claims).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = self.mac();
        mac.update(TOKEN_PREFIX.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(Zeroizing::new(format!("{TOKEN_PREFIX}.{payload}.{sig}")))
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

/// In one transaction: deletes sessions, revokes their refresh families and API keys, and
/// appends an audit record per session.
async fn delete_sessions(
    store: &Store,
    ids: Vec<String>,
    actor: &str,
    action: &'static str,
    why: &'static str,
) -> Result<(), StoreError> {
    let actor = actor.to_owned();
    store
        .write(move |tx| {
            let now = store::now();
            for id in &ids {
                if end_sessions_tx(tx, std::slice::from_ref(id), now)? > 0 {
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &actor,
                            action,
                            target_type: "session",
                            target_id: id,
                            detail: serde_json::json!({ "reason": why }).to_string(),
                        },
                    )?;
                }
            }
            Ok(())
        })
        .await
}

/// Deletes sessions and revokes what hangs off them; returns how many sessions there were.
fn end_sessions_tx(tx: &Transaction<'_>, ids: &[String], now: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    for id in ids {
        if sessions::delete(tx, id)? {
            n += 1;
        }
        tokens::revoke_family(tx, id, now)?;
        api_keys::revoke(tx, id, now)?;
    }
    Ok(n)
}

/// This machine's host name: the login node of sessions started here.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// argon2id with the crate's default (OWASP) parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing: {e}")))
}

/// `bytes` random bytes, base64url: used for refresh tokens, API keys and generated passwords.
pub fn random_token(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&*buf)
}

pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[Role], last_activity: i64, key: bool) -> LiveSession {
        LiveSession {
            rec: sessions::SessionRecord {
                id: "s".into(),
                user_id: "u".into(),
                username: "n".into(),
                realm: PASSWORD_REALM.into(),
                roles: Vec::new(),
                source_ip: String::new(),
                agent: String::new(),
                login_node: String::new(),
                signed_in_at: 0,
                last_activity,
                expires_at: 10_000,
            },
            roles: roles.to_vec(),
            expires_at: AtomicI64::new(10_000),
            last_activity: AtomicI64::new(last_activity),
            persisted_activity: AtomicI64::new(last_activity),
            key_hash: key.then_some([0; 32]),
            used: AtomicBool::new(false),
        }
    }

    #[test]
    fn idle_limit_is_the_shortest_non_zero_timeout_of_the_sessions_roles() {
        let mut live = Live::default();
        live.idle_minutes.insert(Role::User, 10);
        live.idle_minutes.insert(Role::Operator, 0);
        live.idle_minutes.insert(Role::Admin, 30);
        assert_eq!(live.idle_limit(&session(&[Role::Admin, Role::User], 0, false)), Some(600));
        assert_eq!(live.idle_limit(&session(&[Role::Admin], 0, false)), Some(1800));
        assert_eq!(live.idle_limit(&session(&[Role::Operator], 0, false)), None, "0 = no timeout");
        assert_eq!(live.idle_limit(&session(&[Role::User], 0, true)), None, "API keys do not idle out");
    }

    #[test]
    fn a_session_is_dead_when_idle_past_its_limit_or_expired() {
        let mut live = Live::default();
        live.idle_minutes.insert(Role::User, 1);
        let s = session(&[Role::User], 1000, false);
        assert_eq!(live.dead(&s, 1060), None, "exactly at the limit is still live");
        assert_eq!(live.dead(&s, 1061), Some("idle"));
        assert_eq!(live.dead(&session(&[Role::Admin], 1000, false), 10_000), Some("expired"));
        assert_eq!(live.dead(&session(&[Role::Admin], 1000, true), 10_000), None, "keys live until revoked");
    }
}
