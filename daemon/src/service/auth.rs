//! Authentication: password login (argon2id), signed short-lived access tokens, and rotating
//! refresh tokens. The gRPC layer calls [`AuthService::authenticate`] on every request's
//! bearer token before the request reaches any other service.

use super::{Principal, Role, ServiceError};
use crate::store::{self, Store, StoreError, audit, meta, tokens, users};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Prefix and version of our access tokens.
const TOKEN_PREFIX: &str = "cha1";
/// The store key under which the access-token signing key lives.
const SIGNING_KEY: &str = "auth.access_token_hmac_key";
/// Argon2id verifications running at once: each takes ~19 MiB and tens of ms of CPU, so an
/// unbounded burst of logins must not starve the machine.
const CONCURRENT_HASHES: usize = 2;
/// The bootstrap administrator's login name.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// What Login and Refresh hand back.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: Zeroizing<String>,
    pub refresh_token: Zeroizing<String>,
    pub expires_in: u32,
    pub roles: Vec<Role>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    usr: String,
    rol: Vec<String>,
    iat: i64,
    exp: i64,
}

/// Login, refresh and bearer-token checks.
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
    /// Loads (or creates) the token signing key. Blocking: called at start-up.
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
        Ok(AuthService {
            store,
            mac,
            access_ttl: i64::from(config.access_token_ttl_secs),
            refresh_ttl: i64::from(config.refresh_token_ttl_secs),
            decoy_hash: hash_password(&decoy)?,
            hashing: Semaphore::new(CONCURRENT_HASHES),
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
                    roles: vec![Role::Admin.as_str().into()],
                    enabled: true,
                    created_at: now,
                    updated_at: now,
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

    /// Checks a username and password and starts a new refresh-token family.
    /// An unknown user, a disabled user and a wrong password answer the same message after
    /// about the same time.
    pub async fn login(&self, username: &str, password: Zeroizing<String>) -> Result<Tokens, ServiceError> {
        let refused = || ServiceError::Unauthenticated("invalid username or password".into());
        if username.is_empty() || username.len() > 256 || password.is_empty() || password.len() > 1024 {
            return Err(refused());
        }
        let name = username.to_owned();
        let user = self.store.read(move |c| users::by_username(c, &name).map_err(ServiceError::from)).await?;
        let (hash, usable) = match &user {
            Some(u) => (u.password_hash.clone(), u.enabled),
            None => (self.decoy_hash.clone(), false),
        };
        let verified = self.verify_password(password, hash).await?;
        let user = match user {
            Some(u) if verified && usable => u,
            _ => return Err(refused()),
        };
        let family = uuid::Uuid::new_v4().to_string();
        self.issue(user, family, "auth.login").await
    }

    /// Exchanges a refresh token for a new pair. The old refresh token is spent; presenting a
    /// spent token again is treated as theft and revokes its whole family.
    pub async fn refresh(&self, refresh_token: Zeroizing<String>) -> Result<Tokens, ServiceError> {
        let refused = || ServiceError::Unauthenticated("refresh token is invalid, expired or revoked".into());
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(refused());
        }
        let hash = sha256(refresh_token.as_bytes());
        let now = store::now();
        // Spend the token and look up its user in one transaction; a reuse revokes the family.
        let outcome = self
            .store
            .write(move |tx| {
                let Some(rec) = tokens::by_hash(tx, &hash)? else { return Ok(Err("unknown")) };
                if rec.revoked_at.is_some() || rec.expires_at <= now {
                    return Ok(Err("revoked or expired"));
                }
                if !tokens::mark_used(tx, &hash, now)? {
                    tokens::revoke_family(tx, &rec.family_id, now)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: "system",
                            action: "auth.refresh_reuse",
                            target_type: "user",
                            target_id: &rec.user_id,
                            detail: serde_json::json!({ "family": rec.family_id }).to_string(),
                        },
                    )?;
                    return Ok(Err("reused"));
                }
                let user = users::by_id(tx, &rec.user_id)?;
                Ok::<_, StoreError>(Ok((user, rec.family_id)))
            })
            .await?;
        match outcome {
            Ok((Some(user), family)) if user.enabled => self.issue(user, family, "auth.refresh").await,
            Ok(_) => Err(refused()),
            Err(why) => {
                tracing::info!(reason = why, "refresh refused");
                Err(refused())
            }
        }
    }

    /// Verifies a bearer access token: signature, expiry, shape. No store access, so it is
    /// cheap enough for every request.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ServiceError> {
        let refused = |why: &str| ServiceError::Unauthenticated(format!("access token {why}"));
        let mut parts = token.split('.');
        let (Some(prefix), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("is malformed"));
        };
        if prefix != TOKEN_PREFIX {
            return Err(refused("is malformed"));
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| refused("is malformed"))?;
        let mut mac = self.mac();
        mac.update(prefix.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| refused("signature is invalid"))?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused("is malformed"))?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| refused("is malformed"))?;
        if claims.exp <= store::now() {
            return Err(refused("has expired"));
        }
        Ok(Principal {
            user_id: claims.sub,
            username: claims.usr,
            roles: claims.rol.iter().filter_map(|r| Role::parse(r)).collect(),
            expires_at: claims.exp,
        })
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

    /// Mints an access token and a new refresh token in `family` for `user`.
    async fn issue(
        &self,
        user: users::UserRecord,
        family: String,
        action: &'static str,
    ) -> Result<Tokens, ServiceError> {
        let now = store::now();
        let roles: Vec<Role> = user.roles.iter().filter_map(|r| Role::parse(r)).collect();
        let access = self.sign(&Claims {
            sub: user.id.clone(),
            usr: user.username.clone(),
            rol: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            iat: now,
            exp: now + self.access_ttl,
        })?;
        let refresh = Zeroizing::new(random_token(32));
        let hash = sha256(refresh.as_bytes());
        let refresh_ttl = self.refresh_ttl;
        self.store
            .write(move |tx| {
                tokens::insert(tx, &hash, &family, &user.id, now, now + refresh_ttl)?;
                tokens::purge_expired(tx, now)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &user.username,
                        action,
                        target_type: "user",
                        target_id: &user.id,
                        detail: serde_json::json!({ "family": family }).to_string(),
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(Tokens { access_token: access, refresh_token: refresh, expires_in: self.access_ttl as u32, roles })
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

/// `bytes` random bytes, base64url: used for refresh tokens and generated passwords.
pub fn random_token(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&*buf)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}
