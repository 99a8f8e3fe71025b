//! Channels translate platform events into engine [`Inbound`](crate::engine::Inbound)
//! events and render the engine's outbound actions natively. They call only
//! the engine: never the store, never each other.

pub mod console;
