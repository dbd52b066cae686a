//! PKCS#11 back end, below the service layer: the service calls `TokenManager` to list tokens,
//! generate, delete and use keys; each call finds its token by serial, borrows a session from
//! that token's pool (`pool.rs`) and runs the cryptoki work on a blocking thread.
//!
//! Layout: `error.rs` (TokenError, CKR names, "token gone" classification), `health.rs` (pure
//! availability/recovery state machine), `pool.rs` (per-token session pool, login, recovery),
//! `keys.rs` (keygen, SubjectPublicKeyInfo, find/delete, sign), `objects.rs` (certificate
//! objects, imported key pairs, public keys by CKA_ID), `info.rs` (slot/token discovery).

mod error;
mod health;
mod info;
mod keys;
mod objects;
mod pool;

pub use error::TokenError;
pub use health::RecoveryPolicy;
pub use objects::{CertificateObject, ImportedKeyPair, ImportedPrivateKey, TokenCertificate};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::Session;
use error::counted;
use hsm_config::{KeyAlgorithm, Pkcs11Config, TokenRole};
use info::ConfiguredToken;
use pool::{Inner, Op, OpCtx, PoolSettings, blocking, lock};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The daemon's handle on its PKCS#11 module and tokens. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenManager {
    /// Module, settings, tokens and whether each has a PIN — never a PIN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// One slot as the daemon sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSlotInfo {
    pub slot_id: u64,
    /// Token label; empty when no token is present.
    pub label: String,
    /// Token serial; empty when no token is present.
    pub serial: String,
    /// The token's manufacturer, or the slot's when no token is present.
    pub manufacturer: String,
    pub model: String,
    pub present: bool,
    /// Present, initialised, PIN known (and not rejected), not marked unavailable.
    pub available: bool,
    /// From `[[pkcs11.tokens]]`; None for a token the configuration does not list.
    pub role: Option<TokenRole>,
    pub free_public_memory: Option<u64>,
    pub total_public_memory: Option<u64>,
    pub free_private_memory: Option<u64>,
    pub total_private_memory: Option<u64>,
}

/// A key pair to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairRequest {
    /// CKA_LABEL of both halves.
    pub label: String,
    /// CKA_ID of both halves; later calls name the key by it.
    pub id: Vec<u8>,
    pub algorithm: KeyAlgorithm,
    /// CKA_TOKEN: false makes session objects (gone when the session closes; tests, previews).
    pub persistent: bool,
}

/// A generated key pair: the private half stays on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKeyPair {
    pub id: Vec<u8>,
    pub label: String,
    pub algorithm: KeyAlgorithm,
    /// SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
}

/// How `sign` uses the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// SHA-256 computed here, then CKM_ECDSA; the signature is raw r‖s.
    EcdsaSha256,
    /// `data` already is the digest; CKM_ECDSA; raw r‖s.
    EcdsaPrehashed,
    /// CKM_SHA256_RSA_PKCS (PKCS#1 v1.5 with SHA-256).
    RsaPkcs1Sha256,
}

/// Modules this process has loaded and initialised. PKCS#11 allows C_Initialize once per
/// process, so a second `TokenManager` on the same module (tests, a benchmark) shares it; the
/// module is never finalised or unloaded while the process runs.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

fn load_module(path: &Path) -> Result<Pkcs11, TokenError> {
    let mut modules = lock(&MODULES);
    if let Some((_, p)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(p.clone());
    }
    let module_err = |message: String| TokenError::Module { path: path.display().to_string(), message };
    let pkcs11 = Pkcs11::new(path).map_err(|e| module_err(e.to_string()))?;
    // OS locking: the pool calls the module from many threads at once.
    match counted("C_Initialize", pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))) {
        Ok(()) => {}
        // Someone else in this process (raw cryptoki in a test or benchmark) got there first.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            tracing::debug!(module = %path.display(), "PKCS#11 module already initialised in this process");
        }
        Err(e) => {
            let message = match &e {
                CkError::Pkcs11(..) => match TokenError::from_cryptoki(&e) {
                    TokenError::Pkcs11 { function, code } => format!("{function} failed: {code}"),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            return Err(module_err(message));
        }
    }
    modules.push((path.to_path_buf(), pkcs11.clone()));
    Ok(pkcs11)
}

impl TokenManager {
    /// Loads the module, C_Initialize once with OS locking, loads PINs (per-token PIN from
    /// config; `card_pin` for card tokens not listed) and discovers the present tokens.
    /// Blocking: called once at start-up. An unset PIN variable is not an error here: that
    /// token just has no PIN (calls needing login fail `NoPin`).
    pub fn open(cfg: &Pkcs11Config) -> Result<TokenManager, TokenError> {
        Self::open_with(cfg, RecoveryPolicy::default())
    }

    /// `open` with a non-default recovery backoff.
    pub fn open_with(cfg: &Pkcs11Config, recovery: RecoveryPolicy) -> Result<TokenManager, TokenError> {
        let mut configured = Vec::with_capacity(cfg.tokens.len());
        for (i, t) in cfg.tokens.iter().enumerate() {
            let pin = t
                .pin
                .load(&format!("pkcs11.tokens[{i}].pin"))
                .map_err(|e| TokenError::Internal(format!("loading a token PIN: {e}")))?;
            configured.push(ConfiguredToken {
                serial: t.serial.clone(),
                label: t.label.clone(),
                role: t.role,
                pin,
            });
        }
        let card_pin = cfg
            .card_pin
            .load("pkcs11.card_pin")
            .map_err(|e| TokenError::Internal(format!("loading the card PIN: {e}")))?;
        let settings = PoolSettings {
            // Validation keeps these in range; clamp anyway so a zero never means "always Busy".
            size: usize::try_from(cfg.sessions_per_token.max(1)).unwrap_or(1),
            wait: Duration::from_millis(u64::from(cfg.session_wait_ms.max(1))),
            recovery,
        };
        let pkcs11 = load_module(&cfg.module)?;
        let inner = Arc::new(Inner::new(pkcs11, cfg.module.clone(), settings, configured, card_pin));
        discover(&inner)?;
        let manager = TokenManager { inner };
        tracing::info!(module = %cfg.module.display(), tokens = manager.inner.entries().len(), "PKCS#11 module ready");
        Ok(manager)
    }

    /// Every slot: present tokens with info; tokens matched to config carry their role.
    pub async fn list_tokens(&self) -> Result<Vec<TokenSlotInfo>, TokenError> {
        let inner = self.inner.clone();
        blocking(move || {
            let scanned = info::scan(&inner.pkcs11)?;
            Ok(scanned
                .iter()
                .map(|s| {
                    let entry = s.usable_token().map(|(serial, label)| inner.register(serial, label, s.slot));
                    let mem = |v: Option<usize>| v.and_then(|n| u64::try_from(n).ok());
                    match &s.token {
                        Some(t) => TokenSlotInfo {
                            slot_id: s.slot.id(),
                            label: t.label().trim().to_owned(),
                            serial: t.serial_number().trim().to_owned(),
                            manufacturer: t.manufacturer_id().trim().to_owned(),
                            model: t.model().trim().to_owned(),
                            present: true,
                            available: entry.as_ref().is_some_and(|e| e.is_available()),
                            role: entry.as_ref().and_then(|e| e.role),
                            free_public_memory: mem(t.free_public_memory()),
                            total_public_memory: mem(t.total_public_memory()),
                            free_private_memory: mem(t.free_private_memory()),
                            total_private_memory: mem(t.total_private_memory()),
                        },
                        None => TokenSlotInfo {
                            slot_id: s.slot.id(),
                            label: String::new(),
                            serial: String::new(),
                            manufacturer: s.slot_info.manufacturer_id().trim().to_owned(),
                            model: String::new(),
                            present: false,
                            available: false,
                            role: None,
                            free_public_memory: None,
                            total_public_memory: None,
                            free_private_memory: None,
                            total_private_memory: None,
                        },
                    }
                })
                .collect())
        })
        .await?
    }

    /// Is an initialised token with this serial present now?
    pub async fn token_present(&self, serial: &str) -> bool {
        let inner = self.inner.clone();
        let serial = serial.to_owned();
        matches!(blocking(move || info::find_slot_by_serial(&inner.pkcs11, &serial)).await, Ok(Ok(Some(_))))
    }

    /// Generates a key pair on the token: the private key is CKA_TOKEN=`persistent`, private,
    /// sensitive, not extractable, sign-only; the public key verifies; both carry `id`/`label`.
    pub async fn generate_key_pair(
        &self,
        token_serial: &str,
        req: KeyPairRequest,
    ) -> Result<GeneratedKeyPair, TokenError> {
        self.run(token_serial, Box::new(move |s, ctx| keys::generate(s, ctx, &req))).await
    }

    /// Destroys the private and public key objects with this CKA_ID. None existing is fine;
    /// returns how many objects were destroyed.
    pub async fn delete_key_pair(&self, token_serial: &str, key_id: Vec<u8>) -> Result<usize, TokenError> {
        self.run(token_serial, Box::new(move |s, ctx| keys::delete(s, ctx, &key_id))).await
    }

    /// Signs with the private key having this CKA_ID. ECDSA signatures are raw r‖s.
    pub async fn sign(
        &self,
        token_serial: &str,
        key_id: Vec<u8>,
        mechanism: SignMechanism,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, TokenError> {
        self.run(token_serial, Box::new(move |s, ctx| keys::sign(s, ctx, &key_id, mechanism, &data))).await
    }

    /// [`TokenManager::sign`] for callers already on a blocking thread (batch workers sign
    /// thousands of certificates in a loop; a hop to tokio's blocking pool per signature
    /// would cost a third of SoftHSM's signing rate). Same pool, admission and errors.
    /// Must not be called from an async task: it blocks while it waits for a session.
    pub fn sign_blocking(
        &self,
        token_serial: &str,
        key_id: &[u8],
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let entry = match self.inner.entry(token_serial) {
            Some(e) => e,
            None => {
                discover(&self.inner)?;
                self.inner
                    .entry(token_serial)
                    .ok_or_else(|| TokenError::NotFound { serial: token_serial.to_owned() })?
            }
        };
        let (key_id, data) = (key_id.to_vec(), data.to_vec());
        self.inner.run_blocking(entry, Box::new(move |s, ctx| keys::sign(s, ctx, &key_id, mechanism, &data)))
    }

    /// Writes an X.509 certificate object (public, persistent) under the given CKA_ID.
    pub async fn create_certificate(
        &self,
        token_serial: &str,
        cert: CertificateObject,
    ) -> Result<(), TokenError> {
        self.run(token_serial, Box::new(move |s, _ctx| objects::create_certificate(s, &cert))).await
    }

    /// The X.509 certificate objects on the token; with `id`, only those with that CKA_ID.
    pub async fn list_certificates(
        &self,
        token_serial: &str,
        id: Option<Vec<u8>>,
    ) -> Result<Vec<TokenCertificate>, TokenError> {
        self.run(token_serial, Box::new(move |s, _ctx| objects::list_certificates(s, id.as_deref()))).await
    }

    /// Destroys the certificate objects with this CKA_ID; returns how many went.
    pub async fn delete_certificates(&self, token_serial: &str, id: Vec<u8>) -> Result<usize, TokenError> {
        self.run(token_serial, Box::new(move |s, _ctx| objects::delete_certificates(s, &id))).await
    }

    /// Creates an imported key pair (public and private objects under one CKA_ID; the private
    /// one sensitive, not extractable, sign-only).
    pub async fn import_key_pair(&self, token_serial: &str, key: ImportedKeyPair) -> Result<(), TokenError> {
        self.run(token_serial, Box::new(move |s, ctx| objects::import_key_pair(s, ctx, &key))).await
    }

    /// SubjectPublicKeyInfo DER of the public key object with this CKA_ID; None if absent.
    pub async fn public_key(&self, token_serial: &str, id: Vec<u8>) -> Result<Option<Vec<u8>>, TokenError> {
        self.run(token_serial, Box::new(move |s, _ctx| objects::public_key(s, &id))).await
    }

    /// Runs `f` on one of the token's pooled, logged-in sessions, on a blocking thread, with the
    /// same admission, bound and error classification as every other call. For operations
    /// this layer has not typed yet, tests and benchmarks. `f` must not log out or close the
    /// session.
    pub async fn with_session<T, F>(&self, token_serial: &str, f: F) -> Result<T, TokenError>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T, CkError> + Send + 'static,
    {
        self.run(token_serial, Box::new(move |s, _ctx: &OpCtx<'_>| f(s).map_err(Into::into))).await
    }

    /// Whether the daemon currently considers this token usable: known, PIN configured and not
    /// rejected, not marked unavailable. False for an unknown serial.
    pub fn is_available(&self, serial: &str) -> bool {
        self.inner.entry(serial).is_some_and(|e| e.is_available())
    }

    async fn run<T: Send + 'static>(&self, serial: &str, op: Op<T>) -> Result<T, TokenError> {
        let entry = match self.inner.entry(serial) {
            Some(e) => e,
            None => {
                // Maybe inserted since the last look (a card put in a reader).
                let inner = self.inner.clone();
                blocking(move || discover(&inner)).await??;
                self.inner.entry(serial).ok_or_else(|| TokenError::NotFound { serial: serial.to_owned() })?
            }
        };
        self.inner.run(entry, op).await
    }
}

/// Registers every present, initialised token (blocking).
fn discover(inner: &Inner) -> Result<(), TokenError> {
    for s in info::scan(&inner.pkcs11)? {
        if let Some((serial, label)) = s.usable_token() {
            inner.register(serial, label, s.slot);
        }
    }
    Ok(())
}
