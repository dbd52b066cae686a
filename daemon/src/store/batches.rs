//! Batches and their devices, below the batch service and its engine: rows only. The state
//! machine's rules live in `service/batches`; here are the queries it needs, each run inside
//! the caller's transaction so a device's certificate, its row, the balance and the audit
//! records commit together.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub status_reason: String,
    pub organization_id: String,
    pub authority_id: String,
    pub profile_id: String,
    pub key_type: String,
    pub validity_years: u32,
    pub generator_id: String,
    pub batch_size: u32,
    pub issued: u32,
    pub failed: u32,
    pub reserved: u32,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub first_downloaded_at: Option<i64>,
    pub files_removed_at: Option<i64>,
}

/// A device still to issue (what the engine reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDevice {
    pub position: u32,
    pub params: String,
    pub csr_der: Option<Vec<u8>>,
}

/// An issued device's file, as the download reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFile {
    pub position: u32,
    pub common_name: String,
    pub serial: String,
    pub certificate_id: String,
    /// The PKCS#12, or None for CSR batches (the certificate is read from `certificates`).
    pub pkcs12: Option<Vec<u8>>,
    /// CSR batches: the certificate DER.
    pub certificate_der: Option<Vec<u8>>,
}

/// What a finished device becomes.
#[derive(Debug, Clone)]
pub enum DeviceOutcome<'a> {
    Issued { common_name: &'a str, serial: &'a str, certificate_id: &'a str, pkcs12: Option<&'a [u8]> },
    Failed { error: &'a str },
}

/// ListBatches filters (None / empty = any).
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub batch_id: Option<String>,
    pub organization_id: Option<String>,
    /// Organizations the caller may see; None = all.
    pub organizations: Option<Vec<String>>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub size_from: Option<u32>,
    pub size_to: Option<u32>,
    pub status: Option<String>,
    pub name: Option<String>,
    /// Profiles the caller may use; None = all.
    pub profiles: Option<Vec<String>>,
    /// A column name from [`SORTABLE`].
    pub sort_by: &'static str,
    pub descending: bool,
}

/// Columns ListBatches may sort on.
pub const SORTABLE: [&str; 4] = ["created_at", "name", "batch_size", "status"];

const COLUMNS: &str = "id, name, kind, status, status_reason, organization_id, authority_id, profile_id,
    key_type, validity_years, generator_id, batch_size, issued, failed, reserved, created_by, created_at,
    updated_at, finished_at, first_downloaded_at, files_removed_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<BatchRecord> {
    Ok(BatchRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        status_reason: r.get(4)?,
        organization_id: r.get(5)?,
        authority_id: r.get(6)?,
        profile_id: r.get(7)?,
        key_type: r.get(8)?,
        validity_years: r.get(9)?,
        generator_id: r.get(10)?,
        batch_size: r.get(11)?,
        issued: r.get(12)?,
        failed: r.get(13)?,
        reserved: r.get(14)?,
        created_by: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        finished_at: r.get(18)?,
        first_downloaded_at: r.get(19)?,
        files_removed_at: r.get(20)?,
    })
}

/// Inserts a batch (its devices follow with [`insert_device`]) and counts it as ordered today.
pub fn insert(tx: &Transaction<'_>, b: &BatchRecord, password_enc: Option<&[u8]>) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO batches (id, name, kind, status, status_reason, organization_id, authority_id, profile_id,
         key_type, validity_years, generator_id, batch_size, issued, failed, reserved, password_enc, created_by,
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
         ?17, ?18, ?19)",
    )?
    .execute(params![
        b.id,
        b.name,
        b.kind,
        b.status,
        b.status_reason,
        b.organization_id,
        b.authority_id,
        b.profile_id,
        b.key_type,
        b.validity_years,
        b.generator_id,
        b.batch_size,
        b.issued,
        b.failed,
        b.reserved,
        password_enc,
        b.created_by,
        b.created_at,
        b.updated_at
    ])?;
    count_day(tx, &b.organization_id, b.created_at, i64::from(b.batch_size), 0)
}

pub fn insert_device(
    tx: &Transaction<'_>,
    batch_id: &str,
    position: u32,
    params_json: &str,
    csr_der: Option<&[u8]>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO batch_devices (batch_id, position, params, csr_der, status) VALUES (?1, ?2, ?3, ?4, 'PENDING')",
    )?
    .execute(params![batch_id, position, params_json, csr_der])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<BatchRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM batches WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?)
}

/// The encrypted PKCS#12 password of a batch, while it has one.
pub fn password_enc(conn: &Connection, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT password_enc FROM batches WHERE id = ?1")?
        .query_row(params![id], |r| r.get::<_, Option<Vec<u8>>>(0))
        .optional()?
        .flatten())
}

/// Batches in `statuses` (the engine resumes these at start), oldest first.
pub fn ids_in_status(conn: &Connection, statuses: &[&str]) -> Result<Vec<String>, StoreError> {
    let marks = vec!["?"; statuses.len()].join(", ");
    let mut stmt =
        conn.prepare(&format!("SELECT id FROM batches WHERE status IN ({marks}) ORDER BY created_at, id"))?;
    let rows = stmt.query_map(params_from_iter(statuses.iter()), |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Sets the status (and reason); `finished` stamps finished_at. False when no such batch.
pub fn set_status(
    tx: &Transaction<'_>,
    id: &str,
    status: &str,
    reason: &str,
    finished: bool,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE batches SET status = ?2, status_reason = ?3, updated_at = ?4,
             finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END WHERE id = ?1",
        )?
        .execute(params![id, status, reason, now, finished])?
        == 1)
}

/// Forgets the PKCS#12 password (the batch will make no more files).
pub fn clear_password(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE batches SET password_enc = NULL WHERE id = ?1")?.execute(params![id])?;
    Ok(())
}

/// Records the first download (later ones change nothing). True when this was the first.
pub fn mark_downloaded(tx: &Transaction<'_>, id: &str, now: i64) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE batches SET first_downloaded_at = ?2, updated_at = ?2
             WHERE id = ?1 AND first_downloaded_at IS NULL",
        )?
        .execute(params![id, now])?
        == 1)
}

/// Deletes a batch's stored PKCS#12 files and stamps files_removed_at.
pub fn remove_files(tx: &Transaction<'_>, id: &str, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE batch_devices SET pkcs12 = NULL WHERE batch_id = ?1")?.execute(params![id])?;
    tx.prepare_cached("UPDATE batches SET files_removed_at = ?2, updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Batches finished before `before` whose files are still stored, in `statuses`.
pub fn files_expired(conn: &Connection, before: i64, statuses: &[&str]) -> Result<Vec<String>, StoreError> {
    let marks = (0..statuses.len()).map(|i| format!("?{}", i + 2)).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT id FROM batches WHERE finished_at IS NOT NULL AND finished_at < ?1 AND files_removed_at IS NULL
         AND status IN ({marks}) ORDER BY finished_at"
    ))?;
    let mut values: Vec<rusqlite::types::Value> = vec![before.into()];
    values.extend(statuses.iter().map(|s| rusqlite::types::Value::from((*s).to_owned())));
    let rows = stmt.query_map(params_from_iter(values), |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Up to `limit` devices still PENDING after position `after` (None: from the start), by position.
pub fn pending_devices(
    conn: &Connection,
    batch_id: &str,
    after: Option<u32>,
    limit: u32,
) -> Result<Vec<PendingDevice>, StoreError> {
    let after = after.map_or(-1, i64::from);
    let mut stmt = conn.prepare_cached(
        "SELECT position, params, csr_der FROM batch_devices
         WHERE batch_id = ?1 AND status = 'PENDING' AND position > ?2 ORDER BY position LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![batch_id, after, limit], |r| {
        Ok(PendingDevice { position: r.get(0)?, params: r.get(1)?, csr_der: r.get(2)? })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The first device's stored parameters (PreviewBatch of a stored batch; tests).
pub fn device_params(conn: &Connection, batch_id: &str, position: u32) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT params FROM batch_devices WHERE batch_id = ?1 AND position = ?2")?
        .query_row(params![batch_id, position], |r| r.get(0))
        .optional()?)
}

/// Whether the batch has a device at `position`.
pub fn has_device(conn: &Connection, batch_id: &str, position: u32) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM batch_devices WHERE batch_id = ?1 AND position = ?2")?
        .query_row(params![batch_id, position], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Finishes one PENDING device; false when it was not PENDING (then nothing changed). The
/// batch's counters move with it: issued or failed + 1, reserved - 1.
pub fn finish_device(
    tx: &Transaction<'_>,
    batch_id: &str,
    position: u32,
    outcome: &DeviceOutcome<'_>,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = match outcome {
        DeviceOutcome::Issued { common_name, serial, certificate_id, pkcs12 } => tx
            .prepare_cached(
                "UPDATE batch_devices SET status = 'ISSUED', common_name = ?3, serial = ?4, certificate_id = ?5,
                 pkcs12 = ?6, issued_at = ?7 WHERE batch_id = ?1 AND position = ?2 AND status = 'PENDING'",
            )?
            .execute(params![batch_id, position, common_name, serial, certificate_id, pkcs12, now])?,
        DeviceOutcome::Failed { error } => tx
            .prepare_cached(
                "UPDATE batch_devices SET status = 'FAILED', error = ?3
                 WHERE batch_id = ?1 AND position = ?2 AND status = 'PENDING'",
            )?
            .execute(params![batch_id, position, error])?,
    };
    if changed != 1 {
        return Ok(false);
    }
    let (issued, failed) = match outcome {
        DeviceOutcome::Issued { .. } => (1, 0),
        DeviceOutcome::Failed { .. } => (0, 1),
    };
    tx.prepare_cached(
        "UPDATE batches SET issued = issued + ?2, failed = failed + ?3, reserved = MAX(0, reserved - 1),
         updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![batch_id, issued, failed, now])?;
    Ok(true)
}

/// The error of the first failed device, if any.
pub fn first_error(conn: &Connection, batch_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT error FROM batch_devices WHERE batch_id = ?1 AND status = 'FAILED' ORDER BY position LIMIT 1",
        )?
        .query_row(params![batch_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Sets the batch's remaining reservations to 0 (the caller gave them back to the balance).
pub fn release_reserved(tx: &Transaction<'_>, batch_id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE batches SET reserved = 0 WHERE id = ?1")?.execute(params![batch_id])?;
    Ok(())
}

/// Counts `issued` certificates of an organization on the day of `at` (and `ordered` devices).
pub fn count_day(
    tx: &Transaction<'_>,
    organization_id: &str,
    at: i64,
    ordered: i64,
    issued: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO batch_daily_counts (day, organization_id, ordered, issued)
         VALUES (date(?1, 'unixepoch'), ?2, ?3, ?4)
         ON CONFLICT (day, organization_id) DO UPDATE SET ordered = ordered + ?3, issued = issued + ?4",
    )?
    .execute(params![at, organization_id, ordered, issued])?;
    Ok(())
}

/// Devices ordered and certificates issued per day (YYYY-MM-DD, inclusive bounds), over every
/// organization, days without any left out.
pub fn daily_counts(
    conn: &Connection,
    from_day: &str,
    to_day: &str,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    daily_counts_for(conn, None, from_day, to_day)
}

/// [`daily_counts`] over the organizations `organizations` (None: all).
pub fn daily_counts_for(
    conn: &Connection,
    organizations: Option<&[String]>,
    from_day: &str,
    to_day: &str,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut sql = String::from(
        "SELECT day, SUM(ordered), SUM(issued) FROM batch_daily_counts WHERE day >= ?1 AND day <= ?2",
    );
    let mut values: Vec<rusqlite::types::Value> = vec![from_day.to_owned().into(), to_day.to_owned().into()];
    if let Some(orgs) = organizations {
        let marks = (0..orgs.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", ");
        sql.push_str(&format!(" AND organization_id IN ({marks})"));
        values.extend(orgs.iter().map(|o| rusqlite::types::Value::from(o.clone())));
    }
    sql.push_str(" GROUP BY day ORDER BY day");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        let (o, i): (i64, i64) = (r.get(1)?, r.get(2)?);
        Ok((r.get::<_, String>(0)?, u64::try_from(o).unwrap_or(0), u64::try_from(i).unwrap_or(0)))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Up to `limit` issued devices after position `after`, by position, with their files.
pub fn issued_files(
    conn: &Connection,
    batch_id: &str,
    after: Option<u32>,
    limit: u32,
) -> Result<Vec<DeviceFile>, StoreError> {
    let after = after.map_or(-1, i64::from);
    let mut stmt = conn.prepare_cached(
        "SELECT d.position, d.common_name, d.serial, d.certificate_id, d.pkcs12,
                CASE WHEN d.pkcs12 IS NULL THEN c.certificate_der END
         FROM batch_devices d JOIN certificates c ON c.id = d.certificate_id
         WHERE d.batch_id = ?1 AND d.status = 'ISSUED' AND d.position > ?2 ORDER BY d.position LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![batch_id, after, limit], |r| {
        Ok(DeviceFile {
            position: r.get(0)?,
            common_name: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            serial: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            certificate_id: r.get(3)?,
            pkcs12: r.get(4)?,
            certificate_der: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The certificate ids of a batch's issued devices.
pub fn certificate_ids(conn: &Connection, batch_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT certificate_id FROM batch_devices WHERE batch_id = ?1 AND status = 'ISSUED' ORDER BY position",
    )?;
    let rows = stmt.query_map(params![batch_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn filter_sql(f: &BatchFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut push = |clause: &str, v: Value, values: &mut Vec<Value>| {
        values.push(v);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    };
    if let Some(id) = &f.batch_id {
        push("id = ?", id.clone().into(), &mut values);
    }
    if let Some(o) = &f.organization_id {
        push("organization_id = ?", o.clone().into(), &mut values);
    }
    if let Some(v) = f.created_from {
        push("created_at >= ?", v.into(), &mut values);
    }
    if let Some(v) = f.created_to {
        push("created_at <= ?", v.into(), &mut values);
    }
    if let Some(v) = f.size_from {
        push("batch_size >= ?", i64::from(v).into(), &mut values);
    }
    if let Some(v) = f.size_to {
        push("batch_size <= ?", i64::from(v).into(), &mut values);
    }
    if let Some(s) = &f.status {
        push("status = ?", s.clone().into(), &mut values);
    }
    if let Some(n) = &f.name {
        // instr on lower-cased text: no LIKE wildcards to escape in a user's search.
        push("instr(lower(name), ?) > 0", n.to_lowercase().into(), &mut values);
    }
    if let Some(profiles) = &f.profiles {
        if profiles.is_empty() {
            clauses.push("0".into());
        } else {
            let start = values.len();
            values.extend(profiles.iter().map(|p| Value::from(p.clone())));
            let marks = (start..values.len()).map(|i| format!("?{}", i + 1)).collect::<Vec<_>>().join(", ");
            clauses.push(format!("profile_id IN ({marks})"));
        }
    }
    if let Some(orgs) = &f.organizations {
        if orgs.is_empty() {
            clauses.push("0".into());
        } else {
            let start = values.len();
            values.extend(orgs.iter().map(|o| Value::from(o.clone())));
            let marks = (start..values.len()).map(|i| format!("?{}", i + 1)).collect::<Vec<_>>().join(", ");
            clauses.push(format!("organization_id IN ({marks})"));
        }
    }
    let sql = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    (sql, values)
}

/// One page of batches matching `f`, and how many match in all.
pub fn list(
    conn: &Connection,
    f: &BatchFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<BatchRecord>, u64), StoreError> {
    let (where_sql, mut values) = filter_sql(f);
    let total: i64 = conn
        .prepare(&format!("SELECT COUNT(*) FROM batches{where_sql}"))?
        .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
    let sort = if SORTABLE.contains(&f.sort_by) { f.sort_by } else { "created_at" };
    let dir = if f.descending { "DESC" } else { "ASC" };
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    values.push(clamp(limit).into());
    values.push(clamp(offset).into());
    let n = values.len();
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM batches{where_sql} ORDER BY {sort} {dir}, id {dir} LIMIT ?{} OFFSET ?{n}",
        n - 1
    ))?;
    let rows = stmt.query_map(params_from_iter(values.iter()), from_row)?;
    Ok((rows.collect::<Result<Vec<_>, _>>()?, u64::try_from(total).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn daily_counts_sum_per_day_and_filter_by_organization() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite3"), 1).expect("open");
        store
            .blocking_write(|tx| {
                // 2026-01-01 and 2026-01-02, UTC noon.
                count_day(tx, "a", 1_767_268_800, 10, 0)?;
                count_day(tx, "a", 1_767_268_800, 0, 4)?;
                count_day(tx, "b", 1_767_268_800, 5, 5)?;
                count_day(tx, "a", 1_767_355_200, 0, 6)?;
                Ok::<_, StoreError>(())
            })
            .expect("counts");
        store
            .blocking_write(|tx| {
                assert_eq!(
                    daily_counts(tx, "2026-01-01", "2026-01-31")?,
                    vec![("2026-01-01".into(), 15, 9), ("2026-01-02".into(), 0, 6)]
                );
                let only_a = ["a".to_owned()];
                assert_eq!(
                    daily_counts_for(tx, Some(&only_a), "2026-01-01", "2026-01-01")?,
                    vec![("2026-01-01".into(), 10, 4)]
                );
                assert!(daily_counts(tx, "2026-02-01", "2026-02-28")?.is_empty());
                Ok::<_, StoreError>(())
            })
            .expect("queries");
    }
}
