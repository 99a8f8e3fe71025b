//! One turn: the conversation's state plus one input gives the new state
//! and what to say. Actions are the only I/O, through the ports in
//! [`TurnEnv`]; everything else here is plain computation, so a turn can be
//! repeated (after a write conflict) with the same result.

use super::EngineConfig;
use super::actions::{AccountActions, ActionRequest};
use super::messages::{Input, OutButton, Outbound};
use super::ports::{
    AuditEntry, EscalationRecord, FeedbackRecord, RateDecision, RateHit, RateLimitStore,
    SubscriptionChange,
};
use super::redact::{SecretKind, redact};
use super::state::{Conversation, EngineState, Verified};
use super::template::render;
use super::text;
use crate::domain::{ConversationKey, Email, EventId, MessageRef, Millis, OneTimeCode};
use crate::flow::catalog::{
    ActionName, NOT_VERIFIED, RATE_LIMITED, UPSTREAM_UNAVAILABLE, Validator,
};
use crate::flow::model::{
    Action, CLARIFY_STEP, Capture, DID_YOU_MEAN_STEP, MAIN_FLOW, Step, valid_command_name,
};
use crate::flow::{FlowSet, Target, normalize};
use rand::Rng;
use rand::distributions::Alphanumeric;
use std::collections::BTreeMap;

mod status;
mod understand;

pub use status::SUBSCRIBE_LABEL;

/// Steps one turn may pass through before the engine assumes a loop.
const MAX_HOPS: usize = 40;
const PAYLOAD_PREFIX: &str = "rb1";
/// The variable holding the hashed mailbox a verification code was mailed
/// to (for the per-address limit on trying codes).
const VERIFY_MAILBOX: &str = "verification_mailbox";
/// How long a confirmed e-mail code lets the conversation ask about the account.
pub const VERIFIED_FOR_MS: Millis = 30 * 60 * 1000;

pub(super) struct TurnEnv<'a> {
    pub flows: &'a FlowSet,
    pub actions: &'a dyn AccountActions,
    pub limits: &'a dyn RateLimitStore,
    pub config: &'a EngineConfig,
    pub status: &'a crate::engine::status::StatusBoard,
    pub now: Millis,
    pub key: &'a ConversationKey,
    pub event: Option<&'a EventId>,
    pub message_id: Option<&'a MessageRef>,
}

/// What a turn produced, before it is committed and rendered.
#[derive(Default)]
pub(super) struct TurnOutput {
    pub pre: Vec<Outbound>,
    pub notice: Option<String>,
    pub texts: Vec<String>,
    pub buttons: Vec<OutButton>,
    pub transcript_in: Option<String>,
    pub audit: Vec<AuditEntry>,
    pub escalations: Vec<EscalationRecord>,
    pub feedback: Vec<FeedbackRecord>,
    /// Rate-limit hits to count in the commit.
    pub rate_hits: Vec<RateHit>,
    /// Status subscriptions made or cancelled.
    pub subscriptions: Vec<SubscriptionChange>,
    /// False when nothing may change (a stale or forged button).
    pub commit: bool,
}

pub(super) struct Turn<'a> {
    env: TurnEnv<'a>,
    out: TurnOutput,
    /// Values too sensitive to store (an e-mail address, a code): they live
    /// for this turn only.
    transient: BTreeMap<String, String>,
    hops: usize,
    actions_run: usize,
    /// An e-mail address found in routed text: it answers the routed
    /// help's address question (this turn only, never stored).
    slot_email: Option<String>,
}

/// The one answer to a press that changes nothing: stale, forged, or
/// someone else's.
pub const EXPIRED_BUTTON: &str = "That button has expired.";
const SECRET_WARNING: &str = "⚠️ Please never share your password or codes with anyone, not even with us. I've removed your message and kept no copy.";
/// The warning where the bot cannot delete the user's message (a Discord DM).
const SECRET_WARNING_KEPT: &str = "⚠️ Please never share your password or codes with anyone, not even with us. I can't delete messages here, so please delete yours now; I kept no copy.";
const SECRET_REMINDER: &str = "⚠️ That looked like a password or code again; I didn't keep it.";
const WELCOME_BACK: &str = "Welcome back! Let's start afresh.";
const FLOWS_CHANGED: &str = "Sorry: this help topic was just updated, so let's start it again.";
const LOST: &str = "Sorry, I got lost there. Let's start from the menu.";
/// The answer to a message over `engine.max_message_chars`.
pub const TOO_LONG: &str =
    "That message is too long for me; please describe the problem in a few sentences.";
const DIDNT_GET_IT: &str = "Sorry, I didn't catch that. Please pick one of the options below, or type \"menu\" or \"human\".";

impl<'a> Turn<'a> {
    pub fn new(env: TurnEnv<'a>) -> Self {
        Self {
            env,
            out: TurnOutput {
                commit: true,
                ..TurnOutput::default()
            },
            transient: BTreeMap::new(),
            hops: 0,
            actions_run: 0,
            slot_email: None,
        }
    }

    /// Runs the turn on `conv` (fresh if `is_new`).
    pub async fn run(mut self, conv: &mut Conversation, is_new: bool, input: Input) -> TurnOutput {
        conv.state.turns += 1;
        let flows = self.env.flows;

        // Too long to read: answered, cut to the cap before anything keeps
        // it, and nothing else happens.
        if let Input::Text(raw) = &input
            && let Some((cut, _)) = raw.char_indices().nth(self.env.config.max_message_chars)
        {
            self.out.transcript_in = Some(format!("{} [cut]", redact(&raw[..cut]).text));
            self.out.texts.push(TOO_LONG.into());
            if !is_new
                && let Some(step) = flows.step(&Target {
                    flow: conv.flow.clone(),
                    step: conv.step.clone(),
                })
            {
                self.show_buttons(conv, step);
            } else {
                self.run_from(conv, flows.main()).await;
            }
            return self.finish();
        }

        // "Tell me when it's fixed" works from any message, whatever the
        // conversation is doing, and leaves it where it is.
        if let Input::Button(payload) = &input
            && self.on_subscribe_button(payload)
        {
            if !is_new
                && let Some(step) = flows.step(&Target {
                    flow: conv.flow.clone(),
                    step: conv.step.clone(),
                })
                && step.waits()
            {
                self.show_buttons(conv, step);
            }
            return self.finish();
        }

        // Secrets first: whatever happens next, they are not kept.
        let mut text_input = None;
        if let Input::Text(raw) = &input {
            let current = flows.step(&Target {
                flow: conv.flow.clone(),
                step: conv.step.clone(),
            });
            let expects_code = !is_new
                && current
                    .and_then(|s| s.capture.as_ref())
                    .is_some_and(|c| c.validator == Validator::Code6);
            let redacted = redact(raw);
            let code_only = redacted.found.iter().all(|k| *k == SecretKind::OneTimeCode);
            if redacted.has_secret() && !(expects_code && code_only) {
                self.warn_about_secret(conv);
            }
            self.out.transcript_in = Some(redacted.text.clone());
            text_input = Some((raw.clone(), redacted.text));
        }

        // A command's arguments are typed text too; the transcript keeps
        // the command, redacted.
        if let Input::Command { name, args } = &input {
            let line = match args {
                Some(args) => format!("/{name} {args}"),
                None => format!("/{name}"),
            };
            let redacted = redact(&line);
            if redacted.has_secret() {
                self.warn_about_secret(conv);
            }
            self.out.transcript_in = Some(redacted.text);
        }

        // A command leads to its entry point in the `[commands]` table;
        // `Some(None)` is a command the flows do not know.
        let command = match &input {
            Input::Command { name, .. } => Some(flows.command(self.env.key.channel, name)),
            _ => None,
        };
        let landing = command.flatten().map(|c| c.goto.clone());
        let fresh_command = command.flatten().is_some_and(|c| c.fresh);
        // A deep link (`/start reset`), or the argument of a fresh command
        // (`/recover reset`), names its topic even on first contact.
        let start_topic = match &input {
            Input::Start(topic) => topic.clone(),
            Input::Command { args, .. } if fresh_command => args.clone(),
            _ => None,
        };
        let idle = !is_new && self.env.now - conv.updated_at > self.env.config.idle_timeout_ms;
        if idle {
            self.out.texts.push(WELCOME_BACK.into());
        }
        if let Some(None) = command {
            let note = self.unknown_command(&input);
            self.out.texts.push(note);
        }
        if is_new || idle {
            return self
                .start_fresh(
                    conv,
                    start_topic,
                    text_input.map(|(raw, _)| raw),
                    &input,
                    landing,
                )
                .await;
        }
        if matches!(input, Input::Start(_)) || fresh_command {
            return self
                .start_fresh(conv, start_topic, None, &input, landing)
                .await;
        }
        if conv.flow_version != flows.version {
            conv.flow_version = flows.version.clone();
            let here = Target {
                flow: conv.flow.clone(),
                step: conv.step.clone(),
            };
            // A command says where to go: no need to restart the old step.
            if flows.step(&here).is_none() && command.is_none() {
                self.out.texts.push(FLOWS_CHANGED.into());
                let restart = flows.start_of(&conv.flow).unwrap_or_else(|| flows.main());
                conv.state.nonce.clear();
                self.run_from(conv, restart).await;
                return self.finish();
            }
            // The step survived, but its buttons may have changed: a keyboard
            // from before the edit must not press whatever now sits at its
            // position. Show the step again with fresh buttons.
            if matches!(input, Input::Button(_)) {
                self.out.notice = Some(EXPIRED_BUTTON.into());
                self.out.transcript_in = Some("[pressed a button from before an update]".into());
                self.run_from(conv, here).await;
                return self.finish();
            }
        }

        match input {
            Input::Button(payload) => self.on_button(conv, &payload).await,
            Input::Text(_) => {
                let (raw, redacted) = text_input.expect("text input was read");
                self.on_text(conv, &raw, &redacted).await;
            }
            Input::Command { .. } => {
                // Unknown commands were answered above; they land on the menu.
                let target = landing.unwrap_or_else(|| flows.main());
                conv.state.misses = 0;
                self.run_from(conv, target).await;
            }
            Input::Start(_) => unreachable!("handled above"),
        }
        self.finish()
    }

    /// The answer to a command the flows do not know: what works instead
    /// (the menu follows).
    fn unknown_command(&self, input: &Input) -> String {
        let mut text = String::from("Sorry, I don't know that command");
        if let Input::Command { name, .. } = input
            && valid_command_name(name)
        {
            text.push_str(&format!(" (/{name})"));
        }
        text.push('.');
        let known: Vec<String> = self
            .env
            .flows
            .commands_on(self.env.key.channel)
            .map(|c| format!("/{}", c.name))
            .collect();
        if !known.is_empty() {
            text.push_str(&format!(" These work: {}.", known.join(", ")));
        }
        text
    }

    fn finish(self) -> TurnOutput {
        self.out
    }

    /// Warns about a secret and deletes the message where the bot can; it
    /// only says "removed" when it removes. (What is stored is already the
    /// redacted copy.)
    fn warn_about_secret(&mut self, conv: &mut Conversation) {
        let removable =
            self.env.message_id.is_some() && self.env.key.chat_ref().bot_can_delete_user_messages();
        if removable && let Some(id) = self.env.message_id {
            self.out.pre.push(Outbound::DeleteMessage {
                message_id: id.clone(),
            });
        }
        if conv.state.warned_secret {
            self.out.texts.push(SECRET_REMINDER.into());
        } else {
            conv.state.warned_secret = true;
            let warning = if removable {
                SECRET_WARNING
            } else {
                SECRET_WARNING_KEPT
            };
            self.out.texts.push(warning.into());
        }
    }

    /// A new conversation (or one that idled out, `/start` or a fresh
    /// command): clears the state, then routes the topic or the first text
    /// by intents and triggers; else goes to `landing` (a command's entry
    /// point), else to the menu.
    async fn start_fresh(
        mut self,
        conv: &mut Conversation,
        topic: Option<String>,
        text: Option<String>,
        input: &Input,
        landing: Option<Target>,
    ) -> TurnOutput {
        let flows = self.env.flows;
        let keep = (
            conv.state.warned_secret,
            conv.state.turns,
            conv.state.locale.clone(),
        );
        conv.vars.clear();
        conv.state = EngineState {
            warned_secret: keep.0,
            turns: keep.1,
            locale: keep.2,
            ..EngineState::default()
        };
        conv.flow_version = flows.version.clone();
        if matches!(input, Input::Button(_)) {
            self.out.notice = Some(EXPIRED_BUTTON.into());
            self.out.transcript_in = Some("[pressed an expired button]".into());
        }
        let topic = topic.as_deref().and_then(|t| {
            flows.start_of(t).or_else(|| {
                flows
                    .match_trigger(&normalize(t))
                    .and_then(|f| flows.start_of(&f.id))
            })
        });
        if let Some(target) = topic {
            self.run_from(conv, target).await;
        } else if let Some(text) = text.as_deref()
            && self.route_text(conv, text, false).await
        {
        } else {
            self.run_from(conv, landing.unwrap_or_else(|| flows.main()))
                .await;
        }
        self.finish()
    }

    async fn on_button(&mut self, conv: &mut Conversation, payload: &str) {
        let flows = self.env.flows;
        let here = Target {
            flow: conv.flow.clone(),
            step: conv.step.clone(),
        };
        let buttons = flows.step(&here).map(|s| self.buttons_of(conv, s));
        let chosen = parse_payload(payload)
            .filter(|(nonce, _)| !conv.state.nonce.is_empty() && *nonce == conv.state.nonce)
            .and_then(|(_, idx)| buttons.as_deref().and_then(|b| b.get(idx)).cloned());
        let Some(button) = chosen else {
            // Forged, stale, or someone else's: nothing changes.
            self.out.notice = Some(EXPIRED_BUTTON.into());
            self.out.commit = false;
            return;
        };
        if let Some(id) = self.env.message_id {
            self.out.pre.push(Outbound::ClearButtons {
                message_id: id.clone(),
            });
        }
        self.out.transcript_in = Some(format!("[pressed] {}", button.label));
        self.press(conv, &button).await;
    }

    async fn press(&mut self, conv: &mut Conversation, button: &crate::flow::model::Button) {
        conv.state.misses = 0;
        for (k, v) in &button.set {
            conv.vars.insert(k.clone(), v.clone());
        }
        if let Some(answer) = &button.feedback {
            self.out.feedback.push(FeedbackRecord {
                key: self.env.key.clone(),
                topic: conv.state.topic.clone().unwrap_or_else(|| "none".into()),
                answer: answer.clone(),
                at: self.env.now,
            });
        }
        self.run_from(conv, button.goto.clone()).await;
    }

    async fn on_text(&mut self, conv: &mut Conversation, raw: &str, redacted: &str) {
        let flows = self.env.flows;
        let normalized = normalize(redacted);
        if conv.state.ended {
            conv.state.ended = false;
            if !self.route_text(conv, raw, false).await {
                self.run_from(conv, flows.main()).await;
            }
            return;
        }
        if let Some(intent) = flows.match_intent(&normalized) {
            let target = intent.goto.clone();
            self.run_from(conv, target).await;
            return;
        }
        let here = Target {
            flow: conv.flow.clone(),
            step: conv.step.clone(),
        };
        let Some(step) = flows.step(&here) else {
            self.out.texts.push(LOST.into());
            self.run_from(conv, flows.main()).await;
            return;
        };
        // A valid answer to the question wins over a button number ("000001"
        // is a code, not button 1).
        if let Some(capture) = &step.capture
            && text::validate(capture, raw, redacted).is_some()
        {
            self.on_capture(conv, step, capture, raw, redacted).await;
            return;
        }
        let typed = text::match_button(&self.buttons_of(conv, step), &normalized).cloned();
        if let Some(button) = typed {
            self.press(conv, &button).await;
            return;
        }
        if let Some(capture) = &step.capture {
            self.on_capture(conv, step, capture, raw, redacted).await;
            return;
        }
        if self.route_text(conv, raw, true).await {
            return;
        }
        self.not_understood(conv, step).await;
    }

    async fn on_capture(
        &mut self,
        conv: &mut Conversation,
        step: &Step,
        capture: &Capture,
        raw: &str,
        redacted: &str,
    ) {
        match text::validate(capture, raw, redacted) {
            Some(value) => {
                let target = self.keep_answer(conv, step, capture, value);
                self.run_from(conv, target).await;
            }
            None => {
                // Not an answer: maybe the user changed the subject.
                if let Some(target) = self.changed_subject(conv, raw) {
                    self.run_from(conv, target).await;
                    return;
                }
                conv.state.retries += 1;
                if conv.state.retries > capture.retries {
                    conv.state.retries = 0;
                    self.run_from(conv, capture.on_fail.clone()).await;
                    return;
                }
                let hint = capture
                    .invalid
                    .as_deref()
                    .map(|t| self.render(conv, t))
                    .unwrap_or_else(|| text::default_invalid(capture));
                self.out.texts.push(hint);
                self.show_buttons(conv, step);
            }
        }
    }

    /// Keeps a valid answer (an address or a code only for the turn) and
    /// says where the flow goes next.
    fn keep_answer(
        &mut self,
        conv: &mut Conversation,
        step: &Step,
        capture: &Capture,
        value: String,
    ) -> Target {
        conv.state.retries = 0;
        conv.state.misses = 0;
        match capture.validator {
            Validator::Email => {
                if let Ok(email) = Email::parse(&value) {
                    conv.vars
                        .insert(format!("{}_masked", capture.var), email.masked());
                }
                self.transient.insert(capture.var.clone(), value.clone());
            }
            Validator::Code6 => {
                self.out.transcript_in = Some("[code entered]".into());
                self.transient.insert(capture.var.clone(), value.clone());
            }
            _ => {
                conv.vars.insert(capture.var.clone(), value.clone());
            }
        }
        capture
            .branches
            .get(&value.to_lowercase())
            .or(step.next.as_ref())
            .cloned()
            .unwrap_or_else(|| self.env.flows.main())
    }

    /// An answer that came with the routed message (an address): kept as
    /// if typed at the step's question, which is then not asked.
    fn accept_capture(
        &mut self,
        conv: &mut Conversation,
        step: &Step,
        value: &str,
    ) -> Option<Target> {
        let capture = step.capture.as_ref()?;
        let value = text::validate(capture, value, value)?;
        Some(self.keep_answer(conv, step, capture, value))
    }

    async fn not_understood(&mut self, conv: &mut Conversation, step: &Step) {
        conv.state.misses += 1;
        if !step.buttons.is_empty() && conv.state.misses < 2 && !conv.state.ended {
            self.out.texts.push(DIDNT_GET_IT.into());
            self.show_buttons(conv, step);
            return;
        }
        conv.state.misses = 0;
        let clarify = Target {
            flow: MAIN_FLOW.into(),
            step: CLARIFY_STEP.into(),
        };
        self.run_from(conv, clarify).await;
    }

    /// Shows the current step's buttons again (same nonce: they stay valid).
    fn show_buttons(&mut self, conv: &Conversation, step: &Step) {
        self.out.buttons = self
            .buttons_of(conv, step)
            .iter()
            .enumerate()
            .map(|(i, b)| OutButton {
                label: b.label.clone(),
                payload: payload(&conv.state.nonce, i),
            })
            .collect();
    }

    fn render(&self, conv: &Conversation, template: &str) -> String {
        render(template, &conv.vars, &self.env.config.platform_vars)
    }

    /// Enters `target` and follows the flow until a step waits or ends.
    async fn run_from(&mut self, conv: &mut Conversation, mut target: Target) {
        let flows = self.env.flows;
        loop {
            self.hops += 1;
            if self.hops > MAX_HOPS {
                tracing::warn!(flow = %target.flow, step = %target.step, "flow loop detected; back to the menu");
                self.out.texts.push(LOST.into());
                target = flows.main();
                self.hops = 0;
                self.out.buttons.clear();
                // The menu waits for the user, so this cannot loop again.
            }
            let Some(step) = flows.step(&target) else {
                tracing::warn!(flow = %target.flow, step = %target.step, "missing step; back to the menu");
                self.out.texts.push(LOST.into());
                target = flows.main();
                continue;
            };
            if let Some(branch) = self.status_branch(step) {
                target = branch;
                continue;
            }
            self.incident_notice(&target, &conv.flow);
            conv.flow = target.flow.clone();
            conv.step = target.step.clone();
            conv.state.retries = 0;
            conv.state.ended = false;
            if target.flow != MAIN_FLOW || target.step != DID_YOU_MEAN_STEP {
                conv.state.suggestions.clear();
            }
            if let Some(flow) = flows.flow(&target.flow)
                && !flow.utility
            {
                conv.state.topic = Some(flow.id.clone());
                conv.vars.insert("topic_title".into(), flow.title.clone());
            }
            if let Some(counter) = &step.count {
                let n = conv
                    .vars
                    .get(&counter.name)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1;
                conv.vars.insert(counter.name.clone(), n.to_string());
                if n > counter.max {
                    target = counter.exceeded.clone();
                    continue;
                }
            }
            for (k, v) in &step.set {
                conv.vars.insert(k.clone(), v.clone());
            }
            if let Some(reason) = &step.escalate {
                self.escalate(conv, reason);
            }
            if let Some(next) = self.slot_target(step) {
                target = next;
                continue;
            }
            if let Some(value) = self.take_slot(step) {
                // The routed message held the address this step asks for.
                if let Some(next) = self.accept_capture(conv, step, &value) {
                    target = next;
                    continue;
                }
            }
            if let Some(say) = &step.say {
                let text = self.render(conv, say);
                self.out.texts.push(text);
            }
            if let Some(action) = &step.action {
                let outcome = self.perform(conv, action).await;
                match action.target_for(&outcome) {
                    Some(t) => target = t.clone(),
                    None => {
                        tracing::warn!(action = %action.name, %outcome, "unrouted outcome; back to the menu");
                        target = flows.main();
                    }
                }
                continue;
            }
            if step.end {
                conv.state.ended = true;
                conv.state.nonce.clear();
                self.out.buttons.clear();
                return;
            }
            if step.waits() {
                conv.state.nonce = new_nonce();
                conv.state.misses = 0;
                self.out.buttons = self
                    .buttons_of(conv, step)
                    .iter()
                    .enumerate()
                    .map(|(i, b)| OutButton {
                        label: b.label.clone(),
                        payload: payload(&conv.state.nonce, i),
                    })
                    .collect();
                return;
            }
            match &step.next {
                Some(next) => target = next.clone(),
                None => {
                    target = flows.main();
                }
            }
        }
    }

    fn escalate(&mut self, conv: &mut Conversation, reason: &str) {
        let id = format!("esc_{}", short_id(8).to_lowercase());
        conv.vars.insert("escalation_id".into(), id.clone());
        let record = EscalationRecord {
            id: id.clone(),
            key: self.env.key.clone(),
            reason: reason.to_string(),
            topic: conv.state.topic.clone(),
            created_at: self.env.now,
        };
        self.out.audit.push(AuditEntry {
            at: self.env.now,
            actor: format!("user:{}", self.env.key),
            action: "escalation_requested".into(),
            subject: self.env.key.to_string(),
            detail: serde_json::json!({ "id": id, "reason": reason, "topic": record.topic })
                .to_string(),
        });
        self.out.escalations.push(record);
    }

    /// Runs an action: verification gate, persisted rate limits, the call
    /// itself within the answer deadline. Returns the outcome.
    async fn perform(&mut self, conv: &mut Conversation, action: &Action) -> String {
        if let Some(outcome) = self.status_action(conv, action.name) {
            return outcome;
        }
        self.actions_run += 1;
        let spec = action.name.spec();
        let now = self.env.now;
        let mut account = None;
        if spec.needs_verified_account {
            match &conv.state.verified {
                Some(v) if v.until > now => account = Some(v.account.clone()),
                _ => {
                    conv.state.verified = None;
                    return NOT_VERIFIED.into();
                }
            }
        }
        if let Some(limited) = self.check_limits(conv, action.name).await {
            return limited;
        }
        let inputs: BTreeMap<String, String> = spec
            .inputs
            .iter()
            .filter_map(|name| {
                self.transient
                    .get(*name)
                    .or_else(|| conv.vars.get(*name))
                    .map(|v| (name.to_string(), v.clone()))
            })
            .collect();
        let turn_ref = match self.env.event {
            Some(e) => format!("event:{}", e.as_str()),
            None => format!("turn:{}", conv.state.turns),
        };
        let request = ActionRequest {
            action: action.name,
            inputs,
            conversation: self.env.key.clone(),
            account,
            idempotency_scope: format!(
                "{}:{}:{}:{}",
                spec.id, self.env.key, turn_ref, self.actions_run
            ),
            event: self.env.event.cloned(),
        };
        let deadline = self.env.config.answer_deadline;
        let result = match tokio::time::timeout(deadline, self.env.actions.perform(request)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(action = %spec.id, "account service too slow; answering with the fallback");
                super::actions::ActionResult::unavailable()
            }
        };
        let outcome = if spec.outcomes.contains(&result.outcome.as_str()) {
            result.outcome.clone()
        } else {
            tracing::warn!(action = %spec.id, outcome = %result.outcome, "action returned an unknown outcome");
            UPSTREAM_UNAVAILABLE.to_string()
        };
        for (k, v) in result.vars {
            if spec.outputs.contains(&k.as_str()) {
                conv.vars.insert(k, v);
            }
        }
        if let (Some(account), "ok") = (result.verified_account, outcome.as_str()) {
            conv.state.verified = Some(Verified {
                account,
                until: now + VERIFIED_FOR_MS,
            });
        }
        self.out.audit.push(AuditEntry {
            at: now,
            actor: "bot".into(),
            action: format!("action:{}", spec.id),
            subject: self.env.key.to_string(),
            detail: serde_json::json!({ "outcome": outcome }).to_string(),
        });
        outcome
    }

    /// Counts this call against its limits; `Some(rate_limited)` when over.
    async fn check_limits(
        &mut self,
        conv: &mut Conversation,
        action: ActionName,
    ) -> Option<String> {
        let limits = &self.env.config.limits;
        let user = format!("{}:{}", self.env.key.channel, self.env.key.user);
        let mut buckets: Vec<(String, u64, u32)> = Vec::new();
        match action {
            ActionName::RequestPasswordReset | ActionName::StartVerification => {
                let kind = if action == ActionName::RequestPasswordReset {
                    "reset"
                } else {
                    "verify_mail"
                };
                buckets.push((
                    format!("{kind}:user:{user}"),
                    limits.reset_window_secs,
                    limits.resets_per_user,
                ));
                if let Some(email) = self
                    .transient
                    .get("email")
                    .and_then(|e| Email::parse(e).ok())
                {
                    let mailbox = text::bucket_hash(&email.mailbox_key());
                    buckets.push((
                        format!("{kind}:email:{mailbox}"),
                        limits.reset_window_secs,
                        limits.resets_per_email,
                    ));
                    // The codes mailed now are tried against this mailbox's
                    // bucket too (a hash: the address is not kept).
                    if action == ActionName::StartVerification {
                        conv.vars.insert(VERIFY_MAILBOX.into(), mailbox);
                    }
                }
            }
            ActionName::ConfirmVerification
                if self
                    .transient
                    .get("code")
                    .and_then(|c| OneTimeCode::parse(c))
                    .is_some() =>
            {
                buckets.push((
                    format!("verify_code:conversation:{}", self.env.key),
                    limits.verification_window_secs,
                    limits.verification_attempts_per_conversation,
                ));
                if let Some(mailbox) = conv.vars.get(VERIFY_MAILBOX) {
                    buckets.push((
                        format!("verify_code:email:{mailbox}"),
                        limits.verification_window_secs,
                        limits.verification_attempts_per_account,
                    ));
                }
            }
            // Each diagnosis says yes or no about a code: without a limit it
            // would be an oracle for guessing authenticator codes.
            ActionName::DiagnoseTwoFactor => {
                buckets.push((
                    format!("diagnose:conversation:{}", self.env.key),
                    limits.verification_window_secs,
                    limits.verification_attempts_per_conversation,
                ));
                if let Some(v) = &conv.state.verified {
                    buckets.push((
                        format!("diagnose:account:{}", text::bucket_hash(v.account.as_str())),
                        limits.verification_window_secs,
                        limits.verification_attempts_per_account,
                    ));
                }
            }
            _ => {}
        }
        let mut wait_secs = 0;
        let mut hits = Vec::new();
        for (bucket, window, limit) in buckets {
            match self
                .env
                .limits
                .check(&bucket, window, limit, self.env.now)
                .await
            {
                Ok(RateDecision::Allowed { .. }) => hits.push(RateHit {
                    bucket,
                    window_secs: window,
                    limit,
                    now: self.env.now,
                }),
                Ok(RateDecision::Limited { retry_after_secs }) => {
                    wait_secs = wait_secs.max(retry_after_secs)
                }
                Err(e) => {
                    tracing::error!(error = %e, "rate limit store failed");
                    return Some(UPSTREAM_UNAVAILABLE.into());
                }
            }
        }
        if wait_secs > 0 {
            conv.vars.insert(
                "retry_after_minutes".into(),
                wait_secs.div_ceil(60).to_string(),
            );
            return Some(RATE_LIMITED.into());
        }
        self.out.rate_hits.extend(hits);
        None
    }
}

fn short_id(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn new_nonce() -> String {
    short_id(12)
}

/// `rb1:<nonce>:<index>`: opaque to users, short enough for every platform.
pub(super) fn payload(nonce: &str, idx: usize) -> String {
    let mut p = String::with_capacity(PAYLOAD_PREFIX.len() + nonce.len() + 4);
    p.push_str(PAYLOAD_PREFIX);
    p.push(':');
    p.push_str(nonce);
    p.push(':');
    p.push_str(&idx.to_string());
    p
}

fn parse_payload(payload: &str) -> Option<(&str, usize)> {
    if payload.len() > 64 {
        return None;
    }
    let mut parts = payload.split(':');
    if parts.next()? != PAYLOAD_PREFIX {
        return None;
    }
    let nonce = parts.next()?;
    let idx = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((nonce, idx))
}
