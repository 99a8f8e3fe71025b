//! Storage: the engine's storage ports on SQLite and PostgreSQL (one
//! [`SqlStore`] over sqlx's `Any` driver, running the same SQL text on both)
//! and in memory ([`MemoryStore`], for tests and benchmarks).
//!
//! SQLite is the embedded default: one file, WAL mode, created on first run.
//! Writes to it go through one in-process writer lock and `BEGIN IMMEDIATE`,
//! so concurrent turns queue instead of failing with `SQLITE_BUSY`; another
//! process on the same file waits up to `database.busy_timeout_ms`.
//! PostgreSQL serves several instances; migrations take an advisory lock, so
//! instances starting together do not race.

mod memory;
mod sql;

pub use memory::MemoryStore;
pub use sql::SqlStore;

use crate::config::{DatabaseSettings, DatabaseUrl};

/// Which SQL dialect a [`SqlStore`] talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Opening or migrating the database failed. Messages never contain the
/// database URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database.url: {0}")]
    BadUrl(String),
    #[error("cannot create the directory for the SQLite file {path}: {reason}")]
    CreateDir { path: String, reason: String },
    #[error("cannot connect to the {backend} database: {reason}")]
    Connect {
        backend: &'static str,
        reason: String,
    },
    #[error("migrating the {backend} database failed: {reason}")]
    Migrate {
        backend: &'static str,
        reason: String,
    },
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub backend: Backend,
    /// Versions applied by this call (empty when already up to date).
    pub applied: Vec<i64>,
    /// The total number of known migrations.
    pub known: usize,
}

/// Opens the database named by the settings, without migrating.
pub async fn open(settings: &DatabaseSettings) -> Result<SqlStore, OpenError> {
    let parsed = settings.parsed_url().map_err(OpenError::BadUrl)?;
    if let DatabaseUrl::Sqlite { path: Some(path) } = &parsed
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::CreateDir {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
    }
    SqlStore::connect(settings, &parsed).await
}
