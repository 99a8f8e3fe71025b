//! recoverbot: a support bot that gets locked-out users back into their
//! accounts.
//!
//! ```text
//!   Telegram ─┐                         ┌─ store (SQLite | PostgreSQL | memory)
//!   Discord  ─┼─ channels ── engine ────┼─ flows (flows/*.toml)
//!   console  ─┘   (render)   (state     └─ account actions (account API client)
//!                             machine)
//! ```
//!
//! * [`domain`]: small parsed types (e-mail, ids, codes); no I/O.
//! * [`engine`]: platform-neutral conversation engine; defines the ports
//!   (traits) that storage and the account API implement.
//! * [`store`]: those storage ports on SQLite, PostgreSQL and in memory.
//! * [`config`]: typed settings from `config.toml` and `RECOVERBOT__*`.
//! * [`cli`]: the `recoverbot` commands.
//!
//! Dependency direction: domain ← engine ← store ← cli. The engine never
//! imports sqlx, reqwest, axum, teloxide or serenity.

pub mod account_api;
pub mod channels;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod flow;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
