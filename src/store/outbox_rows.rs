//! The outbox's rows as both SQL backends write and read them: envelopes
//! grouped by chat (each chat reserves its sequence numbers once per
//! commit), and rows parsed back into [`OutboxEntry`] values.

use crate::domain::{ChannelKind, ChatRef, EventId, MessageRef, Millis};
use crate::engine::ports::{OutboxEntry, OutboxState, StoreError};
use crate::engine::{Envelope, Lane, Outbound};

/// One envelope as columns.
pub(crate) struct NewRow {
    pub lane: &'static str,
    pub op: String,
    pub key: Option<String>,
}

/// The envelopes grouped by chat, each chat's in their order, chats in
/// the order they first appear.
pub(crate) fn by_chat(envelopes: &[Envelope]) -> Result<Vec<(ChatRef, Vec<NewRow>)>, StoreError> {
    let mut out: Vec<(ChatRef, Vec<NewRow>)> = Vec::new();
    for e in envelopes {
        let row = NewRow {
            lane: e.lane.as_str(),
            op: serde_json::to_string(&e.op)
                .map_err(|err| StoreError::Corrupt(format!("outbox op: {err}")))?,
            // A re-posted edit's new message replaces the old one under
            // the same key.
            key: match &e.op {
                Outbound::Message { key, .. } => key.clone(),
                Outbound::Edit { key, .. } => Some(key.clone()),
                _ => None,
            },
        };
        match out.iter_mut().find(|(c, _)| *c == e.to) {
            Some((_, rows)) => rows.push(row),
            None => out.push((e.to.clone(), vec![row])),
        }
    }
    Ok(out)
}

pub(crate) fn chat_ref(channel: &str, chat: String) -> Result<ChatRef, StoreError> {
    let channel = ChannelKind::parse(channel)
        .ok_or_else(|| StoreError::Corrupt(format!("channel {channel:?}")))?;
    Ok(ChatRef::new(channel, chat))
}

/// An outbox row as read, before parsing.
pub(crate) struct EntryRow {
    pub id: i64,
    pub channel: String,
    pub chat: String,
    pub seq: i64,
    pub lane: String,
    pub op: String,
    pub state: String,
    pub attempts: i64,
    pub event: Option<String>,
    pub message: Option<String>,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl EntryRow {
    pub fn parse(self) -> Result<OutboxEntry, StoreError> {
        Ok(OutboxEntry {
            id: self.id,
            to: chat_ref(&self.channel, self.chat)?,
            seq: self.seq,
            lane: Lane::parse(&self.lane)
                .ok_or_else(|| StoreError::Corrupt(format!("lane {:?}", self.lane)))?,
            op: serde_json::from_str(&self.op)
                .map_err(|e| StoreError::Corrupt(format!("outbox op {}: {e}", self.id)))?,
            state: OutboxState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {:?}", self.state)))?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            event: self.event.map(EventId::new),
            message: self.message.map(MessageRef::new),
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
