//! Cards and the key pairs issued onto them. The lifecycle rules live in the service layer;
//! this module only reads and writes rows.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

/// Persisted card states (the text in the `state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardState {
    Assigned,
    PendingIssue,
    Active,
    Disabled,
    PendingUpdate,
    Revoked,
}

impl CardState {
    pub const ALL: [CardState; 6] = [
        CardState::Assigned,
        CardState::PendingIssue,
        CardState::Active,
        CardState::Disabled,
        CardState::PendingUpdate,
        CardState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Assigned => "ASSIGNED",
            CardState::PendingIssue => "PENDING_ISSUE",
            CardState::Active => "ACTIVE",
            CardState::Disabled => "DISABLED",
            CardState::PendingUpdate => "PENDING_UPDATE",
            CardState::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<CardState> {
        CardState::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for CardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key pair on a card, as recorded when it was generated.
#[derive(Debug, Clone, PartialEq)]
pub struct CardKeyRecord {
    pub label: String,
    pub key_id: Vec<u8>,
    pub algorithm: String,
    pub public_key_der: Vec<u8>,
    pub created_at: i64,
    /// The certificate issued for this key, when the card's policy names a profile for it.
    pub certificate: Option<CardCertificate>,
}

/// A card key's certificate: the link row joined with the issued certificate's state.
#[derive(Debug, Clone, PartialEq)]
pub struct CardCertificate {
    pub certificate_id: String,
    /// SHA-1 of the DER, lower-case hex (the certificate object's fingerprint on the token).
    pub fingerprint: String,
    pub serial: String,
    /// VALID, ON_HOLD or REVOKED (the certificates table's status).
    pub status: String,
    pub not_after: i64,
    pub certificate_der: Vec<u8>,
}

/// What links a card key to its certificate (written when the card is issued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCertificateLink {
    pub label: String,
    pub certificate_id: String,
    pub fingerprint: String,
}

/// A stored card.
#[derive(Debug, Clone, PartialEq)]
pub struct CardRecord {
    pub id: String,
    pub token_serial: String,
    pub owner: String,
    pub label: String,
    pub pac_number: String,
    pub state: CardState,
    pub policy: String,
    pub pending_policy: Option<String>,
    pub revoke_reason: Option<i32>,
    pub atr: String,
    /// Incremented each time issuance starts; key ids derive from it, so a resumed issuance
    /// regenerates the same ids and never leaves two sets of keys behind.
    pub issue_generation: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub keys: Vec<CardKeyRecord>,
}

const COLUMNS: &str = "id, token_serial, owner, label, pac_number, state, policy, pending_policy, revoke_reason, \
                       atr, issue_generation, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<CardRecord> {
    let state: String = r.get(5)?;
    let state = CardState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("bad card state {state:?}").into(),
        )
    })?;
    Ok(CardRecord {
        id: r.get(0)?,
        token_serial: r.get(1)?,
        owner: r.get(2)?,
        label: r.get(3)?,
        pac_number: r.get(4)?,
        state,
        policy: r.get(6)?,
        pending_policy: r.get(7)?,
        revoke_reason: r.get(8)?,
        atr: r.get(9)?,
        issue_generation: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        keys: Vec::new(),
    })
}

pub fn insert(tx: &Transaction<'_>, card: &CardRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO cards ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        card.id,
        card.token_serial,
        card.owner,
        card.label,
        card.pac_number,
        card.state.as_str(),
        card.policy,
        card.pending_policy,
        card.revoke_reason,
        card.atr,
        card.issue_generation,
        card.created_at,
        card.updated_at
    ])?;
    Ok(())
}

/// Writes every mutable column of `card` (not its keys).
pub fn update(tx: &Transaction<'_>, card: &CardRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE cards SET owner = ?2, label = ?3, pac_number = ?4, state = ?5, policy = ?6, pending_policy = ?7,
             revoke_reason = ?8, atr = ?9, issue_generation = ?10, updated_at = ?11 WHERE id = ?1",
        )?
        .execute(params![
            card.id,
            card.owner,
            card.label,
            card.pac_number,
            card.state.as_str(),
            card.policy,
            card.pending_policy,
            card.revoke_reason,
            card.atr,
            card.issue_generation,
            card.updated_at
        ])?;
    if n != 1 {
        return Err(StoreError::Corrupt(format!("card {} vanished during update", card.id)));
    }
    Ok(())
}

/// Sets the ATR of the live card bound to `token_serial` (when it differs); returns how many
/// cards changed (0 or 1).
pub fn record_atr(
    tx: &Transaction<'_>,
    token_serial: &str,
    atr: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE cards SET atr = ?2, updated_at = ?3 WHERE token_serial = ?1 AND state <> 'REVOKED' AND atr <> ?2",
        )?
        .execute(params![token_serial, atr, now])?)
}

/// Replaces the card's recorded keys.
pub fn replace_keys(tx: &Transaction<'_>, card_id: &str, keys: &[CardKeyRecord]) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM card_keys WHERE card_id = ?1")?.execute(params![card_id])?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO card_keys (card_id, label, key_id, algorithm, public_key_der, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for k in keys {
        stmt.execute(params![card_id, k.label, k.key_id, k.algorithm, k.public_key_der, k.created_at])?;
    }
    Ok(())
}

/// One card with its keys.
pub fn get(conn: &Connection, id: &str) -> Result<Option<CardRecord>, StoreError> {
    let card = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM cards WHERE id = ?1"))?
        .query_row(params![id], from_row)
        .optional()?;
    match card {
        Some(mut c) => {
            c.keys = keys_of(conn, &c.id)?;
            Ok(Some(c))
        }
        None => Ok(None),
    }
}

/// The card bound to a token that is not revoked, if any.
pub fn live_by_token(conn: &Connection, token_serial: &str) -> Result<Option<CardRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM cards WHERE token_serial = ?1 AND state <> 'REVOKED'"
        ))?
        .query_row(params![token_serial], from_row)
        .optional()?)
}

/// Token serial → live card id, for every live card.
pub fn live_token_bindings(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT token_serial, id FROM cards WHERE state <> 'REVOKED'")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The card-key columns, joined with the key's certificate (NULLs when it has none).
const KEY_SELECT: &str = "SELECT k.label, k.key_id, k.algorithm, k.public_key_der, k.created_at,
            cc.certificate_id, cc.fingerprint, c.serial, c.status, c.not_after, c.certificate_der, k.card_id
       FROM card_keys k
       LEFT JOIN card_certificates cc ON cc.card_id = k.card_id AND cc.label = k.label AND cc.state = 'CURRENT'
       LEFT JOIN certificates c ON c.id = cc.certificate_id";

fn keys_of(conn: &Connection, card_id: &str) -> Result<Vec<CardKeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{KEY_SELECT} WHERE k.card_id = ?1 ORDER BY k.label"))?;
    let rows = stmt.query_map(params![card_id], key_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<CardKeyRecord> {
    let certificate = match r.get::<_, Option<String>>(5)? {
        Some(certificate_id) => Some(CardCertificate {
            certificate_id,
            fingerprint: r.get(6)?,
            serial: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
            status: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
            not_after: r.get::<_, Option<i64>>(9)?.unwrap_or_default(),
            certificate_der: r.get::<_, Option<Vec<u8>>>(10)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(CardKeyRecord {
        label: r.get(0)?,
        key_id: r.get(1)?,
        algorithm: r.get(2)?,
        public_key_der: r.get(3)?,
        created_at: r.get(4)?,
        certificate,
    })
}

/// Attaches their keys to a page of cards with one query (not one per card).
fn attach_keys(conn: &Connection, cards: &mut [CardRecord]) -> Result<(), StoreError> {
    if cards.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["?"; cards.len()].join(",");
    let mut stmt = conn.prepare_cached(&format!(
        "{KEY_SELECT} WHERE k.card_id IN ({placeholders}) ORDER BY k.card_id, k.label"
    ))?;
    let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
    let rows =
        stmt.query_map(rusqlite::params_from_iter(ids), |r| Ok((r.get::<_, String>(11)?, key_from_row(r)?)))?;
    for row in rows {
        let (card_id, key) = row?;
        if let Some(card) = cards.iter_mut().find(|c| c.id == card_id) {
            card.keys.push(key);
        }
    }
    Ok(())
}

/// Links certificates signed by an issuance in progress to the card (state PENDING).
pub fn add_pending_certificates(
    tx: &Transaction<'_>,
    card_id: &str,
    links: &[CardCertificateLink],
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO card_certificates (card_id, certificate_id, label, fingerprint, state, created_at)
         VALUES (?1, ?2, ?3, ?4, 'PENDING', ?5)",
    )?;
    for l in links {
        stmt.execute(params![card_id, l.certificate_id, l.label, l.fingerprint, now])?;
    }
    Ok(())
}

/// Every certificate linked to the card (current and pending), with its link state.
pub fn certificate_links(
    conn: &Connection,
    card_id: &str,
) -> Result<Vec<(CardCertificateLink, bool)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT label, certificate_id, fingerprint, state = 'CURRENT' FROM card_certificates
          WHERE card_id = ?1 ORDER BY created_at, label",
    )?;
    let rows = stmt.query_map(params![card_id], |r| {
        Ok((
            CardCertificateLink { label: r.get(0)?, certificate_id: r.get(1)?, fingerprint: r.get(2)? },
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Makes `current` the card's current certificates and unlinks every other one.
pub fn set_current_certificates(
    tx: &Transaction<'_>,
    card_id: &str,
    current: &[String],
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("SELECT certificate_id FROM card_certificates WHERE card_id = ?1")?;
    let linked: Vec<String> =
        stmt.query_map(params![card_id], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
    // Unlink first: a label has one CURRENT certificate (a unique index says so).
    for id in linked.iter().filter(|id| !current.contains(id)) {
        unlink_certificate(tx, card_id, id)?;
    }
    for id in current {
        tx.prepare_cached(
            "UPDATE card_certificates SET state = 'CURRENT' WHERE card_id = ?1 AND certificate_id = ?2",
        )?
        .execute(params![card_id, id])?;
    }
    Ok(())
}

/// Removes one certificate's link to the card (it left the card).
pub fn unlink_certificate(
    tx: &Transaction<'_>,
    card_id: &str,
    certificate_id: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM card_certificates WHERE card_id = ?1 AND certificate_id = ?2")?
        .execute(params![card_id, certificate_id])?;
    Ok(())
}

/// A page of one owner's cards (optionally in one state), oldest first, and the total.
pub fn list_by_owner(
    conn: &Connection,
    owner: &str,
    state: Option<CardState>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<CardRecord>, u64), StoreError> {
    let state = state.map(CardState::as_str);
    let mut cards = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM cards WHERE owner = ?1 AND (?2 IS NULL OR state = ?2)
             ORDER BY created_at, rowid LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(params![owner, state, limit as i64, offset as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM cards WHERE owner = ?1 AND (?2 IS NULL OR state = ?2)")?
        .query_row(params![owner, state], |r| r.get(0))?;
    attach_keys(conn, &mut cards)?;
    Ok((cards, total as u64))
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM cards", [], |r| r.get(0))?)
}
