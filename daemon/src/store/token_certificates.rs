//! What the daemon records about certificate objects on tokens, beyond what the token holds:
//! where each came from and whether it is protected (cannot be deleted through the certificate
//! store) or for system use only. Keyed by (token serial, SHA-1 fingerprint). The token is the
//! truth for which certificates exist; a row without a token object is ignored by readers.

use super::StoreError;
use rusqlite::{Connection, Transaction, params};

/// How a certificate object got onto its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSource {
    /// Written by card issuance; its lifecycle belongs to the card.
    Card,
    /// Imported with its private key through the certificate store.
    Import,
    /// The answer to a CSR whose key the token generated.
    Csr,
}

impl CertificateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateSource::Card => "CARD",
            CertificateSource::Import => "IMPORT",
            CertificateSource::Csr => "CSR",
        }
    }

    pub fn parse(s: &str) -> Option<CertificateSource> {
        [CertificateSource::Card, CertificateSource::Import, CertificateSource::Csr]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCertificateRecord {
    pub token_serial: String,
    pub fingerprint: String,
    pub object_id: Vec<u8>,
    pub source: CertificateSource,
    pub protected: bool,
    pub system_use_only: bool,
    pub created_at: i64,
}

/// Inserts or replaces the row for (token, fingerprint).
pub fn put(tx: &Transaction<'_>, r: &TokenCertificateRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO token_certificates
             (token_serial, fingerprint, object_id, source, protected, system_use_only, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.token_serial,
            r.fingerprint,
            r.object_id,
            r.source.as_str(),
            r.protected,
            r.system_use_only,
            r.created_at
        ],
    )?;
    Ok(())
}

/// Removes the row for (token, fingerprint); true if there was one.
pub fn delete(tx: &Transaction<'_>, token_serial: &str, fingerprint: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM token_certificates WHERE token_serial = ?1 AND fingerprint = ?2",
        params![token_serial, fingerprint],
    )? > 0)
}

/// Every row for a token.
pub fn list(conn: &Connection, token_serial: &str) -> Result<Vec<TokenCertificateRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT token_serial, fingerprint, object_id, source, protected, system_use_only, created_at
           FROM token_certificates WHERE token_serial = ?1 ORDER BY created_at, fingerprint",
    )?;
    let rows = stmt.query_map(params![token_serial], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Vec<u8>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, bool>(4)?,
            row.get::<_, bool>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (token_serial, fingerprint, object_id, source, protected, system_use_only, created_at) = row?;
        let source = CertificateSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("token_certificates.source {source:?}")))?;
        out.push(TokenCertificateRecord {
            token_serial,
            fingerprint,
            object_id,
            source,
            protected,
            system_use_only,
            created_at,
        });
    }
    Ok(out)
}
