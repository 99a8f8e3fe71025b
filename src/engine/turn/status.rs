//! The turn's status rules: the status actions answered from the board, a
//! step's `status` branch, the incident line that opens the login-help
//! topics, and the "tell me when it's fixed" button wherever it is shown.

use super::Turn;
use crate::engine::messages::{OutButton, Outbound};
use crate::engine::ports::{Subscription, SubscriptionChange};
use crate::engine::state::Conversation;
use crate::engine::status::IncidentNow;
use crate::flow::Target;
use crate::flow::catalog::{ActionName, UPSTREAM_UNAVAILABLE};
use crate::flow::model::Step;

/// A subscribe button's payload prefix; the incident id follows.
const SUBSCRIBE_PREFIX: &str = "rbsub:";
/// The label of every subscribe button.
pub const SUBSCRIBE_LABEL: &str = "🔔 Tell me when it's fixed";
const SUBSCRIBED: &str =
    "Done: I'll message you here as soon as it's fixed. (Send /stop if you change your mind.)";
const NOTHING_TO_WAIT_FOR: &str = "Good news: that incident is already over, so there's nothing to wait for. Try logging in again.";

impl Turn<'_> {
    /// Answers the status actions from the board; `None` for the others.
    pub(super) fn status_action(
        &mut self,
        conv: &mut Conversation,
        name: ActionName,
    ) -> Option<String> {
        let status = self.env.status;
        let outcome = match name {
            ActionName::PlatformStatus => match status.get() {
                None => UPSTREAM_UNAVAILABLE.to_string(),
                Some(now) => {
                    conv.vars
                        .insert("status_description".into(), now.description.clone());
                    if let Some(i) = &now.incident {
                        conv.vars.insert("incident_name".into(), i.name.clone());
                        conv.vars
                            .insert("incident_update".into(), i.latest_update.clone());
                        conv.vars
                            .insert("affected_components".into(), i.components.join(", "));
                    }
                    now.condition().to_string()
                }
            },
            ActionName::SubscribeStatus => match status.get().and_then(|s| s.incident.clone()) {
                Some(incident) => {
                    conv.vars
                        .insert("incident_name".into(), incident.name.clone());
                    self.subscribe(&incident);
                    "ok".to_string()
                }
                None => "no_incident".to_string(),
            },
            ActionName::UnsubscribeStatus => {
                self.out
                    .subscriptions
                    .push(SubscriptionChange::UnsubscribeAll(self.env.key.chat_ref()));
                "ok".to_string()
            }
            _ => return None,
        };
        Some(outcome)
    }

    fn subscribe(&mut self, incident: &IncidentNow) {
        let now = self.env.now;
        self.out
            .subscriptions
            .push(SubscriptionChange::Subscribe(Subscription {
                chat: self.env.key.chat_ref(),
                incident: incident.id.clone(),
                created_at: now,
                expires_at: now.saturating_add(self.env.config.subscription_ms),
            }));
    }

    /// Where a step's `status` branch leads now, if anywhere.
    pub(super) fn status_branch(&self, step: &Step) -> Option<Target> {
        if step.status.is_empty() {
            return None;
        }
        step.status.get(self.env.status.condition()).cloned()
    }

    /// Entering a login-help topic during a login incident: one line about
    /// it, with the subscribe button, ahead of the topic's own message.
    pub(super) fn incident_notice(&mut self, entering: &Target, from_flow: &str) {
        let flows = self.env.flows;
        let opens_topic = from_flow != entering.flow
            && flows
                .flow(&entering.flow)
                .is_some_and(|f| f.status_notice && f.start == entering.step);
        if !opens_topic {
            return;
        }
        let Some(incident) = self.env.status.login_incident() else {
            return;
        };
        let mut text = format!("⚠️ Heads-up: {}", incident.name);
        if !incident.latest_update.is_empty() {
            text.push_str(&format!(
                " ({})",
                incident.latest_update.trim_end_matches('.')
            ));
        }
        text.push_str(". This affects logging in right now, so it's probably not your device: cache, browser and password fixes may not help until it's fixed.");
        let button = OutButton {
            label: SUBSCRIBE_LABEL.into(),
            payload: format!("{SUBSCRIBE_PREFIX}{}", incident.id),
        };
        if button.payload.len() <= 64 {
            self.out.pre.push(Outbound::message(text, vec![button]));
        } else {
            self.out.pre.push(Outbound::message(text, Vec::new()));
        }
    }

    /// A press on a subscribe button: subscribes (the conversation stays
    /// where it is). False if the payload is not one.
    pub(super) fn on_subscribe_button(&mut self, payload: &str) -> bool {
        let Some(id) = payload.strip_prefix(SUBSCRIBE_PREFIX) else {
            return false;
        };
        if let Some(id) = self.env.message_id {
            self.out.pre.push(Outbound::ClearButtons {
                message_id: id.clone(),
            });
        }
        self.out.transcript_in = Some(format!("[pressed] {SUBSCRIBE_LABEL}"));
        let current = self
            .env
            .status
            .get()
            .and_then(|s| s.incident.clone())
            .filter(|i| i.id == id);
        match current {
            Some(incident) => {
                self.subscribe(&incident);
                self.out.notice = Some("Subscribed".into());
                self.out.texts.push(SUBSCRIBED.into());
            }
            None => self.out.texts.push(NOTHING_TO_WAIT_FOR.into()),
        }
        true
    }
}
