//! Channels translate platform events into engine [`Inbound`](crate::engine::Inbound)
//! events, give the platform's fast acknowledgements (a callback answer, an
//! interaction response), and render outgoing messages natively through
//! their [`Transport`](crate::delivery::Transport). They call only the
//! engine, never the store, never each other.
//!
//! Every channel follows the same contract: pass the platform's event id
//! (dedupe) to the engine, and consider the event done once the engine has
//! committed its turn. The replies are in the outbox by then; delivery
//! sends them, in order per chat, exactly once.

pub mod console;
pub mod console_transport;
pub mod discord;
pub mod telegram;
