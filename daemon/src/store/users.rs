//! Users, below the identity services: login names, argon2id password hashes, roles and
//! profile fields (names, phone, email).

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
    pub profile: UserProfile,
}

/// What a user tells about themself. Empty strings (and `None` for the email) are unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    /// Unique case-insensitively when set (a partial unique index).
    pub email: Option<String>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("enabled", &self.enabled)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, username, password_hash, roles, enabled, created_at, updated_at, first_name, last_name, phone, email";

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
        profile: UserProfile {
            first_name: r.get(7)?,
            last_name: r.get(8)?,
            phone: r.get(9)?,
            email: r.get(10)?,
        },
    })
}

pub fn insert(tx: &Transaction<'_>, user: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO users (id, username, password_hash, roles, enabled, created_at, updated_at,
                            first_name, last_name, phone, email)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            user.id,
            user.username,
            user.password_hash,
            user.roles.join(","),
            user.enabled,
            user.created_at,
            user.updated_at,
            user.profile.first_name,
            user.profile.last_name,
            user.profile.phone,
            user.profile.email,
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

/// What ListUsers narrows the users to; empty fields do not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Users holding a privilege in this organization (an ECO_ADMIN privilege counts for every
    /// organization of its ecosystem).
    pub organization_id: String,
    /// Users holding this role: a platform role of theirs, or a privilege's role (in
    /// `organization_id` when that is set too).
    pub role: String,
    /// Case-insensitive substring of the login, first name, last name or email.
    pub search: String,
}

/// A page of users matching `filter`, ordered by creation, and how many match.
pub fn list(
    conn: &Connection,
    filter: &UserFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<UserRecord>, u64), StoreError> {
    // A privilege "in" ?1: its organization, or (ECO_ADMIN) the ecosystem of ?1.
    const IN_ORG: &str = "(p.organization_id = ?1 OR (p.organization_id IS NULL AND p.ecosystem_id = \
                          (SELECT ecosystem_id FROM organizations WHERE id = ?1)))";
    let filter_sql = format!(
        "(?3 = '' OR username LIKE ?3 ESCAPE '\\' OR first_name LIKE ?3 ESCAPE '\\'
                    OR last_name LIKE ?3 ESCAPE '\\' OR IFNULL(email, '') LIKE ?3 ESCAPE '\\')
         AND (?1 = '' OR id IN (SELECT p.user_id FROM user_privileges p WHERE {IN_ORG}))
         AND (?2 = '' OR (?1 = '' AND ',' || roles || ',' LIKE '%,' || ?2 || ',%')
              OR id IN (SELECT p.user_id FROM user_privileges p WHERE p.role = ?2 AND (?1 = '' OR {IN_ORG})))"
    );
    let search = if filter.search.is_empty() { String::new() } else { super::like_contains(&filter.search) };
    let args = params![filter.organization_id, filter.role, search];
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {filter_sql}"))?
        .query_row(args, |r| r.get(0))?;
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE {filter_sql} ORDER BY created_at, rowid LIMIT ?4 OFFSET ?5"
    );
    let users = conn
        .prepare_cached(&sql)?
        .query_map(
            params![filter.organization_id, filter.role, search, limit as i64, offset as i64],
            from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, total as u64))
}

/// The user whose email is `email` (case-insensitively), if any.
pub fn by_email(conn: &Connection, email: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1 COLLATE NOCASE");
    Ok(conn.prepare_cached(&sql)?.query_row(params![email], from_row).optional()?)
}

/// Replaces a user's profile fields; false when there is no such user. A taken email fails
/// with [`StoreError::Conflict`] (the unique index).
pub fn set_profile(tx: &Transaction<'_>, id: &str, profile: &UserProfile) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE users SET first_name = ?2, last_name = ?3, phone = ?4, email = ?5, updated_at = ?6
         WHERE id = ?1",
        params![id, profile.first_name, profile.last_name, profile.phone, profile.email, now()],
    )? == 1)
}

/// Renames a user (the login); false when there is no such user.
pub fn set_username(tx: &Transaction<'_>, id: &str, username: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE users SET username = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, username, now()],
    )? == 1)
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
