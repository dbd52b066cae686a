//! Persistence layer: the SQLite database behind every service. One writer connection (every
//! state change and its audit record commit in one transaction) and a small pool of read-only
//! connections, all driven off the async executor.

pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod authorities;
pub mod batches;
pub mod cards;
pub mod certificates;
pub mod ecosystems;
mod error;
pub mod meta;
mod migrations;
pub mod organizations;
pub mod password_resets;
pub mod privileges;
pub mod sessions;
pub mod token_certificates;
pub mod token_csrs;
pub mod tokens;
pub mod users;

pub use error::StoreError;
pub use migrations::SCHEMA_VERSION;

use rusqlite::{Connection, OpenFlags, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database, applies pending migrations and refuses a
    /// database written by a newer cardhsmd. Blocking: call at start-up.
    pub fn open(path: &Path, readers: u32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        migrations::migrate(&mut writer)?;
        let mut pool = Vec::new();
        for _ in 0..readers.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            configure(&conn)?;
            pool.push(conn);
        }
        let permits = pool.len();
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(pool),
                reader_permits: Semaphore::new(permits),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one write transaction on the single writer connection, off the executor.
    /// The transaction commits when `f` returns `Ok`, and rolls back (changing nothing) on `Err`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || in_write_transaction(&inner, f))
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// Runs `f` on a pooled read-only connection, off the executor. Reads see the last
    /// committed state (WAL snapshot) and never wait for the writer.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let waiting = std::time::Instant::now();
        let permit = self.inner.reader_permits.acquire().await.map_err(|_| StoreError::Closed)?;
        crate::metrics::global().pool_wait("sqlite_connection", waiting.elapsed().as_secs_f64());
        let inner = self.inner.clone();
        let out = tokio::task::spawn_blocking(move || {
            let conn =
                inner.readers.lock().map_err(|_| StoreError::Poisoned)?.pop().ok_or(StoreError::Closed)?;
            let value = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            value
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?;
        drop(permit);
        out
    }

    /// Runs `f` on the writer connection without a transaction wrapper, for start-up work
    /// (bootstrap checks) that manages its own transaction.
    pub fn blocking_write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&Transaction<'_>) -> Result<T, E>,
    {
        in_write_transaction(&self.inner, f)
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)).await
    }
}

/// `f` in one IMMEDIATE transaction on the writer: committed on `Ok`, rolled back on `Err`.
fn in_write_transaction<T, E, F>(inner: &Inner, f: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(&Transaction<'_>) -> Result<T, E>,
{
    // The single writer is a pool of one: time spent queueing for it is a pool wait too.
    let waiting = std::time::Instant::now();
    let mut conn = inner.writer.lock().map_err(|_| StoreError::Poisoned)?;
    crate::metrics::global().pool_wait("sqlite_writer", waiting.elapsed().as_secs_f64());
    let tx =
        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
    let value = f(&tx)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(value)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Reads go through the OS page cache via mmap instead of copying pages into SQLite's own.
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    Ok(())
}

/// A LIKE pattern for values containing `s`, escaped with `\` (write `LIKE ? ESCAPE '\'`),
/// so `%` and `_` in a search are literal.
pub fn like_contains(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
