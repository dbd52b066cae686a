//! Users' privileges, below the identity service: rows only. A privilege is a role (USER,
//! ORG_ADMIN, ECO_ADMIN) in an ecosystem and, except for ECO_ADMIN, an organization, with the
//! profiles a USER may issue with. The authentication service reads them all at start and
//! after each change to give every principal its organization scope.

use super::StoreError;
use rusqlite::{Connection, Transaction, params};

/// One stored privilege.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrivilegeRecord {
    pub user_id: String,
    /// `USER`, `ORG_ADMIN` or `ECO_ADMIN` (the table's CHECK).
    pub role: String,
    pub ecosystem_id: String,
    /// `None` for ECO_ADMIN.
    pub organization_id: Option<String>,
    pub profiles: Vec<String>,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrivilegeRecord> {
    let profiles: String = r.get(4)?;
    Ok(PrivilegeRecord {
        user_id: r.get(0)?,
        role: r.get(1)?,
        ecosystem_id: r.get(2)?,
        organization_id: r.get(3)?,
        profiles: profiles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

const COLUMNS: &str = "user_id, role, ecosystem_id, organization_id, profiles";

/// Every privilege of every user (the authentication service's index).
pub fn all(conn: &Connection) -> Result<Vec<PrivilegeRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM user_privileges"))?;
    let rows = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn for_user(conn: &Connection, user_id: &str) -> Result<Vec<PrivilegeRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM user_privileges WHERE user_id = ?1
         ORDER BY ecosystem_id, IFNULL(organization_id, ''), role"
    ))?;
    let rows = stmt.query_map([user_id], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Replaces a user's privileges with `privileges` (all for `user_id`).
pub fn replace_for_user(
    tx: &Transaction<'_>,
    user_id: &str,
    privileges: &[PrivilegeRecord],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM user_privileges WHERE user_id = ?1", [user_id])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO user_privileges (user_id, role, ecosystem_id, organization_id, profiles)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for p in privileges {
        insert.execute(params![user_id, p.role, p.ecosystem_id, p.organization_id, p.profiles.join(",")])?;
    }
    Ok(())
}

/// (user id, login) of every user holding a privilege.
pub fn privileged_logins(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT u.id, u.username FROM users u JOIN user_privileges p ON p.user_id = u.id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}
