//! The store layer's one error type; the service layer converts it at its boundary.

/// What can go wrong talking to SQLite.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error(
        "database schema version {found} is newer than this cardhsmd supports ({supported}); upgrade cardhsmd"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("a store lock was poisoned by a panic")]
    Poisoned,
    #[error("the store is closed")]
    Closed,
    #[error("blocking task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(code, msg) = &e
            && code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        {
            return StoreError::Conflict(msg.clone().unwrap_or_default());
        }
        StoreError::Sqlite(e)
    }
}
