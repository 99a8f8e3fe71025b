//! [`SqlStore`]: the storage ports over sqlx's `Any` driver. Every statement
//! below is plain SQL that SQLite and PostgreSQL both accept (`$n`
//! placeholders, `ON CONFLICT`, `RETURNING`), so each operation is written
//! once and tested on both backends.

use super::{Backend, MigrationReport, OpenError};
use crate::config::{DatabaseSettings, DatabaseUrl};
use crate::domain::{ChannelKind, ConversationKey, EventId, Millis};
use crate::engine::ports::{
    AuditEntry, AuditLog, ConversationStore, Direction, EscalationRecord, FeedbackRecord,
    IdempotencyRecord, IdempotencyStore, ProcessedEvent, PurgeBefore, PurgeReport, RateDecision,
    RateLimitStore, StoreError, StoredConversation, TranscriptEntry, TurnCommit,
};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The store on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here (rather
    /// than in SQLite's busy handler) keeps `SQLITE_BUSY` from callers.
    write_lock: Option<Mutex<()>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn backend_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqlStore {
    pub(super) async fn connect(
        settings: &DatabaseSettings,
        parsed: &DatabaseUrl,
    ) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let (backend, url, max_connections) = match parsed {
            DatabaseUrl::Sqlite { path } => {
                let base = settings.url.trim();
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = if path.is_some() && !base.contains("mode=") {
                    format!("{base}{sep}mode=rwc")
                } else {
                    base.to_string()
                };
                // An in-memory database exists once per connection.
                let max = if path.is_none() {
                    1
                } else {
                    settings.max_connections.max(1)
                };
                (Backend::Sqlite, url, max)
            }
            DatabaseUrl::Postgres => (
                Backend::Postgres,
                settings.url.trim().to_string(),
                settings.max_connections.max(1),
            ),
        };
        let busy_timeout_ms = settings.busy_timeout_ms;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute(&*format!("PRAGMA busy_timeout = {busy_timeout_ms}"))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| OpenError::Connect {
                backend: backend.name(),
                reason: describe_connect_error(&e),
            })?;
        Ok(Self {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies pending migrations; a second call changes nothing.
    #[tracing::instrument(skip(self), fields(backend = self.backend.name()))]
    pub async fn migrate(&self) -> Result<MigrationReport, OpenError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let err = |e: &dyn std::fmt::Display| OpenError::Migrate {
            backend: self.backend.name(),
            reason: e.to_string(),
        };
        let before = self.applied_versions().await.map_err(|e| err(&e))?;
        migrator.run(&self.pool).await.map_err(|e| err(&e))?;
        let after = self.applied_versions().await.map_err(|e| err(&e))?;
        let applied = after.into_iter().filter(|v| !before.contains(v)).collect();
        Ok(MigrationReport {
            backend: self.backend,
            applied,
            known: migrator.iter().count(),
        })
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, sqlx::Error> {
        let exists = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let n: i64 = sqlx::query_scalar(exists).fetch_one(&self.pool).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction, holding the writer lock on SQLite.
    async fn begin_write(
        &self,
    ) -> Result<(Option<MutexGuard<'_, ()>>, Transaction<'static, Any>), StoreError> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(backend_err)?;
        Ok((guard, tx))
    }

    async fn write_lock(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }
}

/// A connection error in one line, without the URL.
fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Configuration(_) => "the URL is not valid for this database".into(),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

fn conversation_from_row(
    key: &ConversationKey,
    row: &AnyRow,
) -> Result<StoredConversation, StoreError> {
    Ok(StoredConversation {
        key: key.clone(),
        flow: row.try_get(0).map_err(backend_err)?,
        step: row.try_get(1).map_err(backend_err)?,
        variables: row.try_get(2).map_err(backend_err)?,
        state: row.try_get(3).map_err(backend_err)?,
        flow_version: row.try_get(4).map_err(backend_err)?,
        created_at: row.try_get(5).map_err(backend_err)?,
        updated_at: row.try_get(6).map_err(backend_err)?,
        version: row.try_get(7).map_err(backend_err)?,
    })
}

#[async_trait]
impl ConversationStore for SqlStore {
    #[tracing::instrument(skip_all, fields(backend = self.backend.name(), channel = %key.channel))]
    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        let row = sqlx::query(
            "SELECT flow, step, variables, state, flow_version, created_at, updated_at, version \
             FROM conversations WHERE channel = $1 AND chat_id = $2 AND user_id = $3",
        )
        .bind(key.channel.as_str())
        .bind(&key.chat)
        .bind(&key.user)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_err)?;
        row.map(|r| conversation_from_row(key, &r)).transpose()
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name(), channel = %turn.conversation.key.channel))]
    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError> {
        let c = &turn.conversation;
        let key = &c.key;
        let (_guard, mut tx) = self.begin_write().await?;

        if let Some(event) = &turn.event {
            let inserted = sqlx::query(
                "INSERT INTO processed_events (channel, event_id, processed_at, reply) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (channel, event_id) DO NOTHING",
            )
            .bind(key.channel.as_str())
            .bind(event.as_str())
            .bind(c.updated_at)
            .bind(turn.reply.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::DuplicateEvent);
            }
        }

        let new_version = c.version + 1;
        let written = if c.version == 0 {
            sqlx::query(
                "INSERT INTO conversations (channel, chat_id, user_id, flow, step, variables, state, \
                 flow_version, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) \
                 ON CONFLICT (channel, chat_id, user_id) DO NOTHING",
            )
            .bind(key.channel.as_str())
            .bind(&key.chat)
            .bind(&key.user)
            .bind(&c.flow)
            .bind(&c.step)
            .bind(&c.variables)
            .bind(&c.state)
            .bind(&c.flow_version)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query(
                "UPDATE conversations SET flow = $1, step = $2, variables = $3, state = $4, \
                 flow_version = $5, created_at = $6, updated_at = $7, version = version + 1 \
                 WHERE channel = $8 AND chat_id = $9 AND user_id = $10 AND version = $11",
            )
            .bind(&c.flow)
            .bind(&c.step)
            .bind(&c.variables)
            .bind(&c.state)
            .bind(&c.flow_version)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(key.channel.as_str())
            .bind(&key.chat)
            .bind(&key.user)
            .bind(c.version)
            .execute(&mut *tx)
            .await
        }
        .map_err(backend_err)?
        .rows_affected();
        if written == 0 {
            return Err(StoreError::Conflict(key.clone()));
        }

        if !turn.transcript.is_empty() {
            let mut sql = String::from(
                "INSERT INTO transcript_entries (channel, chat_id, user_id, direction, text, at) VALUES ",
            );
            for i in 0..turn.transcript.len() {
                let b = i * 6;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
            }
            let mut q = sqlx::query(&sql);
            for e in &turn.transcript {
                q = q
                    .bind(key.channel.as_str())
                    .bind(&key.chat)
                    .bind(&key.user)
                    .bind(e.direction.as_str())
                    .bind(&e.text)
                    .bind(e.at);
            }
            q.execute(&mut *tx).await.map_err(backend_err)?;
        }

        for entry in &turn.audit {
            insert_audit(&mut *tx, entry).await?;
        }
        for e in &turn.escalations {
            sqlx::query(
                "INSERT INTO escalation_requests (id, channel, chat_id, user_id, reason, topic, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.id)
            .bind(e.key.channel.as_str())
            .bind(&e.key.chat)
            .bind(&e.key.user)
            .bind(&e.reason)
            .bind(e.topic.clone())
            .bind(e.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        }
        for f in &turn.feedback {
            sqlx::query(
                "INSERT INTO feedback (channel, chat_id, user_id, topic, answer, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(f.key.channel.as_str())
            .bind(&f.key.chat)
            .bind(&f.key.user)
            .bind(&f.topic)
            .bind(&f.answer)
            .bind(f.at)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        }

        tx.commit().await.map_err(backend_err)?;
        Ok(new_version)
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name(), %channel))]
    async fn processed_event(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT reply, delivered_at FROM processed_events WHERE channel = $1 AND event_id = $2",
        )
        .bind(channel.as_str())
        .bind(event.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_err)?;
        row.map(|r| {
            let delivered: Option<i64> = r.try_get(1).map_err(backend_err)?;
            Ok(ProcessedEvent {
                reply: r.try_get(0).map_err(backend_err)?,
                delivered: delivered.is_some(),
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name(), %channel))]
    async fn mark_reply_delivered(
        &self,
        channel: ChannelKind,
        event: &EventId,
        at: Millis,
    ) -> Result<(), StoreError> {
        let _guard = self.write_lock().await;
        sqlx::query(
            "UPDATE processed_events SET delivered_at = $1, reply = NULL \
             WHERE channel = $2 AND event_id = $3",
        )
        .bind(at)
        .bind(channel.as_str())
        .bind(event.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name(), channel = %key.channel))]
    async fn transcript(
        &self,
        key: &ConversationKey,
        limit: u32,
    ) -> Result<Vec<TranscriptEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT direction, text, at FROM transcript_entries \
             WHERE channel = $1 AND chat_id = $2 AND user_id = $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(key.channel.as_str())
        .bind(&key.chat)
        .bind(&key.user)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        let mut entries = rows
            .iter()
            .map(|r| {
                let dir: String = r.try_get(0).map_err(backend_err)?;
                Ok(TranscriptEntry {
                    direction: Direction::parse(&dir)
                        .ok_or_else(|| StoreError::Corrupt(format!("direction {dir:?}")))?,
                    text: r.try_get(1).map_err(backend_err)?,
                    at: r.try_get(2).map_err(backend_err)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        entries.reverse();
        Ok(entries)
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn recent_escalations(&self, limit: u32) -> Result<Vec<EscalationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, channel, chat_id, user_id, reason, topic, created_at \
             FROM escalation_requests ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        rows.iter()
            .map(|r| {
                Ok(EscalationRecord {
                    id: r.try_get(0).map_err(backend_err)?,
                    key: key_from_row(r, 1)?,
                    reason: r.try_get(4).map_err(backend_err)?,
                    topic: r.try_get(5).map_err(backend_err)?,
                    created_at: r.try_get(6).map_err(backend_err)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn recent_feedback(&self, limit: u32) -> Result<Vec<FeedbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, chat_id, user_id, topic, answer, at FROM feedback ORDER BY at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        rows.iter()
            .map(|r| {
                Ok(FeedbackRecord {
                    key: key_from_row(r, 0)?,
                    topic: r.try_get(3).map_err(backend_err)?,
                    answer: r.try_get(4).map_err(backend_err)?,
                    at: r.try_get(5).map_err(backend_err)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn purge(&self, before: PurgeBefore) -> Result<PurgeReport, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let mut run = async |sql: &str, at: Millis| -> Result<u64, StoreError> {
            Ok(sqlx::query(sql)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?
                .rows_affected())
        };
        let report = PurgeReport {
            processed_events: run(
                "DELETE FROM processed_events WHERE processed_at < $1",
                before.processed_events,
            )
            .await?,
            transcript_entries: run(
                "DELETE FROM transcript_entries WHERE at < $1",
                before.transcript,
            )
            .await?,
            idempotency_records: run(
                "DELETE FROM idempotency_records WHERE created_at < $1",
                before.idempotency,
            )
            .await?,
            rate_limit_counters: run(
                "DELETE FROM rate_limit_counters WHERE window_end < $1",
                before.rate_limits,
            )
            .await?,
        };
        tx.commit().await.map_err(backend_err)?;
        Ok(report)
    }
}

/// A conversation key from three columns starting at `first`.
fn key_from_row(row: &AnyRow, first: usize) -> Result<ConversationKey, StoreError> {
    let channel: String = row.try_get(first).map_err(backend_err)?;
    Ok(ConversationKey {
        channel: ChannelKind::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("channel {channel:?}")))?,
        chat: row.try_get(first + 1).map_err(backend_err)?,
        user: row.try_get(first + 2).map_err(backend_err)?,
    })
}

async fn insert_audit<'c, E>(executor: E, entry: &AuditEntry) -> Result<(), StoreError>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.subject)
    .bind(&entry.detail)
    .execute(executor)
    .await
    .map_err(backend_err)?;
    Ok(())
}

#[async_trait]
impl RateLimitStore for SqlStore {
    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn hit(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let window_ms = i64::try_from(window_secs.max(1) * 1000).unwrap_or(i64::MAX);
        let start = now - now.rem_euclid(window_ms);
        let end = start.saturating_add(window_ms);
        let _guard = self.write_lock().await;
        let hits: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limit_counters (bucket, window_start, window_end, hits) \
             VALUES ($1, $2, $3, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_counters.hits + 1 \
             RETURNING hits",
        )
        .bind(bucket)
        .bind(start)
        .bind(end)
        .fetch_one(&self.pool)
        .await
        .map_err(backend_err)?;
        Ok(decide(hits, limit, end, now))
    }
}

pub(super) fn decide(hits: i64, limit: u32, window_end: Millis, now: Millis) -> RateDecision {
    if hits <= i64::from(limit) {
        RateDecision::Allowed {
            remaining: u32::try_from(i64::from(limit) - hits).unwrap_or(0),
        }
    } else {
        let ms = (window_end - now).max(0);
        RateDecision::Limited {
            retry_after_secs: u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1),
        }
    }
}

#[async_trait]
impl IdempotencyStore for SqlStore {
    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn idempotency_record(
        &self,
        scope: &str,
        new_key: &str,
        now: Millis,
    ) -> Result<IdempotencyRecord, StoreError> {
        {
            let _guard = self.write_lock().await;
            sqlx::query(
                "INSERT INTO idempotency_records (scope, idempotency_key, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (scope) DO NOTHING",
            )
            .bind(scope)
            .bind(new_key)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        }
        let row = sqlx::query(
            "SELECT idempotency_key, response FROM idempotency_records WHERE scope = $1",
        )
        .bind(scope)
        .fetch_one(&self.pool)
        .await
        .map_err(backend_err)?;
        Ok(IdempotencyRecord {
            key: row.try_get(0).map_err(backend_err)?,
            response: row.try_get(1).map_err(backend_err)?,
        })
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn record_idempotent_response(
        &self,
        scope: &str,
        response: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let _guard = self.write_lock().await;
        sqlx::query(
            "UPDATE idempotency_records SET response = $1, completed_at = $2 WHERE scope = $3",
        )
        .bind(response)
        .bind(now)
        .bind(scope)
        .execute(&self.pool)
        .await
        .map_err(backend_err)?;
        Ok(())
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let _guard = self.write_lock().await;
        insert_audit(&self.pool, &entry).await
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend.name()))]
    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0).map_err(backend_err)?,
                    actor: r.try_get(1).map_err(backend_err)?,
                    action: r.try_get(2).map_err(backend_err)?,
                    subject: r.try_get(3).map_err(backend_err)?,
                    detail: r.try_get(4).map_err(backend_err)?,
                })
            })
            .collect()
    }
}
