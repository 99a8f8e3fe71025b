//! The Telegram channel (teloxide): private chats get the full guided
//! conversation with inline keyboards; groups get short answers that lead
//! into a private chat.
//!
//! - [`handler`]: one update start to finish (decoded, committed with its
//!   replies in the outbox, the callback query answered);
//! - [`polling`] and [`webhook`]: the two ways updates arrive;
//! - [`transport`]: the outbox's entries as Bot API calls, for delivery;
//! - [`api`] and [`pacing`]: the Bot API client, paced under the flood
//!   limits per chat and per lane, honouring `retry_after`;
//! - [`render`]: HTML escaping, splitting at 4096 characters, keyboards;
//! - [`commands`] and [`group`]: commands, deep links, mentions, groups.
//!
//! Exactly-once: the `update_id` is the engine's event id, stored with the
//! turn and its outgoing messages in one transaction; the polling offset
//! (or the webhook's 200) passes an update once that is committed, and
//! delivery sends the messages on its own time.
//!
//! Logs never hold message text, the token, or request URLs (teloxide's
//! network errors embed the URL, which embeds the token: see [`api`]).

pub mod api;
pub mod commands;
pub mod group;
pub mod handler;
pub mod pacing;
pub mod polling;
pub mod render;
pub mod transport;
pub mod webhook;

use crate::config::{TelegramMode, TelegramSettings};
use crate::delivery::Delivery;
use crate::domain::ChannelKind;
use crate::engine::Engine;
use crate::shutdown::Shutdown;
use api::{Api, CallError};
use handler::Handler;
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::{BotCommand, Me};
use tokio::net::TcpListener;

/// Things a caller may provide instead of the settings (tests bind their
/// own port).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The webhook server's socket, instead of binding `webhook_listen`.
    pub webhook_listener: Option<TcpListener>,
}

/// Runs the Telegram channel until `shutdown` fires.
pub async fn run(
    engine: Arc<Engine>,
    delivery: Arc<Delivery>,
    settings: TelegramSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    run_with(engine, delivery, settings, shutdown, RunOptions::default()).await
}

pub async fn run_with(
    engine: Arc<Engine>,
    delivery: Arc<Delivery>,
    settings: TelegramSettings,
    mut shutdown: Shutdown,
    options: RunOptions,
) -> anyhow::Result<()> {
    let token = settings.token.as_ref().ok_or_else(|| {
        anyhow::anyhow!("telegram.token is not set: export RECOVERBOT__TELEGRAM__TOKEN")
    })?;
    let poll_timeout = u32::try_from(settings.poll_timeout_secs.min(50)).unwrap_or(25);
    let caps = crate::delivery::LaneCaps::new(
        settings.max_messages_per_second,
        settings.bulk_messages_per_second,
    );
    let api = Arc::new(Api::new(
        token,
        &settings.api_url,
        u64::from(poll_timeout),
        caps,
        shutdown.clone(),
    )?);
    // Check webhook settings before touching Telegram.
    let webhook = match settings.mode {
        TelegramMode::Polling => None,
        TelegramMode::Webhook => Some((
            webhook::public_url(settings.webhook_url.as_deref())?,
            webhook::secret_token(settings.webhook_secret.as_ref())?,
        )),
    };
    let Some(me) = get_me(&api, &mut shutdown).await? else {
        return Ok(());
    };
    let username = me
        .user
        .username
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the Telegram bot has no username (getMe)"))?;
    tracing::info!(bot = %username, "Telegram: connected");
    let commands = commands::menu(&engine.flows())
        .into_iter()
        .map(|(c, d)| BotCommand::new(c, d))
        .collect();
    if let Err(e) = api.set_my_commands(commands).await {
        tracing::warn!(error = %e, "Telegram: could not register the command list");
    }
    let transport = Arc::new(transport::TelegramTransport::new(api.clone()));
    delivery.register(ChannelKind::Telegram, transport).await;
    let handler = Arc::new(Handler::new(engine, api, username, me.user.id));
    match webhook {
        None => {
            // getUpdates fails while a webhook is set.
            if let Err(e) = handler.api.delete_webhook().await
                && e != CallError::Stopped
            {
                tracing::warn!(error = %e, "Telegram: could not remove a webhook");
            }
            polling::run(handler, poll_timeout, shutdown).await
        }
        Some((url, secret)) => {
            let listener = match options.webhook_listener {
                Some(l) => l,
                None => TcpListener::bind(&settings.webhook_listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot listen on telegram.webhook_listen {}: {e}",
                            settings.webhook_listen
                        )
                    })?,
            };
            webhook::run(handler, url, secret, listener, shutdown).await
        }
    }
}

/// Asks Telegram who the bot is, retrying while it cannot be reached.
/// `None` when shutdown came first.
async fn get_me(api: &Api, shutdown: &mut Shutdown) -> anyhow::Result<Option<Me>> {
    let mut failures = 0u32;
    loop {
        match api.get_me().await {
            Ok(me) => return Ok(Some(me)),
            Err(CallError::Stopped) => return Ok(None),
            Err(e @ CallError::BadToken) => anyhow::bail!("{e}"),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "Telegram: getMe failed; retrying");
                let wait = Duration::from_secs(u64::from(failures.min(30)));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.wait() => return Ok(None),
                }
            }
        }
    }
}
