//! [`MemoryStore`]: the storage ports in memory, with the same semantics as
//! the SQL store (dedupe, optimistic concurrency, fixed rate windows). For
//! tests and the engine-alone benchmark; it keeps nothing across restarts.

use super::{decide, window};
use crate::domain::{ChannelKind, ConversationKey, EventId, Millis};
use crate::engine::ports::{
    AuditEntry, AuditLog, ConversationStore, EscalationRecord, FeedbackRecord, IdempotencyRecord,
    IdempotencyStore, ProcessedEvent, PurgeBefore, PurgeReport, RateDecision, RateLimitStore,
    StoreError, StoredConversation, TranscriptEntry, TurnCommit,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Tables {
    conversations: HashMap<ConversationKey, StoredConversation>,
    processed: HashMap<(ChannelKind, String), (Millis, ProcessedEvent)>,
    transcripts: HashMap<ConversationKey, Vec<TranscriptEntry>>,
    counters: HashMap<(String, Millis), (Millis, i64)>,
    idempotency: HashMap<String, (IdempotencyRecord, Millis)>,
    audit: Vec<AuditEntry>,
    escalations: Vec<EscalationRecord>,
    feedback: Vec<FeedbackRecord>,
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
    /// Nothing here survives the process, so there is no reply to resend
    /// after a crash; a redelivery within the process gets nothing.
    fn keeps_replies(&self) -> bool {
        false
    }

    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        Ok(self.tables().conversations.get(key).cloned())
    }

    async fn commit_turn(&self, turn: TurnCommit) -> Result<i64, StoreError> {
        let mut t = self.tables();
        let key = turn.conversation.key.clone();
        let event_key = turn
            .event
            .as_ref()
            .map(|e| (key.channel, e.as_str().to_string()));
        if let Some(ek) = &event_key
            && t.processed.contains_key(ek)
        {
            return Err(StoreError::DuplicateEvent);
        }
        let stored_version = t.conversations.get(&key).map_or(0, |c| c.version);
        if stored_version != turn.conversation.version {
            return Err(StoreError::Conflict(key));
        }
        if let Some(ek) = event_key {
            t.processed.insert(
                ek,
                (
                    turn.conversation.updated_at,
                    ProcessedEvent {
                        reply: turn.reply.clone(),
                        delivered: false,
                    },
                ),
            );
        }
        let mut conversation = turn.conversation;
        conversation.version += 1;
        let version = conversation.version;
        t.conversations.insert(key.clone(), conversation);
        if self.keep_transcripts && !turn.transcript.is_empty() {
            t.transcripts
                .entry(key)
                .or_default()
                .extend(turn.transcript);
        }
        t.audit.extend(turn.audit);
        t.escalations.extend(turn.escalations);
        t.feedback.extend(turn.feedback);
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

    async fn mark_reply_delivered(
        &self,
        channel: ChannelKind,
        event: &EventId,
        _at: Millis,
    ) -> Result<(), StoreError> {
        if let Some((_, p)) = self
            .tables()
            .processed
            .get_mut(&(channel, event.as_str().to_string()))
        {
            p.delivered = true;
            p.reply = None;
        }
        Ok(())
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
        t.counters.retain(|_, (end, _)| *end >= before.rate_limits);
        report.rate_limit_counters = (n - t.counters.len()) as u64;
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
        let (start, end) = window(window_secs, now);
        let mut t = self.tables();
        let entry = t
            .counters
            .entry((bucket.to_string(), start))
            .or_insert((end, 0));
        entry.1 += 1;
        Ok(decide(entry.1, limit, end, now))
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
