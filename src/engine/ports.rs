//! The traits the engine needs from the outside world, and the records that
//! cross them. The store implements the storage ports (SQLite, PostgreSQL,
//! in memory); the account API client implements [`AccountActions`](super::actions::AccountActions).

use super::messages::{Envelope, Lane, Outbound};
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef, Millis};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A conversation as the store keeps it. `variables` and `state` are JSON
/// objects the engine owns; the store does not look inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConversation {
    pub key: ConversationKey,
    pub flow: String,
    pub step: String,
    pub variables: String,
    pub state: String,
    pub flow_version: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Optimistic-concurrency version: 0 means "not stored yet".
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in" => Some(Self::In),
            "out" => Some(Self::Out),
            _ => None,
        }
    }
}

/// One line of a transcript. `text` is already redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub direction: Direction,
    pub text: String,
    pub at: Millis,
}

/// Something worth keeping a record of: who did what to which subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// A JSON object with details; never a secret.
    pub detail: String,
}

/// A user asked for a person (or a flow decided they need one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRecord {
    /// Short reference shown to the user (`esc_...`).
    pub id: String,
    pub key: ConversationKey,
    pub reason: String,
    pub topic: Option<String>,
    pub created_at: Millis,
}

/// The answer to "did this solve it?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub key: ConversationKey,
    /// The topic flow the answer is about.
    pub topic: String,
    /// `solved` or `not_solved`.
    pub answer: String,
    pub at: Millis,
}

/// Everything one turn changes, committed in one transaction.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    /// The inbound event, recorded so a redelivery is recognised.
    pub event: Option<EventId>,
    /// The channel of `event` (events are unique per channel).
    pub channel: ChannelKind,
    /// When the turn happened (the engine's clock).
    pub at: Millis,
    /// The new state; its `version` is the version the turn started from.
    /// `None` when the event changes no conversation (a stale or foreign
    /// press, a group answer): only the event and the outbox are written.
    pub conversation: Option<StoredConversation>,
    pub transcript: Vec<TranscriptEntry>,
    pub audit: Vec<AuditEntry>,
    pub escalations: Vec<EscalationRecord>,
    pub feedback: Vec<FeedbackRecord>,
    /// The outgoing messages, appended to the outbox in per-chat order.
    pub outbox: Vec<Envelope>,
    /// Rate-limit hits this turn counts (each accepted turn exactly once).
    pub rate_hits: Vec<RateHit>,
    /// A bot message the inbound event refers to (the message a pressed
    /// button sits on). If the store does not know it, it is the proof that
    /// an attempted, unconfirmed send did arrive.
    pub seen_message: Option<(ChatRef, MessageRef)>,
    /// "Tell me when it's fixed" subscriptions made or cancelled.
    pub subscriptions: Vec<SubscriptionChange>,
}

impl TurnCommit {
    /// A commit that records `event` and queues `outbox`, and changes no
    /// conversation.
    pub fn outbox_only(
        channel: ChannelKind,
        event: Option<EventId>,
        at: Millis,
        outbox: Vec<Envelope>,
    ) -> Self {
        Self {
            event,
            channel,
            at,
            conversation: None,
            transcript: Vec::new(),
            audit: Vec::new(),
            escalations: Vec::new(),
            feedback: Vec::new(),
            outbox,
            rate_hits: Vec::new(),
            seen_message: None,
            subscriptions: Vec::new(),
        }
    }
}

/// One hit on a sliding-window rate limit (`limit` per `window_secs`),
/// counted in the turn's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHit {
    pub bucket: String,
    pub window_secs: u64,
    pub limit: u32,
    pub now: Millis,
}

/// What the store remembers of a processed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedEvent {
    pub processed_at: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the conversation since it was loaded.
    #[error("conversation {0} was changed by another writer")]
    Conflict(ConversationKey),
    /// The inbound event was already processed.
    #[error("event was already processed")]
    DuplicateEvent,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(String),
}

/// How much a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub processed_events: u64,
    pub transcript_entries: u64,
    pub idempotency_records: u64,
    pub rate_limit_counters: u64,
    pub outbox_entries: u64,
    pub subscriptions: u64,
}

/// Held while a turn runs: keeps other instances' turns of the same
/// conversation waiting (see [`ConversationStore::lock_conversation`]).
/// Dropping it lets them go, also when the turn fails.
pub struct TurnLock {
    _guard: Box<dyn Send>,
}

impl TurnLock {
    pub fn new(guard: impl Send + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for TurnLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnLock")
    }
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Serialises turns of one conversation across instances: the engine
    /// takes this before loading and holds it through the commit, so no
    /// turn is redone on a conflict. `None` where one process owns the
    /// storage (SQLite, memory: the engine's own per-conversation lock is
    /// enough).
    async fn lock_conversation(
        &self,
        _key: &ConversationKey,
    ) -> Result<Option<TurnLock>, StoreError> {
        Ok(None)
    }

    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError>;

    /// Commits a turn atomically: records the event (failing with
    /// [`StoreError::DuplicateEvent`] if seen before), writes the state if the
    /// stored version still equals `conversation.version` (else
    /// [`StoreError::Conflict`]), appends transcript and audit entries,
    /// counts the rate-limit hits, binds a proven send and appends the
    /// outbox envelopes with the next sequence numbers of their chats.
    /// Returns the new version (0 when no conversation was written).
    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError>;

    async fn processed_event(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<Option<ProcessedEvent>, StoreError>;

    async fn event_processed(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<bool, StoreError> {
        Ok(self.processed_event(channel, event).await?.is_some())
    }

    /// What a turn starts from: the event's record (if it was processed)
    /// and the conversation. One call, so a backend can read both at once.
    async fn load_for_turn(
        &self,
        key: &ConversationKey,
        event: Option<&EventId>,
    ) -> Result<(Option<ProcessedEvent>, Option<StoredConversation>), StoreError> {
        let processed = match event {
            Some(e) => self.processed_event(key.channel, e).await?,
            None => None,
        };
        if processed.is_some() {
            return Ok((processed, None));
        }
        Ok((None, self.load_conversation(key).await?))
    }

    /// The newest `limit` transcript entries of a conversation, oldest first.
    async fn transcript(
        &self,
        key: &ConversationKey,
        limit: u32,
    ) -> Result<Vec<TranscriptEntry>, StoreError>;

    /// The newest escalation requests, newest first.
    async fn recent_escalations(&self, limit: u32) -> Result<Vec<EscalationRecord>, StoreError>;

    /// The newest feedback answers, newest first.
    async fn recent_feedback(&self, limit: u32) -> Result<Vec<FeedbackRecord>, StoreError>;

    /// Deletes dedupe records, transcripts and idempotency records older than
    /// the given times, and rate-limit windows that have ended.
    async fn purge(&self, before: PurgeBefore) -> Result<PurgeReport, StoreError>;
}

/// Cut-off times for [`ConversationStore::purge`].
#[derive(Debug, Clone, Copy)]
pub struct PurgeBefore {
    pub processed_events: Millis,
    pub transcript: Millis,
    pub idempotency: Millis,
    pub rate_limits: Millis,
    /// Delivered and failed outbox entries last touched before this.
    pub outbox: Millis,
    /// Status subscriptions that expire before this.
    pub subscriptions: Millis,
}

/// Hears that a commit queued messages for a chat, so they go out at once
/// (delivery implements it; the engine calls it after each commit).
pub trait OutboxWaker: Send + Sync {
    fn wake(&self, chat: &ChatRef);
}

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Not tried yet.
    Pending,
    /// Handed to the platform, outcome unknown (a crash may have hidden it).
    Attempted,
    Delivered,
    /// Refused for good (bot blocked, chat gone); the reason is stored.
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Attempted => "attempted",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "attempted" => Some(Self::Attempted),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One envelope in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub to: ChatRef,
    /// Position in the chat: entries of one chat go out in this order.
    pub seq: i64,
    pub lane: Lane,
    pub op: Outbound,
    pub state: OutboxState,
    pub attempts: u32,
    /// The event whose turn queued it, if any.
    pub event: Option<EventId>,
    /// The platform's id of the sent message, once known.
    pub message: Option<MessageRef>,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The next entry of a chat, as [`OutboxStore::take_next`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextEntry {
    pub entry: OutboxEntry,
    /// It was pending and is now claimed for this attempt (`entry` shows
    /// it claimed). Otherwise it is in doubt (attempted before) or another
    /// worker took it first: the caller decides.
    pub claimed: bool,
}

/// How a send attempt ended, for [`OutboxStore::settle_and_take_next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Delivered(Option<MessageRef>),
    Failed(String),
}

/// The outbox as delivery drains it. Writing to it happens in
/// [`ConversationStore::commit_turn`], with the change that caused it.
///
/// A worker's hot path is [`take_next`](Self::take_next) then, after each
/// send, [`settle_and_take_next`](Self::settle_and_take_next): one store
/// operation per message (a backend may do each in one transaction; the
/// defaults compose the finer calls).
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The chat's first open entry, claimed if it was a pending reply. A
    /// bulk entry is left unclaimed: delivery claims it once its bot-wide
    /// slot has come, so a crash never leaves a queue of bulk sends in doubt.
    async fn take_next(
        &self,
        chat: &ChatRef,
        now: Millis,
    ) -> Result<Option<NextEntry>, StoreError> {
        let Some(mut entry) = self.open_entries(chat, 1).await?.pop() else {
            return Ok(None);
        };
        let claimed = entry.state == OutboxState::Pending
            && entry.lane == Lane::Interactive
            && self.claim_entry(entry.id, entry.attempts, now).await?;
        if claimed {
            entry.state = OutboxState::Attempted;
            entry.attempts += 1;
            entry.updated_at = now;
        }
        Ok(Some(NextEntry { entry, claimed }))
    }

    /// Records how entry `id` ended, then takes the chat's next entry.
    async fn settle_and_take_next(
        &self,
        id: i64,
        outcome: Settled,
        chat: &ChatRef,
        now: Millis,
    ) -> Result<Option<NextEntry>, StoreError> {
        match &outcome {
            Settled::Delivered(message) => self.entry_delivered(id, message.as_ref(), now).await?,
            Settled::Failed(reason) => self.entry_failed(id, reason, now).await?,
        }
        self.take_next(chat, now).await
    }

    /// Chats with entries not yet delivered or failed (pending or
    /// attempted), for the start-up scan.
    async fn open_chats(&self, limit: u32) -> Result<Vec<ChatRef>, StoreError>;

    /// The chat's first `limit` open entries, in sequence order.
    async fn open_entries(
        &self,
        chat: &ChatRef,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Claims an entry for a send attempt: `pending` (or `attempted` with
    /// this `attempts` count, for a retry) becomes `attempted` with one more
    /// attempt. False when someone else claimed it meanwhile.
    async fn claim_entry(&self, id: i64, attempts: u32, now: Millis) -> Result<bool, StoreError>;

    /// The platform took it; `message` is its id (kept under the entry's
    /// logical key too, for later edits).
    async fn entry_delivered(
        &self,
        id: i64,
        message: Option<&MessageRef>,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// The platform refused it for good.
    async fn entry_failed(&self, id: i64, reason: &str, now: Millis) -> Result<(), StoreError>;

    /// The message sent under a logical key in a chat, if any.
    async fn keyed_message(
        &self,
        chat: &ChatRef,
        key: &str,
    ) -> Result<Option<MessageRef>, StoreError>;

    /// One entry by id (tests and tools).
    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError>;

    /// Every entry of a chat, in order (tests and tools).
    async fn chat_outbox(&self, chat: &ChatRef) -> Result<Vec<OutboxEntry>, StoreError>;
}

/// The result of counting one hit against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32 },
    Limited { retry_after_secs: u64 },
}

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts a hit on `bucket` (at most `limit` per sliding window of
    /// `window_secs`), and says whether it stayed within the limit.
    async fn hit(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError>;

    /// Says whether one more hit on `bucket` would stay within `limit`,
    /// without counting it: a turn counts its hits in its commit
    /// ([`TurnCommit::rate_hits`]), so a redone turn counts once.
    async fn check(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError>;
}

/// The idempotency key of one side-effecting call, created before the first
/// attempt and reused by every retry and replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// The response recorded after a successful call, if any.
    pub response: Option<String>,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Returns the record for `scope`, creating it with `new_key` if absent.
    async fn idempotency_record(
        &self,
        scope: &str,
        new_key: &str,
        now: Millis,
    ) -> Result<IdempotencyRecord, StoreError>;

    async fn record_idempotent_response(
        &self,
        scope: &str,
        response: &str,
        now: Millis,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// The newest `limit` entries, newest first.
    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}

/// A "tell me when it's fixed" subscription: `chat` hears once when
/// `incident` is resolved, unless it expires first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub chat: ChatRef,
    pub incident: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// Adds (or renews) a subscription.
    Subscribe(Subscription),
    /// Drops every subscription of a chat (`/stop`, a blocked bot).
    UnsubscribeAll(ChatRef),
}

/// The status watcher's stored view of the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    /// The tracked incidents and components (JSON the watcher owns).
    pub state: String,
    /// The page's validators, sent back as `If-None-Match` /
    /// `If-Modified-Since`.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Bumped by every commit; 0 means "nothing stored yet".
    pub version: i64,
    pub updated_at: Millis,
}

/// One watcher pass, committed atomically: the new view, the
/// announcements it causes, and the notices to subscribers of resolved
/// incidents (their subscriptions end in the same transaction).
#[derive(Debug, Clone)]
pub struct StatusCommit {
    /// The version the pass started from: the commit only happens if it is
    /// still the stored one (another instance may have committed first).
    pub expected_version: i64,
    pub state: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub at: Millis,
    /// Announcement posts and edits.
    pub outbox: Vec<Envelope>,
    /// For each resolved incident, the notice every live subscriber gets
    /// (on the bulk lane).
    pub notify: Vec<(String, Outbound)>,
}

/// What a status commit queued: the chats to wake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCommitted {
    pub chats: Vec<ChatRef>,
    /// Subscribers notified.
    pub notified: u64,
}

impl StatusCommit {
    /// The bulk notice each subscriber of a resolved incident gets.
    pub fn notices(notice: &Outbound, subscribers: Vec<Subscription>) -> Vec<Envelope> {
        subscribers
            .into_iter()
            .map(|s| Envelope {
                to: s.chat,
                op: notice.clone(),
                lane: Lane::Bulk,
            })
            .collect()
    }
}

impl StatusCommitted {
    /// The distinct chats of `envelopes`, in order of first appearance.
    pub fn of(envelopes: &[Envelope], notified: u64) -> Self {
        let mut seen = std::collections::HashSet::new();
        let chats = envelopes
            .iter()
            .filter(|e| seen.insert(&e.to))
            .map(|e| e.to.clone())
            .collect();
        Self { chats, notified }
    }
}

#[async_trait]
pub trait StatusStore: Send + Sync {
    async fn status_record(&self) -> Result<Option<StatusRecord>, StoreError>;

    /// Commits a watcher pass (see [`StatusCommit`]). `None` when the
    /// stored version moved on: nothing was written.
    async fn commit_status(
        &self,
        commit: StatusCommit,
    ) -> Result<Option<StatusCommitted>, StoreError>;

    /// The live subscriptions to an incident (tools and tests).
    async fn subscriptions(
        &self,
        incident: &str,
        now: Millis,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Drops every subscription of a chat (a permanent delivery failure:
    /// the user blocked the bot). Returns how many went.
    async fn drop_subscriptions(&self, chat: &ChatRef) -> Result<u64, StoreError>;
}

/// Named leases: one holder at a time for a job shared by instances (the
/// status watcher, the periodic purge, one chat's outbox).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `until`; true
    /// while `holder` holds it. Another holder gets it only once it expired.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up (a clean shutdown), so another instance need not
    /// wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// Everything the bot keeps: one interface, several backends.
pub trait Store:
    ConversationStore
    + RateLimitStore
    + IdempotencyStore
    + AuditLog
    + OutboxStore
    + StatusStore
    + LeaseStore
{
}

impl<
    T: ConversationStore
        + RateLimitStore
        + IdempotencyStore
        + AuditLog
        + OutboxStore
        + StatusStore
        + LeaseStore,
> Store for T
{
}
