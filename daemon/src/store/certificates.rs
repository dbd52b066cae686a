//! Certificates the authorities issued, below the issuance service: rows only. Serials are
//! unique per authority by a table constraint (an insert that repeats one fails `Conflict`,
//! and the service retries with a fresh serial). Revocation state lives here; the CRL is
//! built by the service from `not_valid_of`.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// Persisted certificate states (the text in the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Revoked,
    /// Revoked with certificateHold: listed on the CRL until released.
    OnHold,
}

impl CertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "VALID",
            CertStatus::Revoked => "REVOKED",
            CertStatus::OnHold => "ON_HOLD",
        }
    }

    pub fn parse(s: &str) -> Option<CertStatus> {
        [CertStatus::Valid, CertStatus::Revoked, CertStatus::OnHold].into_iter().find(|c| c.as_str() == s)
    }
}

/// A stored certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateRecord {
    pub id: String,
    pub authority_id: String,
    pub profile_id: String,
    /// Lower-case hex of the serial's magnitude (`CertSerial::to_hex`).
    pub serial: String,
    pub common_name: String,
    pub subject_dn: String,
    pub certificate_der: Vec<u8>,
    pub status: CertStatus,
    /// RFC 5280 reason code while REVOKED / ON_HOLD.
    pub revocation_reason: Option<i64>,
    pub revoked_at: Option<i64>,
    pub not_before: i64,
    pub not_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, authority_id, profile_id, serial, common_name, subject_dn, certificate_der, status, \
                       revocation_reason, revoked_at, not_before, not_after, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let status: String = r.get(7)?;
    let status = CertStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            7,
            rusqlite::types::Type::Text,
            format!("bad certificate status {status:?}").into(),
        )
    })?;
    Ok(CertificateRecord {
        id: r.get(0)?,
        authority_id: r.get(1)?,
        profile_id: r.get(2)?,
        serial: r.get(3)?,
        common_name: r.get(4)?,
        subject_dn: r.get(5)?,
        certificate_der: r.get(6)?,
        status,
        revocation_reason: r.get(8)?,
        revoked_at: r.get(9)?,
        not_before: r.get(10)?,
        not_after: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

pub fn insert(tx: &Transaction<'_>, c: &CertificateRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        c.id,
        c.authority_id,
        c.profile_id,
        c.serial,
        c.common_name,
        c.subject_dn,
        c.certificate_der,
        c.status.as_str(),
        c.revocation_reason,
        c.revoked_at,
        c.not_before,
        c.not_after,
        c.created_at,
        c.updated_at
    ])?;
    Ok(())
}

/// Writes the revocation state of `c`.
pub fn update_status(tx: &Transaction<'_>, c: &CertificateRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE certificates SET status = ?2, revocation_reason = ?3, revoked_at = ?4, updated_at = ?5
             WHERE id = ?1",
        )?
        .execute(params![c.id, c.status.as_str(), c.revocation_reason, c.revoked_at, c.updated_at])?;
    if n != 1 {
        return Err(StoreError::Corrupt(format!("certificate {} vanished during update", c.id)));
    }
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<CertificateRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?)
}

/// Certificates of one profile with this serial (at most one per authority).
pub fn by_profile_serial(
    conn: &Connection,
    profile_id: &str,
    serial: &str,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE profile_id = ?1 AND serial = ?2 ORDER BY created_at, rowid"
    ))?;
    let rows = stmt.query_map(params![profile_id, serial], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The authority's certificates that a CRL must list (REVOKED and ON_HOLD), by serial.
pub fn not_valid_of(conn: &Connection, authority_id: &str) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE authority_id = ?1 AND status <> 'VALID' ORDER BY serial"
    ))?;
    let rows = stmt.query_map(params![authority_id], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A page of certificates matching the optional filters (CN case-insensitive, serial as
/// stored), oldest first, and the total.
pub fn find(
    conn: &Connection,
    common_name: Option<&str>,
    serial: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<CertificateRecord>, u64), StoreError> {
    let filter = "(?1 IS NULL OR common_name = ?1) AND (?2 IS NULL OR serial = ?2)";
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM certificates WHERE {filter} ORDER BY created_at, rowid LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(params![common_name, serial, limit as i64, offset as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM certificates WHERE {filter}"))?
        .query_row(params![common_name, serial], |r| r.get(0))?;
    Ok((rows, total as u64))
}
