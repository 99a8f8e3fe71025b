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
//! Like every channel it calls only the engine (`handle`, `post`,
//! `position`), never the store; what it says goes through the outbox
//! ([`transport`]), except the interaction answers Discord needs within
//! 3 s and the pointers posted in a server. It never logs message text or
//! the token.

mod commands;
mod handler;
mod interactions;
pub mod interactions_endpoint;
mod render;
mod rest;
mod transport;

use crate::config::DiscordSettings;
use crate::delivery::{Delivery, Outcome};
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId};
use crate::engine::Engine;
use crate::shutdown::Shutdown;
use anyhow::{Context as _, anyhow};
use rest::{Rest, RestError};
use serenity::client::ClientBuilder;
use serenity::http::HttpBuilder;
use serenity::model::gateway::GatewayIntents;
use serenity::model::id::{ApplicationId, ChannelId, GuildId, UserId};
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
    delivery: Arc<Delivery>,
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
    let core = Arc::new(Core::new(engine, delivery.clone(), rest, guilds));
    delivery
        .register(
            ChannelKind::Discord,
            Arc::new(transport::DiscordTransport::new(
                core.clone(),
                crate::delivery::LaneCaps::new(
                    settings.max_requests_per_second,
                    settings.bulk_requests_per_second,
                ),
            )),
        )
        .await;

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
    pub delivery: Arc<Delivery>,
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

pub(crate) const DM_SENT: &str = "I've sent you a direct message: let's continue there, privately. I never discuss accounts in a server channel.";
pub(crate) const DMS_CLOSED: &str = "I couldn't send you a direct message: your DMs are closed. \
To open them: open this server's menu (click its name), choose **Privacy Settings**, turn on **Direct Messages**, \
then run `/recover` again. (Or, in User Settings → Privacy & Safety, allow DMs from server members.)";
pub(crate) const ALREADY_ANSWERED: &str = "I've already answered that: check your direct messages.";
pub(crate) const SORRY: &str = "Sorry, something went wrong on my side; please try again.";

impl Core {
    fn new(engine: Arc<Engine>, delivery: Arc<Delivery>, rest: Rest, guilds: Vec<GuildId>) -> Self {
        Self {
            engine,
            delivery,
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

    /// Runs a turn of `user`'s conversation (its reply goes to the DM
    /// through the outbox) and says how the DM fared: a turn answered from
    /// a server needs to say "check your DMs" or "your DMs are closed".
    pub async fn turn_into_dm(&self, inbound: crate::engine::Inbound, user: UserId) -> DmOutcome {
        let event = inbound.event_id.clone();
        let outcomes = self.delivery.subscribe();
        let reply = match self.engine.handle(inbound).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "turn failed");
                return DmOutcome::Failed;
            }
        };
        if reply.duplicate {
            return DmOutcome::AlreadyAnswered;
        }
        let dm = ChatRef::new(ChannelKind::Discord, conversation_key(user).chat);
        match event {
            Some(event) => dm_outcome(outcomes, &dm, &event).await,
            None => DmOutcome::Sent,
        }
    }

    /// Queues a short message to a user's DM, outside any turn.
    pub async fn post_to_dm(&self, user: UserId, text: &str) {
        let dm = ChatRef::new(ChannelKind::Discord, conversation_key(user).chat);
        let envelope =
            crate::engine::Envelope::reply(dm, crate::engine::Outbound::message(text, Vec::new()));
        if let Err(e) = self
            .engine
            .post(ChannelKind::Discord, None, vec![envelope])
            .await
        {
            tracing::warn!(error = %e, "could not queue a message");
        }
    }
}

/// How long a server-side answer waits to learn whether the DM went out.
const DM_OUTCOME_WAIT: std::time::Duration = std::time::Duration::from_millis(2500);

/// Waits for the first message of `event`'s turn to reach (or fail to
/// reach) the DM. Slow delivery counts as sent: it is on its way.
async fn dm_outcome(
    mut outcomes: tokio::sync::broadcast::Receiver<Outcome>,
    dm: &ChatRef,
    event: &EventId,
) -> DmOutcome {
    let wait = async {
        loop {
            match outcomes.recv().await {
                Ok(o) if o.chat == *dm && o.event.as_ref() == Some(event) => match o.result {
                    Ok(Some(_)) => return DmOutcome::Sent,
                    Ok(None) => continue,
                    Err(reason) if transport::is_dm_closed(&reason) => return DmOutcome::Closed,
                    Err(_) => return DmOutcome::Failed,
                },
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return DmOutcome::Sent,
            }
        }
    };
    tokio::time::timeout(DM_OUTCOME_WAIT, wait)
        .await
        .unwrap_or(DmOutcome::Sent)
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
