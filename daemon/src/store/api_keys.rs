//! API keys: what RealmAuth hands out. Only the SHA-256 of a key's secret part is stored.

use super::StoreError;
use rusqlite::{Connection, Row, Transaction, params};

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub key_hash: Vec<u8>,
    pub user_id: String,
    pub username: String,
    pub realm: String,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub last_used: Option<i64>,
}

const COLUMNS: &str = "id, key_hash, user_id, username, realm, roles, created_at, last_used";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let roles: String = r.get(5)?;
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        key_hash: r.get(1)?,
        user_id: r.get(2)?,
        username: r.get(3)?,
        realm: r.get(4)?,
        roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        created_at: r.get(6)?,
        last_used: r.get(7)?,
    })
}

pub fn insert(tx: &Transaction<'_>, k: &ApiKeyRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            k.id,
            k.key_hash,
            k.user_id,
            k.username,
            k.realm,
            k.roles.join(","),
            k.created_at,
            k.last_used
        ],
    )?;
    Ok(())
}

/// Every key that is not revoked, oldest first.
pub fn active(conn: &Connection) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, rowid");
    let rows = conn.prepare(&sql)?.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revokes a key; false when it is unknown or already revoked.
pub fn revoke(tx: &Transaction<'_>, id: &str, at: i64) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )? == 1)
}

pub fn set_last_used(tx: &Transaction<'_>, id: &str, at: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE api_keys SET last_used = MAX(COALESCE(last_used, 0), ?2) WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}
