//! Small types that parse instead of validate. Nothing here does I/O, so the
//! flow, engine and channel code can rely on them being well formed.

mod email;
mod ids;

pub use email::{Email, EmailError};
pub use ids::{AccountId, ChannelKind, ChatRef, ConversationKey, EventId, MessageRef, OneTimeCode};

/// Milliseconds since the Unix epoch: how the store keeps every time.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
