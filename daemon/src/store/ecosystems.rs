//! Ecosystems, below the identity and organization services: rows only. An ecosystem groups
//! organizations and carries the password policy of the users privileged in it; the migration
//! creates `default`, which holds every organization until others are made.

use super::{StoreError, now};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// The ecosystem every organization belongs to unless told otherwise.
pub const DEFAULT_ECOSYSTEM: &str = "default";

/// The minimum password length when nothing else is known (no privilege, no ecosystem).
pub const DEFAULT_PASSWORD_MIN_LENGTH: u32 = 12;

/// A stored ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcosystemRecord {
    pub id: String,
    pub name: String,
    pub password_min_length: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<EcosystemRecord>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, password_min_length, created_at, updated_at FROM ecosystems WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(EcosystemRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                password_min_length: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Sets an ecosystem's minimum password length (1..=50, the table's CHECK); false when
/// there is no such ecosystem.
pub fn set_password_min_length(tx: &Transaction<'_>, id: &str, length: u32) -> Result<bool, StoreError> {
    let n = tx.execute(
        "UPDATE ecosystems SET password_min_length = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, length, now()],
    )?;
    Ok(n == 1)
}

/// The minimum password length for a user: the strictest of the ecosystems the user holds a
/// privilege in, or the default ecosystem's when the user holds none.
pub fn password_min_length_for_user(conn: &Connection, user_id: &str) -> Result<u32, StoreError> {
    let strictest: Option<u32> = conn
        .prepare_cached(
            "SELECT MAX(e.password_min_length) FROM user_privileges p
             JOIN ecosystems e ON e.id = p.ecosystem_id WHERE p.user_id = ?1",
        )?
        .query_row([user_id], |r| r.get(0))?;
    match strictest {
        Some(n) => Ok(n),
        None => {
            Ok(get(conn, DEFAULT_ECOSYSTEM)?.map_or(DEFAULT_PASSWORD_MIN_LENGTH, |e| e.password_min_length))
        }
    }
}

/// Balances of an ecosystem's organizations: (organizations, capacity, used, reserved).
pub fn balance_totals(conn: &Connection, ecosystem_id: &str) -> Result<(u64, i64, i64, i64), StoreError> {
    let organizations: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM organizations WHERE ecosystem_id = ?1")?
        .query_row([ecosystem_id], |r| r.get(0))?;
    let (capacity, used, reserved): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT IFNULL(SUM(oa.balance), 0), IFNULL(SUM(oa.used), 0), IFNULL(SUM(oa.reserved), 0)
             FROM organization_authorities oa JOIN organizations o ON o.id = oa.organization_id
             WHERE o.ecosystem_id = ?1",
        )?
        .query_row([ecosystem_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok((organizations, capacity, used, reserved))
}

/// Devices ordered and certificates issued per UTC day in `[from_day, to_day]` (YYYY-MM-DD)
/// over an ecosystem's organizations; days with neither are absent.
pub fn daily_counts(
    conn: &Connection,
    ecosystem_id: &str,
    from_day: &str,
    to_day: &str,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.day, SUM(d.ordered), SUM(d.issued) FROM batch_daily_counts d
         JOIN organizations o ON o.id = d.organization_id
         WHERE o.ecosystem_id = ?1 AND d.day BETWEEN ?2 AND ?3
         GROUP BY d.day ORDER BY d.day",
    )?;
    let rows = stmt
        .query_map(params![ecosystem_id, from_day, to_day], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Today in UTC and the day `days` before it, as YYYY-MM-DD (SQLite's calendar).
pub fn day_range_ending_today(conn: &Connection, days: u32) -> Result<(String, String), StoreError> {
    Ok(conn.query_row("SELECT date('now', printf('-%d days', ?1)), date('now')", [days], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}
