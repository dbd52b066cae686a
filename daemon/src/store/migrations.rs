//! Versioned schema migrations, applied at open. The version lives in `PRAGMA user_version`;
//! a database newer than this binary is refused rather than misread.

use super::StoreError;
use rusqlite::Connection;

/// Each entry upgrades the schema from version `index` to `index + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: users, refresh-token families, cards and their keys, the audit log, service keys.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        roles         TEXT NOT NULL,
        enabled       INTEGER NOT NULL DEFAULT 1,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE refresh_tokens (
        token_hash BLOB PRIMARY KEY,
        family_id  TEXT NOT NULL,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
    CREATE TABLE cards (
        id               TEXT PRIMARY KEY,
        token_serial     TEXT NOT NULL,
        owner            TEXT NOT NULL COLLATE NOCASE,
        label            TEXT NOT NULL,
        pac_number       TEXT NOT NULL,
        state            TEXT NOT NULL,
        policy           TEXT NOT NULL,
        pending_policy   TEXT,
        revoke_reason    INTEGER,
        atr              TEXT NOT NULL DEFAULT '',
        issue_generation INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    -- A token is bound to at most one card that is not revoked.
    CREATE UNIQUE INDEX cards_live_token ON cards(token_serial) WHERE state <> 'REVOKED';
    CREATE INDEX cards_owner ON cards(owner, created_at); -- rowid breaks ties: insertion order
    CREATE TABLE card_keys (
        card_id        TEXT NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
        label          TEXT NOT NULL,
        key_id         BLOB NOT NULL,
        algorithm      TEXT NOT NULL,
        public_key_der BLOB NOT NULL,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (card_id, label)
    );
    CREATE TABLE audit_log (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id   TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE INDEX audit_log_target ON audit_log(target_type, target_id, id);
    "#,
    // 2: certificate authorities (keys on the daemon token), issued certificates, CRLs.
    r#"
    CREATE TABLE authorities (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE COLLATE NOCASE,
        kind            TEXT NOT NULL,
        parent_id       TEXT REFERENCES authorities(id),
        key_algorithm   TEXT NOT NULL,
        token_serial    TEXT NOT NULL,
        key_id          BLOB NOT NULL,
        public_key_der  BLOB NOT NULL,
        subject_dn      TEXT NOT NULL,
        -- NULL while an EXTERNAL authority waits for its certificate.
        certificate_der BLOB,
        csr_der         BLOB,
        -- DER certificates above this one that are not authorities of ours (an external
        -- root), concatenated; empty otherwise.
        external_chain  BLOB NOT NULL DEFAULT x'',
        enabled         INTEGER NOT NULL DEFAULT 1,
        not_before      INTEGER NOT NULL DEFAULT 0,
        not_after       INTEGER NOT NULL DEFAULT 0,
        issued_count    INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE TABLE certificates (
        id                TEXT PRIMARY KEY,
        authority_id      TEXT NOT NULL REFERENCES authorities(id),
        profile_id        TEXT NOT NULL,
        serial            TEXT NOT NULL,
        common_name       TEXT NOT NULL COLLATE NOCASE,
        subject_dn        TEXT NOT NULL,
        certificate_der   BLOB NOT NULL,
        status            TEXT NOT NULL,
        revocation_reason INTEGER,
        revoked_at        INTEGER,
        not_before        INTEGER NOT NULL,
        not_after         INTEGER NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        UNIQUE (authority_id, serial)
    );
    CREATE INDEX certificates_common_name ON certificates(common_name, created_at);
    CREATE INDEX certificates_serial ON certificates(serial);
    -- What a CRL lists: the few certificates that are not VALID.
    CREATE INDEX certificates_not_valid ON certificates(authority_id) WHERE status <> 'VALID';
    CREATE TABLE crls (
        authority_id TEXT NOT NULL REFERENCES authorities(id),
        crl_number   INTEGER NOT NULL,
        this_update  INTEGER NOT NULL,
        next_update  INTEGER NOT NULL,
        crl_der      BLOB NOT NULL,
        PRIMARY KEY (authority_id, crl_number)
    );
    "#,
    // 3: certificates on tokens — what the daemon knows of a certificate object beyond the
    // token (protected / system-use flags, where it came from), and card certificates.
    r#"
    CREATE TABLE token_certificates (
        token_serial    TEXT NOT NULL,
        -- SHA-1 of the certificate DER, lower-case hex: the id device APIs use.
        fingerprint     TEXT NOT NULL,
        -- CKA_ID of the certificate object (and of its key pair).
        object_id       BLOB NOT NULL,
        -- CARD (written by card issuance), IMPORT, CSR.
        source          TEXT NOT NULL,
        protected       INTEGER NOT NULL DEFAULT 0,
        system_use_only INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        PRIMARY KEY (token_serial, fingerprint)
    );
    CREATE TABLE card_certificates (
        card_id        TEXT NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
        certificate_id TEXT NOT NULL REFERENCES certificates(id),
        -- The card key (policy key label) the certificate is for.
        label          TEXT NOT NULL,
        fingerprint    TEXT NOT NULL,
        -- PENDING: signed and recorded by an issuance that has not finished (the card may or
        -- may not hold it yet); CURRENT: the certificate of the card's key `label`.
        state          TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (card_id, certificate_id)
    );
    CREATE UNIQUE INDEX card_certificates_current ON card_certificates(card_id, label) WHERE state = 'CURRENT';
    CREATE INDEX card_certificates_certificate ON card_certificates(certificate_id);
    "#,
    // 4: certificate-store CSRs whose key pair is on a token and whose certificate has not
    // come back yet (CreateCsr → CompleteCsr).
    r#"
    CREATE TABLE token_csrs (
        id             TEXT PRIMARY KEY,
        token_serial   TEXT NOT NULL,
        -- CKA_ID of the key pair generated for the request.
        object_id      BLOB NOT NULL,
        subject_dn     TEXT NOT NULL,
        -- The subject's CN ('' when it has none): DeleteCertificateBySubject matches on it.
        common_name    TEXT NOT NULL,
        key_algorithm  TEXT NOT NULL,
        public_key_der BLOB NOT NULL,
        csr_der        BLOB NOT NULL,
        created_at     INTEGER NOT NULL
    );
    CREATE INDEX token_csrs_common_name ON token_csrs(token_serial, common_name);
    "#,
    // 5: sign-in sessions (one per refresh-token family), idle timeouts per role, API keys,
    // and a per-user not-before for credentials.
    r#"
    CREATE TABLE sessions (
        id            TEXT PRIMARY KEY,   -- = the refresh-token family id
        user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        username      TEXT NOT NULL,
        realm         TEXT NOT NULL,
        roles         TEXT NOT NULL,
        source_ip     TEXT NOT NULL,
        agent         TEXT NOT NULL,
        login_node    TEXT NOT NULL,
        signed_in_at  INTEGER NOT NULL,
        last_activity INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE session_idle_timeouts (
        role    TEXT PRIMARY KEY,
        minutes INTEGER NOT NULL
    );
    -- An API key is a session of its realm (same id) that lives until it is revoked.
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,      -- = the key's session id
        key_hash   BLOB NOT NULL,         -- SHA-256 of the secret part; the key is never stored
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        username   TEXT NOT NULL,
        realm      TEXT NOT NULL,
        roles      TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used  INTEGER,
        revoked_at INTEGER
    );
    ALTER TABLE users ADD COLUMN credentials_not_before INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: organizations and the authorities assigned to them with a balance.
    r#"
    CREATE TABLE organizations (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        name_key        TEXT NOT NULL UNIQUE,   -- lower-cased name: unique case-insensitively
        organization    TEXT,
        city            TEXT,
        state           TEXT,
        country         TEXT,
        manufacturer_id TEXT,
        active          INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE TABLE organization_authorities (
        organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        authority_id    TEXT NOT NULL REFERENCES authorities(id),
        balance         INTEGER NOT NULL CHECK (balance >= 0),
        used            INTEGER NOT NULL DEFAULT 0,
        enabled         INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (organization_id, authority_id)
    );
    "#,
    // 7: ecosystems (a default one holds every organization until others are made), their
    // password policy, and users' privileges: a role in an ecosystem and organization with the
    // profiles it may use.
    r#"
    CREATE TABLE ecosystems (
        id                  TEXT PRIMARY KEY,
        name                TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_min_length INTEGER NOT NULL DEFAULT 12
                            CHECK (password_min_length BETWEEN 1 AND 50),
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL
    );
    INSERT INTO ecosystems (id, name, password_min_length, created_at, updated_at)
        VALUES ('default', 'default', 12, CAST(strftime('%s', 'now') AS INTEGER),
                CAST(strftime('%s', 'now') AS INTEGER));
    ALTER TABLE organizations ADD COLUMN ecosystem_id TEXT NOT NULL DEFAULT 'default';
    CREATE INDEX organizations_ecosystem ON organizations(ecosystem_id);
    CREATE TABLE user_privileges (
        user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role            TEXT NOT NULL CHECK (role IN ('USER', 'ORG_ADMIN', 'ECO_ADMIN')),
        ecosystem_id    TEXT NOT NULL REFERENCES ecosystems(id),
        -- NULL for ECO_ADMIN, which spans its ecosystem.
        organization_id TEXT REFERENCES organizations(id) ON DELETE CASCADE,
        -- Comma-separated profile ids a USER privilege may issue with.
        profiles        TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX user_privileges_unique
        ON user_privileges(user_id, role, ecosystem_id, IFNULL(organization_id, ''));
    CREATE INDEX user_privileges_organization ON user_privileges(organization_id);
    "#,
    // 8: administrators of the platform, each identified by a client certificate (matched on
    // its SHA-256 fingerprint, unique).
    r#"
    CREATE TABLE admins (
        id                      TEXT PRIMARY KEY,
        username                TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name                    TEXT NOT NULL,
        surname                 TEXT NOT NULL,
        email                   TEXT NOT NULL,
        role                    TEXT NOT NULL CHECK (role IN ('ADMINISTRATOR', 'SUPER_ADMINISTRATOR')),
        enabled                 INTEGER NOT NULL,
        description             TEXT NOT NULL DEFAULT '',
        certificate_der         BLOB NOT NULL,
        certificate_fingerprint TEXT NOT NULL UNIQUE,
        certificate_subject     TEXT NOT NULL,
        certificate_issuer      TEXT NOT NULL,
        certificate_serial      TEXT NOT NULL,
        certificate_not_after   INTEGER NOT NULL,
        -- The inventory certificate it was taken from, when it was.
        certificate_id          TEXT,
        created_at              INTEGER NOT NULL,
        updated_at              INTEGER NOT NULL
    );
    "#,
    // 9: users' profile fields (names, phone, email unique case-insensitively when set) and
    // password-reset codes (SHA-256 of the code only; the code itself is never stored).
    r#"
    ALTER TABLE users ADD COLUMN first_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN last_name  TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN phone      TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN email      TEXT;
    CREATE UNIQUE INDEX users_email ON users(email COLLATE NOCASE) WHERE email IS NOT NULL;
    CREATE TABLE password_reset_codes (
        code_hash  BLOB PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    );
    CREATE INDEX password_reset_codes_user ON password_reset_codes(user_id, created_at);
    "#,
    // 10: batches and their devices (the batch engine's persisted state machine), balance
    // reservations of running batches, and devices ordered / issued per day.
    r#"
    CREATE TABLE batches (
        id                  TEXT PRIMARY KEY,
        name                TEXT NOT NULL,
        -- GENERATOR, SINGLE, CSV, CSR
        kind                TEXT NOT NULL,
        status              TEXT NOT NULL,
        status_reason       TEXT NOT NULL DEFAULT '',
        organization_id     TEXT NOT NULL REFERENCES organizations(id),
        authority_id        TEXT NOT NULL REFERENCES authorities(id),
        profile_id          TEXT NOT NULL,
        -- '' for CSR batches (the keys are the requesters').
        key_type            TEXT NOT NULL,
        validity_years      INTEGER NOT NULL,
        generator_id        TEXT NOT NULL DEFAULT '',
        batch_size          INTEGER NOT NULL CHECK (batch_size > 0),
        issued              INTEGER NOT NULL DEFAULT 0,
        failed              INTEGER NOT NULL DEFAULT 0,
        -- Balance reservations this batch still holds (batch_size - issued - failed while
        -- issuing; 0 once finished).
        reserved            INTEGER NOT NULL CHECK (reserved >= 0),
        -- The PKCS#12 password, AES-256-GCM under meta 'batch_password_key' (nonce first);
        -- NULL for CSR batches and once the batch will issue nothing more.
        password_enc        BLOB,
        created_by          TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        finished_at         INTEGER,
        first_downloaded_at INTEGER,
        files_removed_at    INTEGER
    );
    CREATE INDEX batches_organization ON batches(organization_id, created_at);
    CREATE INDEX batches_status ON batches(status);
    CREATE TABLE batch_devices (
        id              INTEGER PRIMARY KEY,
        batch_id        TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        -- The device's profile parameters (JSON object), before profile defaults.
        params          TEXT NOT NULL,
        csr_der         BLOB,
        -- PENDING, ISSUED, FAILED
        status          TEXT NOT NULL,
        error           TEXT,
        common_name     TEXT,
        serial          TEXT,
        certificate_id  TEXT REFERENCES certificates(id),
        -- Server-generated keys: the PKCS#12 (encrypted under the batch password).
        pkcs12          BLOB,
        issued_at       INTEGER,
        UNIQUE (batch_id, position)
    );
    CREATE INDEX batch_devices_status ON batch_devices(batch_id, status, position);
    ALTER TABLE organization_authorities ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE batch_daily_counts (
        day             TEXT NOT NULL,   -- YYYY-MM-DD, UTC
        organization_id TEXT NOT NULL,
        ordered         INTEGER NOT NULL DEFAULT 0,
        issued          INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, organization_id)
    );
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], each step in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_current_version_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn).expect("migrate");
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        // Migrating again is a no-op.
        migrate(&mut conn).expect("migrate again");
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join("db.sqlite3")).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("set version");
        match migrate(&mut conn) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
