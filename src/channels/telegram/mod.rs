//! The Telegram channel (teloxide). Arrives with the Telegram issue.

use crate::config::TelegramSettings;
use crate::engine::Engine;
use crate::shutdown::Shutdown;
use std::sync::Arc;

/// Runs the Telegram channel until `shutdown` fires.
pub async fn run(
    _engine: Arc<Engine>,
    _settings: TelegramSettings,
    _shutdown: Shutdown,
) -> anyhow::Result<()> {
    anyhow::bail!("the Telegram channel is not built yet")
}
