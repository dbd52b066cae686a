//! The middle of every token call: after `TokenManager` has found the token by serial, `run`
//! admits the call (health), waits — boundedly — for one of the token's pooled sessions, and
//! runs the operation on a blocking thread; failures are classified on the way back, and a
//! "token gone" code marks the token unavailable, drops its sessions and starts recovery.

use super::error::{OpError, TokenError, ckr_name, counted, function_name, gone_code, is_pin_rejection};
use super::health::{Admission, RecoveryPolicy, TokenHealth};
use super::info::{self, ConfiguredToken};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use hsm_config::{Secret, TokenRole};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Locks a mutex; a panic elsewhere while holding it leaves plain data we can still use.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How big each token's pool is and how long a call waits for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolSettings {
    pub(super) size: usize,
    pub(super) wait: Duration,
    pub(super) recovery: RecoveryPolicy,
}

/// Above this many cached key handles per token the cache is reset (it only saves a find).
const KEY_CACHE_LIMIT: usize = 4096;

struct Pooled {
    session: Session,
    generation: u64,
}

#[derive(Clone, Copy)]
struct CachedKey {
    generation: u64,
    handle: ObjectHandle,
}

/// One token the daemon knows by serial, with its pool and health.
pub(super) struct TokenEntry {
    pub(super) serial: String,
    /// From the configuration; None for a token that is not listed there.
    pub(super) role: Option<TokenRole>,
    pin: Option<Secret>,
    /// Where the token was last found; rewritten by recovery.
    slot: Mutex<Slot>,
    health: Mutex<TokenHealth>,
    /// Mirrors `health.is_available()` so pool waiters wake up when the token goes away.
    available_tx: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Pooled>>,
    /// The generation in which C_Login succeeded (login is per application, not per session).
    logged_in: Mutex<Option<u64>>,
    /// The login failure that made us stop presenting the PIN: `(function, CKR code)`.
    pin_rejected: Mutex<Option<(&'static str, String)>>,
    key_cache: Mutex<HashMap<Vec<u8>, CachedKey>>,
    probing: AtomicBool,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("serial", &self.serial)
            .field("role", &self.role)
            .field("pin", &if self.pin.is_some() { "set" } else { "unset" })
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    fn new(
        serial: String,
        role: Option<TokenRole>,
        pin: Option<Secret>,
        slot: Slot,
        settings: &PoolSettings,
    ) -> Self {
        TokenEntry {
            serial,
            role,
            pin,
            slot: Mutex::new(slot),
            health: Mutex::new(TokenHealth::new(settings.recovery)),
            available_tx: watch::Sender::new(true),
            permits: Arc::new(Semaphore::new(settings.size)),
            idle: Mutex::new(Vec::with_capacity(settings.size)),
            logged_in: Mutex::new(None),
            pin_rejected: Mutex::new(None),
            key_cache: Mutex::new(HashMap::new()),
            probing: AtomicBool::new(false),
        }
    }

    pub(super) fn has_pin(&self) -> bool {
        self.pin.is_some()
    }

    /// Usable as far as the daemon knows: PIN configured and not rejected, not marked unavailable.
    pub(super) fn is_available(&self) -> bool {
        // One lock at a time (separate statements): no lock is ever held while taking another.
        let pin_ok = self.has_pin() && lock(&self.pin_rejected).is_none();
        let up = lock(&self.health).is_available();
        pin_ok && up
    }

    fn pin_rejection(&self) -> Option<TokenError> {
        lock(&self.pin_rejected)
            .as_ref()
            .map(|(function, code)| TokenError::Pkcs11 { function, code: code.clone() })
    }

    fn unavailable(&self, reason: impl Into<String>) -> TokenError {
        TokenError::Unavailable { serial: self.serial.clone(), reason: reason.into() }
    }

    /// Logs the application in. Already logged in (another session did it) is success.
    /// The daemon never spends a PIN's last try (or tries a locked PIN) on its own: a token
    /// that says so is refused before C_Login, so a person can still change or unblock it.
    fn login(&self, pkcs11: &Pkcs11, slot: Slot, session: &Session) -> Result<(), OpError> {
        if let Some(rejected) = self.pin_rejection() {
            return Err(rejected.into());
        }
        let Some(pin) = &self.pin else {
            return Err(TokenError::NoPin { serial: self.serial.clone() }.into());
        };
        let token = counted("C_GetTokenInfo", pkcs11.get_token_info(slot))?;
        if token.user_pin_locked() {
            return Err(self.unavailable("the user PIN is locked: unblock it").into());
        }
        if token.user_pin_final_try() {
            return Err(self
                .unavailable(
                    "the user PIN is on its final try; the daemon will not spend it (change or unblock it)",
                )
                .into());
        }
        // AuthPin is secrecy's zeroizing box; Box::from(&str) allocates exactly once.
        let auth = AuthPin::new(Box::from(pin.expose()));
        match counted("C_Login", session.login(UserType::User, Some(&auth))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(rv, function)) if is_pin_rejection(rv) => {
                let (function, code) = (function_name(function), ckr_name(rv));
                tracing::error!(serial = %self.serial, %code, "the token rejected the configured PIN; not retrying it until restart");
                *lock(&self.pin_rejected) = Some((function, code.clone()));
                Err(TokenError::Pkcs11 { function, code }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An idle session of this generation; stale ones are closed on the way (blocking thread).
    fn take_idle(&self, generation: u64) -> Option<Session> {
        loop {
            let pooled = lock(&self.idle).pop()?;
            if pooled.generation == generation {
                return Some(pooled.session);
            }
        }
    }

    /// Returns a session to the pool, or closes it if the token went down meanwhile.
    fn put_back(&self, session: Session, generation: u64) {
        let current = {
            let h = lock(&self.health);
            h.is_available() && h.generation() == generation
        };
        if current {
            lock(&self.idle).push(Pooled { session, generation });
        }
    }
}

/// What an operation sees besides its session: the token's serial and its key-handle cache.
pub(super) struct OpCtx<'a> {
    entry: &'a TokenEntry,
    generation: u64,
}

impl OpCtx<'_> {
    pub(super) fn serial(&self) -> &str {
        &self.entry.serial
    }

    /// A private-key handle found earlier in this generation. Object handles are valid in
    /// every session of the application, so one cache per token serves the whole pool.
    pub(super) fn cached_key(&self, key_id: &[u8]) -> Option<ObjectHandle> {
        lock(&self.entry.key_cache).get(key_id).filter(|c| c.generation == self.generation).map(|c| c.handle)
    }

    pub(super) fn remember_key(&self, key_id: &[u8], handle: ObjectHandle) {
        let mut cache = lock(&self.entry.key_cache);
        if cache.len() >= KEY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key_id.to_vec(), CachedKey { generation: self.generation, handle });
    }

    pub(super) fn forget_key(&self, key_id: &[u8]) {
        lock(&self.entry.key_cache).remove(key_id);
    }
}

/// Everything `TokenManager` shares between clones.
pub(super) struct Inner {
    pub(super) pkcs11: Pkcs11,
    pub(super) module: PathBuf,
    pub(super) settings: PoolSettings,
    pub(super) configured: Vec<ConfiguredToken>,
    pub(super) card_pin: Option<Secret>,
    entries: RwLock<HashMap<String, Arc<TokenEntry>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("module", &self.module)
            .field("settings", &self.settings)
            .field("configured", &self.configured)
            .field("card_pin", &if self.card_pin.is_some() { "set" } else { "unset" })
            .field("tokens", &self.entries())
            .finish()
    }
}

impl Drop for Inner {
    /// Closes the pooled sessions — on a blocking thread when a runtime is around, since
    /// C_CloseSession is a PKCS#11 call like any other.
    fn drop(&mut self) {
        let entries = self.entries.get_mut().unwrap_or_else(PoisonError::into_inner);
        let sessions: Vec<Pooled> =
            entries.values().flat_map(|e| std::mem::take(&mut *lock(&e.idle))).collect();
        if sessions.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(sessions));
            }
            Err(_) => drop(sessions),
        }
    }
}

/// The operation a call runs on a session.
pub(super) type Op<T> = Box<dyn FnOnce(&Session, &OpCtx<'_>) -> Result<T, OpError> + Send>;

impl Inner {
    pub(super) fn new(
        pkcs11: Pkcs11,
        module: PathBuf,
        settings: PoolSettings,
        configured: Vec<ConfiguredToken>,
        card_pin: Option<Secret>,
    ) -> Self {
        Inner { pkcs11, module, settings, configured, card_pin, entries: RwLock::new(HashMap::new()) }
    }

    pub(super) fn entry(&self, serial: &str) -> Option<Arc<TokenEntry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(serial).cloned()
    }

    pub(super) fn entries(&self) -> Vec<Arc<TokenEntry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Makes sure a token found at `slot` has an entry. A known token keeps its entry (and
    /// pool); only recovery moves it to a new slot.
    pub(super) fn register(&self, serial: &str, label: &str, slot: Slot) -> Arc<TokenEntry> {
        if let Some(e) = self.entry(serial) {
            return e;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries
            .entry(serial.to_owned())
            .or_insert_with(|| {
                let (role, pin) = match info::match_config(&self.configured, serial, label) {
                    Some(c) => (Some(c.role), c.pin.clone()),
                    None => (None, self.card_pin.clone()),
                };
                tracing::debug!(
                    serial,
                    label,
                    slot = slot.id(),
                    ?role,
                    pin = pin.is_some(),
                    "token discovered"
                );
                Arc::new(TokenEntry::new(serial.to_owned(), role, pin, slot, &self.settings))
            })
            .clone()
    }

    /// Runs `op` on a pooled session of `entry`'s token.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        entry: Arc<TokenEntry>,
        op: Op<T>,
    ) -> Result<T, TokenError> {
        if Self::admit(&entry)? {
            // The state is Recovering: the blocking task finishes it even if we are cancelled.
            let (inner, e) = (self.clone(), entry.clone());
            blocking(move || inner.recover(&e)).await??;
        }
        let waiting = Instant::now();
        let permit = self.acquire(&entry).await;
        crate::metrics::global().pool_wait("pkcs11_session", waiting.elapsed().as_secs_f64());
        let permit = permit?;
        let inner = self.clone();
        blocking(move || {
            let _permit = permit; // held until the session is back in the pool
            inner.exec(&entry, op)
        })
        .await?
    }

    /// The checks every call passes before it may take a session: a PIN is configured and was
    /// not rejected, and the token's health admits the call. `Ok(true)` means this caller won
    /// the right to recover the token first.
    fn admit(entry: &TokenEntry) -> Result<bool, TokenError> {
        if !entry.has_pin() {
            return Err(TokenError::NoPin { serial: entry.serial.clone() });
        }
        if let Some(rejected) = entry.pin_rejection() {
            return Err(rejected);
        }
        let admission = lock(&entry.health).admit(Instant::now());
        match admission {
            Admission::Proceed { .. } => Ok(false),
            Admission::FailFast { reason } => Err(entry.unavailable(reason)),
            Admission::Recover => Ok(true),
        }
    }

    /// [`Inner::run`] for a caller that is already on a blocking thread (a batch worker, a
    /// benchmark thread): the same admission, pool bound and error classification, without
    /// the hop to tokio's blocking pool. Must not be called from an async task.
    pub(super) fn run_blocking<T>(
        self: &Arc<Self>,
        entry: Arc<TokenEntry>,
        op: Op<T>,
    ) -> Result<T, TokenError> {
        if Self::admit(&entry)? {
            self.recover(&entry)?;
        }
        let waiting = Instant::now();
        let permit = self.acquire_blocking(&entry);
        crate::metrics::global().pool_wait("pkcs11_session", waiting.elapsed().as_secs_f64());
        let _permit = permit?;
        self.exec(&entry, op)
    }

    /// Blocking-thread form of [`Inner::acquire`]: polls for a slot, bounded by `session_wait`,
    /// giving up at once when the token goes away.
    fn acquire_blocking(&self, entry: &TokenEntry) -> Result<OwnedSemaphorePermit, TokenError> {
        let deadline = Instant::now() + self.settings.wait;
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match entry.permits.clone().try_acquire_owned() {
                Ok(permit) => return Ok(permit),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(TokenError::Internal("the session pool was closed".into()));
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            if !*entry.available_tx.borrow() {
                let reason = lock(&entry.health).reason().unwrap_or("token went away").to_owned();
                return Err(entry.unavailable(reason));
            }
            if Instant::now() >= deadline {
                return Err(TokenError::Busy { serial: entry.serial.clone() });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// Waits for a session slot: at most `session_wait`, and not at all once the token is gone.
    async fn acquire(&self, entry: &TokenEntry) -> Result<OwnedSemaphorePermit, TokenError> {
        // Fast path: a free session needs no timer and no watch subscription.
        if let Ok(permit) = entry.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let mut available = entry.available_tx.subscribe();
        let permits = entry.permits.clone();
        tokio::select! {
            biased;
            permit = permits.acquire_owned() => {
                permit.map_err(|_| TokenError::Internal("the session pool was closed".into()))
            }
            _ = available.wait_for(|up| !*up) => {
                let reason = lock(&entry.health).reason().unwrap_or("token went away").to_owned();
                Err(entry.unavailable(reason))
            }
            () = tokio::time::sleep(self.settings.wait) => Err(TokenError::Busy { serial: entry.serial.clone() }),
        }
    }

    /// Blocking part of `run`: session from the pool (or a new, logged-in one), the operation,
    /// classification of its failure.
    fn exec<T>(self: &Arc<Self>, entry: &Arc<TokenEntry>, op: Op<T>) -> Result<T, TokenError> {
        let generation = {
            let h = lock(&entry.health);
            if !h.is_available() {
                return Err(entry.unavailable(h.reason().unwrap_or("token went away")));
            }
            h.generation()
        };
        let session = match entry.take_idle(generation) {
            Some(s) => s,
            None => match self.open_session(entry, generation) {
                Ok(s) => s,
                Err(e) => return Err(self.classify(entry, generation, e)),
            },
        };
        let result = op(&session, &OpCtx { entry, generation });
        match result {
            Ok(v) => {
                entry.put_back(session, generation);
                Ok(v)
            }
            Err(e) => {
                let gone = match &e {
                    OpError::Ck(ck) => gone_code(ck).is_some(),
                    OpError::Gone(_) => true,
                    OpError::Token(_) => false,
                };
                if gone {
                    drop(session); // useless now; closing it here keeps C_CloseSession off the executor
                } else {
                    entry.put_back(session, generation);
                }
                Err(self.classify(entry, generation, e))
            }
        }
    }

    fn open_session(&self, entry: &TokenEntry, generation: u64) -> Result<Session, OpError> {
        let slot = *lock(&entry.slot);
        let session = counted("C_OpenSession", self.pkcs11.open_rw_session(slot))?;
        if *lock(&entry.logged_in) != Some(generation) {
            entry.login(&self.pkcs11, slot, &session)?;
            *lock(&entry.logged_in) = Some(generation);
        }
        Ok(session)
    }

    /// Turns an operation's failure into the caller's error; a "token gone" code also takes
    /// the token down (once per outage).
    fn classify(self: &Arc<Self>, entry: &Arc<TokenEntry>, generation: u64, e: OpError) -> TokenError {
        match e {
            OpError::Token(t) => t,
            OpError::Gone(reason) => {
                self.mark_unavailable(entry, generation, reason.clone());
                entry.unavailable(reason)
            }
            OpError::Ck(ck) => match gone_code(&ck) {
                Some((rv, function)) => {
                    let reason = format!("{}: {}", function_name(function), ckr_name(rv));
                    self.mark_unavailable(entry, generation, reason.clone());
                    entry.unavailable(reason)
                }
                None => TokenError::from(ck),
            },
        }
    }

    /// Marks the token unavailable (if `generation` is still current), drops its sessions and
    /// cached handles, wakes pool waiters, and starts the background probe. Blocking thread only.
    fn mark_unavailable(self: &Arc<Self>, entry: &Arc<TokenEntry>, generation: u64, reason: String) {
        let took_down = lock(&entry.health).report_failure(generation, reason.clone(), Instant::now());
        if !took_down {
            return;
        }
        tracing::warn!(serial = %entry.serial, %reason, "token marked unavailable; will re-find it by serial");
        let stale = std::mem::take(&mut *lock(&entry.idle));
        drop(stale); // C_CloseSession on each; errors are expected and only logged by cryptoki
        lock(&entry.key_cache).clear();
        *lock(&entry.logged_in) = None;
        entry.available_tx.send_replace(false);
        self.spawn_probe(entry.clone());
    }

    /// Re-finds the token by serial, opens a session and logs in. Called (blocking) only by
    /// whoever moved the health to Recovering; always finishes that state.
    fn recover(&self, entry: &TokenEntry) -> Result<(), TokenError> {
        let attempt = || -> Result<(Slot, Session), TokenError> {
            if let Some(rejected) = entry.pin_rejection() {
                return Err(rejected);
            }
            let slot = info::find_slot_by_serial(&self.pkcs11, &entry.serial)?
                .ok_or_else(|| entry.unavailable("token not present"))?;
            let session = counted("C_OpenSession", self.pkcs11.open_rw_session(slot))?;
            entry.login(&self.pkcs11, slot, &session).map_err(|e| match e {
                OpError::Token(t) => t,
                OpError::Ck(ck) => TokenError::from(ck),
                OpError::Gone(reason) => entry.unavailable(reason),
            })?;
            Ok((slot, session))
        };
        match attempt() {
            Ok((slot, session)) => {
                *lock(&entry.slot) = slot;
                lock(&entry.key_cache).clear();
                let generation = lock(&entry.health).generation();
                *lock(&entry.logged_in) = Some(generation);
                lock(&entry.idle).push(Pooled { session, generation });
                lock(&entry.health).recovery_succeeded();
                entry.available_tx.send_replace(true);
                tracing::info!(serial = %entry.serial, slot = slot.id(), "token recovered");
                Ok(())
            }
            Err(e) => {
                let reason = match &e {
                    TokenError::Unavailable { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::debug!(serial = %entry.serial, %reason, "token recovery failed");
                lock(&entry.health).recovery_failed(reason.clone(), Instant::now());
                // A rejected PIN stays what it is; anything else is "still unavailable".
                Err(match e {
                    TokenError::Pkcs11 { .. } if entry.pin_rejection().is_some() => e,
                    _ => entry.unavailable(reason),
                })
            }
        }
    }

    /// Background recovery with backoff, so a token comes back even if nobody calls it.
    /// Needs a tokio runtime; without one, recovery still happens lazily on the next call.
    fn spawn_probe(self: &Arc<Self>, entry: Arc<TokenEntry>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if entry.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let next = lock(&entry.health).next_check(Instant::now());
                let Some(wait) = next else { break };
                if entry.pin_rejection().is_some() {
                    break;
                }
                tokio::time::sleep(wait).await;
                let Some(inner) = weak.upgrade() else { break };
                if lock(&entry.health).begin_probe(Instant::now()) {
                    let e = entry.clone();
                    // Outcome recorded in the health state; nothing else to do with it here.
                    let _ = tokio::task::spawn_blocking(move || inner.recover(&e)).await;
                }
            }
            entry.probing.store(false, Ordering::Release);
            // A new outage may have started just before the flag dropped: its spawn_probe saw
            // us still running, so carry on for it.
            let down = !lock(&entry.health).is_available();
            if down
                && entry.pin_rejection().is_none()
                && let Some(inner) = weak.upgrade()
            {
                inner.spawn_probe(entry);
            }
        });
    }
}

/// Runs blocking PKCS#11 work off the async executor.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TokenError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TokenError::Internal(format!("PKCS#11 worker failed: {e}")))
}
