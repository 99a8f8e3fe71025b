//! One update, start to finish: decoded into an engine turn (or, for a
//! group or a non-text message, an answer queued with the update's id),
//! committed, and done. Shared by polling and the webhook.
//!
//! An update is *done* when [`Handler::process`] returns `Ok`: its turn is
//! committed, replies included (in the outbox). Only then may the polling
//! offset pass it or the webhook answer 200; sending is delivery's job and
//! is not on this path. `Err(Retry)` means "deliver this update again
//! later": the engine recognises a redelivered update and queues nothing
//! twice.
//!
//! The one platform answer given here is the callback query's, within
//! [`CALLBACK_ANSWER_WAIT`]: it clears the spinner and carries a notice
//! ("That button has expired.") when there is one.

use super::api::Api;
use super::commands;
use super::group;
use crate::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef};
use crate::engine::redact::redact;
use crate::engine::{EXPIRED_BUTTON, Engine, Envelope, Inbound, Input, Outbound};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teloxide::types::{CallbackQuery, ChatId, Message, Update, UpdateKind, User, UserId};

/// A callback query is answered within this long, whatever the turn does.
pub const CALLBACK_ANSWER_WAIT: Duration = Duration::from_millis(250);
const STILL_WORKING: &str = "One moment, please: I'll answer as soon as I can.";
const TEXT_ONLY: &str = "I can only read text messages. Please describe the problem in words, and never send a screenshot of a password or a code.";

/// The update must be delivered again later; the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry(pub String);

pub struct Handler {
    engine: Arc<Engine>,
    pub(super) api: Arc<Api>,
    bot_username: String,
    bot_id: UserId,
    /// Callback queries answered (or being answered).
    callbacks_answered: Mutex<Answered>,
}

impl Handler {
    pub fn new(engine: Arc<Engine>, api: Arc<Api>, bot_username: String, bot_id: UserId) -> Self {
        Self {
            engine,
            api,
            bot_username,
            bot_id,
            callbacks_answered: Mutex::new(Answered::new()),
        }
    }

    pub fn bot_username(&self) -> &str {
        &self.bot_username
    }

    /// Handles one update completely (see the module docs). The engine
    /// keeps one conversation's turns in order.
    pub async fn process(&self, update: &Update) -> Result<(), Retry> {
        let id = update.id.0;
        match &update.kind {
            UpdateKind::Message(m) => match &m.from {
                Some(from) if m.chat.is_private() => self.on_private_message(id, m, from).await,
                Some(_) if m.chat.is_group() || m.chat.is_supergroup() => {
                    self.on_group_message(id, m).await
                }
                _ => Ok(()),
            },
            UpdateKind::CallbackQuery(q) => self.on_callback(id, q).await,
            // Only messages and callback queries are asked for; anything
            // else (or an update teloxide cannot read) is passed over.
            _ => Ok(()),
        }
    }

    fn key(chat: ChatId, user: &User) -> ConversationKey {
        ConversationKey::new(
            ChannelKind::Telegram,
            chat.0.to_string(),
            user.id.0.to_string(),
        )
    }

    async fn on_private_message(&self, id: u32, m: &Message, from: &User) -> Result<(), Retry> {
        let Some(text) = m.text() else {
            let answer = Outbound::message(TEXT_ONLY, Vec::new());
            return self.post(id, m.chat.id, vec![answer]).await;
        };
        let inbound = Inbound {
            key: Self::key(m.chat.id, from),
            event_id: Some(EventId::new(id.to_string())),
            message_id: Some(MessageRef::new(m.id.0.to_string())),
            locale: from.language_code.clone(),
            input: commands::private_input(text, &self.bot_username),
        };
        self.engine
            .handle(inbound)
            .await
            .map(|_| ())
            .map_err(|e| Retry(format!("the turn failed: {e}")))
    }

    async fn on_callback(&self, id: u32, q: &CallbackQuery) -> Result<(), Retry> {
        let target = q.message.as_ref().filter(|m| m.chat().is_private());
        let (Some(data), Some(msg)) = (q.data.as_deref(), target) else {
            // Inline-mode buttons, games, or a keyboard in a group: none of
            // them is ours to act on.
            if self.claim_answer(&q.id.0) {
                self.answer(&q.id.0, Some(EXPIRED_BUTTON)).await;
            }
            return Ok(());
        };
        let chat = msg.chat().id;
        let inbound = Inbound {
            key: Self::key(chat, &q.from),
            event_id: Some(EventId::new(id.to_string())),
            message_id: Some(MessageRef::new(msg.id().0.to_string())),
            locale: q.from.language_code.clone(),
            input: Input::Button(data.to_string()),
        };
        let result = self.engine.handle(inbound).await;
        // If the turn was quick (a stale button is), the answer carries its
        // notice; otherwise the watchdog has cleared the spinner already.
        let notice = match &result {
            Ok(reply) => reply.notice(),
            Err(_) => Some(STILL_WORKING),
        };
        if self.claim_answer(&q.id.0) {
            self.answer(&q.id.0, notice).await;
        }
        result
            .map(|_| ())
            .map_err(|e| Retry(format!("the turn failed: {e}")))
    }

    async fn on_group_message(&self, id: u32, m: &Message) -> Result<(), Retry> {
        let Some(addressed) = commands::addressed(m, &self.bot_username, self.bot_id) else {
            return Ok(()); // chatter
        };
        let text = m.text().or_else(|| m.caption()).unwrap_or_default();
        let secret = redact(text).has_secret();
        let (answer, buttons) = group::reply(&addressed, &self.bot_username, secret);
        let mut ops = Vec::new();
        if secret {
            ops.push(Outbound::DeleteMessage {
                message_id: MessageRef::new(m.id.0.to_string()),
            });
        }
        ops.push(Outbound::message(answer, buttons));
        self.post(id, m.chat.id, ops).await
    }

    /// Queues an answer that no conversation gives, recorded with the
    /// update so a redelivery queues nothing.
    async fn post(&self, id: u32, chat: ChatId, ops: Vec<Outbound>) -> Result<(), Retry> {
        let to = ChatRef::new(ChannelKind::Telegram, chat.0.to_string());
        let envelopes = ops
            .into_iter()
            .map(|op| Envelope::reply(to.clone(), op))
            .collect();
        self.engine
            .post(
                ChannelKind::Telegram,
                Some(EventId::new(id.to_string())),
                envelopes,
            )
            .await
            .map(|_| ())
            .map_err(|e| Retry(format!("queueing the answer failed: {e}")))
    }

    /// Starts the clock on every callback query of a batch the moment it
    /// arrives: whatever is still unanswered after
    /// [`CALLBACK_ANSWER_WAIT`] (a slow turn, a queue of earlier updates of
    /// the same chat, a failure) is answered empty, so the spinner clears.
    pub fn watch_callbacks(self: &Arc<Self>, updates: &[Update]) {
        for u in updates {
            if let UpdateKind::CallbackQuery(q) = &u.kind {
                let me = self.clone();
                let id = q.id.0.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(CALLBACK_ANSWER_WAIT).await;
                    if me.claim_answer(&id) {
                        me.answer(&id, None).await;
                    }
                });
            }
        }
    }

    /// True exactly once per callback query: the caller answers it.
    fn claim_answer(&self, callback_id: &str) -> bool {
        self.callbacks_answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .claim(callback_id, std::time::Instant::now())
    }

    async fn answer(&self, callback_id: &str, text: Option<&str>) {
        if let Err(e) = self.api.answer_callback(callback_id, text).await {
            tracing::debug!(error = %e, "could not answer a callback query");
        }
    }
}

/// Callback query ids claimed in the last one to two minutes: two sets,
/// the older dropped whole every [`Answered::ROTATE`] (Telegram drops an
/// unanswered query after about 15 s), so a claim costs O(1).
struct Answered {
    current: HashSet<String>,
    previous: HashSet<String>,
    rotated: std::time::Instant,
}

impl Answered {
    const ROTATE: Duration = Duration::from_secs(60);

    fn new() -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
            rotated: std::time::Instant::now(),
        }
    }

    fn claim(&mut self, id: &str, now: std::time::Instant) -> bool {
        if now.duration_since(self.rotated) >= Self::ROTATE {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = now;
        }
        !self.previous.contains(id) && self.current.insert(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{OutButton, Reply};

    #[test]
    fn a_reply_notice_becomes_the_callback_answer() {
        let reply = Reply {
            actions: vec![
                Outbound::Notice {
                    text: EXPIRED_BUTTON.into(),
                },
                Outbound::message("x", vec![OutButton::link("a", "https://t.me/b")]),
            ],
            ..Reply::default()
        };
        assert_eq!(reply.notice(), Some(EXPIRED_BUTTON));
        assert_eq!(Reply::default().notice(), None);
    }

    #[test]
    fn a_callback_query_is_claimed_once_across_a_rotation() {
        let mut a = Answered::new();
        let t0 = std::time::Instant::now();
        assert!(a.claim("q1", t0));
        assert!(!a.claim("q1", t0));
        let later = t0 + Answered::ROTATE;
        assert!(!a.claim("q1", later), "still known after one rotation");
        assert!(a.claim("q2", later));
        assert!(
            a.claim("q1", later + Answered::ROTATE * 2),
            "forgotten at last"
        );
    }
}
