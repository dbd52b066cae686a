//! Users: login names, argon2id password hashes and roles.

use super::{StoreError, now};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// A stored user. `password_hash` is a PHC string (argon2id), never a password.
#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    /// Role names, e.g. `ADMIN`.
    pub roles: Vec<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, username, password_hash, roles, enabled, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let roles: String = r.get(3)?;
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        enabled: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

pub fn insert(tx: &Transaction<'_>, user: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO users (id, username, password_hash, roles, enabled, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            user.id,
            user.username,
            user.password_hash,
            user.roles.join(","),
            user.enabled,
            user.created_at,
            user.updated_at
        ],
    )?;
    Ok(())
}

pub fn by_username(conn: &Connection, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![username], from_row).optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![id], from_row).optional()?)
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

/// A page of users ordered by creation, and the total.
pub fn list(conn: &Connection, offset: u64, limit: u64) -> Result<(Vec<UserRecord>, u64), StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY created_at, rowid LIMIT ?1 OFFSET ?2");
    let users = conn
        .prepare_cached(&sql)?
        .query_map(params![limit as i64, offset as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, count(conn)? as u64))
}

pub fn set_password_hash(tx: &Transaction<'_>, id: &str, hash: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, hash, now()],
    )?;
    Ok(())
}

pub fn set_enabled(tx: &Transaction<'_>, id: &str, enabled: bool) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE users SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, enabled, now()],
    )? == 1)
}

/// Deletes a user (their refresh tokens, sessions and API keys go with them: ON DELETE
/// CASCADE); false when there was none.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM users WHERE id = ?1", params![id])? == 1)
}

/// How many enabled users hold `role`.
pub fn count_enabled_with_role(conn: &Connection, role: &str) -> Result<i64, StoreError> {
    let mut n = 0;
    let mut stmt = conn.prepare_cached("SELECT roles FROM users WHERE enabled = 1")?;
    for roles in stmt.query_map([], |r| r.get::<_, String>(0))? {
        if roles?.split(',').any(|r| r.trim().eq_ignore_ascii_case(role)) {
            n += 1;
        }
    }
    Ok(n)
}

/// Credentials (access tokens, API keys) issued before `at` are refused from now on.
pub fn set_credentials_not_before(tx: &Transaction<'_>, id: &str, at: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE users SET credentials_not_before = MAX(credentials_not_before, ?2) WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// Every user's credentials not-before that is set, user id → unix seconds.
pub fn credentials_not_before(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = conn
        .prepare("SELECT id, credentials_not_before FROM users WHERE credentials_not_before > 0")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
