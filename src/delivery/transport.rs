//! [`Transport`]: what delivery needs from a platform. One implementation
//! per channel (Telegram, Discord, the console); each renders the platform's
//! way and keeps within the platform's own limits (per-chat pacing, 429s,
//! the bulk lane's bot-wide cap).

use super::LanePermit;
use crate::domain::{ChatRef, MessageRef};
use crate::engine::{Lane, OutButton};
use async_trait::async_trait;
use std::time::Duration;

/// Why an operation did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Worth trying again: a timeout, a 5xx, a 429. `retry_after` is the
    /// platform's own word on when, if it said.
    #[error("{reason} (temporary)")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again: the bot is blocked, the chat is gone,
    /// the message is too old to edit. Never retried.
    #[error("{0}")]
    Permanent(String),
}

impl TransportError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// One platform's outgoing operations. Text is plain (the transport
/// escapes and splits it); buttons carry the engine's payloads.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends a message; returns the platform id of the message that
    /// carries the buttons (the last part, if the text was split).
    async fn send(
        &self,
        to: &ChatRef,
        lane: Lane,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<MessageRef, TransportError>;

    /// Replaces a sent message's text and buttons.
    async fn edit(
        &self,
        to: &ChatRef,
        lane: Lane,
        message: &MessageRef,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<(), TransportError>;

    async fn clear_buttons(&self, to: &ChatRef, message: &MessageRef)
    -> Result<(), TransportError>;

    async fn delete(&self, to: &ChatRef, message: &MessageRef) -> Result<(), TransportError>;

    /// Waits for the bulk lane's bot-wide slot and takes it. Delivery calls
    /// it before it claims a bulk entry, holds the permit through the claim,
    /// and then sends that entry at once; `send` and `edit` take no bulk
    /// slot themselves. Waiters are served in order.
    async fn bulk_slot(&self) -> LanePermit {
        LanePermit::none()
    }

    /// A short notice that needs no answer: by default, a plain message.
    async fn notice(&self, to: &ChatRef, lane: Lane, text: &str) -> Result<(), TransportError> {
        self.send(to, lane, text, &[]).await.map(drop)
    }
}
