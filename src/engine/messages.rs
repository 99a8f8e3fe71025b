//! What flows into the engine from a channel, and what flows back out.
//! Platform-neutral: channels translate their events into [`Inbound`] and
//! render [`Outbound`] actions natively.

use crate::domain::{ChatRef, ConversationKey, EventId, MessageRef};

/// One event from a user.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub key: ConversationKey,
    /// The platform's event id, for dropping redeliveries. `None` disables
    /// deduplication (the console numbers its lines instead).
    pub event_id: Option<EventId>,
    /// The platform id of the user's message, or of the message whose button
    /// was pressed: the target of delete and clear-buttons actions.
    pub message_id: Option<MessageRef>,
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
    /// At most 64 bytes: fits Telegram `callback_data` and Discord
    /// `custom_id`. An `https://` URL instead makes a link button.
    pub payload: String,
}

impl OutButton {
    /// A button that opens `url` (a deep link into a private chat).
    pub fn link(label: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            payload: url.into(),
        }
    }

    /// The URL, if this is a link button.
    pub fn link_url(&self) -> Option<&str> {
        self.payload
            .starts_with("https://")
            .then_some(self.payload.as_str())
    }
}

/// Something the channel should do. New kinds (staff notifications, status
/// subscriptions) are added as variants; every channel then has to decide
/// how to render them, which the compiler enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outbound {
    /// Send a message, with buttons if any. A logical `key` (such as
    /// `announcement:<incident>`) lets a later [`Outbound::Edit`] find it.
    Message {
        text: String,
        buttons: Vec<OutButton>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Replace the text and buttons of the message sent with `key`.
    Edit {
        key: String,
        text: String,
        buttons: Vec<OutButton>,
        /// When the message can no longer be edited (deleted, too old, never
        /// sent), post the text anew under `key` instead (an announcement).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repost: bool,
    },
    /// Remove the buttons from an earlier message (its platform id).
    ClearButtons { message_id: MessageRef },
    /// Delete a message (the user's, when it held a secret).
    DeleteMessage { message_id: MessageRef },
    /// A short, transient notice (a callback answer, an ephemeral reply).
    Notice { text: String },
}

impl Outbound {
    /// A message with no logical key.
    pub fn message(text: impl Into<String>, buttons: Vec<OutButton>) -> Self {
        Self::Message {
            text: text.into(),
            buttons,
            key: None,
        }
    }
}

/// How a message competes for the platform's capacity: replies to people
/// waiting on the bot, or bulk sends (announcements, subscriber notices)
/// that take a bot-wide cap and never hold up a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Interactive,
    Bulk,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Bulk => "bulk",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Self::Interactive),
            "bulk" => Some(Self::Bulk),
            _ => None,
        }
    }
}

/// One addressed outgoing message: what to do (`op`) in which chat (`to`).
/// The engine, the desk and the announcer write these to the outbox in the
/// same transaction as the change that caused them; delivery sends them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub to: ChatRef,
    pub op: Outbound,
    pub lane: Lane,
}

impl Envelope {
    pub fn reply(to: ChatRef, op: Outbound) -> Self {
        Self {
            to,
            op,
            lane: Lane::Interactive,
        }
    }
}

/// The engine's answer to one [`Inbound`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub actions: Vec<Outbound>,
    /// Where the conversation now stands.
    pub flow: String,
    pub step: String,
    /// The event was already processed: nothing new was done, `actions` is
    /// empty (its reply is in the outbox, sent once by delivery).
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

    /// The notice to show as the platform's quick acknowledgement (a
    /// callback answer, an ephemeral reply), if any.
    pub fn notice(&self) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Outbound::Notice { text } => Some(text.as_str()),
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
