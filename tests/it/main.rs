//! One integration-test binary (faster to link than one per file).

mod support;

mod account_client;
mod cli_chat;
mod cli_config;
mod delivery_order;
mod discord;
mod engine_commands;
mod engine_props;
mod engine_rules;
mod enumeration;
mod flows_check;
mod flows_walk;
mod instances;
mod outbox_contract;
mod redaction;
mod status_store;
mod status_watcher;
mod store_backends;
mod telegram;
mod understanding;
