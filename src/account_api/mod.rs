//! The platform's account service: the HTTP client ([`client`]), the engine
//! actions on top of it ([`actions`]), the Statuspage reader
//! ([`statuspage`]) and the simulator of the whole contract ([`sim`]).
//! `docs/account-api.yaml` is the contract as implemented.

pub mod actions;
pub mod breaker;
pub mod client;
pub mod sim;
pub mod statuspage;
pub mod wire;

pub use actions::ApiActions;
pub use client::{AccountClient, ApiError, ClientOptions};
