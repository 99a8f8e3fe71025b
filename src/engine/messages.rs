//! What flows into the engine from a channel, and what flows back out.
//! Platform-neutral: channels translate their events into [`Inbound`] and
//! render [`Outbound`] actions natively.

use crate::domain::{ConversationKey, EventId};

/// One event from a user.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub key: ConversationKey,
    /// The platform's event id, for dropping redeliveries. `None` disables
    /// deduplication (the console numbers its lines instead).
    pub event_id: Option<EventId>,
    /// The platform id of the user's message, or of the message whose button
    /// was pressed: the target of delete and clear-buttons actions.
    pub message_id: Option<String>,
    /// The user's language (IETF tag) when the platform says.
    pub locale: Option<String>,
    pub input: Input,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Input {
    /// Typed text.
    Text(String),
    /// A button press carrying the opaque payload the engine issued.
    Button(String),
    /// A fresh start, optionally into a topic (`/start reset`).
    Start(Option<String>),
    /// A command (`/help`, a slash command): the flows' `[commands]` table
    /// says where it leads. `name` is lowercase, without the slash; `args`
    /// is the rest of the line, if any (it may hold a secret).
    Command { name: String, args: Option<String> },
}

impl std::fmt::Debug for Input {
    // User text may hold a secret: Debug never shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "Text(<{} chars>)", t.chars().count()),
            Self::Button(_) => f.write_str("Button(..)"),
            Self::Start(topic) => write!(f, "Start({topic:?})"),
            // Arguments may hold a secret too: only the name.
            Self::Command { name, .. } => write!(f, "Command(/{name})"),
        }
    }
}

/// A button on an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutButton {
    pub label: String,
    /// At most 64 bytes: fits Telegram `callback_data` and Discord `custom_id`.
    pub payload: String,
}

/// Something the channel should do. New kinds (staff notifications, status
/// subscriptions) are added as variants; every channel then has to decide
/// how to render them, which the compiler enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outbound {
    /// Send a message, with buttons if any.
    Message {
        text: String,
        buttons: Vec<OutButton>,
    },
    /// Remove the buttons from an earlier message (its platform id).
    ClearButtons { message_id: String },
    /// Delete the user's message (it held a secret).
    DeleteMessage { message_id: String },
    /// A short, transient notice (a callback answer, an ephemeral reply).
    Notice { text: String },
}

/// The engine's answer to one [`Inbound`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub actions: Vec<Outbound>,
    /// Where the conversation now stands.
    pub flow: String,
    pub step: String,
    /// The event was already processed: nothing new was done. If its reply
    /// was never confirmed sent (see [`crate::engine::Engine::mark_delivered`]),
    /// `actions` holds that reply again; otherwise it is empty.
    pub duplicate: bool,
}

impl Reply {
    /// The text of the main message, if any.
    pub fn text(&self) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Outbound::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
    }

    /// The buttons of the last message.
    pub fn buttons(&self) -> &[OutButton] {
        self.actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Outbound::Message { buttons, .. } => Some(buttons.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }
}
