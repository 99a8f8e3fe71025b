//! Logging: tracing to stderr, human-readable or JSON (`log.format`).
//!
//! Spans and events never record message text, codes, tokens or e-mail
//! addresses; they carry ids, channel names, outcomes and timings only.

use crate::config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `quiet` lowers the default level to
/// warnings (for the interactive console, whose stdout is the conversation).
/// `RUST_LOG`, when set, wins over both.
pub fn init(settings: &LogSettings, quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        settings.level.as_str()
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
