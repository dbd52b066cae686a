//! Daemon-wide values kept in the store, such as the key that signs access tokens.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
}

/// Returns the stored value, or stores and returns the one `make` produces.
pub fn get_or_insert_with(
    tx: &Transaction<'_>,
    key: &str,
    make: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(v) = get(tx, key)? {
        return Ok(v);
    }
    let value = make();
    tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
    Ok(value)
}
