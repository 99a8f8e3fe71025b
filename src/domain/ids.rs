//! Identifiers of conversations, events and accounts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a conversation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Console,
    Telegram,
    Discord,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Telegram => "telegram",
            Self::Discord => "discord",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "console" => Some(Self::Console),
            "telegram" => Some(Self::Telegram),
            "discord" => Some(Self::Discord),
            _ => None,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conversation: a user in a chat on a channel. A user who talks to the
/// bot in two chats has two conversations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationKey {
    pub channel: ChannelKind,
    pub chat: String,
    pub user: String,
}

impl ConversationKey {
    pub fn new(channel: ChannelKind, chat: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            channel,
            chat: chat.into(),
            user: user.into(),
        }
    }
}

impl ConversationKey {
    /// The chat this conversation happens in: where its replies go.
    pub fn chat_ref(&self) -> ChatRef {
        ChatRef::new(self.channel, self.chat.clone())
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.channel, self.chat, self.user)
    }
}

/// A chat on a channel: where an outgoing message goes. A private chat, a
/// DM (`dm:<user>` on Discord), a group or an announcement channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChatRef {
    pub channel: ChannelKind,
    pub chat: String,
}

impl ChatRef {
    pub fn new(channel: ChannelKind, chat: impl Into<String>) -> Self {
        Self {
            channel,
            chat: chat.into(),
        }
    }

    /// Whether the bot can delete what a user wrote here: not in a Discord
    /// DM, where only the author can.
    pub fn bot_can_delete_user_messages(&self) -> bool {
        !(self.channel == ChannelKind::Discord && self.chat.starts_with("dm:"))
    }
}

impl fmt::Display for ChatRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.chat)
    }
}

/// A platform's id of one message in a chat (Telegram `message_id`,
/// Discord snowflake), as text. Meaningful only with its [`ChatRef`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageRef(String);

impl MessageRef {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The platform's id of an inbound event (Telegram `update_id`, Discord
/// message or interaction id), unique per channel. Used to drop redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventId(pub String);

impl EventId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account id issued by the account service (`acc_...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        ok.then(|| Self(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A six-digit one-time code. `Debug` never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Accepts `123456`, `123 456` and `123-456`.
    pub fn parse(raw: &str) -> Option<Self> {
        let digits: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        (digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit())).then_some(Self(digits))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_accept_common_spacing_and_hide_in_debug() {
        let c = OneTimeCode::parse(" 123 456 ").unwrap();
        assert_eq!(c.expose(), "123456");
        assert!(!format!("{c:?}").contains("123"));
        assert!(OneTimeCode::parse("12345").is_none());
        assert!(OneTimeCode::parse("12345a").is_none());
    }

    #[test]
    fn account_ids_reject_path_tricks() {
        assert!(AccountId::parse("acc_123").is_some());
        assert!(AccountId::parse("../admin").is_none());
        assert!(AccountId::parse("").is_none());
    }
}
