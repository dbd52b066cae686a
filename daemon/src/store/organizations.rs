//! Organizations and their authority balances, below the organization service: rows only.
//! Validation and the rules (who may, what is a duplicate) live in `service/organizations`;
//! the UNIQUE `name_key` column (the lower-cased name) is the last word on duplicates.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// A stored organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRecord {
    pub id: String,
    pub name: String,
    pub organization: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub manufacturer_id: Option<String>,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One authority assigned to an organization, with the authority's name joined in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationAuthorityRecord {
    pub organization_id: String,
    pub authority_id: String,
    pub authority_name: String,
    pub balance: i64,
    pub used: i64,
    pub enabled: bool,
    /// Held by batches still issuing (see `store/batches`): not available, not yet used.
    pub reserved: i64,
}

/// The key names are compared on: one spelling per name, whatever its case.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

const COLUMNS: &str =
    "id, name, organization, city, state, country, manufacturer_id, active, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<OrganizationRecord> {
    Ok(OrganizationRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        organization: r.get(2)?,
        city: r.get(3)?,
        state: r.get(4)?,
        country: r.get(5)?,
        manufacturer_id: r.get(6)?,
        active: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub fn insert(tx: &Transaction<'_>, o: &OrganizationRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO organizations (id, name, name_key, organization, city, state, country, manufacturer_id,
         active, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        o.id,
        o.name,
        name_key(&o.name),
        o.organization,
        o.city,
        o.state,
        o.country,
        o.manufacturer_id,
        o.active,
        o.created_at,
        o.updated_at
    ])?;
    Ok(())
}

/// Replaces every column but `id` and `created_at`; false when there is no such organization.
pub fn update(tx: &Transaction<'_>, o: &OrganizationRecord) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE organizations SET name = ?2, name_key = ?3, organization = ?4, city = ?5, state = ?6,
             country = ?7, manufacturer_id = ?8, active = ?9, updated_at = ?10 WHERE id = ?1",
        )?
        .execute(params![
            o.id,
            o.name,
            name_key(&o.name),
            o.organization,
            o.city,
            o.state,
            o.country,
            o.manufacturer_id,
            o.active,
            o.updated_at
        ])?
        == 1)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<OrganizationRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM organizations WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?)
}

/// The organization whose name equals `name` in any case.
pub fn by_name(conn: &Connection, name: &str) -> Result<Option<OrganizationRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM organizations WHERE name_key = ?1"))?
        .query_row(params![name_key(name)], from_row)
        .optional()?)
}

/// The ecosystem an organization belongs to, or `None` when there is no such organization.
pub fn ecosystem_of(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT ecosystem_id FROM organizations WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Every organization's id with its ecosystem's.
pub fn ecosystem_of_each(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, ecosystem_id FROM organizations")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.prepare_cached("SELECT COUNT(*) FROM organizations")?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of organizations ordered by name (then id, so pages never overlap).
pub fn page(conn: &Connection, offset: u64, limit: u64) -> Result<Vec<OrganizationRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM organizations ORDER BY name_key, id LIMIT ?1 OFFSET ?2"
    ))?;
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![clamp(limit), clamp(offset)], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every organization as (id, name), by name.
pub fn items(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM organizations ORDER BY name_key, id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

const AUTHORITY_SELECT: &str =
    "SELECT oa.organization_id, oa.authority_id, a.name, oa.balance, oa.used, oa.enabled, oa.reserved
     FROM organization_authorities oa JOIN authorities a ON a.id = oa.authority_id";

fn authority_from_row(r: &Row<'_>) -> rusqlite::Result<OrganizationAuthorityRecord> {
    Ok(OrganizationAuthorityRecord {
        organization_id: r.get(0)?,
        authority_id: r.get(1)?,
        authority_name: r.get(2)?,
        balance: r.get(3)?,
        used: r.get(4)?,
        enabled: r.get(5)?,
        reserved: r.get(6)?,
    })
}

/// Assigns an authority (used starts at 0). The primary key refuses a second assignment.
pub fn insert_authority(
    tx: &Transaction<'_>,
    organization_id: &str,
    authority_id: &str,
    balance: i64,
    enabled: bool,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO organization_authorities (organization_id, authority_id, balance, used, enabled,
         created_at, updated_at) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5)",
    )?
    .execute(params![organization_id, authority_id, balance, enabled, now])?;
    Ok(())
}

/// Sets balance and enabled of an assignment; false when there is no such assignment.
pub fn update_authority(
    tx: &Transaction<'_>,
    organization_id: &str,
    authority_id: &str,
    balance: i64,
    enabled: bool,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE organization_authorities SET balance = ?3, enabled = ?4, updated_at = ?5
             WHERE organization_id = ?1 AND authority_id = ?2",
        )?
        .execute(params![organization_id, authority_id, balance, enabled, now])?
        == 1)
}

/// Moves a batch's balance: `reserved_delta` on the reservations (a created batch reserves
/// its size; each device done gives one back) and `used_delta` on what is used (each issued
/// certificate; a reject gives it back). The batch service checks availability first; false
/// when there is no such assignment.
pub fn move_balance(
    tx: &Transaction<'_>,
    organization_id: &str,
    authority_id: &str,
    reserved_delta: i64,
    used_delta: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE organization_authorities SET reserved = MAX(0, reserved + ?3),
             used = MAX(0, used + ?4), updated_at = ?5 WHERE organization_id = ?1 AND authority_id = ?2",
        )?
        .execute(params![organization_id, authority_id, reserved_delta, used_delta, now])?
        == 1)
}

/// Removes an assignment; false when there was none.
pub fn delete_authority(
    tx: &Transaction<'_>,
    organization_id: &str,
    authority_id: &str,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM organization_authorities WHERE organization_id = ?1 AND authority_id = ?2",
        )?
        .execute(params![organization_id, authority_id])?
        == 1)
}

pub fn get_authority(
    conn: &Connection,
    organization_id: &str,
    authority_id: &str,
) -> Result<Option<OrganizationAuthorityRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "{AUTHORITY_SELECT} WHERE oa.organization_id = ?1 AND oa.authority_id = ?2"
        ))?
        .query_row(params![organization_id, authority_id], authority_from_row)
        .optional()?)
}

/// The authorities assigned to an organization, by authority name.
pub fn authorities(
    conn: &Connection,
    organization_id: &str,
) -> Result<Vec<OrganizationAuthorityRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{AUTHORITY_SELECT} WHERE oa.organization_id = ?1 ORDER BY a.name, oa.authority_id"
    ))?;
    let rows = stmt.query_map(params![organization_id], authority_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn org(id: &str, name: &str) -> OrganizationRecord {
        OrganizationRecord {
            id: id.into(),
            name: name.into(),
            organization: Some("Acme".into()),
            city: None,
            state: None,
            country: Some("CZ".into()),
            manufacturer_id: Some("7".into()),
            active: true,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn names_are_unique_in_any_case_and_pages_are_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite3"), 1).expect("open");
        store
            .blocking_write(|tx| {
                insert(tx, &org("b", "Beta"))?;
                insert(tx, &org("a", "alpha"))?;
                Ok::<_, StoreError>(())
            })
            .expect("insert");
        let dup = store.blocking_write(|tx| insert(tx, &org("c", "BETA")));
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
        store
            .blocking_write(|tx| {
                assert_eq!(by_name(tx, "ALPHA")?, Some(org("a", "alpha")));
                assert_eq!(count(tx)?, 2);
                let names: Vec<_> = page(tx, 0, 10)?.into_iter().map(|o| o.name).collect();
                assert_eq!(names, ["alpha", "Beta"]);
                assert_eq!(page(tx, 1, 10)?.len(), 1);
                assert_eq!(items(tx)?, vec![("a".into(), "alpha".into()), ("b".into(), "Beta".into())]);
                assert!(!update(tx, &org("zz", "x"))?);
                Ok::<_, StoreError>(())
            })
            .expect("queries");
    }
}
