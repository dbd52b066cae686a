//! Sign-in sessions: one row per refresh-token family (the session id is the family id), with
//! who signed in, from where and how; and the idle timeout of each role.

use super::StoreError;
use rusqlite::{Connection, Row, Transaction, params};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub username: String,
    /// `password` for Login, or the realm name.
    pub realm: String,
    pub roles: Vec<String>,
    pub source_ip: String,
    pub agent: String,
    pub login_node: String,
    pub signed_in_at: i64,
    pub last_activity: i64,
    /// When the session's refresh token expires (moved on by every refresh).
    pub expires_at: i64,
}

const COLUMNS: &str = "id, user_id, username, realm, roles, source_ip, agent, login_node, signed_in_at, last_activity, expires_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let roles: String = r.get(4)?;
    Ok(SessionRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        realm: r.get(3)?,
        roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        source_ip: r.get(5)?,
        agent: r.get(6)?,
        login_node: r.get(7)?,
        signed_in_at: r.get(8)?,
        last_activity: r.get(9)?,
        expires_at: r.get(10)?,
    })
}

pub fn insert(tx: &Transaction<'_>, s: &SessionRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            s.id,
            s.user_id,
            s.username,
            s.realm,
            s.roles.join(","),
            s.source_ip,
            s.agent,
            s.login_node,
            s.signed_in_at,
            s.last_activity,
            s.expires_at
        ],
    )?;
    Ok(())
}

/// Every session, oldest sign-in first.
pub fn all(conn: &Connection) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM sessions ORDER BY signed_in_at, rowid");
    let rows = conn.prepare(&sql)?.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes a session; false when there was none.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])? == 1)
}

/// Records activity (and, on refresh, the new expiry).
pub fn touch(
    tx: &Transaction<'_>,
    id: &str,
    last_activity: i64,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    match expires_at {
        Some(exp) => tx.execute(
            "UPDATE sessions SET last_activity = MAX(last_activity, ?2), expires_at = ?3 WHERE id = ?1",
            params![id, last_activity, exp],
        )?,
        None => tx.execute(
            "UPDATE sessions SET last_activity = MAX(last_activity, ?2) WHERE id = ?1",
            params![id, last_activity],
        )?,
    };
    Ok(())
}

/// The configured idle timeouts, role name → minutes (0 = none).
pub fn idle_timeouts(conn: &Connection) -> Result<Vec<(String, u32)>, StoreError> {
    let rows = conn
        .prepare("SELECT role, minutes FROM session_idle_timeouts ORDER BY role")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn set_idle_timeout(tx: &Transaction<'_>, role: &str, minutes: u32) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO session_idle_timeouts (role, minutes) VALUES (?1, ?2)
         ON CONFLICT(role) DO UPDATE SET minutes = excluded.minutes",
        params![role, minutes],
    )?;
    Ok(())
}
