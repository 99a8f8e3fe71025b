//! Storage: the engine's storage ports on SQLite ([`SqliteStore`], the
//! embedded default), PostgreSQL ([`PostgresStore`], for several instances)
//! and in memory ([`MemoryStore`], for tests and benchmarks). Both SQL
//! backends run the same SQL text ([`queries`]) and keep their migrations in
//! step (`migrations/sqlite`, `migrations/postgres`).

mod memory;
mod outbox_rows;
mod postgres;
pub mod queries;
mod sqlite;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::config::{DatabaseSettings, DatabaseUrl};
use crate::domain::Millis;
use crate::engine::ports::{RateDecision, Store};
use async_trait::async_trait;
use sqlx::migrate::Migrator;

pub(crate) static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which SQL database a store talks to.
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

/// A store backed by a real database: the ports plus its upkeep.
#[async_trait]
pub trait Database: Store {
    fn backend(&self) -> Backend;
    /// Applies pending migrations; a second call changes nothing.
    async fn migrate(&self) -> Result<MigrationReport, OpenError>;
    /// Finishes pending work and closes connections.
    async fn close(&self);
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
pub async fn open(settings: &DatabaseSettings) -> Result<std::sync::Arc<dyn Database>, OpenError> {
    match settings.parsed_url().map_err(OpenError::BadUrl)? {
        DatabaseUrl::Sqlite { path } => {
            if let Some(dir) = path
                .as_deref()
                .and_then(|p| p.parent())
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| OpenError::CreateDir {
                    path: dir.display().to_string(),
                    reason: e.kind().to_string(),
                })?;
            }
            Ok(std::sync::Arc::new(SqliteStore::open(
                path.as_deref(),
                settings.busy_timeout_ms,
            )?))
        }
        DatabaseUrl::Postgres => Ok(std::sync::Arc::new(PostgresStore::connect(settings).await?)),
    }
}

// ---- Rate limits: GCRA, a sliding window in one number per bucket --------
//
// `limit` hits per `window` are spaced by an emission interval T = window /
// limit. Each bucket stores its theoretical arrival time (TAT): when the
// bucket would be empty again. A hit at `now` moves it to max(TAT, now) + T,
// and is allowed while that stays within one window of `now`. So a burst of
// `limit` is allowed, then one hit per T: there is no clock-aligned window
// to straddle for a double burst.

pub(crate) fn window_ms(window_secs: u64) -> Millis {
    i64::try_from(window_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The emission interval T of a limit, in milliseconds.
pub(crate) fn interval(window_secs: u64, limit: u32) -> Millis {
    (window_ms(window_secs) / i64::from(limit.max(1))).max(1)
}

/// Whether one more hit at `now` fits, given the stored TAT (if any).
pub(crate) fn decide(
    tat: Option<Millis>,
    window_secs: u64,
    limit: u32,
    now: Millis,
) -> RateDecision {
    let t = interval(window_secs, limit);
    let next = tat.unwrap_or(now).max(now).saturating_add(t);
    decide_at(next, window_secs, limit, now)
}

/// The decision for a hit that moved the TAT to `next`.
pub(crate) fn decide_at(next: Millis, window_secs: u64, limit: u32, now: Millis) -> RateDecision {
    let (w, t) = (window_ms(window_secs), interval(window_secs, limit));
    let ahead = next - now;
    if ahead <= w {
        RateDecision::Allowed {
            remaining: u32::try_from((w - ahead) / t).unwrap_or(0),
        }
    } else {
        RateDecision::Limited {
            retry_after_secs: u64::try_from((ahead - w + 999) / 1000).unwrap_or(1).max(1),
        }
    }
}
