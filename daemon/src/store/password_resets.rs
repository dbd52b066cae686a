//! Password-reset codes, below the password-reset service: rows only. A code is stored as its
//! SHA-256 (codes carry 256 random bits, so a fast hash is enough: there is nothing to guess
//! from it); the code itself exists only in the message that delivers it.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// A stored code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCodeRecord {
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl ResetCodeRecord {
    /// Not used and not expired at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.used_at.is_none() && self.expires_at > now
    }
}

/// Stores a new code for `user_id`; the user's earlier unused codes stop working (only the
/// latest message counts).
pub fn insert(
    tx: &Transaction<'_>,
    code_hash: &[u8],
    user_id: &str,
    created_at: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM password_reset_codes WHERE user_id = ?1 AND used_at IS NULL", params![user_id])?;
    tx.execute(
        "INSERT INTO password_reset_codes (code_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![code_hash, user_id, created_at, expires_at],
    )?;
    Ok(())
}

pub fn by_hash(conn: &Connection, code_hash: &[u8]) -> Result<Option<ResetCodeRecord>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, created_at, expires_at, used_at FROM password_reset_codes WHERE code_hash = ?1",
        )?
        .query_row(params![code_hash], |r| {
            Ok(ResetCodeRecord {
                user_id: r.get(0)?,
                created_at: r.get(1)?,
                expires_at: r.get(2)?,
                used_at: r.get(3)?,
            })
        })
        .optional()?)
}

/// When the latest code for `user_id` was issued, if one ever was.
pub fn last_issued(conn: &Connection, user_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT MAX(created_at) FROM password_reset_codes WHERE user_id = ?1")?
        .query_row(params![user_id], |r| r.get(0))?)
}

/// Spends a code that is still usable at `now`; false when it is not (unknown, used, expired).
pub fn spend(tx: &Transaction<'_>, code_hash: &[u8], now: i64) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE password_reset_codes SET used_at = ?2
         WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![code_hash, now],
    )? == 1)
}

/// Forgets codes that expired more than a day before `now` (the 15-minute resend limit only
/// looks at the last quarter of an hour).
/// Deletes one code (its message could not be delivered).
pub fn delete(tx: &Transaction<'_>, code_hash: &[u8]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM password_reset_codes WHERE code_hash = ?1", [code_hash])?;
    Ok(())
}

pub fn purge(tx: &Transaction<'_>, now: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM password_reset_codes WHERE expires_at < ?1", params![now - 86_400])?;
    Ok(())
}
