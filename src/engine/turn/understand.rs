//! Free text that the current step does not expect: the [router] decides,
//! "Did you mean …?" asks when it is not sure, and an address in the first
//! message fills the question the chosen help would ask.
//!
//! Routing reads the original text, in memory, for this turn only;
//! everything stored is the redacted copy.
//!
//! [router]: crate::flow::router

use super::Turn;
use crate::engine::state::Conversation;
use crate::engine::text;
use crate::flow::Target;
use crate::flow::catalog::Validator;
use crate::flow::model::{Button, DID_YOU_MEAN_STEP, MAIN_FLOW, Step};
use crate::flow::router::{Route, RouteBy};
use std::borrow::Cow;

impl Turn<'_> {
    /// Routes free text. `false`: the router is unsure and nothing
    /// happened (the caller shows the menu or repeats the question).
    /// `mid_flow`: the user is at a step with buttons; small talk ("ok",
    /// "thanks") is then not a reason to leave it.
    pub(super) async fn route_text(
        &mut self,
        conv: &mut Conversation,
        raw: &str,
        mid_flow: bool,
    ) -> bool {
        let flows = self.env.flows;
        match flows.route(raw, &self.env.config.understanding) {
            Route::Direct {
                target,
                how: RouteBy::Classifier,
            } if mid_flow && target.flow == MAIN_FLOW => false,
            Route::Direct { target, .. } => {
                self.slot_email = text::find_email(raw).map(|e| e.as_str().to_string());
                self.run_from(conv, target).await;
                true
            }
            Route::Ask(candidates) => {
                let host = Target {
                    flow: MAIN_FLOW.into(),
                    step: DID_YOU_MEAN_STEP.into(),
                };
                if flows.step(&host).is_none() {
                    // Flows without the question: take the best guess only
                    // if it is the only one.
                    return false;
                }
                conv.state.suggestions = candidates;
                self.run_from(conv, host).await;
                true
            }
            Route::Unsure => false,
        }
    }

    /// A confident route from text typed where an answer was expected
    /// (the user changed the subject), or `None`.
    pub(super) fn changed_subject(&self, conv: &Conversation, raw: &str) -> Option<Target> {
        match self.env.flows.route(raw, &self.env.config.understanding) {
            Route::Direct { target, .. }
                if target.flow != conv.flow && target.flow != MAIN_FLOW =>
            {
                Some(target)
            }
            _ => None,
        }
    }

    /// The buttons of `step` as the user sees them: on the "Did you mean"
    /// step, the candidates first.
    pub(super) fn buttons_of<'s>(&self, conv: &Conversation, step: &'s Step) -> Cow<'s, [Button]> {
        if conv.state.suggestions.is_empty()
            || conv.flow != MAIN_FLOW
            || conv.step != DID_YOU_MEAN_STEP
        {
            return Cow::Borrowed(&step.buttons);
        }
        let flows = self.env.flows;
        let mut all: Vec<Button> = conv
            .state
            .suggestions
            .iter()
            .filter(|t| flows.step(t).is_some())
            .map(|t| Button {
                label: flows.entry_title(t),
                goto: t.clone(),
                set: Default::default(),
                feedback: None,
            })
            .collect();
        all.extend(step.buttons.iter().cloned());
        Cow::Owned(all)
    }

    /// Where a step sends a message that came with an address (`slots`).
    pub(super) fn slot_target(&self, step: &Step) -> Option<Target> {
        self.slot_email.as_ref()?;
        step.slots.get("email").cloned()
    }

    /// Whether entering `step` with a pending address answers its question
    /// at once; then the address is the answer (as if typed at the prompt).
    pub(super) fn take_slot(&mut self, step: &Step) -> Option<String> {
        let capture = step.capture.as_ref()?;
        if capture.validator != Validator::Email || step.action.is_some() {
            return None;
        }
        self.slot_email.take()
    }
}
