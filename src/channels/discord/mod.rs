//! The Discord channel (serenity). Arrives with the Discord issue.

use crate::config::DiscordSettings;
use crate::engine::Engine;
use crate::shutdown::Shutdown;
use std::sync::Arc;

/// Runs the Discord channel until `shutdown` fires.
pub async fn run(
    _engine: Arc<Engine>,
    _settings: DiscordSettings,
    _shutdown: Shutdown,
) -> anyhow::Result<()> {
    anyhow::bail!("the Discord channel is not built yet")
}
