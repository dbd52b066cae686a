//! Pending certificate-store CSRs, under the certificate-store service: CreateCsr records the
//! request once its key pair is on the token and the token has signed it; CompleteCsr (the
//! certificate came back) and DeleteCertificateBySubject remove the row in the same
//! transaction as their audit record. The key pair on the token is the other half of a row.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// One pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCsrRecord {
    pub id: String,
    pub token_serial: String,
    /// CKA_ID of the key pair on the token.
    pub object_id: Vec<u8>,
    pub subject_dn: String,
    /// The subject's first CN, "" when it has none.
    pub common_name: String,
    /// `EC:P-256`, `RSA:2048`, …
    pub key_algorithm: String,
    /// SubjectPublicKeyInfo DER of the key pair.
    pub public_key_der: Vec<u8>,
    pub csr_der: Vec<u8>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, token_serial, object_id, subject_dn, common_name, key_algorithm, public_key_der, \
                       csr_der, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<TokenCsrRecord> {
    Ok(TokenCsrRecord {
        id: row.get(0)?,
        token_serial: row.get(1)?,
        object_id: row.get(2)?,
        subject_dn: row.get(3)?,
        common_name: row.get(4)?,
        key_algorithm: row.get(5)?,
        public_key_der: row.get(6)?,
        csr_der: row.get(7)?,
        created_at: row.get(8)?,
    })
}

pub fn insert(tx: &Transaction<'_>, r: &TokenCsrRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO token_csrs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            r.id,
            r.token_serial,
            r.object_id,
            r.subject_dn,
            r.common_name,
            r.key_algorithm,
            r.public_key_der,
            r.csr_der,
            r.created_at
        ],
    )?;
    Ok(())
}

/// The pending request with this id on this token.
pub fn get(conn: &Connection, token_serial: &str, id: &str) -> Result<Option<TokenCsrRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM token_csrs WHERE token_serial = ?1 AND id = ?2"))?
        .query_row(params![token_serial, id], from_row)
        .optional()?)
}

/// Every pending request on a token, oldest first.
pub fn list(conn: &Connection, token_serial: &str) -> Result<Vec<TokenCsrRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM token_csrs WHERE token_serial = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map(params![token_serial], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The pending requests on a token whose subject CN is exactly `common_name`.
pub fn by_common_name(
    conn: &Connection,
    token_serial: &str,
    common_name: &str,
) -> Result<Vec<TokenCsrRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM token_csrs WHERE token_serial = ?1 AND common_name = ?2 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map(params![token_serial, common_name], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Removes a pending request; true if there was one.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM token_csrs WHERE id = ?1", params![id])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn record(id: &str, cn: &str) -> TokenCsrRecord {
        TokenCsrRecord {
            id: id.into(),
            token_serial: "S1".into(),
            object_id: vec![1, 2, 3],
            subject_dn: format!("CN={cn}"),
            common_name: cn.into(),
            key_algorithm: "EC:P-256".into(),
            public_key_der: vec![0x30, 0],
            csr_der: vec![0x30, 1],
            created_at: 5,
        }
    }

    #[test]
    fn insert_find_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite3"), 1).expect("open");
        store
            .blocking_write(|tx| {
                insert(tx, &record("a", "dev1"))?;
                insert(tx, &record("b", "dev2"))?;
                Ok::<_, StoreError>(())
            })
            .expect("insert");
        store
            .blocking_write(|tx| {
                assert_eq!(get(tx, "S1", "a")?, Some(record("a", "dev1")));
                assert_eq!(get(tx, "S2", "a")?, None, "another token's id is not found");
                assert_eq!(by_common_name(tx, "S1", "dev2")?, vec![record("b", "dev2")]);
                assert!(by_common_name(tx, "S1", "DEV2")?.is_empty(), "CN match is exact");
                assert_eq!(list(tx, "S1")?.len(), 2);
                assert!(delete(tx, "a")?);
                assert!(!delete(tx, "a")?);
                assert_eq!(list(tx, "S1")?, vec![record("b", "dev2")]);
                Ok::<_, StoreError>(())
            })
            .expect("queries");
    }
}
