//! Refresh tokens: stored as SHA-256 hashes, grouped in families so that a reused (stolen)
//! refresh token revokes every token descended from the same login.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// A stored refresh token (by hash).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshTokenRecord {
    pub family_id: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn insert(
    tx: &Transaction<'_>,
    token_hash: &[u8],
    family_id: &str,
    user_id: &str,
    created_at: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, family_id, user_id, created_at, expires_at],
    )?;
    Ok(())
}

pub fn by_hash(conn: &Connection, token_hash: &[u8]) -> Result<Option<RefreshTokenRecord>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT family_id, user_id, created_at, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = ?1",
            params![token_hash],
            |r| {
                Ok(RefreshTokenRecord {
                    family_id: r.get(0)?,
                    user_id: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    used_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// Marks a token used; false when it was already used (the caller treats that as reuse).
pub fn mark_used(tx: &Transaction<'_>, token_hash: &[u8], at: i64) -> Result<bool, StoreError> {
    let n = tx.execute(
        "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![token_hash, at],
    )?;
    Ok(n == 1)
}

/// Revokes every token of a family.
pub fn revoke_family(tx: &Transaction<'_>, family_id: &str, at: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![family_id, at],
    )?)
}

/// Drops tokens that expired before `before`.
pub fn purge_expired(tx: &Transaction<'_>, before: i64) -> Result<usize, StoreError> {
    Ok(tx.execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", params![before])?)
}
