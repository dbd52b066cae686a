//! Password reset, in the domain layer (AuthService's RequestPasswordReset, ResetPassword and
//! ValidateCode, all public): a one-time code of 256 random bits, stored as its SHA-256, sent
//! through the configured [`Notifier`] to the user's email, expiring after
//! `auth.password_reset_code_ttl_secs`. Spending it sets the password, ends every session of
//! the user and clears their sign-in throttling.
//!
//! What it must not reveal or allow: which logins exist (an unknown login, a disabled user and
//! a user without an email answer exactly like a known one — `true`, then `false` within 15
//! minutes — but nothing is sent), and guessing codes (failed guesses are counted per source
//! address and overall; past a limit every code attempt is refused with RESOURCE_EXHAUSTED).

use super::auth::{AuthService, ClientInfo, random_token, sha256};
use super::notify::{Message, Notifier};
use super::{ServiceError, password_policy};
use crate::store::{self, Store, audit, password_resets, users};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// A login gets at most one code per this many seconds.
pub const RESEND_AFTER_SECS: i64 = 15 * 60;
/// Failed code attempts from one source address within [`GUESS_WINDOW_SECS`] after which
/// that source is refused.
pub const MAX_GUESSES_PER_SOURCE: usize = 10;
/// Failed code attempts from everywhere within [`GUESS_WINDOW_SECS`] after which every
/// attempt is refused (a distributed guesser).
pub const MAX_GUESSES_OVERALL: usize = 1_000;
pub const GUESS_WINDOW_SECS: i64 = 15 * 60;
/// Random bytes in a code (256 bits).
const CODE_BYTES: usize = 32;
/// Logins remembered for the resend answer of logins that get no code.
const MAX_REMEMBERED: usize = 100_000;

/// Failed code attempts, for the guessing limit.
#[derive(Debug, Default)]
struct Guesses {
    by_source: HashMap<String, VecDeque<i64>>,
    overall: VecDeque<i64>,
}

impl Guesses {
    fn prune(&mut self, now: i64) {
        let old = |q: &mut VecDeque<i64>| {
            while q.front().is_some_and(|t| *t <= now - GUESS_WINDOW_SECS) {
                q.pop_front();
            }
        };
        old(&mut self.overall);
        self.by_source.retain(|_, q| {
            old(q);
            !q.is_empty()
        });
    }
}

#[derive(Debug)]
pub struct PasswordResetService {
    store: Store,
    auth: Arc<AuthService>,
    notifier: Arc<Notifier>,
    code_ttl: i64,
    guesses: Mutex<Guesses>,
    /// When a login that gets no code (unknown, disabled, no email) last asked for one, so it
    /// answers like a known login does.
    pretended: Mutex<HashMap<String, i64>>,
}

impl PasswordResetService {
    pub fn new(
        config: &hsm_config::Config,
        store: Store,
        auth: Arc<AuthService>,
    ) -> Result<Self, ServiceError> {
        Ok(PasswordResetService {
            store,
            auth,
            notifier: Arc::new(Notifier::from_config(config)?),
            code_ttl: i64::from(config.auth.password_reset_code_ttl_secs),
            guesses: Mutex::new(Guesses::default()),
            pretended: Mutex::new(HashMap::new()),
        })
    }

    /// Issues a code for `username` and sends it. False when a code went out for that login
    /// in the last 15 minutes. Logins that get no code answer the same way.
    pub async fn request(&self, username: &str) -> Result<bool, ServiceError> {
        let username = username.trim();
        if username.is_empty() {
            return Err(ServiceError::invalid("username", "is required"));
        }
        if username.len() > 256 {
            return Err(ServiceError::invalid("username", "is longer than 256 characters"));
        }
        let now = store::now();
        let name = username.to_owned();
        let user = self.store.read(move |c| users::by_username(c, &name).map_err(ServiceError::from)).await?;
        let (user, email) = match user {
            Some(u) if u.enabled && u.profile.email.is_some() => {
                let email = u.profile.email.clone().unwrap_or_default();
                (u, email)
            }
            _ => return Ok(self.pretend(username, now)),
        };
        let code = Zeroizing::new(random_token(CODE_BYTES));
        let hash = sha256(code.as_bytes());
        let minutes = (self.code_ttl + 59) / 60;
        let message = Message {
            to: email,
            subject: "cardhsm password reset".into(),
            body: Zeroizing::new(format!(
                "A password reset was asked for the cardhsm account {:?}.\n\
                 Your one-time code: {}\n\
                 It expires in {minutes} minute(s). If you did not ask for it, ignore this message.\n",
                user.username,
                code.as_str()
            )),
        };
        let expires_at = now + self.code_ttl;
        // The code and its audit record commit first; the message goes out after, outside the
        // transaction (an SMTP exchange must not hold the store's writer). A code whose message
        // could not be delivered is deleted again, so it is never usable unsent and does not
        // hold back the next request for 15 minutes.
        let stored_hash = hash.clone();
        let issued = self
            .store
            .write(move |tx| {
                if password_resets::last_issued(tx, &user.id)?.is_some_and(|t| t > now - RESEND_AFTER_SECS) {
                    return Ok(false);
                }
                password_resets::purge(tx, now)?;
                password_resets::insert(tx, &stored_hash, &user.id, now, expires_at)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &user.username,
                        action: "user.password_reset_request",
                        target_type: "user",
                        target_id: &user.id,
                        detail: serde_json::json!({ "expires_at": expires_at }).to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(true)
            })
            .await?;
        if !issued {
            return Ok(false);
        }
        let notifier = self.notifier.clone();
        let delivered = tokio::task::spawn_blocking(move || notifier.deliver(&message))
            .await
            .map_err(|e| ServiceError::Internal(format!("delivery task: {e}")))?;
        if let Err(e) = delivered {
            self.store
                .write(move |tx| password_resets::delete(tx, &hash).map_err(ServiceError::from))
                .await?;
            return Err(e);
        }
        Ok(true)
    }

    /// Whether `code` is valid now. A code that is not counts as a failed guess.
    pub async fn validate(&self, code: Zeroizing<String>, client: &ClientInfo) -> Result<bool, ServiceError> {
        let hash = self.guess_allowed(&code, client)?;
        let found = self.lookup(hash).await?;
        if found.is_none() {
            self.failed_guess(client);
        }
        Ok(found.is_some())
    }

    /// Sets a new password with a code. The code is spent, every session and API key of the
    /// user ends (per-user not-before), and their sign-in throttling is cleared. A password
    /// the policy refuses leaves the code usable.
    pub async fn reset(
        &self,
        code: Zeroizing<String>,
        new_password: Zeroizing<String>,
        repeated_new_password: Zeroizing<String>,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let hash = self.guess_allowed(&code, client)?;
        let Some(rec) = self.lookup(hash.clone()).await? else {
            self.failed_guess(client);
            return Err(invalid_code());
        };
        let min = password_policy::min_length(&self.store, Some(&rec.user_id)).await?;
        password_policy::check(
            "new_password",
            &new_password,
            "repeated_new_password",
            Some(&repeated_new_password),
            min,
        )?;
        let lookup = rec.user_id.clone();
        let Some(user) =
            self.store.read(move |c| users::by_id(c, &lookup).map_err(ServiceError::from)).await?
        else {
            return Err(invalid_code());
        };
        let password_hash = self.auth.hash_new_password(new_password).await?;
        let id = user.id.clone();
        self.auth
            .end_user_credentials(&user.username, &user.id, "user.password_reset", move |tx| {
                // Spent here, in the transaction that sets the password: of two concurrent
                // resets with one code exactly one wins.
                if !password_resets::spend(tx, &hash, store::now())? {
                    return Err(invalid_code());
                }
                users::set_password_hash(tx, &id, &password_hash)?;
                Ok(())
            })
            .await?;
        self.auth.clear_sign_in_throttle(&user.username);
        Ok(())
    }

    /// The usable code record for `hash`, if any.
    async fn lookup(&self, hash: Vec<u8>) -> Result<Option<password_resets::ResetCodeRecord>, ServiceError> {
        let now = store::now();
        Ok(self
            .store
            .read(move |c| password_resets::by_hash(c, &hash).map_err(ServiceError::from))
            .await?
            .filter(|r| r.usable(now)))
    }

    /// Refuses a code attempt from a source (or from anywhere) over the guessing limit; gives
    /// the code's hash otherwise.
    fn guess_allowed(&self, code: &str, client: &ClientInfo) -> Result<Vec<u8>, ServiceError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(ServiceError::invalid("code", "is required"));
        }
        let now = store::now();
        let mut g = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        g.prune(now);
        let from_source = g.by_source.get(&client.source_ip).map_or(0, VecDeque::len);
        if from_source >= MAX_GUESSES_PER_SOURCE || g.overall.len() >= MAX_GUESSES_OVERALL {
            let oldest = if from_source >= MAX_GUESSES_PER_SOURCE {
                g.by_source.get(&client.source_ip).and_then(|q| q.front().copied())
            } else {
                g.overall.front().copied()
            };
            let wait = oldest.map_or(GUESS_WINDOW_SECS, |t| t + GUESS_WINDOW_SECS - now).max(1);
            return Err(ServiceError::ResourceExhausted(format!(
                "too many invalid password-reset codes; try again in {wait} s"
            )));
        }
        // Longer than any code we issue: not one of ours (and not worth hashing a megabyte).
        if code.len() > 256 {
            drop(g);
            self.failed_guess(client);
            return Err(invalid_code());
        }
        Ok(sha256(code.as_bytes()))
    }

    fn failed_guess(&self, client: &ClientInfo) {
        let now = store::now();
        let mut g = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        g.overall.push_back(now);
        g.by_source.entry(client.source_ip.clone()).or_default().push_back(now);
    }

    /// The answer for a login that gets no code: like a known login's, nothing sent.
    fn pretend(&self, username: &str, now: i64) -> bool {
        let mut seen = self.pretended.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, t| *t > now - RESEND_AFTER_SECS);
        }
        let key = username.to_lowercase();
        match seen.get(&key) {
            Some(t) if *t > now - RESEND_AFTER_SECS => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

fn invalid_code() -> ServiceError {
    ServiceError::invalid("code", "is not a valid password-reset code (unknown, used or expired)")
}
