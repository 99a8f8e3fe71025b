//! [`PostgresStore`]: the storage ports on PostgreSQL (sqlx), for running
//! several instances against one database. The SQL is shared with the SQLite
//! backend ([`super::queries`]), through a typed `PgPool`; optimistic
//! concurrency and `ON CONFLICT`
//! keep instances from overwriting each other.

use super::outbox_rows::{self, EntryRow};
use super::queries as q;
use super::{Backend, Database, MigrationReport, OpenError};
use crate::config::DatabaseSettings;
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef, Millis};
use crate::engine::Envelope;
use crate::engine::ports::{
    AuditEntry, AuditLog, ConversationStore, Direction, EscalationRecord, FeedbackRecord,
    IdempotencyRecord, IdempotencyStore, LeaseStore, OutboxEntry, OutboxStore, ProcessedEvent,
    PurgeBefore, PurgeReport, RateDecision, RateLimitStore, StatusCommit, StatusCommitted,
    StatusRecord, StatusStore, StoreError, StoredConversation, Subscription, SubscriptionChange,
    TranscriptEntry, TurnCommit, TurnLock,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Executor, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The store on PostgreSQL.
pub struct PostgresStore {
    pool: PgPool,
    /// Connections a turn may hold for its conversation lock: all but two
    /// of the pool, so loads, commits and delivery always find one (a turn
    /// holding a lock waits for a second connection to commit).
    lock_slots: Arc<Semaphore>,
}

/// A conversation's advisory lock: a transaction on its own connection
/// that holds `pg_advisory_xact_lock`; dropped, it rolls back (or the
/// connection dies with the process) and the lock goes.
struct ConversationLock {
    _tx: sqlx::Transaction<'static, Postgres>,
    _slot: OwnedSemaphorePermit,
}

/// The advisory lock key of a conversation: 64 bits of its SHA-256.
fn lock_key(key: &ConversationKey) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [key.channel.as_str(), key.chat.as_str(), key.user.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn backend_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl PostgresStore {
    pub(super) async fn connect(settings: &DatabaseSettings) -> Result<Self, OpenError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)))
            .connect(settings.url.trim())
            .await
            .map_err(|e| OpenError::Connect {
                backend: "postgres",
                reason: describe_connect_error(&e),
            })?;
        let slots = settings.max_connections.saturating_sub(2).max(1);
        Ok(Self {
            pool,
            lock_slots: Arc::new(Semaphore::new(slots as usize)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
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
    row: &PgRow,
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
impl ConversationStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(backend = "postgres", channel = %key.channel))]
    async fn lock_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<TurnLock>, StoreError> {
        let slot = self
            .lock_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(key))
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        Ok(Some(TurnLock::new(ConversationLock {
            _tx: tx,
            _slot: slot,
        })))
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres", channel = %key.channel))]
    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        let row = sqlx::query(q::LOAD_CONVERSATION)
            .bind(key.channel.as_str())
            .bind(&key.chat)
            .bind(&key.user)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.map(|r| conversation_from_row(key, &r)).transpose()
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres", channel = %turn.channel))]
    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        if let Some(event) = &turn.event {
            let inserted = sqlx::query(q::INSERT_EVENT)
                .bind(turn.channel.as_str())
                .bind(event.as_str())
                .bind(turn.at)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?
                .rows_affected();
            if inserted == 0 {
                return Err(StoreError::DuplicateEvent);
            }
        }
        let version = match &turn.conversation {
            Some(c) => write_conversation(&mut tx, c).await?,
            None => 0,
        };
        write_records(&mut tx, &turn).await?;
        for hit in &turn.rate_hits {
            let t = super::interval(hit.window_secs, hit.limit);
            sqlx::query(q::RATE_LIMIT_HIT)
                .bind(&hit.bucket)
                .bind(hit.now + t)
                .bind(hit.now)
                .bind(t)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
        if let Some((chat, message)) = &turn.seen_message {
            sqlx::query(q::OUTBOX_BIND_SEEN)
                .bind(message.as_str())
                .bind(turn.at)
                .bind(chat.channel.as_str())
                .bind(&chat.chat)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
        for change in &turn.subscriptions {
            write_subscription(&mut tx, change).await?;
        }
        write_outbox(
            &mut tx,
            &turn.outbox,
            turn.event.as_ref().map(|e| e.as_str().to_string()),
            turn.at,
        )
        .await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(version)
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres", %channel))]
    async fn processed_event(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        let row = sqlx::query(q::PROCESSED_EVENT)
            .bind(channel.as_str())
            .bind(event.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.map(|r| {
            Ok(ProcessedEvent {
                processed_at: r.try_get(0).map_err(backend_err)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres", channel = %key.channel))]
    async fn transcript(
        &self,
        key: &ConversationKey,
        limit: u32,
    ) -> Result<Vec<TranscriptEntry>, StoreError> {
        let rows = sqlx::query(q::TRANSCRIPT)
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

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn recent_escalations(&self, limit: u32) -> Result<Vec<EscalationRecord>, StoreError> {
        let rows = sqlx::query(q::RECENT_ESCALATIONS)
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

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn recent_feedback(&self, limit: u32) -> Result<Vec<FeedbackRecord>, StoreError> {
        let rows = sqlx::query(q::RECENT_FEEDBACK)
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

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn purge(&self, before: PurgeBefore) -> Result<PurgeReport, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let mut run = async |sql: &str, at: Millis| -> Result<u64, StoreError> {
            Ok(sqlx::query(sql)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?
                .rows_affected())
        };
        let report = PurgeReport {
            processed_events: run(q::PURGE_EVENTS, before.processed_events).await?,
            transcript_entries: run(q::PURGE_TRANSCRIPT, before.transcript).await?,
            idempotency_records: run(q::PURGE_IDEMPOTENCY, before.idempotency).await?,
            rate_limit_counters: run(q::PURGE_RATE_LIMITS, before.rate_limits).await?,
            outbox_entries: run(q::PURGE_OUTBOX, before.outbox).await?,
            subscriptions: run(q::PURGE_SUBSCRIPTIONS, before.subscriptions).await?,
        };
        tx.commit().await.map_err(backend_err)?;
        Ok(report)
    }
}

async fn write_conversation(
    tx: &mut PgConnection,
    c: &StoredConversation,
) -> Result<i64, StoreError> {
    let key = &c.key;
    let new_version = c.version + 1;
    let written = if c.version == 0 {
        sqlx::query(q::INSERT_CONVERSATION)
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
        sqlx::query(q::UPDATE_CONVERSATION)
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

    Ok(new_version)
}

/// The turn's transcript, audit, escalation and feedback records.
async fn write_records(tx: &mut PgConnection, turn: &TurnCommit) -> Result<(), StoreError> {
    if let Some(c) = &turn.conversation
        && !turn.transcript.is_empty()
    {
        let key = &c.key;
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
        sqlx::query(q::INSERT_ESCALATION)
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
        sqlx::query(q::INSERT_FEEDBACK)
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

    Ok(())
}

/// Appends the turn's envelopes, each chat's after its last sequence number.
async fn write_outbox(
    tx: &mut PgConnection,
    envelopes: &[Envelope],
    event: Option<String>,
    at: Millis,
) -> Result<(), StoreError> {
    for (chat, rows) in outbox_rows::by_chat(envelopes)? {
        let n = rows.len() as i64;
        let last: i64 = sqlx::query_scalar(q::OUTBOX_RESERVE)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .bind(n)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_err)?;
        for (i, row) in rows.into_iter().enumerate() {
            sqlx::query(q::OUTBOX_INSERT)
                .bind(chat.channel.as_str())
                .bind(&chat.chat)
                .bind(last - n + 1 + i as i64)
                .bind(row.lane)
                .bind(row.op)
                .bind(row.key)
                .bind(event.clone())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
    }
    Ok(())
}

async fn write_subscription(
    tx: &mut PgConnection,
    change: &SubscriptionChange,
) -> Result<(), StoreError> {
    match change {
        SubscriptionChange::Subscribe(s) => sqlx::query(q::SUBSCRIBE)
            .bind(s.chat.channel.as_str())
            .bind(&s.chat.chat)
            .bind(&s.incident)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&mut *tx)
            .await
            .map(drop),
        SubscriptionChange::UnsubscribeAll(chat) => sqlx::query(q::UNSUBSCRIBE_CHAT)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .execute(&mut *tx)
            .await
            .map(drop),
    }
    .map_err(backend_err)
}

async fn subscribers<'c, E>(
    executor: E,
    incident: &str,
    now: Millis,
) -> Result<Vec<Subscription>, StoreError>
where
    E: Executor<'c, Database = Postgres>,
{
    let rows = sqlx::query(q::SUBSCRIBERS)
        .bind(incident)
        .bind(now)
        .fetch_all(executor)
        .await
        .map_err(backend_err)?;
    rows.iter()
        .map(|r| {
            Ok(Subscription {
                chat: outbox_rows::chat_ref(
                    &r.try_get::<String, _>(0).map_err(backend_err)?,
                    r.try_get(1).map_err(backend_err)?,
                )?,
                incident: incident.to_string(),
                created_at: r.try_get(2).map_err(backend_err)?,
                expires_at: r.try_get(3).map_err(backend_err)?,
            })
        })
        .collect()
}

/// A conversation key from three columns starting at `first`.
fn key_from_row(row: &PgRow, first: usize) -> Result<ConversationKey, StoreError> {
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
    E: Executor<'c, Database = Postgres>,
{
    sqlx::query(q::INSERT_AUDIT)
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

fn entry_from_row(r: &PgRow) -> Result<OutboxEntry, StoreError> {
    let get_err = backend_err;
    EntryRow {
        id: r.try_get(0).map_err(get_err)?,
        channel: r.try_get(1).map_err(get_err)?,
        chat: r.try_get(2).map_err(get_err)?,
        seq: r.try_get(3).map_err(get_err)?,
        lane: r.try_get(4).map_err(get_err)?,
        op: r.try_get(5).map_err(get_err)?,
        state: r.try_get(6).map_err(get_err)?,
        attempts: r.try_get(7).map_err(get_err)?,
        event: r.try_get(8).map_err(get_err)?,
        message: r.try_get(9).map_err(get_err)?,
        error: r.try_get(10).map_err(get_err)?,
        created_at: r.try_get(11).map_err(get_err)?,
        updated_at: r.try_get(12).map_err(get_err)?,
    }
    .parse()
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn open_chats(&self, limit: u32) -> Result<Vec<ChatRef>, StoreError> {
        let rows = sqlx::query(q::OUTBOX_OPEN_CHATS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter()
            .map(|r| {
                let channel: String = r.try_get(0).map_err(backend_err)?;
                outbox_rows::chat_ref(&channel, r.try_get(1).map_err(backend_err)?)
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres", %chat))]
    async fn open_entries(
        &self,
        chat: &ChatRef,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(&q::OUTBOX_OPEN_ENTRIES)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn claim_entry(&self, id: i64, attempts: u32, now: Millis) -> Result<bool, StoreError> {
        let n = sqlx::query(q::OUTBOX_CLAIM)
            .bind(now)
            .bind(id)
            .bind(i64::from(attempts))
            .execute(&self.pool)
            .await
            .map_err(backend_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn entry_delivered(
        &self,
        id: i64,
        message: Option<&MessageRef>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let row = sqlx::query(q::OUTBOX_DELIVERED)
            .bind(message.map(|m| m.as_str().to_string()))
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        if let (Some(row), Some(message)) = (row, message) {
            let key: Option<String> = row.try_get(2).map_err(backend_err)?;
            if let Some(key) = key {
                let channel: String = row.try_get(0).map_err(backend_err)?;
                let chat: String = row.try_get(1).map_err(backend_err)?;
                sqlx::query(q::KEYED_MESSAGE_UPSERT)
                    .bind(channel)
                    .bind(chat)
                    .bind(key)
                    .bind(message.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_err)?;
            }
        }
        tx.commit().await.map_err(backend_err)
    }

    async fn entry_failed(&self, id: i64, reason: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query(q::OUTBOX_FAILED)
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn keyed_message(
        &self,
        chat: &ChatRef,
        key: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        let m: Option<String> = sqlx::query_scalar(q::KEYED_MESSAGE)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(m.map(MessageRef::new))
    }

    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        let row = sqlx::query(&q::OUTBOX_ENTRY)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn chat_outbox(&self, chat: &ChatRef) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(&q::OUTBOX_CHAT)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(entry_from_row).collect()
    }
}

#[async_trait]
impl StatusStore for PostgresStore {
    async fn status_record(&self) -> Result<Option<StatusRecord>, StoreError> {
        let row = sqlx::query(q::STATUS_RECORD)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.map(|r| {
            Ok(StatusRecord {
                state: r.try_get(0).map_err(backend_err)?,
                etag: r.try_get(1).map_err(backend_err)?,
                last_modified: r.try_get(2).map_err(backend_err)?,
                version: r.try_get(3).map_err(backend_err)?,
                updated_at: r.try_get(4).map_err(backend_err)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn commit_status(&self, c: StatusCommit) -> Result<Option<StatusCommitted>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let written = if c.expected_version == 0 {
            sqlx::query(q::STATUS_INSERT)
                .bind(&c.state)
                .bind(c.etag.clone())
                .bind(c.last_modified.clone())
                .bind(c.at)
        } else {
            sqlx::query(q::STATUS_UPDATE)
                .bind(&c.state)
                .bind(c.etag.clone())
                .bind(c.last_modified.clone())
                .bind(c.at)
                .bind(c.expected_version)
        }
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?
        .rows_affected();
        if written == 0 {
            return Ok(None);
        }
        let mut envelopes = c.outbox.clone();
        let mut notified = 0;
        for (incident, notice) in &c.notify {
            let subs = subscribers(&mut *tx, incident, c.at).await?;
            let notices = StatusCommit::notices(notice, subs);
            notified += notices.len() as u64;
            envelopes.extend(notices);
            sqlx::query(q::END_SUBSCRIPTIONS)
                .bind(incident)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
        write_outbox(&mut tx, &envelopes, None, c.at).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(Some(StatusCommitted::of(&envelopes, notified)))
    }

    async fn subscriptions(
        &self,
        incident: &str,
        now: Millis,
    ) -> Result<Vec<Subscription>, StoreError> {
        subscribers(&self.pool, incident, now).await
    }

    async fn drop_subscriptions(&self, chat: &ChatRef) -> Result<u64, StoreError> {
        Ok(sqlx::query(q::UNSUBSCRIBE_CHAT)
            .bind(chat.channel.as_str())
            .bind(&chat.chat)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?
            .rows_affected())
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(q::TRY_LEASE)
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?
            .rows_affected()
            == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query(q::RELEASE_LEASE)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }
}

#[async_trait]
impl RateLimitStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn hit(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let (t, w) = (
            super::interval(window_secs, limit),
            super::window_ms(window_secs),
        );
        let next: Option<i64> = sqlx::query_scalar(q::RATE_LIMIT_HIT_WITHIN)
            .bind(bucket)
            .bind(now + t)
            .bind(now)
            .bind(t)
            .bind(w)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        if let Some(next) = next {
            return Ok(super::decide_at(next, window_secs, limit, now));
        }
        self.check(bucket, window_secs, limit, now).await
    }

    async fn check(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let tat: Option<i64> = sqlx::query_scalar(q::RATE_LIMIT_TAT)
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(super::decide(tat, window_secs, limit, now))
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn idempotency_record(
        &self,
        scope: &str,
        new_key: &str,
        now: Millis,
    ) -> Result<IdempotencyRecord, StoreError> {
        {
            sqlx::query(q::INSERT_IDEMPOTENCY)
                .bind(scope)
                .bind(new_key)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(backend_err)?;
        }
        let row = sqlx::query(q::IDEMPOTENCY)
            .bind(scope)
            .fetch_one(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(IdempotencyRecord {
            key: row.try_get(0).map_err(backend_err)?,
            response: row.try_get(1).map_err(backend_err)?,
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn record_idempotent_response(
        &self,
        scope: &str,
        response: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(q::RECORD_RESPONSE)
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
impl AuditLog for PostgresStore {
    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        insert_audit(&self.pool, &entry).await
    }

    #[tracing::instrument(skip_all, fields(backend = "postgres"))]
    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(q::RECENT_AUDIT)
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

#[async_trait]
impl Database for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    /// Applies pending migrations under sqlx's advisory lock, so instances
    /// starting together do not race; a second call changes nothing.
    #[tracing::instrument(skip(self), fields(backend = "postgres"))]
    async fn migrate(&self) -> Result<MigrationReport, OpenError> {
        let err = |e: &dyn std::fmt::Display| OpenError::Migrate {
            backend: "postgres",
            reason: e.to_string(),
        };
        let before = self.applied_versions().await.map_err(|e| err(&e))?;
        super::POSTGRES_MIGRATIONS
            .run(&self.pool)
            .await
            .map_err(|e| err(&e))?;
        let after = self.applied_versions().await.map_err(|e| err(&e))?;
        Ok(MigrationReport {
            backend: Backend::Postgres,
            applied: after.into_iter().filter(|v| !before.contains(v)).collect(),
            known: super::POSTGRES_MIGRATIONS.iter().count(),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
