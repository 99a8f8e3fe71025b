//! The platform's account service: the HTTP client ([`client`]), the engine
//! actions on top of it ([`actions`]), the Statuspage reader
//! ([`statuspage`]). The stand-in server of the same contract lives apart,
//! in [`crate::simulator`]: it is a server, not part of the client.
//! `docs/account-api.yaml` is the contract as implemented.

pub mod actions;
pub mod breaker;
pub mod client;
pub mod statuspage;
pub mod wire;

pub use actions::ApiActions;
pub use client::{AccountClient, ApiError, ClientOptions};
