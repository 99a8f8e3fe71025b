//! Channels translate platform events into engine [`Inbound`](crate::engine::Inbound)
//! events and render the engine's outbound actions natively. They call only
//! the engine: never the store, never each other.
//!
//! Every channel follows the same contract with the engine: pass the
//! platform's event id (dedupe), send the reply's actions, then call
//! [`Engine::mark_delivered`](crate::engine::Engine::mark_delivered). A
//! redelivered event comes back `duplicate`, with the reply again only if it
//! was never confirmed sent.

pub mod console;
pub mod discord;
pub mod telegram;
