//! The console's [`Transport`]: what delivery sends to a console chat
//! comes back to the console as [`Shown`] items, in order, for it to print
//! in its own format (text, numbered buttons, or `--jsonl` lines).

use crate::delivery::{Transport, TransportError};
use crate::domain::{ChatRef, MessageRef};
use crate::engine::{Lane, OutButton};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// One delivered operation, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Message {
        text: String,
        buttons: Vec<OutButton>,
    },
    /// Buttons cleared from an earlier message: nothing to print.
    ButtonsCleared,
    /// The user's line was withdrawn (it held a secret).
    Deleted,
    Notice(String),
}

pub struct ConsoleTransport {
    shown: mpsc::UnboundedSender<Shown>,
    next_id: AtomicU64,
}

impl ConsoleTransport {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Shown>) {
        let (shown, rx) = mpsc::unbounded_channel();
        (
            Self {
                shown,
                next_id: AtomicU64::new(1),
            },
            rx,
        )
    }

    fn show(&self, item: Shown) -> Result<(), TransportError> {
        self.shown
            .send(item)
            .map_err(|_| TransportError::Permanent("the console has closed".into()))
    }
}

#[async_trait]
impl Transport for ConsoleTransport {
    async fn send(
        &self,
        _to: &ChatRef,
        _lane: Lane,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<MessageRef, TransportError> {
        self.show(Shown::Message {
            text: text.to_string(),
            buttons: buttons.to_vec(),
        })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(MessageRef::new(format!("bot-{id}")))
    }

    async fn edit(
        &self,
        _to: &ChatRef,
        _lane: Lane,
        _message: &MessageRef,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<(), TransportError> {
        self.show(Shown::Message {
            text: text.to_string(),
            buttons: buttons.to_vec(),
        })
    }

    async fn clear_buttons(
        &self,
        _to: &ChatRef,
        _message: &MessageRef,
    ) -> Result<(), TransportError> {
        self.show(Shown::ButtonsCleared)
    }

    async fn delete(&self, _to: &ChatRef, _message: &MessageRef) -> Result<(), TransportError> {
        self.show(Shown::Deleted)
    }

    async fn notice(&self, _to: &ChatRef, _lane: Lane, text: &str) -> Result<(), TransportError> {
        self.show(Shown::Notice(text.to_string()))
    }
}
