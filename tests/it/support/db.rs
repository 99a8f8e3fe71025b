//! Fresh databases for tests: a temporary SQLite file always, and a fresh
//! PostgreSQL database (created, then dropped) when
//! `RECOVERBOT_TEST_DATABASE_URL` is set. When it is not, the PostgreSQL half
//! of a test says so on stderr: a skip is never silent.

use futures::FutureExt;
use recoverbot::config::DatabaseSettings;
use recoverbot::store::{self, Database};
use sqlx::{Connection, Executor};
use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

pub const PG_ENV: &str = "RECOVERBOT_TEST_DATABASE_URL";

/// Writes straight to the process's stderr, past the test harness's
/// capture, so skips show in the output of a passing run.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn postgres_base_url(test: &str) -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            announce(&format!(
                "SKIPPED (PostgreSQL half of `{test}`): set {PG_ENV} to run it"
            ));
            None
        }
    }
}

/// A SQLite database in a temporary directory, migrated.
pub struct SqliteDb {
    /// Kept so the directory lives as long as the database.
    _dir: tempfile::TempDir,
    pub settings: DatabaseSettings,
}

impl SqliteDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            url: format!("sqlite://{}/bot.db", dir.path().display()),
            ..DatabaseSettings::default()
        };
        Self {
            _dir: dir,
            settings,
        }
    }

    pub async fn open(&self) -> Arc<dyn Database> {
        let store = store::open(&self.settings).await.unwrap();
        store.migrate().await.unwrap();
        store
    }
}

/// A fresh PostgreSQL database, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    admin_url: String,
    name: String,
    pub settings: DatabaseSettings,
}

impl PgDb {
    pub async fn create(base_url: &str) -> Self {
        let name = format!("recoverbot_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(base_url)
            .await
            .expect("connect to RECOVERBOT_TEST_DATABASE_URL");
        admin
            .execute(&*format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.ok();
        let mut url = url::Url::parse(base_url).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            admin_url: base_url.to_string(),
            name,
            settings: DatabaseSettings {
                url: url.to_string(),
                max_connections: 10,
                ..DatabaseSettings::default()
            },
        }
    }

    pub async fn open(&self) -> Arc<dyn Database> {
        let store = store::open(&self.settings).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    pub async fn drop_db(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        admin
            .execute(&*format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
        admin.close().await.ok();
    }
}

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL store
/// (or announces the skip). The PostgreSQL database is dropped even when the
/// test panics.
pub async fn on_each_backend<F, Fut>(name: &str, test: F)
where
    F: Fn(Arc<dyn Database>) -> Fut,
    Fut: Future<Output = ()>,
{
    let sqlite = SqliteDb::new();
    let store = sqlite.open().await;
    test(store.clone()).await;
    store.close().await;

    if let Some(base) = postgres_base_url(name) {
        let pg = PgDb::create(&base).await;
        let store = pg.open().await;
        let outcome = AssertUnwindSafe(test(store.clone())).catch_unwind().await;
        store.close().await;
        pg.drop_db().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        announce(&format!("ran PostgreSQL half of `{name}`"));
    }
}

/// Runs `test` on every store: in memory, SQLite, and PostgreSQL (when
/// configured, as [`on_each_backend`] does).
pub async fn on_every_store<F, Fut>(name: &str, test: F)
where
    F: Fn(Arc<dyn recoverbot::engine::ports::Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    test(Arc::new(recoverbot::store::MemoryStore::new())).await;
    on_each_backend(name, |db: Arc<dyn Database>| {
        let store: Arc<dyn recoverbot::engine::ports::Store> = db;
        test(store)
    })
    .await;
}

/// Every byte SQLite keeps for this database: the file and its WAL (to prove
/// something was never written, in any form).
pub fn database_bytes(db: &SqliteDb) -> Vec<u8> {
    let path = db.settings.url.trim_start_matches("sqlite://").to_string();
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
        bytes.extend(wal);
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
