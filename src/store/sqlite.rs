//! [`SqliteStore`]: the storage ports on a SQLite file (the embedded
//! default), with rusqlite on one dedicated writer thread.
//!
//! Why a thread of our own: SQLite allows one writer at a time anyway, and
//! running every operation where the connection lives avoids a thread
//! hand-off per statement. Operations queue on a channel; the thread takes
//! whatever has queued up and runs it as one transaction (group commit),
//! each operation inside its own savepoint, so one operation's failure
//! (a version conflict, a duplicate event) rolls back only that operation.
//! Callers get their answer after the commit. Nobody else writes through
//! this process, so `SQLITE_BUSY` only arises from another process, and the
//! busy timeout absorbs it.
//!
//! The SQL text is the same as on PostgreSQL ([`super::queries`]).

use super::outbox_rows::{self, EntryRow};
use super::queries as q;
use super::{Backend, Database, MigrationReport, OpenError};
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef, Millis};
use crate::engine::ports::{
    AuditEntry, AuditLog, ConversationStore, Direction, EscalationRecord, FeedbackRecord,
    IdempotencyRecord, IdempotencyStore, LeaseStore, NextEntry, OutboxEntry, OutboxState,
    OutboxStore, ProcessedEvent, PurgeBefore, PurgeReport, RateDecision, RateLimitStore, Settled,
    StatusCommit, StatusCommitted, StatusRecord, StatusStore, StoreError, StoredConversation,
    Subscription, SubscriptionChange, TranscriptEntry, TurnCommit,
};
use crate::engine::{Envelope, Lane};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

/// Operations taken into one transaction at most.
const MAX_BATCH: usize = 256;

trait Job: Send {
    /// Runs inside a savepoint; `false` rolls the savepoint back. The
    /// returned function delivers the result once the batch has committed.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Deliver);
    fn fail(self: Box<Self>, error: String);
}

type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

struct FnJob<T, F> {
    work: F,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Deliver) {
        let this = *self;
        let result = (this.work)(conn);
        let ok = result.is_ok();
        let reply = this.reply;
        (
            ok,
            Box::new(move |commit: Result<(), String>| {
                let _ = reply.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Backend(e)),
                });
            }),
        )
    }

    fn fail(self: Box<Self>, error: String) {
        let _ = self.reply.send(Err(StoreError::Backend(error)));
    }
}

enum Message {
    Job(Box<dyn Job>),
    Stop(tokio::sync::oneshot::Sender<()>),
}

pub struct SqliteStore {
    sender: Mutex<Option<mpsc::Sender<Message>>>,
    /// A second connection on its own thread for reads that need no
    /// transaction (WAL readers see every committed write), so they do not
    /// queue behind the writer. `None` for an in-memory database, which a
    /// second connection would not see.
    reader: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer has stopped".into())
}

impl SqliteStore {
    /// Opens (creating if needed) the file, or an in-memory database for
    /// `None`, and starts the writer thread.
    pub fn open(path: Option<&Path>, busy_timeout_ms: u64) -> Result<Self, OpenError> {
        let connect_err = |e: rusqlite::Error| OpenError::Connect {
            backend: "sqlite",
            reason: e.to_string(),
        };
        let conn = connect(path, busy_timeout_ms).map_err(connect_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(connect_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(connect_err)?;
        // Each operation runs in a savepoint, whose statement journal would
        // otherwise be a temporary file written on every change.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(connect_err)?;
        // Checkpoint every ~40 MB of WAL rather than every 4 MB: a busy
        // conversation's page is then copied into the database once per
        // checkpoint, not once per handful of turns.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(connect_err)?;
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("recoverbot-sqlite".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| OpenError::Connect {
                backend: "sqlite",
                reason: e.to_string(),
            })?;
        let reader = match path {
            Some(_) => {
                let conn = connect(path, busy_timeout_ms).map_err(connect_err)?;
                let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
                std::thread::Builder::new()
                    .name("recoverbot-sqlite-read".into())
                    .spawn(move || reader(conn, rx))
                    .map_err(|e| OpenError::Connect {
                        backend: "sqlite",
                        reason: e.to_string(),
                    })?;
                Some(tx)
            }
            None => None,
        };
        Ok(Self {
            sender: Mutex::new(Some(tx)),
            reader: Mutex::new(reader),
        })
    }

    /// Runs `work` on the reader connection (or, without one, the writer).
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob { work, reply });
        let job = {
            let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            match reader.as_ref() {
                Some(r) => r.send(job).err().map(|e| e.0),
                None => Some(job),
            }
        };
        if let Some(job) = job {
            // No reader: the writer runs it in its next batch.
            self.to_writer(job)?;
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Queues a job for the writer thread's next batch.
    fn to_writer(&self, job: Box<dyn Job>) -> Result<(), StoreError> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(Message::Job(job))
            .map_err(|_| stopped())
    }

    /// Runs `work` on the writer thread, in the next batch.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.to_writer(Box::new(FnJob { work, reply }))?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A connection with the settings every one of ours has.
fn connect(path: Option<&Path>, busy_timeout_ms: u64) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match path {
        Some(p) => Connection::open_with_flags(p, flags)?,
        None => Connection::open_in_memory()?,
    };
    conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    // 16 MiB of page cache: the hot pages of active conversations and the
    // outbox stay in memory instead of being read again.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// The reader thread: each job is a read in its own implicit transaction.
fn reader(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(job) = rx.recv() {
        let (_, deliver) = job.run(&conn);
        deliver(Ok(()));
    }
}

fn writer(conn: Connection, rx: mpsc::Receiver<Message>) {
    let mut pending = None;
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let mut batch = Vec::new();
        let mut stop = None;
        match first {
            Message::Job(j) => batch.push(j),
            Message::Stop(done) => stop = Some(done),
        }
        while stop.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Message::Job(j)) => batch.push(j),
                Ok(Message::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, batch);
        }
        if let Some(done) = stop {
            // Anything sent after Stop still gets an answer.
            while let Ok(m) = rx.try_recv() {
                if let Message::Job(j) = m {
                    j.fail("the store is closed".into());
                }
            }
            drop(conn);
            let _ = done.send(());
            return;
        }
        pending = None;
    }
}

/// Runs a prepared (cached) statement with no parameters: transaction
/// control runs once per operation, so it is parsed once, not each time.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn run_batch(conn: &Connection, batch: Vec<Box<dyn Job>>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let error = e.to_string();
        for job in batch {
            job.fail(error.clone());
        }
        return;
    }
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            job.fail(e.to_string());
            continue;
        }
        let (ok, deliver) = job.run(conn);
        let end = if ok {
            exec(conn, "RELEASE op")
        } else {
            exec(conn, "ROLLBACK TO op").and_then(|()| exec(conn, "RELEASE op"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint failed");
        }
        deliveries.push(deliver);
    }
    let commit = exec(conn, "COMMIT").map_err(|e| e.to_string());
    if commit.is_err() {
        let _ = exec(conn, "ROLLBACK");
    }
    for deliver in deliveries {
        deliver(commit.clone());
    }
}

fn conversation_from_row(
    key: &ConversationKey,
    row: &Row<'_>,
) -> rusqlite::Result<StoredConversation> {
    Ok(StoredConversation {
        key: key.clone(),
        flow: row.get(0)?,
        step: row.get(1)?,
        variables: row.get(2)?,
        state: row.get(3)?,
        flow_version: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
        version: row.get(7)?,
    })
}

fn read_conversation(
    conn: &Connection,
    key: &ConversationKey,
) -> Result<Option<StoredConversation>, StoreError> {
    conn.prepare_cached(q::LOAD_CONVERSATION)
        .and_then(|mut s| {
            s.query_row(params![key.channel.as_str(), key.chat, key.user], |r| {
                conversation_from_row(key, r)
            })
            .optional()
        })
        .map_err(db_err)
}

fn read_processed(
    conn: &Connection,
    channel: ChannelKind,
    event: &EventId,
) -> Result<Option<ProcessedEvent>, StoreError> {
    conn.prepare_cached(q::PROCESSED_EVENT)
        .and_then(|mut s| {
            s.query_row(params![channel.as_str(), event.as_str()], |r| {
                Ok(ProcessedEvent {
                    processed_at: r.get(0)?,
                })
            })
            .optional()
        })
        .map_err(db_err)
}

fn key_from_row(row: &Row<'_>, first: usize) -> Result<ConversationKey, StoreError> {
    let channel: String = row.get(first).map_err(db_err)?;
    Ok(ConversationKey {
        channel: ChannelKind::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("channel {channel:?}")))?,
        chat: row.get(first + 1).map_err(db_err)?,
        user: row.get(first + 2).map_err(db_err)?,
    })
}

fn commit_turn(conn: &Connection, turn: &TurnCommit) -> Result<i64, StoreError> {
    let now = turn.at;
    if let Some(event) = &turn.event {
        let inserted = conn
            .prepare_cached(q::INSERT_EVENT)
            .and_then(|mut s| s.execute(params![turn.channel.as_str(), event.as_str(), now]))
            .map_err(db_err)?;
        if inserted == 0 {
            return Err(StoreError::DuplicateEvent);
        }
    }
    let version = match &turn.conversation {
        Some(c) => write_conversation(conn, c)?,
        None => 0,
    };
    write_records(conn, turn)?;
    for hit in &turn.rate_hits {
        let t = super::interval(hit.window_secs, hit.limit);
        conn.prepare_cached(q::RATE_LIMIT_HIT)
            .and_then(|mut s| {
                s.query_row(params![hit.bucket, hit.now + t, hit.now, t], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map_err(db_err)?;
    }
    if let Some((chat, message)) = &turn.seen_message {
        conn.prepare_cached(q::OUTBOX_BIND_SEEN)
            .and_then(|mut s| {
                s.execute(params![
                    message.as_str(),
                    now,
                    chat.channel.as_str(),
                    chat.chat
                ])
            })
            .map_err(db_err)?;
    }
    for change in &turn.subscriptions {
        write_subscription(conn, change)?;
    }
    append_outbox(
        conn,
        &turn.outbox,
        turn.event.as_ref().map(EventId::as_str),
        now,
    )?;
    Ok(version)
}

/// Appends envelopes to the outbox with the next sequence numbers of their
/// chats.
fn append_outbox(
    conn: &Connection,
    envelopes: &[Envelope],
    event: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    for (chat, rows) in outbox_rows::by_chat(envelopes)? {
        let last: i64 = conn
            .prepare_cached(q::OUTBOX_RESERVE)
            .and_then(|mut s| {
                s.query_row(
                    params![chat.channel.as_str(), chat.chat, rows.len() as i64],
                    |r| r.get(0),
                )
            })
            .map_err(db_err)?;
        let first = last - rows.len() as i64 + 1;
        let mut insert = conn.prepare_cached(q::OUTBOX_INSERT).map_err(db_err)?;
        for (i, row) in rows.iter().enumerate() {
            insert
                .execute(params![
                    chat.channel.as_str(),
                    chat.chat,
                    first + i as i64,
                    row.lane,
                    row.op,
                    row.key,
                    event,
                    now
                ])
                .map_err(db_err)?;
        }
    }
    Ok(())
}

fn write_subscription(conn: &Connection, change: &SubscriptionChange) -> Result<(), StoreError> {
    match change {
        SubscriptionChange::Subscribe(s) => conn.prepare_cached(q::SUBSCRIBE).and_then(|mut st| {
            st.execute(params![
                s.chat.channel.as_str(),
                s.chat.chat,
                s.incident,
                s.created_at,
                s.expires_at
            ])
        }),
        SubscriptionChange::UnsubscribeAll(chat) => conn
            .prepare_cached(q::UNSUBSCRIBE_CHAT)
            .and_then(|mut st| st.execute(params![chat.channel.as_str(), chat.chat])),
    }
    .map(drop)
    .map_err(db_err)
}

fn subscribers(
    conn: &Connection,
    incident: &str,
    now: Millis,
) -> Result<Vec<Subscription>, StoreError> {
    let mut st = conn.prepare_cached(q::SUBSCRIBERS).map_err(db_err)?;
    let rows = st
        .query_map(params![incident, now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (channel, chat, created_at, expires_at) = row.map_err(db_err)?;
        out.push(Subscription {
            chat: outbox_rows::chat_ref(&channel, chat)?,
            incident: incident.to_string(),
            created_at,
            expires_at,
        });
    }
    Ok(out)
}

/// A watcher pass: the version check, the new view, the announcements, and
/// each resolved incident's subscribers turned into bulk notices.
fn commit_status(
    conn: &Connection,
    c: &StatusCommit,
) -> Result<Option<StatusCommitted>, StoreError> {
    let written = if c.expected_version == 0 {
        conn.prepare_cached(q::STATUS_INSERT)
            .and_then(|mut s| s.execute(params![c.state, c.etag, c.last_modified, c.at]))
    } else {
        conn.prepare_cached(q::STATUS_UPDATE).and_then(|mut s| {
            s.execute(params![
                c.state,
                c.etag,
                c.last_modified,
                c.at,
                c.expected_version
            ])
        })
    }
    .map_err(db_err)?;
    if written == 0 {
        return Ok(None);
    }
    let mut envelopes = c.outbox.clone();
    let mut notified = 0;
    for (incident, notice) in &c.notify {
        let notices = StatusCommit::notices(notice, subscribers(conn, incident, c.at)?);
        notified += notices.len() as u64;
        envelopes.extend(notices);
        conn.prepare_cached(q::END_SUBSCRIPTIONS)
            .and_then(|mut s| s.execute(params![incident]))
            .map_err(db_err)?;
    }
    append_outbox(conn, &envelopes, None, c.at)?;
    Ok(Some(StatusCommitted::of(&envelopes, notified)))
}

fn write_conversation(conn: &Connection, c: &StoredConversation) -> Result<i64, StoreError> {
    let key = &c.key;
    let channel = key.channel.as_str();
    let written = if c.version == 0 {
        conn.prepare_cached(q::INSERT_CONVERSATION)
            .and_then(|mut s| {
                s.execute(params![
                    channel,
                    key.chat,
                    key.user,
                    c.flow,
                    c.step,
                    c.variables,
                    c.state,
                    c.flow_version,
                    c.created_at,
                    c.updated_at
                ])
            })
    } else {
        conn.prepare_cached(q::UPDATE_CONVERSATION)
            .and_then(|mut s| {
                s.execute(params![
                    c.flow,
                    c.step,
                    c.variables,
                    c.state,
                    c.flow_version,
                    c.created_at,
                    c.updated_at,
                    channel,
                    key.chat,
                    key.user,
                    c.version
                ])
            })
    }
    .map_err(db_err)?;
    if written == 0 {
        return Err(StoreError::Conflict(key.clone()));
    }
    Ok(c.version + 1)
}

/// The turn's transcript, audit, escalation and feedback records.
fn write_records(conn: &Connection, turn: &TurnCommit) -> Result<(), StoreError> {
    if let Some(c) = &turn.conversation
        && !turn.transcript.is_empty()
    {
        let key = &c.key;
        let channel = key.channel.as_str();
        let mut s = conn.prepare_cached(q::INSERT_TRANSCRIPT).map_err(db_err)?;
        for e in &turn.transcript {
            s.execute(params![
                channel,
                key.chat,
                key.user,
                e.direction.as_str(),
                e.text,
                e.at
            ])
            .map_err(db_err)?;
        }
    }
    for a in &turn.audit {
        insert_audit(conn, a)?;
    }
    for e in &turn.escalations {
        conn.prepare_cached(q::INSERT_ESCALATION)
            .and_then(|mut s| {
                s.execute(params![
                    e.id,
                    e.key.channel.as_str(),
                    e.key.chat,
                    e.key.user,
                    e.reason,
                    e.topic,
                    e.created_at
                ])
            })
            .map_err(db_err)?;
    }
    for f in &turn.feedback {
        conn.prepare_cached(q::INSERT_FEEDBACK)
            .and_then(|mut s| {
                s.execute(params![
                    f.key.channel.as_str(),
                    f.key.chat,
                    f.key.user,
                    f.topic,
                    f.answer,
                    f.at
                ])
            })
            .map_err(db_err)?;
    }
    Ok(())
}

fn insert_audit(conn: &Connection, a: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached(q::INSERT_AUDIT)
        .and_then(|mut s| s.execute(params![a.at, a.actor, a.action, a.subject, a.detail]))
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl ConversationStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(backend = "sqlite", channel = %key.channel))]
    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        let key = key.clone();
        self.read(move |conn| read_conversation(conn, &key)).await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite", channel = %key.channel))]
    async fn load_for_turn(
        &self,
        key: &ConversationKey,
        event: Option<&EventId>,
    ) -> Result<(Option<ProcessedEvent>, Option<StoredConversation>), StoreError> {
        let key = key.clone();
        let event = event.cloned();
        self.read(move |conn| {
            if let Some(event) = &event
                && let Some(seen) = read_processed(conn, key.channel, event)?
            {
                return Ok((Some(seen), None));
            }
            Ok((None, read_conversation(conn, &key)?))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite", channel = %turn.channel))]
    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError> {
        self.run(move |conn| commit_turn(conn, &turn)).await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite", %channel))]
    async fn processed_event(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        let event = event.clone();
        self.read(move |conn| read_processed(conn, channel, &event))
            .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite", channel = %key.channel))]
    async fn transcript(
        &self,
        key: &ConversationKey,
        limit: u32,
    ) -> Result<Vec<TranscriptEntry>, StoreError> {
        let key = key.clone();
        self.read(move |conn| {
            let mut s = conn.prepare_cached(q::TRANSCRIPT).map_err(db_err)?;
            let rows = s
                .query_map(
                    params![key.channel.as_str(), key.chat, key.user, i64::from(limit)],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .map_err(db_err)?;
            let mut entries = Vec::new();
            for row in rows {
                let (dir, text, at) = row.map_err(db_err)?;
                entries.push(TranscriptEntry {
                    direction: Direction::parse(&dir)
                        .ok_or_else(|| StoreError::Corrupt(format!("direction {dir:?}")))?,
                    text,
                    at,
                });
            }
            entries.reverse();
            Ok(entries)
        })
        .await
    }

    async fn recent_escalations(&self, limit: u32) -> Result<Vec<EscalationRecord>, StoreError> {
        self.read(move |conn| {
            let mut s = conn.prepare_cached(q::RECENT_ESCALATIONS).map_err(db_err)?;
            let mut rows = s.query(params![i64::from(limit)]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db_err)? {
                out.push(EscalationRecord {
                    id: r.get(0).map_err(db_err)?,
                    key: key_from_row(r, 1)?,
                    reason: r.get(4).map_err(db_err)?,
                    topic: r.get(5).map_err(db_err)?,
                    created_at: r.get(6).map_err(db_err)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn recent_feedback(&self, limit: u32) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.read(move |conn| {
            let mut s = conn.prepare_cached(q::RECENT_FEEDBACK).map_err(db_err)?;
            let mut rows = s.query(params![i64::from(limit)]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db_err)? {
                out.push(FeedbackRecord {
                    key: key_from_row(r, 0)?,
                    topic: r.get(3).map_err(db_err)?,
                    answer: r.get(4).map_err(db_err)?,
                    at: r.get(5).map_err(db_err)?,
                });
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite"))]
    async fn purge(&self, before: PurgeBefore) -> Result<PurgeReport, StoreError> {
        self.run(move |conn| {
            let run = |sql: &str, at: Millis| -> Result<u64, StoreError> {
                conn.execute(sql, params![at])
                    .map(|n| n as u64)
                    .map_err(db_err)
            };
            Ok(PurgeReport {
                processed_events: run(q::PURGE_EVENTS, before.processed_events)?,
                transcript_entries: run(q::PURGE_TRANSCRIPT, before.transcript)?,
                idempotency_records: run(q::PURGE_IDEMPOTENCY, before.idempotency)?,
                rate_limit_counters: run(q::PURGE_RATE_LIMITS, before.rate_limits)?,
                outbox_entries: run(q::PURGE_OUTBOX, before.outbox)?,
                subscriptions: run(q::PURGE_SUBSCRIPTIONS, before.subscriptions)?,
            })
        })
        .await
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(backend = "sqlite"))]
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
        let bucket = bucket.to_string();
        let (next, tat): (Option<i64>, Option<i64>) = self
            .run(move |conn| {
                let next = conn
                    .prepare_cached(q::RATE_LIMIT_HIT_WITHIN)
                    .and_then(|mut s| {
                        s.query_row(params![bucket, now + t, now, t, w], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db_err)?;
                let tat = match next {
                    Some(_) => None,
                    None => conn
                        .prepare_cached(q::RATE_LIMIT_TAT)
                        .and_then(|mut s| s.query_row(params![bucket], |r| r.get(0)).optional())
                        .map_err(db_err)?,
                };
                Ok((next, tat))
            })
            .await?;
        Ok(match next {
            Some(next) => super::decide_at(next, window_secs, limit, now),
            None => super::decide(tat, window_secs, limit, now),
        })
    }

    async fn check(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let bucket = bucket.to_string();
        let tat: Option<i64> = self
            .read(move |conn| {
                conn.prepare_cached(q::RATE_LIMIT_TAT)
                    .and_then(|mut s| s.query_row(params![bucket], |r| r.get(0)).optional())
                    .map_err(db_err)
            })
            .await?;
        Ok(super::decide(tat, window_secs, limit, now))
    }
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        chat: r.get(2)?,
        seq: r.get(3)?,
        lane: r.get(4)?,
        op: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        event: r.get(8)?,
        message: r.get(9)?,
        error: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

fn query_entries(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut s = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = s.query_map(params, entry_from_row).map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(db_err)?.parse()?);
    }
    Ok(out)
}

/// The chat's first open entry, claimed if a pending reply (inside the
/// caller's savepoint, so read and claim are one step); see
/// [`OutboxStore::take_next`].
fn take_next(
    conn: &Connection,
    chat: &ChatRef,
    now: Millis,
) -> Result<Option<NextEntry>, StoreError> {
    let Some(mut entry) = query_entries(
        conn,
        &q::OUTBOX_OPEN_ENTRIES,
        params![chat.channel.as_str(), chat.chat, 1i64],
    )?
    .pop() else {
        return Ok(None);
    };
    let claimed = entry.state == OutboxState::Pending
        && entry.lane == Lane::Interactive
        && claim(conn, entry.id, entry.attempts, now)?;
    if claimed {
        entry.state = OutboxState::Attempted;
        entry.attempts += 1;
        entry.updated_at = now;
    }
    Ok(Some(NextEntry { entry, claimed }))
}

fn claim(conn: &Connection, id: i64, attempts: u32, now: Millis) -> Result<bool, StoreError> {
    conn.prepare_cached(q::OUTBOX_CLAIM)
        .and_then(|mut s| s.execute(params![now, id, i64::from(attempts)]))
        .map(|n| n == 1)
        .map_err(db_err)
}

fn delivered(
    conn: &Connection,
    id: i64,
    message: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    let keyed: Option<(String, String, Option<String>)> = conn
        .prepare_cached(q::OUTBOX_DELIVERED)
        .and_then(|mut s| {
            s.query_row(params![message, now, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(db_err)?;
    if let (Some((channel, chat, Some(key))), Some(message)) = (keyed, message) {
        conn.prepare_cached(q::KEYED_MESSAGE_UPSERT)
            .and_then(|mut s| s.execute(params![channel, chat, key, message, now]))
            .map_err(db_err)?;
    }
    Ok(())
}

fn failed(conn: &Connection, id: i64, reason: &str, now: Millis) -> Result<(), StoreError> {
    conn.prepare_cached(q::OUTBOX_FAILED)
        .and_then(|mut s| s.execute(params![reason, now, id]))
        .map(|_| ())
        .map_err(db_err)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn take_next(
        &self,
        chat: &ChatRef,
        now: Millis,
    ) -> Result<Option<NextEntry>, StoreError> {
        let chat = chat.clone();
        self.run(move |conn| take_next(conn, &chat, now)).await
    }

    async fn settle_and_take_next(
        &self,
        id: i64,
        outcome: Settled,
        chat: &ChatRef,
        now: Millis,
    ) -> Result<Option<NextEntry>, StoreError> {
        let chat = chat.clone();
        self.run(move |conn| {
            match &outcome {
                Settled::Delivered(m) => {
                    delivered(conn, id, m.as_ref().map(MessageRef::as_str), now)?
                }
                Settled::Failed(reason) => failed(conn, id, reason, now)?,
            }
            take_next(conn, &chat, now)
        })
        .await
    }

    async fn open_chats(&self, limit: u32) -> Result<Vec<ChatRef>, StoreError> {
        self.read(move |conn| {
            let mut s = conn.prepare_cached(q::OUTBOX_OPEN_CHATS).map_err(db_err)?;
            let rows = s
                .query_map(params![i64::from(limit)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (channel, chat) = row.map_err(db_err)?;
                out.push(outbox_rows::chat_ref(&channel, chat)?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite", %chat))]
    async fn open_entries(
        &self,
        chat: &ChatRef,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let chat = chat.clone();
        self.read(move |conn| {
            query_entries(
                conn,
                &q::OUTBOX_OPEN_ENTRIES,
                params![chat.channel.as_str(), chat.chat, i64::from(limit)],
            )
        })
        .await
    }

    async fn claim_entry(&self, id: i64, attempts: u32, now: Millis) -> Result<bool, StoreError> {
        self.run(move |conn| claim(conn, id, attempts, now)).await
    }

    async fn entry_delivered(
        &self,
        id: i64,
        message: Option<&MessageRef>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let message = message.map(|m| m.as_str().to_string());
        self.run(move |conn| delivered(conn, id, message.as_deref(), now))
            .await
    }

    async fn entry_failed(&self, id: i64, reason: &str, now: Millis) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.run(move |conn| failed(conn, id, &reason, now)).await
    }

    async fn keyed_message(
        &self,
        chat: &ChatRef,
        key: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        let (chat, key) = (chat.clone(), key.to_string());
        self.read(move |conn| {
            conn.prepare_cached(q::KEYED_MESSAGE)
                .and_then(|mut s| {
                    s.query_row(params![chat.channel.as_str(), chat.chat, key], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()
                })
                .map(|m| m.map(MessageRef::new))
                .map_err(db_err)
        })
        .await
    }

    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        self.read(move |conn| Ok(query_entries(conn, &q::OUTBOX_ENTRY, params![id])?.pop()))
            .await
    }

    async fn chat_outbox(&self, chat: &ChatRef) -> Result<Vec<OutboxEntry>, StoreError> {
        let chat = chat.clone();
        self.read(move |conn| {
            query_entries(
                conn,
                &q::OUTBOX_CHAT,
                params![chat.channel.as_str(), chat.chat],
            )
        })
        .await
    }
}

#[async_trait]
impl StatusStore for SqliteStore {
    async fn status_record(&self) -> Result<Option<StatusRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(q::STATUS_RECORD)
                .and_then(|mut s| {
                    s.query_row([], |r| {
                        Ok(StatusRecord {
                            state: r.get(0)?,
                            etag: r.get(1)?,
                            last_modified: r.get(2)?,
                            version: r.get(3)?,
                            updated_at: r.get(4)?,
                        })
                    })
                    .optional()
                })
                .map_err(db_err)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite"))]
    async fn commit_status(
        &self,
        commit: StatusCommit,
    ) -> Result<Option<StatusCommitted>, StoreError> {
        self.run(move |conn| commit_status(conn, &commit)).await
    }

    async fn subscriptions(
        &self,
        incident: &str,
        now: Millis,
    ) -> Result<Vec<Subscription>, StoreError> {
        let incident = incident.to_string();
        self.read(move |conn| subscribers(conn, &incident, now))
            .await
    }

    async fn drop_subscriptions(&self, chat: &ChatRef) -> Result<u64, StoreError> {
        let chat = chat.clone();
        self.run(move |conn| {
            conn.prepare_cached(q::UNSUBSCRIBE_CHAT)
                .and_then(|mut s| s.execute(params![chat.channel.as_str(), chat.chat]))
                .map(|n| n as u64)
                .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(move |conn| {
            conn.prepare_cached(q::TRY_LEASE)
                .and_then(|mut s| s.execute(params![name, holder, until, now]))
                .map(|n| n == 1)
                .map_err(db_err)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(move |conn| {
            conn.prepare_cached(q::RELEASE_LEASE)
                .and_then(|mut s| s.execute(params![name, holder]))
                .map(drop)
                .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(backend = "sqlite"))]
    async fn idempotency_record(
        &self,
        scope: &str,
        new_key: &str,
        now: Millis,
    ) -> Result<IdempotencyRecord, StoreError> {
        let (scope, new_key) = (scope.to_string(), new_key.to_string());
        self.run(move |conn| {
            conn.prepare_cached(q::INSERT_IDEMPOTENCY)
                .and_then(|mut s| s.execute(params![scope, new_key, now]))
                .map_err(db_err)?;
            conn.prepare_cached(q::IDEMPOTENCY)
                .and_then(|mut s| {
                    s.query_row(params![scope], |r| {
                        Ok(IdempotencyRecord {
                            key: r.get(0)?,
                            response: r.get(1)?,
                        })
                    })
                })
                .map_err(db_err)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = "sqlite"))]
    async fn record_idempotent_response(
        &self,
        scope: &str,
        response: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (scope, response) = (scope.to_string(), response.to_string());
        self.run(move |conn| {
            conn.prepare_cached(q::RECORD_RESPONSE)
                .and_then(|mut s| s.execute(params![response, now, scope]))
                .map(|_| ())
                .map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.run(move |conn| insert_audit(conn, &entry)).await
    }

    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut s = conn.prepare_cached(q::RECENT_AUDIT).map_err(db_err)?;
            let rows = s
                .query_map(params![i64::from(limit)], |r| {
                    Ok(AuditEntry {
                        at: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        subject: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl Database for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// Applies the embedded SQLite migrations, recording them in the same
    /// `_sqlx_migrations` table (and format) that sqlx uses.
    #[tracing::instrument(skip(self), fields(backend = "sqlite"))]
    async fn migrate(&self) -> Result<MigrationReport, OpenError> {
        let migrations: Vec<(i64, String, String, Vec<u8>)> = super::SQLITE_MIGRATIONS
            .iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.sql.to_string(),
                    m.checksum.to_vec(),
                )
            })
            .collect();
        let known = migrations.len();
        let applied = self
            .run(move |conn| {
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
                        version BIGINT PRIMARY KEY,
                        description TEXT NOT NULL,
                        installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                        success BOOLEAN NOT NULL,
                        checksum BLOB NOT NULL,
                        execution_time BIGINT NOT NULL
                    )",
                )
                .map_err(db_err)?;
                let mut applied = Vec::new();
                for (version, description, sql, checksum) in migrations {
                    let existing: Option<Vec<u8>> = conn
                        .query_row(
                            "SELECT checksum FROM _sqlx_migrations WHERE version = $1 AND success",
                            params![version],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db_err)?;
                    match existing {
                        Some(sum) if sum == checksum => continue,
                        Some(_) => {
                            return Err(StoreError::Corrupt(format!(
                                "migration {version} was changed after it was applied"
                            )));
                        }
                        None => {}
                    }
                    let started = std::time::Instant::now();
                    conn.execute_batch(&sql).map_err(db_err)?;
                    conn.execute(
                        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                         VALUES ($1, $2, TRUE, $3, $4)",
                        params![version, description, checksum, started.elapsed().as_nanos() as i64],
                    )
                    .map_err(db_err)?;
                    applied.push(version);
                }
                Ok(applied)
            })
            .await
            .map_err(|e| OpenError::Migrate {
                backend: "sqlite",
                reason: e.to_string(),
            })?;
        Ok(MigrationReport {
            backend: Backend::Sqlite,
            applied,
            known,
        })
    }

    async fn close(&self) {
        self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            let (done, finished) = tokio::sync::oneshot::channel();
            if sender.send(Message::Stop(done)).is_ok() {
                let _ = finished.await;
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Dropping the senders ends the threads after their queues.
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
