//! The audit log: one row per state change, written inside the same transaction as the change.

use super::{StoreError, now};
use rusqlite::{Connection, Transaction, params};

/// One audit entry to append.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who did it: a username, or `system` for the daemon itself.
    pub actor: &'a str,
    /// What was done, e.g. `card.revoke`.
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    /// Free-form detail (JSON). Never holds a secret.
    pub detail: String,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub detail: String,
}

pub fn append(tx: &Transaction<'_>, entry: AuditEntry<'_>) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, target_type, target_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now(), entry.actor, entry.action, entry.target_type, entry.target_id, entry.detail])?;
    Ok(tx.last_insert_rowid())
}

/// Every record about one target, oldest first.
pub fn for_target(
    conn: &Connection,
    target_type: &str,
    target_id: &str,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, target_type, target_id, detail FROM audit_log
         WHERE target_type = ?1 AND target_id = ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![target_type, target_id], |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target_type: r.get(4)?,
            target_id: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many audit records there are (all targets).
pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?)
}
