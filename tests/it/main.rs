//! One integration-test binary (faster to link than one per file).

mod support;

mod cli_config;
mod store_backends;
