//! Slash commands and button presses, answered within Discord's 3 seconds.
//!
//! The turn runs in its own task. If it is done within [`DEFER_AFTER`], the
//! answer is the real one (type 4 message, or type 7 that clears the pressed
//! message's buttons, then follow-ups); otherwise a deferred answer goes out
//! first (type 5 for commands, type 6 for buttons) and the real one follows
//! through the interaction webhook when the turn ends. The first answer goes
//! back over REST (gateway) or as the HTTP response (interactions endpoint):
//! see [`Responder`].

use super::handler::{ALREADY_ANSWERED, DM_SENT, DMS_CLOSED};
use super::render::{self, Part};
use super::rest::RestError;
use super::{Core, DmOutcome, SORRY, commands, conversation_key};
use crate::domain::EventId;
use crate::engine::{EngineError, Inbound, Input, Outbound, Reply};
use serenity::builder::{
    CreateInteractionResponse, CreateInteractionResponseMessage, EditInteractionResponse,
};
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
/// The engine's words for a stale or forged button.
const EXPIRED: &str = "That button has expired.";
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
        if cmd.guild_id.is_some() {
            // In a server: the conversation goes to the DM; here only an
            // ephemeral pointer to it.
            let is_help = cmd.data.name == commands::HELP;
            let core = self.clone();
            let work = async move { core.turn_into_dm(inbound, user).await };
            let text = |outcome: DmOutcome| {
                let pointer = match outcome {
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
            match race(work).await {
                Raced::Done(outcome) => {
                    let outcome = outcome.unwrap_or(DmOutcome::Failed);
                    if let Err(e) = responder.ephemeral(&self, &text(outcome)).await {
                        tracing::warn!(error = %e, "could not answer a slash command");
                    }
                }
                Raced::Slow(handle) => {
                    let defer = CreateInteractionResponse::Defer(
                        CreateInteractionResponseMessage::new().ephemeral(true),
                    );
                    if let Err(e) = responder.send(&self, defer).await {
                        tracing::warn!(error = %e, "could not defer a slash command");
                    }
                    let outcome = handle.await.unwrap_or(DmOutcome::Failed);
                    let edit = render::parts(&text(outcome), &[], true)[0].to_edit_original();
                    if let Err(e) = self.rest.edit_original(app, &token, &edit).await {
                        tracing::warn!(error = %e, "could not complete a slash command");
                    }
                }
            }
            return;
        }
        // In the DM: the answer is the conversation's next message.
        self.remember_dm(user, cmd.channel_id);
        let event = inbound.event_id.clone();
        let core = self.clone();
        let work = async move { core.engine.handle(inbound).await };
        let delivered = match race(work).await {
            Raced::Done(turn) => match usable(turn) {
                Ok(Some(reply)) => {
                    let parts = render::reply_parts(&reply);
                    self.answer_with(responder, parts, app, &token).await
                }
                Ok(None) => false,
                Err(()) => {
                    let _ = responder.ephemeral(&self, SORRY).await;
                    false
                }
            },
            Raced::Slow(handle) => {
                let defer =
                    CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
                let deferred = responder
                    .send(&self, defer)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "could not defer a slash command"))
                    .is_ok();
                match usable(handle.await.ok()) {
                    Ok(Some(reply)) => {
                        let parts = render::reply_parts(&reply);
                        let mut rest = parts.iter();
                        let first_ok = match rest.next() {
                            Some(first) => self
                                .rest
                                .edit_original(app, &token, &first.to_edit_original())
                                .await
                                .inspect_err(|e| {
                                    tracing::warn!(error = %e, "could not complete a slash command")
                                })
                                .is_ok(),
                            None => true,
                        };
                        deferred && first_ok && self.followups(app, &token, rest).await
                    }
                    Ok(None) => false,
                    Err(()) => {
                        let sorry = render::parts(SORRY, &[], true)[0].to_edit_original();
                        let _ = self.rest.edit_original(app, &token, &sorry).await;
                        false
                    }
                }
            }
        };
        if delivered && let Some(event) = event {
            self.delivered(&event).await;
        }
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
        // A payload for a conversation that does not exist cannot be ours.
        let known = plausible && matches!(self.engine.position(&key).await, Ok(Some(_)));
        if !known {
            let _ = responder.ephemeral(&self, EXPIRED).await;
            return;
        }
        self.remember_dm(user, c.channel_id);
        let pressed = c.message.id.to_string();
        let inbound = Inbound {
            key,
            event_id: Some(EventId::new(c.id.to_string())),
            message_id: Some(pressed.clone()),
            locale: Some(c.locale.clone()).filter(|l| !l.is_empty()),
            input: Input::Button(custom_id),
        };
        let event = inbound.event_id.clone();
        let (app, token) = (c.application_id, c.token.clone());
        let core = self.clone();
        let work = async move { core.engine.handle(inbound).await };
        let clears = |reply: &Reply| {
            reply.actions.iter().any(
                |a| matches!(a, Outbound::ClearButtons { message_id } if *message_id == pressed),
            )
        };
        let delivered = match race(work).await {
            Raced::Done(turn) => match usable(turn) {
                Ok(Some(reply)) => {
                    let parts = render::reply_parts(&reply);
                    if clears(&reply) {
                        // Type 7: the pressed message loses its buttons; the
                        // next step follows as new messages.
                        let update = CreateInteractionResponse::UpdateMessage(
                            CreateInteractionResponseMessage::new().components(Vec::new()),
                        );
                        let ok = responder
                            .send(&self, update)
                            .await
                            .inspect_err(
                                |e| tracing::warn!(error = %e, "could not answer a button"),
                            )
                            .is_ok();
                        ok && self.followups(app, &token, parts.iter()).await
                    } else {
                        // Nothing changed (an expired button): the notice only.
                        self.answer_with(responder, parts, app, &token).await
                    }
                }
                Ok(None) => false,
                Err(()) => {
                    let _ = responder.ephemeral(&self, SORRY).await;
                    false
                }
            },
            Raced::Slow(handle) => {
                // Type 6: "got it"; the message stays as it is for now.
                let deferred = responder
                    .send(&self, CreateInteractionResponse::Acknowledge)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "could not defer a button"))
                    .is_ok();
                match usable(handle.await.ok()) {
                    Ok(Some(reply)) => {
                        if clears(&reply) {
                            let edit = EditInteractionResponse::new().components(Vec::new());
                            if let Err(e) = self.rest.edit_original(app, &token, &edit).await {
                                tracing::debug!(error = %e, "could not clear the pressed buttons");
                            }
                        }
                        let parts = render::reply_parts(&reply);
                        deferred && self.followups(app, &token, parts.iter()).await
                    }
                    Ok(None) => false,
                    Err(()) => {
                        let sorry = &render::parts(SORRY, &[], true)[0];
                        let _ = self
                            .rest
                            .create_followup(app, &token, &sorry.to_followup())
                            .await;
                        false
                    }
                }
            }
        };
        if delivered && let Some(event) = event {
            self.delivered(&event).await;
        }
    }

    /// First part as the answer (type 4), the rest as follow-ups.
    async fn answer_with(
        &self,
        responder: Responder,
        parts: Vec<Part>,
        app: ApplicationId,
        token: &str,
    ) -> bool {
        let mut rest = parts.iter();
        let first = match rest.next() {
            Some(p) => CreateInteractionResponse::Message(p.to_response()),
            None => CreateInteractionResponse::Acknowledge,
        };
        let ok = responder
            .send(self, first)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "could not answer an interaction"))
            .is_ok();
        ok && self.followups(app, token, rest).await
    }

    async fn followups<'a>(
        &self,
        app: ApplicationId,
        token: &str,
        parts: impl Iterator<Item = &'a Part>,
    ) -> bool {
        for part in parts {
            if let Err(e) = self
                .rest
                .create_followup(app, token, &part.to_followup())
                .await
            {
                tracing::warn!(error = %e, "could not send a follow-up message");
                return false;
            }
        }
        true
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
