//! The Discord channel (serenity 0.12): DMs, slash commands and buttons over
//! the real gateway.
//!
//! * [`run`] wires it: `GET /api/v10/gateway` (as serenity does) for the
//!   WebSocket URL, a serenity [`Client`](serenity::Client) with only the
//!   intents the features need ([`intents`]), the [`handler`] for its
//!   events, and optionally the HTTP [`interactions_endpoint`].
//! * Conversations happen in DMs. A user's conversation key is
//!   [`conversation_key`]: the same whether the turn came from a DM message,
//!   a button, or a slash command run in a server, so `/recover` in a guild
//!   continues in the DM.
//! * In a server the bot never discusses an account: slash commands answer
//!   ephemerally ("I've sent you a DM"), and a message holding a password or
//!   code is deleted (with Manage Messages) or warned about.
//! * Every platform id travels with its turn: the message or interaction id
//!   is the engine's [`EventId`], stored with the turn in one transaction,
//!   so a gateway resume that replays an event never doubles a turn.
//! * REST calls go through [`rest::Rest`], which handles 429s itself.
//!
//! Like every channel it calls only the engine (`handle`, `mark_delivered`,
//! `position`), never the store. It never logs message text or the token.

mod commands;
mod handler;
mod interactions;
pub mod interactions_endpoint;
mod render;
mod rest;

use crate::config::DiscordSettings;
use crate::domain::{ChannelKind, ConversationKey, EventId};
use crate::engine::{Engine, Reply};
use crate::shutdown::Shutdown;
use anyhow::{Context as _, anyhow};
use rest::{Rest, RestError};
use serenity::builder::EditMessage;
use serenity::client::ClientBuilder;
use serenity::http::HttpBuilder;
use serenity::model::gateway::GatewayIntents;
use serenity::model::id::{ApplicationId, ChannelId, GuildId, MessageId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use interactions_endpoint::verify_signature;

/// How long a stopping client may take to close its gateway session.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The gateway intents, and why each:
/// * `DIRECT_MESSAGES`: the conversation itself happens in DMs;
/// * `GUILD_MESSAGES`: to see a password pasted in a server channel;
/// * `MESSAGE_CONTENT` (privileged): to read that message's text (DMs and
///   mentions of the bot carry text without it; other server messages don't);
/// * `GUILDS`: the servers' roles and channels, to know whether the bot may
///   delete messages there (Manage Messages) before trying.
///
/// Slash commands and buttons need no intent.
pub fn intents() -> GatewayIntents {
    GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
        | GatewayIntents::GUILDS
}

/// A Discord user's conversation: one per user, in the DM with the bot.
pub fn conversation_key(user: impl std::fmt::Display) -> ConversationKey {
    ConversationKey::new(ChannelKind::Discord, format!("dm:{user}"), user.to_string())
}

/// Runs the Discord channel until `shutdown` fires. Fails when Discord
/// cannot be reached at start-up or refuses the token.
pub async fn run(
    engine: Arc<Engine>,
    settings: DiscordSettings,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let token = settings
        .token
        .clone()
        .ok_or_else(|| anyhow!("discord.token is not set: export RECOVERBOT__DISCORD__TOKEN"))?;
    let guilds = parse_guild_ids(&settings.guild_ids)?;
    let rest = Rest::new(&settings.api_url, &token).map_err(|e| anyhow!(e))?;
    let shown_api = crate::config::masked_url(&settings.api_url);
    let ws_url = rest
        .gateway_url()
        .await
        .map_err(|e| anyhow!("cannot find Discord's gateway at {shown_api}: {e}"))?;
    let core = Arc::new(Core::new(engine, rest, guilds));

    let endpoint = if settings.interactions_endpoint {
        Some(interactions_endpoint::serve(core.clone(), &settings, shutdown.clone()).await?)
    } else {
        None
    };

    let mut http =
        HttpBuilder::new(core.rest.bare_token()).default_allowed_mentions(render::no_pings());
    if let Some(base) = core.rest.base() {
        // serenity's limiter would ignore the base URL; `Rest` limits instead.
        http = http.proxy(base).ratelimiter_disabled(true);
    }
    let mut client = ClientBuilder::new_with_http(http.build(), intents())
        .event_handler(handler::Handler::new(core.clone()))
        .await
        .map_err(|e| anyhow!("cannot start the Discord client: {}", describe(&e)))?;
    // The URL fetched above, so that a failed lookup inside serenity can
    // never fall back to the real gateway.
    *client.ws_url.lock().await = ws_url;
    let shards = client.shard_manager.clone();
    let mut task = tokio::spawn(async move { client.start().await });
    tracing::info!(api = %shown_api, "Discord channel starting");

    let outcome = tokio::select! {
        joined = &mut task => Some(joined),
        () = shutdown.wait() => None,
    };
    let result = match outcome {
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(anyhow!("the Discord gateway stopped: {}", describe(&e))),
        Some(Err(_)) => Err(anyhow!("the Discord client crashed")),
        None => {
            if core.ready.load(Ordering::SeqCst) {
                shards.shutdown_all().await;
                if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                    task.abort();
                }
            } else {
                // Not connected yet: serenity cannot be asked to stop.
                task.abort();
            }
            tracing::info!("Discord channel stopped");
            Ok(())
        }
    };
    if let Some(endpoint) = endpoint {
        if result.is_err() {
            endpoint.abort();
        }
        let _ = endpoint.await;
    }
    result
}

fn parse_guild_ids(raw: &[String]) -> anyhow::Result<Vec<GuildId>> {
    raw.iter()
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .ok()
                .filter(|id| *id != 0)
                .map(GuildId::new)
                .with_context(|| format!("discord.guild_ids: {s:?} is not a guild id (a number)"))
        })
        .collect()
}

/// serenity's errors in this channel's words (never a token).
fn describe(e: &serenity::Error) -> String {
    use serenity::gateway::GatewayError as G;
    match e {
        serenity::Error::Gateway(G::InvalidAuthentication) => {
            "Discord refused the bot token: check RECOVERBOT__DISCORD__TOKEN".into()
        }
        serenity::Error::Gateway(G::DisallowedGatewayIntents | G::InvalidGatewayIntents) => {
            "Discord refused the gateway intents: enable the Message Content intent for the bot in the developer portal".into()
        }
        serenity::Error::Gateway(_) => "the gateway connection failed".into(),
        serenity::Error::Http(_) => "an HTTP request to Discord failed".into(),
        _ => "an unexpected client error".into(),
    }
}

/// What the event handler, the interactions and the HTTP endpoint share.
pub(crate) struct Core {
    pub engine: Arc<Engine>,
    pub rest: Rest,
    pub guilds: Vec<GuildId>,
    pub app_id: OnceLock<ApplicationId>,
    pub bot_user: OnceLock<UserId>,
    /// Set on the first READY.
    pub ready: AtomicBool,
    commands_registered: AtomicBool,
    dm_channels: Mutex<HashMap<UserId, ChannelId>>,
}

/// Where a reply meant for the DM ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DmOutcome {
    Sent,
    /// Nothing new to send: the event was answered before.
    AlreadyAnswered,
    /// The user does not accept DMs from the bot.
    Closed,
    Failed,
}

pub(crate) const SORRY: &str = "Sorry, something went wrong on my side; please try again.";

impl Core {
    fn new(engine: Arc<Engine>, rest: Rest, guilds: Vec<GuildId>) -> Self {
        Self {
            engine,
            rest,
            guilds,
            app_id: OnceLock::new(),
            bot_user: OnceLock::new(),
            ready: AtomicBool::new(false),
            commands_registered: AtomicBool::new(false),
            dm_channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn remember_dm(&self, user: UserId, channel: ChannelId) {
        self.dm_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user, channel);
    }

    /// The DM channel with `user`, opened if need be.
    pub async fn dm_channel(&self, user: UserId) -> Result<ChannelId, RestError> {
        let known = self
            .dm_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .copied();
        if let Some(c) = known {
            return Ok(c);
        }
        let channel = self.rest.create_dm(user).await?;
        self.remember_dm(user, channel);
        Ok(channel)
    }

    /// Sends a reply's messages to the user's DM, in order. Deletions are
    /// not done here (a bot cannot delete a user's DM message).
    pub async fn send_to_dm(&self, user: UserId, reply: &Reply) -> Result<(), RestError> {
        let parts = render::reply_parts(reply);
        let clears: Vec<MessageId> = reply
            .actions
            .iter()
            .filter_map(|a| match a {
                crate::engine::Outbound::ClearButtons { message_id } => message_id
                    .parse()
                    .ok()
                    .filter(|id| *id != 0)
                    .map(MessageId::new),
                _ => None,
            })
            .collect();
        if parts.is_empty() && clears.is_empty() {
            return Ok(());
        }
        let channel = self.dm_channel(user).await?;
        for message in clears {
            let edit = EditMessage::new().components(Vec::new());
            if let Err(e) = self.rest.edit_message(channel, message, &edit).await {
                tracing::debug!(error = %e, "could not clear old buttons");
            }
        }
        for part in parts {
            self.rest
                .create_message(channel, &part.to_message())
                .await?;
        }
        Ok(())
    }

    /// Runs a turn of `user`'s conversation and sends the reply to the DM.
    pub async fn turn_into_dm(&self, inbound: crate::engine::Inbound, user: UserId) -> DmOutcome {
        let event = inbound.event_id.clone();
        let reply = match self.engine.handle(inbound).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "turn failed");
                return DmOutcome::Failed;
            }
        };
        if reply.duplicate && reply.actions.is_empty() {
            return DmOutcome::AlreadyAnswered;
        }
        match self.send_to_dm(user, &reply).await {
            Ok(()) => {
                if let Some(event) = &event {
                    self.delivered(event).await;
                }
                DmOutcome::Sent
            }
            Err(e) if e.is_dm_closed() => DmOutcome::Closed,
            Err(e) => {
                tracing::warn!(error = %e, "could not send the reply by DM");
                DmOutcome::Failed
            }
        }
    }

    /// Tells the engine the reply to `event` went out.
    pub async fn delivered(&self, event: &EventId) {
        if let Err(e) = self
            .engine
            .mark_delivered(ChannelKind::Discord, event)
            .await
        {
            tracing::warn!(error = %e, "could not record the reply as delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guild_ids_must_be_numbers() {
        assert_eq!(
            parse_guild_ids(&["123".into(), " 456 ".into()]).unwrap(),
            [GuildId::new(123), GuildId::new(456)]
        );
        assert!(parse_guild_ids(&["abc".into()]).is_err());
        assert!(parse_guild_ids(&["0".into()]).is_err());
    }

    #[test]
    fn one_conversation_per_user() {
        let k = conversation_key(42u64);
        assert_eq!(k.channel, ChannelKind::Discord);
        assert_eq!(k.chat, "dm:42");
        assert_eq!(k.user, "42");
    }

    #[test]
    fn only_the_needed_intents() {
        let i = intents();
        assert!(i.contains(GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT));
        assert!(!i.contains(GatewayIntents::GUILD_MEMBERS));
        assert!(!i.contains(GatewayIntents::GUILD_PRESENCES));
    }
}
