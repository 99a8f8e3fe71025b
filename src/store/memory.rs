//! [`MemoryStore`]: the storage ports in memory, with the same semantics as
//! the SQL store (dedupe, optimistic concurrency, fixed rate windows). For
//! tests and the engine-alone benchmark; it keeps nothing across restarts.

use super::{decide, interval};
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef, Millis};
use crate::engine::Outbound;
use crate::engine::ports::{
    AuditEntry, AuditLog, ConversationStore, EscalationRecord, FeedbackRecord, IdempotencyRecord,
    IdempotencyStore, LeaseStore, OutboxEntry, OutboxState, OutboxStore, ProcessedEvent,
    PurgeBefore, PurgeReport, RateDecision, RateLimitStore, StatusCommit, StatusCommitted,
    StatusRecord, StatusStore, StoreError, StoredConversation, Subscription, SubscriptionChange,
    TranscriptEntry, TurnCommit,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Default)]
struct Tables {
    conversations: HashMap<ConversationKey, StoredConversation>,
    processed: HashMap<(ChannelKind, String), (Millis, ProcessedEvent)>,
    transcripts: HashMap<ConversationKey, Vec<TranscriptEntry>>,
    /// Bucket → theoretical arrival time (GCRA).
    counters: HashMap<String, Millis>,
    idempotency: HashMap<String, (IdempotencyRecord, Millis)>,
    audit: Vec<AuditEntry>,
    escalations: Vec<EscalationRecord>,
    feedback: Vec<FeedbackRecord>,
    /// The outbox by id (ids grow, so a chat's entries are in order).
    outbox: BTreeMap<i64, OutboxEntry>,
    next_outbox_id: i64,
    last_seq: HashMap<ChatRef, i64>,
    keyed: HashMap<(ChatRef, String), MessageRef>,
    status: Option<StatusRecord>,
    /// (incident, chat) → subscription.
    subscriptions: BTreeMap<(String, ChatRef), Subscription>,
    /// Lease name → (holder, expires at).
    leases: HashMap<String, (String, Millis)>,
}

/// In-memory store. Keeps transcripts only when asked to, so a long
/// benchmark does not grow without bound.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    keep_transcripts: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            tables: Mutex::default(),
            keep_transcripts: true,
        }
    }

    /// A store that drops transcript entries (for benchmarks).
    pub fn without_transcripts() -> Self {
        Self {
            tables: Mutex::default(),
            keep_transcripts: false,
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a table half-written:
        // every method validates first and mutates last.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        Ok(self.tables().conversations.get(key).cloned())
    }

    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError> {
        let mut t = self.tables();
        let event_key = turn
            .event
            .as_ref()
            .map(|e| (turn.channel, e.as_str().to_string()));
        if let Some(ek) = &event_key
            && t.processed.contains_key(ek)
        {
            return Err(StoreError::DuplicateEvent);
        }
        if let Some(c) = &turn.conversation {
            let stored_version = t.conversations.get(&c.key).map_or(0, |s| s.version);
            if stored_version != c.version {
                return Err(StoreError::Conflict(c.key.clone()));
            }
        }
        // Validated: from here on nothing fails.
        if let Some(ek) = event_key {
            t.processed.insert(
                ek,
                (
                    turn.at,
                    ProcessedEvent {
                        processed_at: turn.at,
                    },
                ),
            );
        }
        let mut version = 0;
        if let Some(mut conversation) = turn.conversation {
            conversation.version += 1;
            version = conversation.version;
            let key = conversation.key.clone();
            t.conversations.insert(key.clone(), conversation);
            if self.keep_transcripts && !turn.transcript.is_empty() {
                t.transcripts
                    .entry(key)
                    .or_default()
                    .extend(turn.transcript);
            }
        }
        t.audit.extend(turn.audit);
        t.escalations.extend(turn.escalations);
        t.feedback.extend(turn.feedback);
        for hit in &turn.rate_hits {
            let step = interval(hit.window_secs, hit.limit);
            let tat = t.counters.entry(hit.bucket.clone()).or_insert(hit.now);
            *tat = (*tat).max(hit.now) + step;
        }
        if let Some((chat, message)) = &turn.seen_message {
            t.bind_seen(chat, message, turn.at);
        }
        for change in turn.subscriptions {
            t.subscription_change(change);
        }
        for envelope in turn.outbox {
            t.append(envelope, turn.event.clone(), turn.at);
        }
        Ok(version)
    }

    async fn processed_event(
        &self,
        channel: ChannelKind,
        event: &EventId,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        Ok(self
            .tables()
            .processed
            .get(&(channel, event.as_str().to_string()))
            .map(|(_, p)| p.clone()))
    }

    async fn transcript(
        &self,
        key: &ConversationKey,
        limit: u32,
    ) -> Result<Vec<TranscriptEntry>, StoreError> {
        let t = self.tables();
        let all = t
            .transcripts
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let skip = all.len().saturating_sub(limit as usize);
        Ok(all[skip..].to_vec())
    }

    async fn recent_escalations(&self, limit: u32) -> Result<Vec<EscalationRecord>, StoreError> {
        let t = self.tables();
        Ok(t.escalations
            .iter()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn recent_feedback(&self, limit: u32) -> Result<Vec<FeedbackRecord>, StoreError> {
        let t = self.tables();
        Ok(t.feedback
            .iter()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn purge(&self, before: PurgeBefore) -> Result<PurgeReport, StoreError> {
        let mut t = self.tables();
        let mut report = PurgeReport::default();
        let n = t.processed.len();
        t.processed
            .retain(|_, (at, _)| *at >= before.processed_events);
        report.processed_events = (n - t.processed.len()) as u64;
        for entries in t.transcripts.values_mut() {
            let n = entries.len();
            entries.retain(|e| e.at >= before.transcript);
            report.transcript_entries += (n - entries.len()) as u64;
        }
        let n = t.idempotency.len();
        t.idempotency.retain(|_, (_, at)| *at >= before.idempotency);
        report.idempotency_records = (n - t.idempotency.len()) as u64;
        let n = t.counters.len();
        t.counters.retain(|_, tat| *tat >= before.rate_limits);
        report.rate_limit_counters = (n - t.counters.len()) as u64;
        let n = t.outbox.len();
        t.outbox.retain(|_, e| {
            !matches!(e.state, OutboxState::Delivered | OutboxState::Failed)
                || e.updated_at >= before.outbox
        });
        report.outbox_entries = (n - t.outbox.len()) as u64;
        let n = t.subscriptions.len();
        t.subscriptions
            .retain(|_, s| s.expires_at > before.subscriptions);
        report.subscriptions = (n - t.subscriptions.len()) as u64;
        Ok(report)
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn hit(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let mut t = self.tables();
        let decision = decide(t.counters.get(bucket).copied(), window_secs, limit, now);
        if matches!(decision, RateDecision::Allowed { .. }) {
            let tat = t.counters.entry(bucket.to_string()).or_insert(now);
            *tat = (*tat).max(now) + interval(window_secs, limit);
        }
        Ok(decision)
    }

    async fn check(
        &self,
        bucket: &str,
        window_secs: u64,
        limit: u32,
        now: Millis,
    ) -> Result<RateDecision, StoreError> {
        let t = self.tables();
        Ok(decide(
            t.counters.get(bucket).copied(),
            window_secs,
            limit,
            now,
        ))
    }
}

impl Tables {
    fn append(&mut self, envelope: crate::engine::Envelope, event: Option<EventId>, at: Millis) {
        let seq = self.last_seq.entry(envelope.to.clone()).or_insert(0);
        *seq += 1;
        let seq = *seq;
        self.next_outbox_id += 1;
        let id = self.next_outbox_id;
        self.outbox.insert(
            id,
            OutboxEntry {
                id,
                to: envelope.to,
                seq,
                lane: envelope.lane,
                op: envelope.op,
                state: OutboxState::Pending,
                attempts: 0,
                event,
                message: None,
                error: None,
                created_at: at,
                updated_at: at,
            },
        );
    }

    fn subscription_change(&mut self, change: SubscriptionChange) {
        match change {
            SubscriptionChange::Subscribe(s) => {
                let key = (s.incident.clone(), s.chat.clone());
                match self.subscriptions.get_mut(&key) {
                    Some(old) => old.expires_at = s.expires_at,
                    None => {
                        self.subscriptions.insert(key, s);
                    }
                }
            }
            SubscriptionChange::UnsubscribeAll(chat) => {
                self.subscriptions.retain(|(_, c), _| *c != chat);
            }
        }
    }

    fn subscribers(&self, incident: &str, now: Millis) -> Vec<Subscription> {
        let mut subs: Vec<Subscription> = self
            .subscriptions
            .values()
            .filter(|s| s.incident == incident && s.expires_at > now)
            .cloned()
            .collect();
        subs.sort_by(|a, b| (a.created_at, &a.chat).cmp(&(b.created_at, &b.chat)));
        subs
    }

    fn bind_seen(&mut self, chat: &ChatRef, message: &MessageRef, at: Millis) {
        let known = self
            .outbox
            .values()
            .any(|e| e.to == *chat && e.message.as_ref() == Some(message));
        if known {
            return;
        }
        if let Some(e) = self.outbox.values_mut().find(|e| {
            e.to == *chat
                && e.state == OutboxState::Attempted
                && matches!(e.op, Outbound::Message { .. })
        }) {
            e.state = OutboxState::Delivered;
            e.message = Some(message.clone());
            e.updated_at = at;
        }
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn open_chats(&self, limit: u32) -> Result<Vec<ChatRef>, StoreError> {
        let t = self.tables();
        let mut chats: Vec<ChatRef> = Vec::new();
        for e in t.outbox.values() {
            if matches!(e.state, OutboxState::Pending | OutboxState::Attempted)
                && !chats.contains(&e.to)
            {
                chats.push(e.to.clone());
                if chats.len() >= limit as usize {
                    break;
                }
            }
        }
        Ok(chats)
    }

    async fn open_entries(
        &self,
        chat: &ChatRef,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let t = self.tables();
        Ok(t.outbox
            .values()
            .filter(|e| {
                e.to == *chat && matches!(e.state, OutboxState::Pending | OutboxState::Attempted)
            })
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn claim_entry(&self, id: i64, attempts: u32, now: Millis) -> Result<bool, StoreError> {
        let mut t = self.tables();
        match t.outbox.get_mut(&id) {
            Some(e)
                if e.attempts == attempts
                    && matches!(e.state, OutboxState::Pending | OutboxState::Attempted) =>
            {
                e.state = OutboxState::Attempted;
                e.attempts += 1;
                e.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn entry_delivered(
        &self,
        id: i64,
        message: Option<&MessageRef>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        let Some(e) = t.outbox.get_mut(&id) else {
            return Ok(());
        };
        e.state = OutboxState::Delivered;
        e.message = message.cloned();
        e.updated_at = now;
        let keyed = match (&e.op, message) {
            (Outbound::Message { key: Some(k), .. } | Outbound::Edit { key: k, .. }, Some(m)) => {
                Some(((e.to.clone(), k.clone()), m.clone()))
            }
            _ => None,
        };
        if let Some((k, m)) = keyed {
            t.keyed.insert(k, m);
        }
        Ok(())
    }

    async fn entry_failed(&self, id: i64, reason: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(e) = self.tables().outbox.get_mut(&id) {
            e.state = OutboxState::Failed;
            e.error = Some(reason.to_string());
            e.updated_at = now;
        }
        Ok(())
    }

    async fn keyed_message(
        &self,
        chat: &ChatRef,
        key: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        Ok(self
            .tables()
            .keyed
            .get(&(chat.clone(), key.to_string()))
            .cloned())
    }

    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.tables().outbox.get(&id).cloned())
    }

    async fn chat_outbox(&self, chat: &ChatRef) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .tables()
            .outbox
            .values()
            .filter(|e| e.to == *chat)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn idempotency_record(
        &self,
        scope: &str,
        new_key: &str,
        now: Millis,
    ) -> Result<IdempotencyRecord, StoreError> {
        let mut t = self.tables();
        let (record, _) = t.idempotency.entry(scope.to_string()).or_insert((
            IdempotencyRecord {
                key: new_key.to_string(),
                response: None,
            },
            now,
        ));
        Ok(record.clone())
    }

    async fn record_idempotent_response(
        &self,
        scope: &str,
        response: &str,
        _now: Millis,
    ) -> Result<(), StoreError> {
        if let Some((record, _)) = self.tables().idempotency.get_mut(scope) {
            record.response = Some(response.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.tables().audit.push(entry);
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let t = self.tables();
        Ok(t.audit.iter().rev().take(limit as usize).cloned().collect())
    }
}

#[async_trait]
impl StatusStore for MemoryStore {
    async fn status_record(&self) -> Result<Option<StatusRecord>, StoreError> {
        Ok(self.tables().status.clone())
    }

    async fn commit_status(&self, c: StatusCommit) -> Result<Option<StatusCommitted>, StoreError> {
        let mut t = self.tables();
        let stored = t.status.as_ref().map_or(0, |r| r.version);
        if stored != c.expected_version {
            return Ok(None);
        }
        t.status = Some(StatusRecord {
            state: c.state,
            etag: c.etag,
            last_modified: c.last_modified,
            version: stored + 1,
            updated_at: c.at,
        });
        let mut envelopes = c.outbox;
        let mut notified = 0;
        for (incident, notice) in c.notify {
            let notices = StatusCommit::notices(&notice, t.subscribers(&incident, c.at));
            notified += notices.len() as u64;
            envelopes.extend(notices);
            t.subscriptions.retain(|(i, _), _| *i != incident);
        }
        let committed = StatusCommitted::of(&envelopes, notified);
        for envelope in envelopes {
            t.append(envelope, None, c.at);
        }
        Ok(Some(committed))
    }

    async fn subscriptions(
        &self,
        incident: &str,
        now: Millis,
    ) -> Result<Vec<Subscription>, StoreError> {
        Ok(self.tables().subscribers(incident, now))
    }

    async fn drop_subscriptions(&self, chat: &ChatRef) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let n = t.subscriptions.len();
        t.subscriptions.retain(|(_, c), _| c != chat);
        Ok((n - t.subscriptions.len()) as u64)
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables();
        match t.leases.get(name) {
            Some((h, expires)) if h != holder && *expires > now => Ok(false),
            _ => {
                t.leases
                    .insert(name.to_string(), (holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut t = self.tables();
        if t.leases.get(name).is_some_and(|(h, _)| h == holder) {
            t.leases.remove(name);
        }
        Ok(())
    }
}
