//! Slash commands and button presses, answered within Discord's 3 seconds.
//!
//! The conversation itself (the next step's message, cleared buttons) goes
//! to the DM through the outbox like every reply; the interaction's own
//! answer is only the acknowledgement Discord requires:
//! - a button: type 6 ("got it", the message stays as it is), or an
//!   ephemeral notice when the press changed nothing ("That button has
//!   expired.");
//! - a slash command in the DM: a short ephemeral line; in a server: an
//!   ephemeral pointer to the DM ("I've sent you a DM", "your DMs are
//!   closed").
//!
//! The turn runs in its own task. If it is done within [`DEFER_AFTER`], the
//! answer is the real one; otherwise a deferred answer goes out first and
//! the real one follows by editing it. The first answer goes back over REST
//! (gateway) or as the HTTP response (interactions endpoint): see
//! [`Responder`].

use super::render;
use super::rest::RestError;
use super::{
    ALREADY_ANSWERED, Core, DM_SENT, DMS_CLOSED, DmOutcome, SORRY, commands, conversation_key,
};
use crate::domain::{EventId, MessageRef};
use crate::engine::{EXPIRED_BUTTON, EngineError, Inbound, Input, Reply};
use serenity::builder::{CreateInteractionResponse, CreateInteractionResponseMessage};
use serenity::model::application::{
    CommandInteraction, ComponentInteraction, ComponentInteractionDataKind, Interaction,
};
use serenity::model::id::{ApplicationId, InteractionId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A turn slower than this gets a deferred answer first: well inside
/// Discord's 3 s, with room for the network.
pub const DEFER_AFTER: Duration = Duration::from_millis(1500);
/// The answer to a slash command run in the DM: the conversation's next
/// message follows in the DM itself.
pub const IN_DM: &str = "On it: see my next message.";
/// Payloads the engine issues start with this.
const PAYLOAD_PREFIX: &str = "rb1:";

/// Where the first answer to an interaction goes.
pub(crate) enum Responder {
    /// `POST /interactions/{id}/{token}/callback`.
    Gateway { id: InteractionId, token: String },
    /// The body of the HTTP endpoint's response.
    Http(oneshot::Sender<CreateInteractionResponse>),
}

impl Responder {
    async fn send(self, core: &Core, response: CreateInteractionResponse) -> Result<(), RestError> {
        match self {
            Self::Gateway { id, token } => {
                core.rest.interaction_callback(id, &token, &response).await
            }
            Self::Http(tx) => tx
                .send(response)
                .map_err(|_| RestError::Transport("the HTTP request was abandoned".into())),
        }
    }

    async fn ephemeral(self, core: &Core, text: &str) -> Result<(), RestError> {
        let part = &render::parts(text, &[], true)[0];
        self.send(core, CreateInteractionResponse::Message(part.to_response()))
            .await
    }

    /// An ephemeral line within 3 s, however long `work` takes: at once if
    /// it is quick, else a deferral first and the line as its edit.
    async fn ephemeral_after<T: Send + 'static>(
        self,
        core: &Core,
        app: ApplicationId,
        token: &str,
        work: impl Future<Output = T> + Send + 'static,
        text: impl FnOnce(Option<T>) -> String,
    ) {
        match race(work).await {
            Raced::Done(outcome) => {
                if let Err(e) = self.ephemeral(core, &text(outcome)).await {
                    tracing::warn!(error = %e, "could not answer an interaction");
                }
            }
            Raced::Slow(handle) => {
                let defer = CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(true),
                );
                if let Err(e) = self.send(core, defer).await {
                    tracing::warn!(error = %e, "could not defer an interaction");
                }
                let line = text(handle.await.ok());
                let edit = render::parts(&line, &[], true)[0].to_edit_original();
                if let Err(e) = core.rest.edit_original(app, token, &edit).await {
                    tracing::warn!(error = %e, "could not complete an interaction");
                }
            }
        }
    }
}

enum Raced<T> {
    /// Finished in time (`None`: the task panicked).
    Done(Option<T>),
    Slow(JoinHandle<T>),
}

/// Runs `work` in its own task; waits for it up to [`DEFER_AFTER`].
async fn race<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> Raced<T> {
    let mut handle = tokio::spawn(work);
    match tokio::time::timeout(DEFER_AFTER, &mut handle).await {
        Ok(joined) => Raced::Done(joined.ok()),
        Err(_) => Raced::Slow(handle),
    }
}

type TurnResult = Result<Reply, EngineError>;

impl Core {
    pub(crate) async fn on_interaction(
        self: Arc<Self>,
        interaction: Interaction,
        responder: Responder,
    ) {
        match interaction {
            Interaction::Ping(_) => {
                if let Err(e) = responder.send(&self, CreateInteractionResponse::Pong).await {
                    tracing::debug!(error = %e, "could not answer a ping");
                }
            }
            Interaction::Command(cmd) => self.on_command(cmd, responder).await,
            Interaction::Component(c) => self.on_component(c, responder).await,
            _ => tracing::debug!("ignored an interaction of another kind"),
        }
    }

    async fn on_command(self: Arc<Self>, cmd: CommandInteraction, responder: Responder) {
        let _ = self.app_id.set(cmd.application_id);
        let Some(input) = commands::input_for(&cmd.data) else {
            let _ = responder
                .ephemeral(&self, "I don't know that command; try /help.")
                .await;
            return;
        };
        let user = cmd.user.id;
        let inbound = Inbound {
            key: conversation_key(user),
            event_id: Some(EventId::new(cmd.id.to_string())),
            message_id: None,
            locale: Some(cmd.locale.clone()).filter(|l| !l.is_empty()),
            input,
        };
        let (app, token) = (cmd.application_id, cmd.token.clone());
        let core = self.clone();
        if cmd.guild_id.is_some() {
            // In a server: the conversation goes to the DM; here only an
            // ephemeral pointer to it.
            let is_help = cmd.data.name == commands::HELP;
            let work = async move { core.turn_into_dm(inbound, user).await };
            let text = move |outcome: Option<DmOutcome>| {
                let pointer = match outcome.unwrap_or(DmOutcome::Failed) {
                    DmOutcome::Sent => DM_SENT,
                    DmOutcome::AlreadyAnswered => ALREADY_ANSWERED,
                    DmOutcome::Closed => DMS_CLOSED,
                    DmOutcome::Failed => SORRY,
                };
                if is_help {
                    format!("{}\n\n{pointer}", commands::HELP_TEXT)
                } else {
                    pointer.to_string()
                }
            };
            responder
                .ephemeral_after(&self, app, &token, work, text)
                .await;
            return;
        }
        // In the DM: the answer is the conversation's next message, queued
        // for the DM; the command itself gets a short ephemeral line.
        self.remember_dm(user, cmd.channel_id);
        let work = async move { core.engine.handle(inbound).await };
        let text = |turn: Option<TurnResult>| match usable(turn) {
            Ok(_) => IN_DM.to_string(),
            Err(()) => SORRY.to_string(),
        };
        responder
            .ephemeral_after(&self, app, &token, work, text)
            .await;
    }

    async fn on_component(self: Arc<Self>, c: ComponentInteraction, responder: Responder) {
        let _ = self.app_id.set(c.application_id);
        let user = c.user.id;
        let key = conversation_key(user);
        let custom_id = c.data.custom_id.clone();
        // Buttons only ever live in the DM; anything else is forged.
        let plausible = c.guild_id.is_none()
            && matches!(c.data.kind, ComponentInteractionDataKind::Button)
            && custom_id.starts_with(PAYLOAD_PREFIX)
            && custom_id.len() <= 100;
        if !plausible {
            let _ = responder.ephemeral(&self, EXPIRED_BUTTON).await;
            return;
        }
        self.remember_dm(user, c.channel_id);
        let inbound = Inbound {
            key,
            event_id: Some(EventId::new(c.id.to_string())),
            message_id: Some(MessageRef::new(c.message.id.to_string())),
            locale: Some(c.locale.clone()).filter(|l| !l.is_empty()),
            input: Input::Button(custom_id),
        };
        let core = self.clone();
        let work = async move { core.engine.handle(inbound).await };
        let answer = match race(work).await {
            Raced::Done(turn) => match usable(turn) {
                // A press that changed nothing: its notice, to the presser only.
                Ok(Some(reply)) if reply.notice().is_some() => {
                    let notice = reply.notice().unwrap_or(EXPIRED_BUTTON).to_string();
                    responder.ephemeral(&self, &notice).await
                }
                // The next step is on its way to the DM: "got it".
                Ok(_) => {
                    responder
                        .send(&self, CreateInteractionResponse::Acknowledge)
                        .await
                }
                Err(()) => responder.ephemeral(&self, SORRY).await,
            },
            Raced::Slow(handle) => {
                // Type 6 now; the turn's messages follow in the DM.
                let acked = responder
                    .send(&self, CreateInteractionResponse::Acknowledge)
                    .await;
                if usable(handle.await.ok()).is_err() {
                    self.post_to_dm(user, SORRY).await;
                }
                acked
            }
        };
        if let Err(e) = answer {
            tracing::warn!(error = %e, "could not answer a button");
        }
    }
}

/// A turn's reply, or why there is nothing to send: the turn failed
/// (`Err`), or the event was answered before (`Ok(None)`).
fn usable(turn: Option<TurnResult>) -> Result<Option<Reply>, ()> {
    match turn {
        Some(Ok(reply)) if reply.duplicate && reply.actions.is_empty() => Ok(None),
        Some(Ok(reply)) => Ok(Some(reply)),
        Some(Err(e)) => {
            tracing::error!(error = %e, "turn failed");
            Err(())
        }
        None => {
            tracing::error!("a turn panicked");
            Err(())
        }
    }
}
