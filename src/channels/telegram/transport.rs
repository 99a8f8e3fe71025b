//! The Telegram [`Transport`]: outbox entries as Bot API calls. A chat is
//! its numeric id (negative for groups); a message is its `message_id`.
//! Text is HTML-escaped and split at Telegram's 4096 characters, the
//! keyboard on the last part. Pacing is the [`Api`]'s.

use super::api::{Api, CallError};
use super::render::{BUTTONS_ONLY_TEXT, MAX_MESSAGE_LEN, escape_html, keyboard, split_text};
use crate::delivery::{Transport, TransportError};
use crate::domain::{ChatRef, MessageRef};
use crate::engine::{Lane, OutButton};
use async_trait::async_trait;
use std::sync::Arc;
use teloxide::types::{ChatId, MessageId};

pub struct TelegramTransport {
    api: Arc<Api>,
}

impl TelegramTransport {
    pub fn new(api: Arc<Api>) -> Self {
        Self { api }
    }
}

fn chat_id(to: &ChatRef) -> Result<ChatId, TransportError> {
    to.chat
        .parse()
        .map(ChatId)
        .map_err(|_| TransportError::Permanent(format!("{to} is not a Telegram chat")))
}

fn message_id(m: &MessageRef) -> Result<MessageId, TransportError> {
    m.as_str()
        .parse()
        .map(MessageId)
        .map_err(|_| TransportError::Permanent(format!("{m} is not a Telegram message id")))
}

/// Telegram's outcome in delivery's words. An ignorable error (the message
/// is already gone or unchanged) is a success.
fn outcome<T: Default>(r: Result<T, CallError>) -> Result<T, TransportError> {
    match r {
        Ok(v) => Ok(v),
        Err(CallError::Ignorable(_)) => Ok(T::default()),
        Err(e) if e.is_transient() || e == CallError::BadToken => {
            Err(TransportError::transient(e.to_string()))
        }
        Err(e) => Err(TransportError::Permanent(e.to_string())),
    }
}

#[async_trait]
impl Transport for TelegramTransport {
    async fn bulk_slot(&self) -> crate::delivery::LanePermit {
        self.api.pacer().bulk_slot().await
    }

    async fn send(
        &self,
        to: &ChatRef,
        lane: Lane,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<MessageRef, TransportError> {
        let chat = chat_id(to)?;
        let group = chat.0 < 0;
        let text = if text.trim().is_empty() {
            BUTTONS_ONLY_TEXT
        } else {
            text
        };
        let chunks = split_text(text, MAX_MESSAGE_LEN);
        let last = chunks.len().saturating_sub(1);
        let mut sent = None;
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 && lane == Lane::Bulk {
                drop(self.api.pacer().bulk_slot().await);
            }
            let kb = if i == last { keyboard(buttons) } else { None };
            let id = self
                .api
                .send_message(chat, group, lane, &escape_html(chunk), kb)
                .await;
            sent = Some(outcome(id.map(Some))?);
        }
        sent.flatten()
            .map(|m| MessageRef::new(m.0.to_string()))
            .ok_or_else(|| TransportError::Permanent("nothing to send".into()))
    }

    async fn edit(
        &self,
        to: &ChatRef,
        _lane: Lane,
        message: &MessageRef,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<(), TransportError> {
        let first = split_text(text, MAX_MESSAGE_LEN).into_iter().next();
        let html = escape_html(first.as_deref().unwrap_or(BUTTONS_ONLY_TEXT));
        outcome(
            self.api
                .edit_message_text(chat_id(to)?, message_id(message)?, &html, keyboard(buttons))
                .await,
        )
    }

    async fn clear_buttons(
        &self,
        to: &ChatRef,
        message: &MessageRef,
    ) -> Result<(), TransportError> {
        outcome(
            self.api
                .clear_keyboard(chat_id(to)?, message_id(message)?)
                .await,
        )
    }

    async fn delete(&self, to: &ChatRef, message: &MessageRef) -> Result<(), TransportError> {
        outcome(
            self.api
                .delete_message(chat_id(to)?, message_id(message)?)
                .await,
        )
    }
}
