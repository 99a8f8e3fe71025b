//! One integration-test binary (faster to link than one per file).

mod support;

mod cli_config;
mod discord;
mod engine_rules;
mod flows_walk;
mod store_backends;
