//! serenity's events in, engine turns out.
//!
//! serenity runs every event in its own task, so events may overlap; the
//! engine orders the turns of one conversation (its per-conversation lock)
//! and drops redelivered events (their ids are stored with the turn).

use super::interactions::Responder;
use super::rest::codes;
use super::{Core, DM_SENT, DMS_CLOSED, DmOutcome, conversation_key};
use crate::domain::{EventId, MessageRef};
use crate::engine::{Inbound, Input, redact};
use serenity::async_trait;
use serenity::builder::{CreateAllowedMentions, CreateMessage};
use serenity::cache::Cache;
use serenity::client::{Context, EventHandler};
use serenity::model::application::Interaction;
use serenity::model::channel::{Message, MessageType};
use serenity::model::event::ResumedEvent;
use serenity::model::gateway::Ready;
use serenity::model::guild::Guild;
use serenity::model::id::{ChannelId, GuildId, UserId};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) struct Handler {
    core: Arc<Core>,
}

impl Handler {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

const SECRET_DELETED: &str = "⚠️ I removed your message: it looked like it held a password or a code. \
Never share those with anyone, not even with us.";
const SECRET_KEPT: &str = "⚠️ Your message looks like it holds a password or a code, and I can't remove it here: \
please delete it now, and change that password if it was real. Never share those with anyone, not even with us.";

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let core = &self.core;
        let _ = core.app_id.set(ready.application.id);
        let _ = core.bot_user.set(ready.user.id);
        core.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            guilds = ready.guilds.len(),
            "connected to the Discord gateway"
        );
        super::commands::register(core).await;
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!("Discord gateway session resumed");
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        // The cache keeps its roles and channels (for Manage Messages).
        tracing::debug!(guild = %guild.id, "guild available");
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if msg.author.bot
            || msg.webhook_id.is_some()
            || !matches!(msg.kind, MessageType::Regular | MessageType::InlineReply)
        {
            return;
        }
        match msg.guild_id {
            None => self.core.on_dm(msg).await,
            Some(guild) => self.core.on_guild_message(&ctx.cache, guild, msg).await,
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let responder = Responder::Gateway {
            id: interaction.id(),
            token: interaction.token().to_string(),
        };
        self.core
            .clone()
            .on_interaction(interaction, responder)
            .await;
    }
}

impl Core {
    /// A DM: one turn of the user's conversation.
    async fn on_dm(&self, msg: Message) {
        let user = msg.author.id;
        self.remember_dm(user, msg.channel_id);
        let text = msg.content.trim();
        if text.is_empty() {
            // An attachment or a sticker: nothing to read.
            return;
        }
        let inbound = Inbound {
            key: conversation_key(user),
            event_id: Some(EventId::new(msg.id.to_string())),
            message_id: Some(MessageRef::new(msg.id.to_string())),
            locale: None,
            input: Input::Text(text.to_string()),
        };
        // The reply goes out through the outbox; only a failed turn is
        // answered here.
        if let Err(e) = self.engine.handle(inbound).await {
            tracing::error!(error = %e, "turn failed");
            self.post_to_dm(user, super::SORRY).await;
        }
    }

    /// A server message: only a pasted secret or a mention of the bot
    /// concern it; everything else is ignored.
    async fn on_guild_message(&self, cache: &Cache, guild: GuildId, msg: Message) {
        // In a public channel only what is clearly a secret counts: a bare
        // number ("meet at 1530", an order id) must not get a message deleted.
        let secret = redact::redact(&msg.content).has_secret_besides_codes();
        let me = self.bot_user.get().copied();
        let mentioned = me.is_some_and(|me| msg.mentions.iter().any(|u| u.id == me));
        if !secret && !mentioned {
            return;
        }
        let user = msg.author.id;
        let text = match me {
            Some(me) if !secret => strip_mention(&msg.content, me),
            _ => msg.content.trim().to_string(),
        };
        let inbound = Inbound {
            key: conversation_key(user),
            event_id: Some(EventId::new(msg.id.to_string())),
            message_id: Some(MessageRef::new(msg.id.to_string())),
            locale: None,
            input: if text.is_empty() {
                Input::Start(None)
            } else {
                Input::Text(text)
            },
        };
        // The turn (which records the message, redacted, and queues the DM)
        // decides whether the event is new; the deletion comes right after.
        let dm = self.turn_into_dm(inbound, user).await;
        if dm == DmOutcome::AlreadyAnswered {
            return;
        }
        let deleted = if secret {
            self.delete_secret(cache, guild, msg.channel_id, &msg).await
        } else {
            false
        };
        let mut text = String::new();
        if secret {
            text.push_str(if deleted { SECRET_DELETED } else { SECRET_KEPT });
            text.push(' ');
        }
        match dm {
            DmOutcome::Sent => text.push_str(DM_SENT),
            DmOutcome::Closed => text.push_str(DMS_CLOSED),
            DmOutcome::AlreadyAnswered | DmOutcome::Failed => {}
        }
        let notice = CreateMessage::new()
            .content(format!("<@{user}> {}", text.trim_end()))
            // Only the author is pinged; never a role or @everyone.
            .allowed_mentions(CreateAllowedMentions::new().users([user]));
        if let Err(e) = self.rest.create_message(msg.channel_id, &notice).await {
            tracing::warn!(error = %e, "could not post the notice in the server channel");
        }
    }

    /// Deletes a server message that held a secret, when the bot may.
    /// Returns whether it is gone.
    async fn delete_secret(
        &self,
        cache: &Cache,
        guild: GuildId,
        channel: ChannelId,
        msg: &Message,
    ) -> bool {
        if bot_can_manage(cache, guild, channel) == Some(false) {
            tracing::info!(%guild, "a secret was posted; no Manage Messages here, warning instead");
            return false;
        }
        match self.rest.delete_message(channel, msg.id).await {
            Ok(()) => true,
            Err(e) if e.code() == Some(codes::UNKNOWN_MESSAGE) => true,
            Err(e) if e.is_missing_permissions() => {
                tracing::info!(%guild, "a secret was posted; deleting it was refused, warning instead");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not delete a message holding a secret");
                false
            }
        }
    }
}

/// Whether the bot has Manage Messages in `channel`, from the cached
/// GUILD_CREATE; `None` when the cache does not know.
pub(crate) fn bot_can_manage(cache: &Cache, guild: GuildId, channel: ChannelId) -> Option<bool> {
    let me = cache.current_user().id;
    let guild = cache.guild(guild)?;
    let member = guild.members.get(&me)?;
    let channel = match guild.channels.get(&channel) {
        Some(c) => c,
        // A thread: its parent channel's permissions apply.
        None => {
            let parent = guild.threads.iter().find(|t| t.id == channel)?.parent_id?;
            guild.channels.get(&parent)?
        }
    };
    Some(guild.user_permissions_in(channel, member).manage_messages())
}

/// The text without `<@id>` / `<@!id>` mentions of the bot.
fn strip_mention(content: &str, me: UserId) -> String {
    content
        .replace(&format!("<@{me}>"), " ")
        .replace(&format!("<@!{me}>"), " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_of_the_bot_are_stripped() {
        let me = UserId::new(9001);
        assert_eq!(
            strip_mention("<@9001> I can't log in", me),
            "I can't log in"
        );
        assert_eq!(strip_mention("hey <@!9001>", me), "hey");
        assert_eq!(strip_mention("<@9001>", me), "");
    }
}
