//! The batch engine, inside the batch service: works the persisted state machine. One worker
//! task per batch reads PENDING devices in groups (`batches.devices_per_transaction`) and hands
//! each group to a chunk task; at most `batches.workers` chunk tasks run at once over all
//! batches (a semaphore), each generating keys and building PKCS#12 files on a blocking thread
//! and signing through the token session pool, so every core is busy while the async runtime
//! and the store stay free for other requests.
//!
//! Crash safety: nothing of a device leaves the process before the one transaction that
//! records its certificate, finishes its row, moves the balance and writes its audit records
//! commits. A device whose transaction did not commit is still PENDING and is simply done
//! again on restart; the certificate signed for it was never recorded and never left the
//! process, so it never existed. `start` resumes every batch the engine still has work in.

use super::secret::PasswordKey;
use super::{BATCH_TARGET, Batch, DEVICE_TARGET, Kind, Status, device_target};
use crate::pki;
use crate::service::issuance::{self, BatchSigning, IssuanceService, Password};
use crate::service::{OrgScope, Principal, Role, ServiceError};
use crate::store::batches::{self as batch_store, DeviceOutcome, PendingDevice};
use crate::store::organizations as org_store;
use crate::store::{self, Store, audit};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

/// How long a worker waits before retrying after a transient failure (token or store): the
/// first delay, doubled at each failure in a row up to the last.
const RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How often WatchBatch looks at the batch.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A progress event of WatchBatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub batch_id: String,
    pub status: Status,
    pub batch_size: u32,
    pub issued: u32,
    pub failed: u32,
    pub done: bool,
}

/// How a finished batch ends.
#[derive(Debug, Clone)]
pub enum Ending {
    Reject { reason: String },
    Revoke { reason_code: u32, comment: String },
}

pub struct Engine {
    store: Store,
    issuance: Arc<IssuanceService>,
    key: PasswordKey,
    per_tx: u32,
    zip_lifetime_secs: i64,
    sweep_interval: Duration,
    /// Chunk tasks running at once, over every batch.
    permits: Arc<Semaphore>,
    /// Batches with a worker.
    running: Mutex<HashSet<String>>,
    stop: watch::Sender<bool>,
    /// Workers alive, and a wake-up when one ends (for `stopped`).
    active: AtomicUsize,
    ended: Notify,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("per_tx", &self.per_tx).finish_non_exhaustive()
    }
}

/// Whether an error is the input's fault (the device or batch cannot be issued as asked) rather
/// than a back end's (retry later).
fn permanent(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::InvalidArgument { .. }
            | ServiceError::FailedPrecondition(_)
            | ServiceError::NotFound(_)
    )
}

/// The engine acts for the batch's creator in audit records and revocations.
fn acting_as(username: &str) -> Principal {
    Principal {
        user_id: String::new(),
        username: username.to_owned(),
        roles: vec![Role::Admin],
        expires_at: 0,
        session_id: String::new(),
        api_key_id: None,
        scope: OrgScope::All,
        profiles: Default::default(),
    }
}

/// One device on its way through a chunk.
enum Work {
    Failed {
        position: u32,
        error: String,
    },
    Keyed {
        position: u32,
        resolved: issuance::profiles::Resolved,
        key: Option<pki::PrivateKeyMaterial>,
        spki: Vec<u8>,
    },
    Signed {
        position: u32,
        common_name: String,
        record: issuance::Certificate,
        key: Option<pki::PrivateKeyMaterial>,
    },
    Done {
        position: u32,
        record: issuance::Certificate,
        pkcs12: Option<Vec<u8>>,
    },
}

/// What a chunk task needs of its batch.
struct ChunkCtx {
    batch: Batch,
    signing: BatchSigning,
    password: Option<Password>,
    key_kind: Option<pki::KeyKind>,
}

impl Engine {
    pub fn new(
        config: &hsm_config::BatchesConfig,
        store: Store,
        issuance: Arc<IssuanceService>,
        key: PasswordKey,
    ) -> Engine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let workers = if config.workers == 0 { cores } else { config.workers as usize };
        Engine {
            store,
            issuance,
            key,
            per_tx: config.devices_per_transaction.max(1),
            zip_lifetime_secs: i64::from(config.zip_lifetime_secs),
            sweep_interval: Duration::from_secs(u64::from(config.sweep_interval_secs.max(1))),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            running: Mutex::new(HashSet::new()),
            stop: watch::channel(false).0,
            active: AtomicUsize::new(0),
            ended: Notify::new(),
        }
    }

    pub fn key(&self) -> &PasswordKey {
        &self.key
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resumes every batch with work left, and starts the sweeper of expired files.
    pub async fn start(self: Arc<Self>) -> Result<(), ServiceError> {
        let statuses: Vec<&'static str> = Status::ENGINE_WORK.iter().map(|s| s.as_str()).collect();
        let ids = self
            .store
            .read(move |c| batch_store::ids_in_status(c, &statuses).map_err(ServiceError::from))
            .await?;
        if !ids.is_empty() {
            tracing::info!(batches = ids.len(), "resuming unfinished batches");
        }
        for id in &ids {
            self.kick(id);
        }
        let me = self.clone();
        tokio::spawn(async move { me.sweep_loop().await });
        Ok(())
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for every worker to end, at most `limit`.
    pub async fn stopped(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.ended.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Makes sure a worker is on batch `id` (no-op when one is, or when stopping).
    pub fn kick(self: &Arc<Self>, id: &str) {
        if self.stopping() {
            return;
        }
        match self.running.lock() {
            Ok(mut r) => {
                if !r.insert(id.to_owned()) {
                    return;
                }
            }
            Err(_) => return,
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            me.work(&id).await;
            if let Ok(mut r) = me.running.lock() {
                r.remove(&id);
            }
            me.active.fetch_sub(1, Ordering::SeqCst);
            me.ended.notify_waiters();
        });
    }

    /// The worker of one batch: moves it until the engine has nothing left to do in it.
    async fn work(self: &Arc<Self>, id: &str) {
        let mut stop = self.stop.subscribe();
        let mut delay = RETRY_DELAY;
        loop {
            if self.stopping() {
                return;
            }
            match self.step(id).await {
                Ok(true) => delay = RETRY_DELAY,
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(batch = %id, error = %e, retry_in_secs = delay.as_secs(), "batch worker: will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// One step of the state machine; Ok(true) when there is more to do.
    async fn step(self: &Arc<Self>, id: &str) -> Result<bool, ServiceError> {
        let key = id.to_owned();
        let Some(b) = self.store.read(move |c| batch_store::get(c, &key).map_err(ServiceError::from)).await?
        else {
            return Ok(false);
        };
        match Status::parse(&b.status) {
            Some(Status::PendingCreation) => {
                self.transition(&b, Status::PendingCreation, Status::PendingIssue, "", "batch.start").await?;
                Ok(true)
            }
            Some(Status::PendingIssue) => {
                self.issue(&b).await?;
                if self.stopping() {
                    return Ok(false);
                }
                self.finish_issue(&b.id).await
            }
            Some(Status::ProcessingReject | Status::ProcessingRevoke) => {
                self.finish_ending(&b).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// `from` → `to` with an audit record, when the batch is still `from`.
    async fn transition(
        &self,
        b: &Batch,
        from: Status,
        to: Status,
        reason: &str,
        action: &'static str,
    ) -> Result<(), ServiceError> {
        let (id, who, reason) = (b.id.clone(), b.created_by.clone(), reason.to_owned());
        self.store
            .write(move |tx| {
                let Some(current) = batch_store::get(tx, &id)? else { return Ok(()) };
                if current.status != from.as_str() {
                    return Ok(());
                }
                batch_store::set_status(tx, &id, to.as_str(), &reason, false, store::now())?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action,
                        target_type: BATCH_TARGET,
                        target_id: &id,
                        detail: serde_json::json!({ "status": to.as_str() }).to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// Issues every PENDING device of `b` (returns early when stopping).
    async fn issue(self: &Arc<Self>, b: &Batch) -> Result<(), ServiceError> {
        let signing =
            match self.issuance.batch_signing(&b.authority_id, &b.profile_id, b.validity_years).await {
                Ok(s) => s,
                Err(e) if permanent(&e) => {
                    // The authority or profile can no longer issue: every device left fails with
                    // the reason (its reservation given back), and the batch ends.
                    tracing::warn!(batch = %b.id, error = %e, "batch cannot be issued");
                    return self.fail_pending(b, &e.to_string()).await;
                }
                Err(e) => return Err(e),
            };
        let kind = Kind::parse(&b.kind).unwrap_or(Kind::Generator);
        let (password, key_kind) = if kind == Kind::Csr {
            (None, None)
        } else {
            let id = b.id.clone();
            let sealed = self
                .store
                .read(move |c| batch_store::password_enc(c, &id).map_err(ServiceError::from))
                .await?
                .ok_or_else(|| {
                    ServiceError::Internal(format!("batch {} has lost its PKCS#12 password", b.id))
                })?;
            (Some(self.key.open(&b.id, &sealed)?), Some(key_kind_of(&b.key_type)?))
        };
        let ctx = Arc::new(ChunkCtx { batch: b.clone(), signing, password, key_kind });
        let mut stop = self.stop.subscribe();
        let mut tasks = tokio::task::JoinSet::new();
        let mut cursor: Option<u32> = None;
        let mut first_error: Option<ServiceError> = None;
        loop {
            if self.stopping() {
                break;
            }
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.changed() => break,
            };
            let (id, limit) = (b.id.clone(), self.per_tx);
            let devices = self
                .store
                .read(move |c| {
                    batch_store::pending_devices(c, &id, cursor, limit).map_err(ServiceError::from)
                })
                .await?;
            let Some(last) = devices.last() else { break };
            cursor = Some(last.position);
            let (me, ctx) = (self.clone(), ctx.clone());
            tasks.spawn(async move {
                let out = me.chunk(&ctx, devices).await;
                drop(permit);
                out
            });
            while let Some(done) = tasks.try_join_next() {
                note(&mut first_error, done);
            }
        }
        // Chunks in flight finish and commit, even when stopping (each is short).
        while let Some(done) = tasks.join_next().await {
            note(&mut first_error, done);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One group of devices: keys, signatures, PKCS#12 files, then one transaction.
    async fn chunk(&self, ctx: &ChunkCtx, devices: Vec<PendingDevice>) -> Result<(), ServiceError> {
        let profile = ctx.signing.profile().clone();
        let key_kind = ctx.key_kind;
        // Parameters and keys, off the executor.
        let keyed = tokio::task::spawn_blocking(move || {
            devices.into_iter().map(|d| prepare_device(&profile, key_kind, d)).collect::<Vec<Work>>()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("key generation task: {e}")))?;
        // Signatures, through the token session pool.
        let mut signed = Vec::with_capacity(keyed.len());
        for w in keyed {
            signed.push(match w {
                Work::Keyed { position, resolved, key, spki } => {
                    match ctx.signing.sign(&resolved, spki).await {
                        Ok(record) => {
                            Work::Signed { position, common_name: resolved.common_name, record, key }
                        }
                        Err(e) if permanent(&e) => Work::Failed { position, error: e.to_string() },
                        Err(e) => return Err(e),
                    }
                }
                other => other,
            });
        }
        // PKCS#12 files, off the executor.
        let chain = ctx.signing.chain().to_vec();
        let password = ctx.password.clone();
        let iterations = ctx.signing.profile().pkcs12_iterations;
        let done = tokio::task::spawn_blocking(move || {
            signed
                .into_iter()
                .map(|w| match w {
                    Work::Signed { position, common_name, record, key: Some(key) } => {
                        let pw = password.as_ref().map(|p| p.0.as_str()).unwrap_or_default();
                        match pki::build_pkcs12_with(
                            &record.certificate_der,
                            &chain,
                            &key,
                            &common_name,
                            pw,
                            iterations,
                        ) {
                            Ok(p12) => Work::Done { position, record, pkcs12: Some(p12) },
                            Err(e) => Work::Failed { position, error: format!("PKCS#12: {e}") },
                        }
                    }
                    Work::Signed { position, record, key: None, .. } => {
                        Work::Done { position, record, pkcs12: None }
                    }
                    other => other,
                })
                .collect::<Vec<Work>>()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("PKCS#12 task: {e}")))?;
        self.commit(&ctx.batch, done).await
    }

    /// Records a chunk's certificates, finishes its device rows, moves the balance and writes
    /// the audit records, all in one transaction.
    async fn commit(&self, b: &Batch, work: Vec<Work>) -> Result<(), ServiceError> {
        let b = b.clone();
        let issued = self
            .store
            .write(move |tx| {
                let now = store::now();
                let (mut issued, mut failed) = (0i64, 0i64);
                for w in &work {
                    match w {
                        Work::Done { position, record, pkcs12 } => {
                            let outcome = DeviceOutcome::Issued {
                                common_name: &record.common_name,
                                serial: &record.serial,
                                certificate_id: &record.id,
                                pkcs12: pkcs12.as_deref(),
                            };
                            // The certificate is inserted first: the device row points at it.
                            issuance::record_issued(tx, &b.created_by, record, "batch")?;
                            if !batch_store::finish_device(tx, &b.id, *position, &outcome, now)? {
                                return Err(ServiceError::Internal(format!(
                                    "device {position} of batch {} was not pending",
                                    b.id
                                )));
                            }
                            issued += 1;
                            audit::append(
                                tx,
                                audit::AuditEntry {
                                    actor: &b.created_by,
                                    action: "device.issue",
                                    target_type: DEVICE_TARGET,
                                    target_id: &device_target(&b.id, *position),
                                    detail: serde_json::json!({
                                        "certificate_id": record.id,
                                        "serial": record.serial,
                                        "common_name": record.common_name,
                                    })
                                    .to_string(),
                                },
                            )?;
                        }
                        Work::Failed { position, error } => {
                            let outcome = DeviceOutcome::Failed { error };
                            if batch_store::finish_device(tx, &b.id, *position, &outcome, now)? {
                                failed += 1;
                                audit::append(
                                    tx,
                                    audit::AuditEntry {
                                        actor: &b.created_by,
                                        action: "device.fail",
                                        target_type: DEVICE_TARGET,
                                        target_id: &device_target(&b.id, *position),
                                        detail: serde_json::json!({ "error": error }).to_string(),
                                    },
                                )?;
                            }
                        }
                        Work::Keyed { .. } | Work::Signed { .. } => {
                            return Err(ServiceError::Internal("a device left its chunk unfinished".into()));
                        }
                    }
                }
                org_store::move_balance(
                    tx,
                    &b.organization_id,
                    &b.authority_id,
                    -(issued + failed),
                    issued,
                    now,
                )?;
                if issued > 0 {
                    batch_store::count_day(tx, &b.organization_id, now, 0, issued)?;
                }
                Ok::<_, ServiceError>(issued)
            })
            .await?;
        // Counted once committed: a chunk that rolled back issued nothing.
        crate::metrics::global().batch_devices_issued(u64::try_from(issued).unwrap_or(0));
        Ok(())
    }

    /// Every device still PENDING fails with `error`.
    async fn fail_pending(&self, b: &Batch, error: &str) -> Result<(), ServiceError> {
        loop {
            let id = b.id.clone();
            let limit = self.per_tx;
            let devices = self
                .store
                .read(move |c| batch_store::pending_devices(c, &id, None, limit).map_err(ServiceError::from))
                .await?;
            if devices.is_empty() {
                return Ok(());
            }
            let work = devices
                .into_iter()
                .map(|d| Work::Failed { position: d.position, error: error.to_owned() })
                .collect();
            self.commit(b, work).await?;
        }
    }

    /// Ends issuing once no device is PENDING: READY_FOR_DOWNLOAD, ISSUED_PARTLY or BROKEN.
    /// Ok(true) when devices are still pending (the worker goes round again).
    async fn finish_issue(&self, id: &str) -> Result<bool, ServiceError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let Some(b) = batch_store::get(tx, &id)? else { return Ok(false) };
                if b.status != Status::PendingIssue.as_str() {
                    return Ok(false);
                }
                if !batch_store::pending_devices(tx, &id, None, 1)?.is_empty() {
                    return Ok(true);
                }
                let (status, reason) = if b.failed == 0 {
                    (Status::ReadyForDownload, String::new())
                } else if b.issued > 0 {
                    (Status::IssuedPartly, format!("{} of {} devices failed", b.failed, b.batch_size))
                } else {
                    let first = batch_store::first_error(tx, &id)?.unwrap_or_default();
                    (Status::Broken, format!("no device could be issued: {first}"))
                };
                let now = store::now();
                batch_store::set_status(tx, &id, status.as_str(), &reason, true, now)?;
                batch_store::clear_password(tx, &id)?;
                // Every device gave its reservation back as it finished; anything left over
                // (there should be none) is released here so the balance is never stuck.
                if b.reserved > 0 {
                    org_store::move_balance(
                        tx,
                        &b.organization_id,
                        &b.authority_id,
                        -i64::from(b.reserved),
                        0,
                        now,
                    )?;
                    batch_store::release_reserved(tx, &id)?;
                }
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &b.created_by,
                        action: "batch.finish",
                        target_type: BATCH_TARGET,
                        target_id: &id,
                        detail: serde_json::json!({
                            "status": status.as_str(),
                            "issued": b.issued,
                            "failed": b.failed,
                        })
                        .to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(false)
            })
            .await
    }

    /// RejectBatch / RevokeBatch: checks the rule and moves to PROCESSING_*, then finishes.
    pub async fn begin_final(
        self: &Arc<Self>,
        actor: &Principal,
        id: &str,
        ending: Ending,
    ) -> Result<(), ServiceError> {
        let (key, who) = (id.to_owned(), actor.username.clone());
        let e = ending.clone();
        self.store
            .write(move |tx| {
                let b = batch_store::get(tx, &key)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no batch with id {key}")))?;
                let status = Status::parse(&b.status).unwrap_or(Status::Broken);
                let (to, reason, action) = match &e {
                    Ending::Reject { reason } => {
                        if !matches!(status, Status::ReadyForDownload | Status::IssuedPartly) {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "batch {key} is {}: only a batch READY_FOR_DOWNLOAD or ISSUED_PARTLY can be rejected",
                                status.as_str()
                            )));
                        }
                        if b.first_downloaded_at.is_some() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "batch {key} has been downloaded: it can no longer be rejected (revoke it instead)"
                            )));
                        }
                        (Status::ProcessingReject, reason.clone(), "batch.reject.begin")
                    }
                    Ending::Revoke { reason_code, comment } => {
                        if b.first_downloaded_at.is_none() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "batch {key} has not been downloaded: reject it instead of revoking"
                            )));
                        }
                        if !matches!(status, Status::ReadyForDownload | Status::IssuedPartly | Status::ZipRemoved) {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "batch {key} is {}: it cannot be revoked",
                                status.as_str()
                            )));
                        }
                        (Status::ProcessingRevoke, revoke_reason_text(*reason_code, comment), "batch.revoke.begin")
                    }
                };
                batch_store::set_status(tx, &key, to.as_str(), &reason, false, store::now())?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action,
                        target_type: BATCH_TARGET,
                        target_id: &key,
                        detail: serde_json::json!({ "reason": reason }).to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        let key = id.to_owned();
        let b = self
            .store
            .read(move |c| batch_store::get(c, &key).map_err(ServiceError::from))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no batch with id {id}")))?;
        // Finished here, in the request; a crash meanwhile leaves PROCESSING_*, which the
        // engine finishes on start.
        if let Err(e) = self.finish_ending(&b).await {
            tracing::warn!(batch = %b.id, error = %e, "finishing the batch failed; the engine retries");
            self.kick(&b.id);
        }
        Ok(())
    }

    /// PROCESSING_REJECT / PROCESSING_REVOKE → REJECTED / REVOKED: every certificate revoked
    /// (a new CRL), the files deleted, and for a reject the consumed balance given back, in
    /// one transaction. Idempotent: a second run finds the batch final and changes nothing.
    async fn finish_ending(&self, b: &Batch) -> Result<(), ServiceError> {
        let status = Status::parse(&b.status);
        let (reason, final_status, action) = match status {
            Some(Status::ProcessingReject) => {
                (pki::RevocationReason::CessationOfOperation, Status::Rejected, "batch.reject")
            }
            Some(Status::ProcessingRevoke) => {
                let code = revoke_reason_code(&b.status_reason).unwrap_or(0);
                let reason = pki::RevocationReason::from_code(i64::from(code))
                    .unwrap_or(pki::RevocationReason::Unspecified);
                (reason, Status::Revoked, "batch.revoke")
            }
            _ => return Ok(()),
        };
        let id = b.id.clone();
        let ids = self
            .store
            .read(move |c| batch_store::certificate_ids(c, &id).map_err(ServiceError::from))
            .await?;
        let from = status.unwrap_or(Status::ProcessingRevoke);
        let batch = b.clone();
        let count = ids.len();
        self.issuance
            .transition_with(&acting_as(&b.created_by), ids, reason, move |tx| {
                let Some(current) = batch_store::get(tx, &batch.id)? else { return Ok(()) };
                if current.status != from.as_str() {
                    return Ok(());
                }
                let now = store::now();
                batch_store::set_status(tx, &batch.id, final_status.as_str(), &current.status_reason, false, now)?;
                batch_store::clear_password(tx, &batch.id)?;
                batch_store::remove_files(tx, &batch.id, now)?;
                if final_status == Status::Rejected && current.issued > 0 {
                    // A rejected batch was never delivered: what it consumed is given back.
                    org_store::move_balance(
                        tx,
                        &current.organization_id,
                        &current.authority_id,
                        0,
                        -i64::from(current.issued),
                        now,
                    )?;
                }
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &current.created_by,
                        action,
                        target_type: BATCH_TARGET,
                        target_id: &batch.id,
                        detail: serde_json::json!({
                            "certificates_revoked": count,
                            "reason": current.status_reason,
                            "balance_restored": if final_status == Status::Rejected { current.issued } else { 0 },
                        })
                        .to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Removes the files of batches finished longer than `zip_lifetime_secs` ago.
    async fn sweep_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.sweep_interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "removing expired batch files failed; retrying later");
            }
        }
    }

    async fn sweep(&self) -> Result<(), ServiceError> {
        let before = store::now() - self.zip_lifetime_secs;
        let statuses = [Status::ReadyForDownload.as_str(), Status::IssuedPartly.as_str()];
        let ids = self
            .store
            .read(move |c| batch_store::files_expired(c, before, &statuses).map_err(ServiceError::from))
            .await?;
        let lifetime = self.zip_lifetime_secs;
        for id in ids {
            self.store
                .write(move |tx| {
                    let Some(b) = batch_store::get(tx, &id)? else { return Ok(()) };
                    if !matches!(
                        Status::parse(&b.status),
                        Some(Status::ReadyForDownload | Status::IssuedPartly)
                    ) {
                        return Ok(());
                    }
                    let now = store::now();
                    batch_store::remove_files(tx, &id, now)?;
                    let reason = format!("files removed {lifetime} s after the batch finished");
                    batch_store::set_status(tx, &id, Status::ZipRemoved.as_str(), &reason, false, now)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: "system",
                            action: "batch.files_expired",
                            target_type: BATCH_TARGET,
                            target_id: &id,
                            detail: serde_json::json!({ "lifetime_secs": lifetime }).to_string(),
                        },
                    )?;
                    Ok::<_, ServiceError>(())
                })
                .await?;
        }
        Ok(())
    }

    /// WatchBatch: an event now, then one whenever the counts or the status change, until
    /// the engine is done with the batch (or the caller goes away, or the daemon stops).
    pub fn watch(&self, b: Batch) -> tokio::sync::mpsc::Receiver<Result<Progress, ServiceError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = self.store.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let mut last: Option<Progress> = None;
            let mut current = b;
            loop {
                let status = Status::parse(&current.status).unwrap_or(Status::Broken);
                let p = Progress {
                    batch_id: current.id.clone(),
                    status,
                    batch_size: current.batch_size,
                    issued: current.issued,
                    failed: current.failed,
                    done: !status.engine_work(),
                };
                if last.as_ref() != Some(&p) {
                    if tx.send(Ok(p.clone())).await.is_err() {
                        return;
                    }
                    if p.done {
                        return;
                    }
                    last = Some(p);
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = stop.changed() => return,
                    _ = tx.closed() => return,
                }
                let id = current.id.clone();
                match store.read(move |c| batch_store::get(c, &id).map_err(ServiceError::from)).await {
                    Ok(Some(b)) => current = b,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        rx
    }
}

/// Keeps the first error of the chunk tasks.
fn note(first: &mut Option<ServiceError>, done: Result<Result<(), ServiceError>, tokio::task::JoinError>) {
    let err = match done {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(e) => ServiceError::Internal(format!("batch chunk task: {e}")),
    };
    if first.is_none() {
        *first = Some(err);
    }
}

/// The device's parameters and key (blocking: key generation).
fn prepare_device(
    profile: &issuance::profiles::Profile,
    key_kind: Option<pki::KeyKind>,
    d: PendingDevice,
) -> Work {
    let position = d.position;
    let failed = |error: String| Work::Failed { position, error };
    let params: HashMap<String, String> = match serde_json::from_str(&d.params) {
        Ok(p) => p,
        Err(e) => return failed(format!("stored parameters: {e}")),
    };
    let (subject, csr_key) = match &d.csr_der {
        Some(der) => match pki::parse_csr(der) {
            Ok(csr) => (csr.subject, Some(csr.public_key_der)),
            Err(e) => return failed(format!("CSR: {e}")),
        },
        None => (pki::Name::default(), None),
    };
    let resolved = match profile.resolve(&params, &subject) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    match (csr_key, key_kind) {
        (Some(spki), _) => Work::Keyed { position, resolved, key: None, spki },
        (None, Some(kind)) => match pki::PrivateKeyMaterial::generate(kind) {
            Ok(key) => {
                let spki = key.public_key_spki_der().to_vec();
                Work::Keyed { position, resolved, key: Some(key), spki }
            }
            Err(e) => failed(format!("key generation: {e}")),
        },
        (None, None) => failed("no key: neither a CSR nor a key type".into()),
    }
}

fn key_kind_of(key_type: &str) -> Result<pki::KeyKind, ServiceError> {
    let algorithm: hsm_config::KeyAlgorithm =
        key_type.parse().map_err(|e: String| ServiceError::Internal(format!("stored key type: {e}")))?;
    Ok(match algorithm {
        hsm_config::KeyAlgorithm::EcP256 => pki::KeyKind::EcP256,
        hsm_config::KeyAlgorithm::EcP384 => pki::KeyKind::EcP384,
        hsm_config::KeyAlgorithm::Rsa2048 => pki::KeyKind::Rsa { bits: 2048 },
        hsm_config::KeyAlgorithm::Rsa3072 => pki::KeyKind::Rsa { bits: 3072 },
        hsm_config::KeyAlgorithm::Rsa4096 => pki::KeyKind::Rsa { bits: 4096 },
    })
}

/// The status reason of a batch being revoked: `reason <code>: <comment>` (the code is read
/// back when a restart finishes the revocation).
fn revoke_reason_text(code: u32, comment: &str) -> String {
    let name = pki::RevocationReason::from_code(i64::from(code)).map(|r| r.name()).unwrap_or("unspecified");
    if comment.is_empty() {
        format!("reason {code} ({name})")
    } else {
        format!("reason {code} ({name}): {comment}")
    }
}

fn revoke_reason_code(text: &str) -> Option<u32> {
    text.strip_prefix("reason ")?.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_reason_round_trips_through_the_status_reason() {
        let t = revoke_reason_text(1, "keys leaked: see ticket 7");
        assert_eq!(revoke_reason_code(&t), Some(1));
        assert_eq!(revoke_reason_code(&revoke_reason_text(5, "")), Some(5));
        assert_eq!(revoke_reason_code("something else"), None);
    }
}
