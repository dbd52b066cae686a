//! Certificate authorities and their CRLs, below the issuance service: rows only. The CA
//! private keys are on the daemon token (named here by token serial and CKA_ID); the rules
//! (kinds, chains, who may sign) live in `service/issuance`.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// How an authority's certificate came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityKind {
    Root,
    Intermediate,
    External,
}

impl AuthorityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityKind::Root => "ROOT",
            AuthorityKind::Intermediate => "INTERMEDIATE",
            AuthorityKind::External => "EXTERNAL",
        }
    }

    pub fn parse(s: &str) -> Option<AuthorityKind> {
        [AuthorityKind::Root, AuthorityKind::Intermediate, AuthorityKind::External]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A stored authority.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorityRecord {
    pub id: String,
    pub name: String,
    pub kind: AuthorityKind,
    pub parent_id: Option<String>,
    pub key_algorithm: String,
    pub token_serial: String,
    pub key_id: Vec<u8>,
    pub public_key_der: Vec<u8>,
    pub subject_dn: String,
    /// None while an EXTERNAL authority waits for its certificate.
    pub certificate_der: Option<Vec<u8>>,
    pub csr_der: Option<Vec<u8>>,
    /// DER certificates above this one that are not ours, each as one element.
    pub external_chain: Vec<Vec<u8>>,
    pub enabled: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One published CRL.
#[derive(Debug, Clone, PartialEq)]
pub struct CrlRecord {
    pub authority_id: String,
    pub crl_number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub crl_der: Vec<u8>,
}

const COLUMNS: &str = "id, name, kind, parent_id, key_algorithm, token_serial, key_id, public_key_der, \
                       subject_dn, certificate_der, csr_der, external_chain, enabled, not_before, not_after, \
                       issued_count, created_at, updated_at";

/// The external chain is kept as length-prefixed DER blobs (4-byte big-endian lengths), so
/// one column holds any number of certificates without a second table.
fn encode_chain(chain: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for der in chain {
        out.extend_from_slice(&(der.len() as u32).to_be_bytes());
        out.extend_from_slice(der);
    }
    out
}

fn decode_chain(mut raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw.split_at_checked(4).ok_or("truncated length")?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (der, rest) = rest.split_at_checked(len).ok_or("truncated certificate")?;
        out.push(der.to_vec());
        raw = rest;
    }
    Ok(out)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<AuthorityRecord> {
    let bad = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    let kind: String = r.get(2)?;
    let kind = AuthorityKind::parse(&kind).ok_or_else(|| bad(2, format!("bad authority kind {kind:?}")))?;
    let chain: Vec<u8> = r.get(11)?;
    let external_chain = decode_chain(&chain).map_err(|e| bad(11, format!("bad external chain: {e}")))?;
    Ok(AuthorityRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        kind,
        parent_id: r.get(3)?,
        key_algorithm: r.get(4)?,
        token_serial: r.get(5)?,
        key_id: r.get(6)?,
        public_key_der: r.get(7)?,
        subject_dn: r.get(8)?,
        certificate_der: r.get(9)?,
        csr_der: r.get(10)?,
        external_chain,
        enabled: r.get(12)?,
        not_before: r.get(13)?,
        not_after: r.get(14)?,
        issued_count: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

pub fn insert(tx: &Transaction<'_>, a: &AuthorityRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO authorities ({COLUMNS}) VALUES
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    ))?
    .execute(params![
        a.id,
        a.name,
        a.kind.as_str(),
        a.parent_id,
        a.key_algorithm,
        a.token_serial,
        a.key_id,
        a.public_key_der,
        a.subject_dn,
        a.certificate_der,
        a.csr_der,
        encode_chain(&a.external_chain),
        a.enabled,
        a.not_before,
        a.not_after,
        a.issued_count,
        a.created_at,
        a.updated_at
    ])?;
    Ok(())
}

/// Installs an EXTERNAL authority's certificate (and the external chain above it).
pub fn set_certificate(
    tx: &Transaction<'_>,
    id: &str,
    certificate_der: &[u8],
    external_chain: &[Vec<u8>],
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE authorities SET certificate_der = ?2, external_chain = ?3, not_before = ?4, not_after = ?5,
             updated_at = ?6 WHERE id = ?1",
        )?
        .execute(params![id, certificate_der, encode_chain(external_chain), not_before, not_after, now])?;
    if n != 1 {
        return Err(StoreError::Corrupt(format!("authority {id} vanished during update")));
    }
    Ok(())
}

/// Enables or disables issuing from the authority; false when there is no such authority.
pub fn set_enabled(tx: &Transaction<'_>, id: &str, enabled: bool, now: i64) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("UPDATE authorities SET enabled = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, enabled, now])?
        == 1)
}

/// Counts one more certificate issued by the authority.
pub fn count_issued(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE authorities SET issued_count = issued_count + 1 WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<AuthorityRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM authorities WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?)
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<AuthorityRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM authorities WHERE name = ?1"))?
        .query_row(params![name], from_row)
        .optional()?)
}

/// Every authority, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<AuthorityRecord>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM authorities ORDER BY created_at, rowid"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn insert_crl(tx: &Transaction<'_>, crl: &CrlRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO crls (authority_id, crl_number, this_update, next_update, crl_der) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![crl.authority_id, crl.crl_number, crl.this_update, crl.next_update, crl.crl_der])?;
    Ok(())
}

/// The authority's CRL with the highest number, if it has one.
pub fn latest_crl(conn: &Connection, authority_id: &str) -> Result<Option<CrlRecord>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT authority_id, crl_number, this_update, next_update, crl_der FROM crls
             WHERE authority_id = ?1 ORDER BY crl_number DESC LIMIT 1",
        )?
        .query_row(params![authority_id], |r| {
            Ok(CrlRecord {
                authority_id: r.get(0)?,
                crl_number: r.get(1)?,
                this_update: r.get(2)?,
                next_update: r.get(3)?,
                crl_der: r.get(4)?,
            })
        })
        .optional()?)
}

/// The highest CRL number the authority has published (0 when none).
pub fn last_crl_number(conn: &Connection, authority_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(crl_number), 0) FROM crls WHERE authority_id = ?1")?
        .query_row(params![authority_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_encoding_round_trips_and_rejects_truncation() {
        let chain = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let raw = encode_chain(&chain);
        assert_eq!(decode_chain(&raw).expect("decodes"), chain);
        assert!(decode_chain(&raw[..raw.len() - 1]).is_err());
        assert!(decode_chain(&[0, 0]).is_err());
        assert_eq!(decode_chain(&[]).expect("empty"), Vec::<Vec<u8>>::new());
    }
}
