//! recoverbot: a support bot that gets locked-out users back into their
//! accounts.
//!
//! ```text
//!   Telegram ─┐ decode             ┌─ store (SQLite | PostgreSQL | memory):
//!   Discord  ─┼─ channels ─ engine ┤    state, transcript, rate limits and
//!   console  ─┘     ▲     (turns)  │    the outbox, in one transaction
//!                   │              ├─ flows (flows/*.toml)
//!        Transport  │              └─ account actions (account API client)
//!                   └──── delivery ◄── outbox (per chat, in order)
//! ```
//!
//! A message travels: a channel decodes a platform event into an
//! [`engine::Inbound`]; the engine runs the turn and commits the new state
//! and the outgoing [`engine::Envelope`]s together; the channel
//! acknowledges the platform; [`delivery`] drains the outbox through the
//! platform's [`delivery::Transport`], in order per chat.
//!
//! * [`domain`]: small parsed types (e-mail, ids, codes, chat and message
//!   references); no I/O.
//! * [`flow`]: the flow language: model, loading, checking, graphs; the
//!   intent classifier trained from the flows' examples, and the router that
//!   decides where free text goes.
//! * [`engine`]: platform-neutral conversation engine; defines the ports
//!   (traits) that storage and the account API implement.
//! * [`delivery`]: the outbox drained to the platforms.
//! * [`store`]: the storage ports on SQLite, PostgreSQL and in memory.
//! * [`account_api`]: the client of the platform's account service;
//!   [`simulator`]: a stand-in for it (and a status page), for the local
//!   default and tests.
//! * [`channels`]: Telegram, Discord, the console.
//! * [`config`]: typed settings from `config.toml` and `RECOVERBOT__*`.
//! * [`startup`] wires them; [`cli`] is the `recoverbot` commands.
//!
//! Dependency direction: domain ← flow ← engine ← {store, account_api} ←
//! {delivery, channels} ← startup ← cli. The engine never imports sqlx,
//! reqwest, axum, teloxide or serenity; channels never call the store.

pub mod account_api;
pub mod channels;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod flow;
pub mod http;
pub mod lease;
pub mod shutdown;
pub mod simulator;
pub mod startup;
pub mod status;
pub mod store;
pub mod telemetry;
