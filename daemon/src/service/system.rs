//! System service, between the wire (`grpc/system.rs`) and the back ends: system information,
//! the per-subsystem health entries of the standard gRPC health service, and backup/restore
//! of the store and configuration (archive format in `backup.rs`).
//!
//! How a restore takes effect. Every service keeps in-memory views of the store (sessions,
//! privileges, administrators, caches, the batch engine); patching each of them would be a
//! restore path per service, and any one forgotten would silently serve stale data. Instead
//! the import checks everything, stages the new store and configuration beside the live files,
//! answers, and asks the server to shut down gracefully. `main` then (with every store
//! connection closed) renames the staged files into place and re-executes the same binary with
//! the same arguments, so every view is rebuilt from the restored store by the ordinary
//! start-up path. The store is switched with one `rename`: a crash leaves either the old or
//! the new store, never a mix. The import's audit record is written into the staged store,
//! so it exists exactly when the restored store took effect.

use super::backup::{self, Contents, Manifest, ManifestToken};
use super::readers::ReaderService;
use super::{Principal, ServiceError};
use crate::store::{self, Store, audit};
use crate::token::TokenManager;
use hsm_config::{Config, TokenRole};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How often the health entries are refreshed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Export chunk size.
const CHUNK: usize = 64 * 1024;

/// The configuration file the daemon was started with (set once by `main`).
static CONFIG_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
/// A restore staged by ImportConfiguration, applied by `main` after the server stopped.
static PENDING_RESTORE: Mutex<Option<StagedRestore>> = Mutex::new(None);

/// Records the configuration file the daemon runs on (absolute), for export and restore.
pub fn set_config_path(path: Option<&Path>) {
    let path = path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let _ = CONFIG_PATH.set(path);
}

fn config_path() -> Option<PathBuf> {
    CONFIG_PATH.get().cloned().flatten()
}

/// The restore staged by an import, if any (taken once).
pub fn take_pending_restore() -> Option<StagedRestore> {
    PENDING_RESTORE.lock().ok().and_then(|mut p| p.take())
}

/// Import mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Keeps the running daemon's `[server]` section.
    Normal,
    /// Takes the archive's whole configuration.
    Full,
}

/// A token as GetSystemInformation reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub label: String,
    pub serial: String,
    pub model: String,
    pub present: bool,
    pub role: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInformation {
    pub version: String,
    pub build: String,
    pub host_name: String,
    pub uptime_seconds: u64,
    pub store_schema_version: i64,
    pub tokens: Vec<TokenView>,
}

/// One subsystem's health entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEntry {
    /// The gRPC health service's name for it (`cardhsm.store`, `cardhsm.token.<serial>`, …).
    pub name: String,
    /// None: not monitored (readers disabled).
    pub serving: Option<bool>,
}

/// Every subsystem's health, and the node's verdict ([`SystemService::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub entries: Vec<HealthEntry>,
    pub healthy: bool,
}

/// What an import restored.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub manifest: Manifest,
}

/// Files staged by an import: renamed into place by [`StagedRestore::apply_and_exec`].
#[derive(Debug)]
pub struct StagedRestore {
    staged_store: PathBuf,
    store_path: PathBuf,
    staged_config: PathBuf,
    config_path: PathBuf,
}

impl StagedRestore {
    /// Switches to the staged store and configuration and re-executes this binary with the
    /// same arguments. Call with every store connection closed (after the runtime is gone).
    /// Returns only on failure.
    pub fn apply_and_exec(self) -> std::io::Error {
        if let Err(e) = self.apply() {
            return e;
        }
        use std::os::unix::process::CommandExt;
        // /proc/self/exe is this very binary even when its file was replaced or removed since
        // start (an upgrade in place): the restart runs the code that checked the archive.
        let exe = Path::new("/proc/self/exe");
        let exe = if exe.exists() {
            exe.to_path_buf()
        } else {
            match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => return e,
            }
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        tracing::info!(exe = %exe.display(), "restarting on the restored store and configuration");
        std::process::Command::new(exe).arg0(arg0).args(args).exec()
    }

    fn apply(&self) -> std::io::Result<()> {
        // A restart interrupted after the store's rename finds only the configuration staged.
        if self.staged_store.exists() {
            self.apply_store()?;
        }
        std::fs::rename(&self.staged_config, &self.config_path)
    }

    fn apply_store(&self) -> std::io::Result<()> {
        let sql = |e: rusqlite::Error| std::io::Error::other(e.to_string());
        // Fold the old store's WAL into it and empty it, so no frame of the old database can
        // be replayed onto the new file that takes its name.
        if self.store_path.exists() {
            let conn = rusqlite::Connection::open(&self.store_path).map_err(sql)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(sql)?;
            drop(conn);
        }
        std::fs::rename(&self.staged_store, &self.store_path)?;
        for suffix in ["-wal", "-shm"] {
            let mut p = self.store_path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        Ok(())
    }
}

/// At start-up, before anything opens the store: a restore left half-done by a daemon that
/// stopped (killed, host lost) between an import's answer and its restart. The configuration
/// is staged last and atomically, so a staged configuration means the staging was complete
/// and the import answered: the restore is finished (apply and restart), as the client was
/// told it would be. A staged store alone is an import that failed midway: it is removed.
pub fn interrupted_restore(store_path: &Path, config_path: Option<&Path>) -> Option<StagedRestore> {
    let config_path = std::path::absolute(config_path?).ok()?;
    let staged_store = sibling(store_path, ".import");
    let staged_config = sibling(&config_path, ".import");
    if staged_config.exists() {
        return Some(StagedRestore {
            staged_store,
            store_path: store_path.to_path_buf(),
            staged_config,
            config_path,
        });
    }
    if staged_store.exists() {
        tracing::warn!(path = %staged_store.display(), "removing the store of an import that never completed");
        let _ = std::fs::remove_file(&staged_store);
        let _ = std::fs::remove_file(sibling(&staged_store, "-journal"));
    }
    None
}

#[derive(Debug)]
pub struct SystemService {
    config: Config,
    store: Store,
    tokens: TokenManager,
    readers: Arc<ReaderService>,
    batches: Arc<super::batches::BatchService>,
    started: Instant,
    restoring: AtomicBool,
    restart: tokio::sync::watch::Sender<bool>,
}

impl SystemService {
    pub fn new(
        config: &Config,
        store: Store,
        tokens: TokenManager,
        readers: Arc<ReaderService>,
        batches: Arc<super::batches::BatchService>,
    ) -> SystemService {
        SystemService {
            config: config.clone(),
            store,
            tokens,
            readers,
            batches,
            started: Instant::now(),
            restoring: AtomicBool::new(false),
            restart: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Resolves when an import asked the daemon to restart (the server then shuts down).
    pub async fn restart_requested(&self) {
        let mut rx = self.restart.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub async fn information(&self) -> Result<SystemInformation, ServiceError> {
        let store_schema_version = self.store.schema_version().await?;
        let tokens = self.token_views().await;
        let build = format!(
            "{} ({})",
            option_env!("CARDHSM_GIT_COMMIT").filter(|c| !c.is_empty()).unwrap_or("unknown"),
            if cfg!(debug_assertions) { "debug" } else { "release" }
        );
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Ok(SystemInformation {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            build,
            host_name,
            uptime_seconds: self.started.elapsed().as_secs(),
            store_schema_version,
            tokens,
        })
    }

    /// Every `[[pkcs11.tokens]]` entry, matched by serial or label to the slots now.
    async fn token_views(&self) -> Vec<TokenView> {
        let slots = self.tokens.list_tokens().await.unwrap_or_default();
        self.config
            .pkcs11
            .tokens
            .iter()
            .map(|t| {
                let slot = slots.iter().find(|s| {
                    s.present
                        && (t.serial.as_deref().is_some_and(|x| x == s.serial)
                            || (t.serial.is_none() && t.label.as_deref().is_some_and(|x| x == s.label)))
                });
                TokenView {
                    label: slot.map(|s| s.label.clone()).or_else(|| t.label.clone()).unwrap_or_default(),
                    serial: slot.map(|s| s.serial.clone()).or_else(|| t.serial.clone()).unwrap_or_default(),
                    model: slot.map(|s| s.model.clone()).unwrap_or_default(),
                    present: slot.is_some(),
                    role: match t.role {
                        TokenRole::Daemon => "daemon",
                        TokenRole::Card => "card",
                    },
                }
            })
            .collect()
    }

    /// Each subsystem's health now: `cardhsm.store`, `cardhsm.token.<serial>` (by label when a
    /// configured token has no serial and is absent) and `cardhsm.readers`. The token state
    /// comes from the token manager's own availability tracking (`token/health.rs`) and the
    /// readers' from the PC/SC monitor; this only reports them. The node is healthy when the
    /// store and every configured token serve: readers do not count, since a PC/SC monitor
    /// with no reader attached says nothing about whether this node can do its work.
    pub async fn health(&self) -> Health {
        let mut entries = vec![HealthEntry {
            name: "cardhsm.store".into(),
            serving: Some(self.store.schema_version().await.is_ok()),
        }];
        for t in self.token_views().await {
            let name = if t.serial.is_empty() { &t.label } else { &t.serial };
            let ok = t.present && self.tokens.is_available(&t.serial);
            entries.push(HealthEntry { name: format!("cardhsm.token.{name}"), serving: Some(ok) });
        }
        let healthy = entries.iter().all(|e| e.serving == Some(true));
        let readers = match self.readers.list() {
            Ok((_, up)) => Some(up),
            // `[readers] enabled = false`: nothing to report on.
            Err(_) => None,
        };
        entries.push(HealthEntry { name: "cardhsm.readers".into(), serving: readers });
        Health { entries, healthy }
    }

    /// Keeps the standard gRPC health service's per-subsystem entries current ([`Self::health`]).
    pub fn spawn_health(self: &Arc<Self>, reporter: tonic_health::server::HealthReporter) {
        use tonic_health::ServingStatus;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                for e in this.health().await.entries {
                    let status = match e.serving {
                        Some(true) => ServingStatus::Serving,
                        Some(false) => ServingStatus::NotServing,
                        None => ServingStatus::Unknown,
                    };
                    reporter.set_service_status(e.name, status).await;
                }
                tokio::time::sleep(HEALTH_INTERVAL).await;
            }
        });
    }

    /// Export: a consistent snapshot of the store (`VACUUM INTO`, while the daemon keeps
    /// serving), the configuration file and a manifest, sealed with `password`, in chunks.
    pub async fn export(
        &self,
        actor: &Principal,
        password: Zeroizing<String>,
    ) -> Result<Vec<Vec<u8>>, ServiceError> {
        backup::check_password(&password)?;
        let dir = self.store.path().parent().map(Path::to_path_buf).unwrap_or_default();
        let snapshot = dir.join(format!(".cardhsm-export-{}.sqlite3", uuid::Uuid::new_v4()));
        let target = snapshot.clone();
        let taken = self
            .store
            .read(move |c| {
                c.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
                    .map_err(store::StoreError::from)
            })
            .await;
        let bytes = std::fs::read(&snapshot).map(Zeroizing::new);
        let _ = std::fs::remove_file(&snapshot);
        taken?;
        let store_bytes = bytes.map_err(|e| ServiceError::Internal(format!("reading the snapshot: {e}")))?;
        let schema_version = snapshot_schema(&store_bytes);
        let config = match config_path() {
            Some(p) => std::fs::read_to_string(&p)
                .map_err(|e| ServiceError::Internal(format!("reading {}: {e}", p.display())))?,
            // Embedded defaults: an empty file means exactly them.
            None => String::new(),
        };
        let manifest = Manifest {
            format_version: backup::FORMAT_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            created_at: store::now(),
            tokens: self
                .token_views()
                .await
                .into_iter()
                .map(|t| ManifestToken { label: t.label, serial: t.serial, role: t.role.to_owned() })
                .collect(),
        };
        let contents = Contents { manifest, store: store_bytes, config: Zeroizing::new(config) };
        let sealed =
            tokio::task::spawn_blocking(move || backup::seal(&contents, &password, backup::ITERATIONS))
                .await
                .map_err(|e| ServiceError::Internal(format!("export task: {e}")))??;
        let who = actor.username.clone();
        let detail = format!("schema {schema_version}, {} bytes", sealed.len());
        self.store
            .write(move |tx| {
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "system.export",
                        target_type: "system",
                        target_id: "configuration",
                        detail,
                    },
                )
                .map(|_| ())
            })
            .await?;
        Ok(sealed.chunks(CHUNK).map(<[u8]>::to_vec).collect())
    }

    /// Import: opens and checks the archive, stages the restored store (migrated to this
    /// daemon's schema, with the import's audit record) and configuration, then asks the
    /// daemon to restart on them. Changes nothing on any error.
    pub async fn import(
        &self,
        actor: &Principal,
        archive: Vec<u8>,
        password: Zeroizing<String>,
        mode: Option<ImportMode>,
    ) -> Result<ImportOutcome, ServiceError> {
        let mode = mode.ok_or_else(|| ServiceError::invalid("mode", "must be NORMAL or FULL"))?;
        if archive.is_empty() {
            return Err(ServiceError::invalid("archive", "is required"));
        }
        if password.is_empty() {
            return Err(ServiceError::invalid("password", "is required"));
        }
        let config_path = config_path().ok_or_else(|| {
            ServiceError::FailedPrecondition(
                "the daemon runs on its embedded defaults (no --config): a restore needs a configuration file to write"
                    .into(),
            )
        })?;
        if self.restoring.swap(true, Ordering::SeqCst) {
            return Err(ServiceError::FailedPrecondition("a restore is already in progress".into()));
        }
        let result = self.stage(actor, archive, password, mode, config_path).await;
        match result {
            Ok((outcome, staged)) => {
                if let Ok(mut p) = PENDING_RESTORE.lock() {
                    *p = Some(staged);
                }
                // Stop taking batch work now; the server stops after this answer is sent
                // (graceful shutdown drains in-flight calls).
                self.batches.stop();
                self.restart.send_replace(true);
                tracing::info!(mode = ?mode, "restore staged; restarting");
                Ok(outcome)
            }
            Err(e) => {
                self.restoring.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    async fn stage(
        &self,
        actor: &Principal,
        archive: Vec<u8>,
        password: Zeroizing<String>,
        mode: ImportMode,
        config_path: PathBuf,
    ) -> Result<(ImportOutcome, StagedRestore), ServiceError> {
        let contents = tokio::task::spawn_blocking(move || backup::open(&archive, &password))
            .await
            .map_err(|e| ServiceError::Internal(format!("import task: {e}")))??;
        if contents.manifest.schema_version > store::SCHEMA_VERSION {
            return Err(ServiceError::invalid(
                "archive",
                format!(
                    "holds a store of schema {}, newer than this daemon's {}",
                    contents.manifest.schema_version,
                    store::SCHEMA_VERSION
                ),
            ));
        }
        let running = std::fs::read_to_string(&config_path)
            .map_err(|e| ServiceError::Internal(format!("reading {}: {e}", config_path.display())))?;
        let new_config = merge_config(&contents.config, &running, mode, &self.config.store.path)?;

        let store_path = self.store.path().to_path_buf();
        let staged_store = sibling(&store_path, ".import");
        let staged_config = sibling(&config_path, ".import");
        let manifest = contents.manifest.clone();
        let who = actor.username.clone();
        let detail = format!(
            "mode {}, archive of {} (daemon {}, schema {})",
            if mode == ImportMode::Full { "full" } else { "normal" },
            manifest.created_at,
            manifest.daemon_version,
            manifest.schema_version
        );
        let (s, c) = (staged_store.clone(), staged_config.clone());
        let staged = tokio::task::spawn_blocking(move || {
            // The configuration is staged last and atomically (written beside, renamed): a
            // staged configuration therefore means a complete staging, which is what the
            // start-up recovery ([`interrupted_restore`]) relies on.
            let r = write_staged(&s, &contents.store, &who, detail).and_then(|()| {
                let tmp = sibling(&c, ".tmp");
                write_file(&tmp, new_config.as_bytes())
                    .and_then(|()| std::fs::rename(&tmp, &c))
                    .map_err(|e| ServiceError::Internal(format!("writing {}: {e}", c.display())))
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&s);
                let _ = std::fs::remove_file(&c);
            }
            r
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("import task: {e}")))?;
        staged?;
        Ok((
            ImportOutcome { manifest },
            StagedRestore { staged_store, store_path, staged_config, config_path },
        ))
    }
}

/// `<path><suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The `user_version` in a database file's header (bytes 60..64), 0 when too short.
fn snapshot_schema(db: &[u8]) -> i64 {
    db.get(60..64).map(|b| i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))).unwrap_or(0)
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes the archive's store to `path`, checks it is a sound SQLite database, opens it as the
/// daemon would (migrating an older schema; a newer one is refused) and appends the import's
/// audit record. Leaves a rollback-journal database with no WAL beside it.
fn write_staged(path: &Path, db: &[u8], actor: &str, detail: String) -> Result<(), ServiceError> {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
    write_file(path, db).map_err(|e| ServiceError::Internal(format!("writing {}: {e}", path.display())))?;
    let bad = |m: String| ServiceError::invalid("archive", m);
    {
        let conn =
            rusqlite::Connection::open(path).map_err(|e| bad(format!("its store cannot be opened: {e}")))?;
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| bad(format!("its store is not a SQLite database: {e}")))?;
        if check != "ok" {
            return Err(bad(format!("its store fails the integrity check: {check}")));
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| bad(format!("its store: {e}")))?;
        if version > store::SCHEMA_VERSION {
            return Err(bad(format!(
                "holds a store of schema {version}, newer than this daemon's {}",
                store::SCHEMA_VERSION
            )));
        }
    }
    let staged = Store::open(path, 1).map_err(|e| bad(format!("its store cannot be opened: {e}")))?;
    staged.blocking_write(|tx| {
        audit::append(
            tx,
            audit::AuditEntry {
                actor,
                action: "system.import",
                target_type: "system",
                target_id: "configuration",
                detail,
            },
        )
        .map(|_| ())
        .map_err(ServiceError::from)
    })?;
    drop(staged);
    // Back to a rollback journal, so the file is complete on its own when renamed.
    let conn = rusqlite::Connection::open(path).map_err(|e| ServiceError::Internal(e.to_string()))?;
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(|e| ServiceError::Internal(format!("staged store: {e}")))?;
    Ok(())
}

/// The configuration to restart on: the archive's, with the running daemon's `[server]`
/// (NORMAL) and, in both modes, the running daemon's `store.path` — where this daemon keeps
/// its store is a fact of this machine, and the restored store is written exactly there.
fn merge_config(
    archive: &str,
    running: &str,
    mode: ImportMode,
    store_path: &Path,
) -> Result<String, ServiceError> {
    let mut table: toml::Table = toml::from_str(archive)
        .map_err(|e| ServiceError::invalid("archive", format!("its configuration is not valid TOML: {e}")))?;
    let running: toml::Table = toml::from_str(running)
        .map_err(|e| ServiceError::Internal(format!("the running configuration file: {e}")))?;
    if mode == ImportMode::Normal {
        match running.get("server") {
            Some(server) => table.insert("server".into(), server.clone()),
            None => table.remove("server"),
        };
    }
    let store = table.entry("store").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match store {
        toml::Value::Table(t) => {
            t.insert("path".into(), toml::Value::String(store_path.to_string_lossy().into_owned()));
        }
        _ => {
            return Err(ServiceError::invalid(
                "archive",
                "its configuration has a `store` that is not a table",
            ));
        }
    }
    let text = toml::to_string(&table).map_err(|e| ServiceError::Internal(format!("configuration: {e}")))?;
    Config::from_toml_str(&text)
        .map_err(|e| ServiceError::invalid("archive", format!("its configuration is not valid here: {e}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_configuration_finishes_the_restore_and_a_lone_staged_store_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, config) = (dir.path().join("db.sqlite3"), dir.path().join("cardhsm.toml"));
        std::fs::write(&config, "old").expect("config");
        assert!(interrupted_restore(&store, Some(&config)).is_none(), "nothing staged");

        // An import that failed after staging the store: the leftover goes.
        std::fs::write(sibling(&store, ".import"), "half").expect("staged store");
        assert!(interrupted_restore(&store, Some(&config)).is_none());
        assert!(!sibling(&store, ".import").exists(), "the lone staged store was removed");

        // Interrupted after the store's rename: only the configuration is left to switch.
        std::fs::write(sibling(&config, ".import"), "new").expect("staged config");
        let restore = interrupted_restore(&store, Some(&config)).expect("a restore to finish");
        restore.apply().expect("apply");
        assert_eq!(std::fs::read_to_string(&config).expect("config"), "new");
        assert!(!sibling(&config, ".import").exists());
        assert!(interrupted_restore(&store, None).is_none(), "no configuration file, nothing to restore");
    }

    #[test]
    fn normal_keeps_the_running_server_section_and_full_takes_the_archives() {
        let archive = "[server]\ngrpc_listen = \"127.0.0.1:1111\"\n[auth]\naccess_token_ttl_secs = 120\n[store]\npath = \"/old/db\"\n";
        let running = "[server]\ngrpc_listen = \"127.0.0.1:2222\"\n[store]\npath = \"/here/db\"\n";
        let here = Path::new("/here/db");
        let normal: toml::Table =
            toml::from_str(&merge_config(archive, running, ImportMode::Normal, here).expect("merged"))
                .expect("toml");
        assert_eq!(normal["server"]["grpc_listen"].as_str(), Some("127.0.0.1:2222"));
        assert_eq!(normal["auth"]["access_token_ttl_secs"].as_integer(), Some(120));
        assert_eq!(normal["store"]["path"].as_str(), Some("/here/db"));
        let full: toml::Table =
            toml::from_str(&merge_config(archive, running, ImportMode::Full, here).expect("merged"))
                .expect("toml");
        assert_eq!(full["server"]["grpc_listen"].as_str(), Some("127.0.0.1:1111"));
        assert_eq!(full["store"]["path"].as_str(), Some("/here/db"));
    }

    #[test]
    fn an_archive_configuration_that_does_not_validate_is_refused() {
        let err = merge_config("[auth]\nno_such_key = 1\n", "", ImportMode::Full, Path::new("/db"))
            .expect_err("refused");
        assert!(
            matches!(err, ServiceError::InvalidArgument { ref field, .. } if field == "archive"),
            "{err:?}"
        );
    }

    #[test]
    fn a_store_newer_than_this_daemon_or_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let source = dir.path().join("newer.sqlite3");
        let conn = rusqlite::Connection::open(&source).expect("db");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("table");
        conn.pragma_update(None, "user_version", store::SCHEMA_VERSION + 1).expect("version");
        drop(conn);
        let db = std::fs::read(&source).expect("read");
        let staged = dir.path().join("staged.sqlite3");
        for (bytes, what) in [(db, "newer than this daemon"), (b"not a database".to_vec(), "SQLite")] {
            match write_staged(&staged, &bytes, "admin", String::new()).expect_err("refused") {
                ServiceError::InvalidArgument { field, message } => {
                    assert_eq!(field, "archive");
                    assert!(message.contains(what), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn snapshot_schema_reads_the_header() {
        let mut db = vec![0u8; 100];
        db[60..64].copy_from_slice(&7i32.to_be_bytes());
        assert_eq!(snapshot_schema(&db), 7);
        assert_eq!(snapshot_schema(&[1, 2]), 0);
    }
}
