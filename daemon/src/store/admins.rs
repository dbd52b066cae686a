//! Administrators of the platform, below the admin service (`service/admins`): rows only.
//! Validation and the rules (who may, never the last super administrator) live in the
//! service; the UNIQUE username (any case) and certificate fingerprint are the last word on
//! duplicates.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// The two kinds of administrator (the text in the `role` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    Administrator,
    SuperAdministrator,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Administrator => "ADMINISTRATOR",
            AdminRole::SuperAdministrator => "SUPER_ADMINISTRATOR",
        }
    }

    pub fn parse(s: &str) -> Option<AdminRole> {
        [AdminRole::Administrator, AdminRole::SuperAdministrator].into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub id: String,
    pub username: String,
    pub name: String,
    pub surname: String,
    pub email: String,
    pub role: AdminRole,
    pub enabled: bool,
    pub description: String,
    pub certificate_der: Vec<u8>,
    /// SHA-256 of `certificate_der`, lower-case hex.
    pub certificate_fingerprint: String,
    pub certificate_subject: String,
    pub certificate_issuer: String,
    pub certificate_serial: String,
    pub certificate_not_after: i64,
    /// The issued certificate (`store/certificates`) it was taken from, if any.
    pub certificate_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, username, name, surname, email, role, enabled, description, certificate_der, \
                       certificate_fingerprint, certificate_subject, certificate_issuer, certificate_serial, \
                       certificate_not_after, certificate_id, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AdminRecord> {
    let role: String = r.get(5)?;
    let role = AdminRole::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("bad administrator role {role:?}").into(),
        )
    })?;
    Ok(AdminRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        surname: r.get(3)?,
        email: r.get(4)?,
        role,
        enabled: r.get(6)?,
        description: r.get(7)?,
        certificate_der: r.get(8)?,
        certificate_fingerprint: r.get(9)?,
        certificate_subject: r.get(10)?,
        certificate_issuer: r.get(11)?,
        certificate_serial: r.get(12)?,
        certificate_not_after: r.get(13)?,
        certificate_id: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

pub fn insert(tx: &Transaction<'_>, a: &AdminRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO admins ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
         ?16, ?17)"
    ))?
    .execute(params![
        a.id,
        a.username,
        a.name,
        a.surname,
        a.email,
        a.role.as_str(),
        a.enabled,
        a.description,
        a.certificate_der,
        a.certificate_fingerprint,
        a.certificate_subject,
        a.certificate_issuer,
        a.certificate_serial,
        a.certificate_not_after,
        a.certificate_id,
        a.created_at,
        a.updated_at
    ])?;
    Ok(())
}

/// Replaces every column but `id` and `created_at`; false when there is no such administrator.
pub fn update(tx: &Transaction<'_>, a: &AdminRecord) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE admins SET username = ?2, name = ?3, surname = ?4, email = ?5, role = ?6, enabled = ?7,
             description = ?8, certificate_der = ?9, certificate_fingerprint = ?10, certificate_subject = ?11,
             certificate_issuer = ?12, certificate_serial = ?13, certificate_not_after = ?14,
             certificate_id = ?15, updated_at = ?16 WHERE id = ?1",
        )?
        .execute(params![
            a.id,
            a.username,
            a.name,
            a.surname,
            a.email,
            a.role.as_str(),
            a.enabled,
            a.description,
            a.certificate_der,
            a.certificate_fingerprint,
            a.certificate_subject,
            a.certificate_issuer,
            a.certificate_serial,
            a.certificate_not_after,
            a.certificate_id,
            a.updated_at
        ])?
        == 1)
}

/// False when there was no such administrator.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(tx.prepare_cached("DELETE FROM admins WHERE id = ?1")?.execute(params![id])? == 1)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<AdminRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM admins WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?)
}

/// The administrator whose username equals `username` in any case.
pub fn by_username(conn: &Connection, username: &str) -> Result<Option<AdminRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM admins WHERE username = ?1"))?
        .query_row(params![username], from_row)
        .optional()?)
}

pub fn by_fingerprint(conn: &Connection, fingerprint: &str) -> Result<Option<AdminRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM admins WHERE certificate_fingerprint = ?1"))?
        .query_row(params![fingerprint], from_row)
        .optional()?)
}

/// Every administrator (the service's in-memory certificate index is built from this).
pub fn all(conn: &Connection) -> Result<Vec<AdminRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM admins ORDER BY username, id"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Enabled super administrators.
pub fn count_enabled_super(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM admins WHERE enabled = 1 AND role = 'SUPER_ADMINISTRATOR'")?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of administrators ordered by username (then id), optionally only those whose
/// username, name, surname or email contains `search` (ASCII case-insensitive), and the total.
pub fn list(
    conn: &Connection,
    search: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<AdminRecord>, u64), StoreError> {
    // LIKE with our own escape character, so `%` and `_` in the search are literal.
    let pattern = search.map(super::like_contains);
    let filter = "(?1 IS NULL OR username LIKE ?1 ESCAPE '\\' OR name LIKE ?1 ESCAPE '\\' \
                  OR surname LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\')";
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM admins WHERE {filter} ORDER BY username, id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit as i64, offset as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM admins WHERE {filter}"))?
        .query_row(params![pattern], |r| r.get(0))?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}
