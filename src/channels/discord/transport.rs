//! The Discord [`Transport`]: outbox entries as REST calls through [`Rest`]
//! (which waits out Discord's per-route buckets and 429s). A chat is a
//! user's DM (`dm:<user id>`, opened on first use) or a channel id; text is
//! cut at 2000 characters, the buttons on the last part; nobody is pinged.

use super::Core;
use super::render;
use super::rest::{RestError, codes};
use crate::delivery::{LaneCaps, Transport, TransportError};
use crate::domain::{ChatRef, MessageRef};
use crate::engine::{Lane, OutButton};
use async_trait::async_trait;
use serenity::builder::EditMessage;
use serenity::model::id::{ChannelId, MessageId, UserId};
use std::sync::Arc;

pub(crate) struct DiscordTransport {
    core: Arc<Core>,
    /// Bot-wide caps per lane (`discord.max_requests_per_second`,
    /// `discord.bulk_requests_per_second`); Discord's own per-route
    /// buckets and 429s are [`super::rest::Rest`]'s.
    caps: LaneCaps,
}

impl DiscordTransport {
    pub(crate) fn new(core: Arc<Core>, caps: LaneCaps) -> Self {
        Self { core, caps }
    }

    async fn channel(&self, to: &ChatRef) -> Result<ChannelId, TransportError> {
        let bad = || TransportError::Permanent(format!("{to} is not a Discord chat"));
        match to.chat.strip_prefix("dm:") {
            Some(user) => {
                let user = user
                    .parse::<u64>()
                    .ok()
                    .filter(|u| *u != 0)
                    .ok_or_else(bad)?;
                self.core
                    .dm_channel(UserId::new(user))
                    .await
                    .map_err(outcome)
            }
            None => to
                .chat
                .parse::<u64>()
                .ok()
                .filter(|c| *c != 0)
                .map(ChannelId::new)
                .ok_or_else(bad),
        }
    }
}

fn message_id(m: &MessageRef) -> Result<MessageId, TransportError> {
    m.as_str()
        .parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(MessageId::new)
        .ok_or_else(|| TransportError::Permanent(format!("{m} is not a Discord message id")))
}

/// Discord's refusal in delivery's words: a 4xx will fail again (DMs
/// closed, missing permissions, unknown channel); the rest may not.
fn outcome(e: RestError) -> TransportError {
    match e.status() {
        Some(s) if (400..500).contains(&s) && s != 429 => TransportError::Permanent(e.to_string()),
        _ => TransportError::transient(e.to_string()),
    }
}

/// Whether a delivery failure was the user's closed DMs.
pub(crate) fn is_dm_closed(reason: &str) -> bool {
    reason.ends_with(&format!("code {}", codes::CANNOT_DM_USER))
}

#[async_trait]
impl Transport for DiscordTransport {
    async fn bulk_slot(&self) -> crate::delivery::LanePermit {
        self.caps.hold(Lane::Bulk).await
    }

    async fn send(
        &self,
        to: &ChatRef,
        lane: Lane,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<MessageRef, TransportError> {
        let channel = self.channel(to).await?;
        let mut last = None;
        for (i, part) in render::parts(text, buttons, false).into_iter().enumerate() {
            // A bulk send's first slot was taken before it was claimed.
            if lane == Lane::Interactive || i > 0 {
                self.caps.ready(lane).await;
            }
            let id = self
                .core
                .rest
                .create_message(channel, &part.to_message())
                .await
                .map_err(outcome)?;
            last = Some(MessageRef::new(id.to_string()));
        }
        last.ok_or_else(|| TransportError::Permanent("nothing to send".into()))
    }

    async fn edit(
        &self,
        to: &ChatRef,
        lane: Lane,
        message: &MessageRef,
        text: &str,
        buttons: &[OutButton],
    ) -> Result<(), TransportError> {
        let channel = self.channel(to).await?;
        if lane == Lane::Interactive {
            self.caps.ready(lane).await;
        }
        let part = render::parts(text, buttons, false)
            .into_iter()
            .next()
            .ok_or_else(|| TransportError::Permanent("nothing to send".into()))?;
        let edit = EditMessage::new().content(part.content.clone()).components(
            if part.buttons.is_empty() {
                Vec::new()
            } else {
                render::rows(&part.buttons)
            },
        );
        self.core
            .rest
            .edit_message(channel, message_id(message)?, &edit)
            .await
            .map_err(outcome)
    }

    async fn clear_buttons(
        &self,
        to: &ChatRef,
        message: &MessageRef,
    ) -> Result<(), TransportError> {
        let channel = self.channel(to).await?;
        let edit = EditMessage::new().components(Vec::new());
        match self
            .core
            .rest
            .edit_message(channel, message_id(message)?, &edit)
            .await
        {
            // Gone already: nothing left to clear.
            Err(e) if e.code() == Some(codes::UNKNOWN_MESSAGE) => Ok(()),
            r => r.map_err(outcome),
        }
    }

    async fn delete(&self, to: &ChatRef, message: &MessageRef) -> Result<(), TransportError> {
        if !to.bot_can_delete_user_messages() {
            // A bot cannot delete what a user wrote in a DM: the engine's
            // warning is all it can do there.
            return Ok(());
        }
        let channel = self.channel(to).await?;
        match self
            .core
            .rest
            .delete_message(channel, message_id(message)?)
            .await
        {
            Err(e) if e.code() == Some(codes::UNKNOWN_MESSAGE) => Ok(()),
            r => r.map_err(outcome),
        }
    }
}
