//! The Telegram channel end to end: the real teloxide client against a fake
//! Bot API server on loopback ([`fake_server`], checked against the
//! official method and type definitions in [`spec`]), with the real flows,
//! SQLite and the account simulator.

mod fake_server;
mod harness;
mod spec;

mod callbacks;
mod conversation;
mod delivery;
mod groups;
mod instances;
mod kill;
mod pacing;
mod restart;
mod secrets;
mod serve;
mod status;
mod webhook;
