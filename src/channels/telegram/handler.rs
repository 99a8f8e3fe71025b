//! One update, start to finish: the engine turn (which stores the
//! `update_id` with the turn, in one transaction), the reply sent, the
//! reply marked delivered. Shared by polling and the webhook.
//!
//! An update is *done* when [`Handler::process`] returns `Ok`; only then may
//! the polling offset pass it or the webhook answer 200. `Err(Retry)` means
//! "deliver this update again later": the engine answers a redelivered
//! update with its stored reply if that reply was never confirmed sent, or
//! with nothing, so a retry never repeats a side effect.

use super::api::{Api, CallError};
use super::commands;
use super::group;
use super::render::{BUTTONS_ONLY_TEXT, MAX_MESSAGE_LEN, escape_html, keyboard, split_text};
use crate::domain::{ChannelKind, ConversationKey, EventId};
use crate::engine::redact::redact;
use crate::engine::{Engine, Inbound, Input, Outbound, Reply};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardMarkup, Message, MessageId, Update, UpdateKind, User,
    UserId,
};

/// A callback query is answered within this long, whatever the turn does.
pub const CALLBACK_ANSWER_WAIT: Duration = Duration::from_millis(250);
pub const EXPIRED: &str = "That button has expired.";
const STILL_WORKING: &str = "One moment, please: I'll answer as soon as I can.";
const TEXT_ONLY: &str = "I can only read text messages. Please describe the problem in words, and never send a screenshot of a password or a code.";

/// The update must be delivered again later; the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry(pub String);

/// One thing to do on Telegram for a reply.
#[derive(Debug, Clone)]
enum Op {
    Send {
        html: String,
        keyboard: Option<InlineKeyboardMarkup>,
    },
    ClearKeyboard(MessageId),
    Delete(MessageId),
}

pub struct Handler {
    engine: Arc<Engine>,
    pub(super) api: Api,
    bot_username: String,
    bot_id: UserId,
    /// The ops of updates whose delivery was cut short, and how many were
    /// done, so a retry in this process resumes instead of resending.
    progress: Mutex<HashMap<u32, (Vec<Op>, usize)>>,
    /// Updates answered without the engine (groups, non-text messages):
    /// the engine's dedupe does not cover them.
    answered: Mutex<RecentIds>,
    /// Callback queries answered (or being answered), with when.
    callbacks_answered: Mutex<HashMap<String, std::time::Instant>>,
    chats: ChatLocks,
}

impl Handler {
    pub fn new(engine: Arc<Engine>, api: Api, bot_username: String, bot_id: UserId) -> Self {
        Self {
            engine,
            api,
            bot_username,
            bot_id,
            progress: Mutex::default(),
            answered: Mutex::new(RecentIds::new(10_000)),
            callbacks_answered: Mutex::default(),
            chats: ChatLocks::default(),
        }
    }

    pub fn bot_username(&self) -> &str {
        &self.bot_username
    }

    /// Handles one update completely (see the module docs). Updates of one
    /// chat are handled one at a time, in the order they arrive.
    pub async fn process(&self, update: &Update) -> Result<(), Retry> {
        let id = update.id.0;
        let chat = match &update.kind {
            UpdateKind::Message(m) => Some(m.chat.id),
            UpdateKind::CallbackQuery(q) => q.message.as_ref().map(|m| m.chat().id),
            _ => None,
        };
        let lock = chat.map(|c| self.chats.get(c.0));
        let _turn = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let result = match &update.kind {
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
        };
        drop(_turn);
        if let Some(c) = chat {
            self.chats.release(c.0, lock);
        }
        result
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
            return self
                .answer_outside_engine(id, m.chat.id, false, vec![send_plain(TEXT_ONLY)])
                .await;
        };
        let input = commands::private_input(text, &self.bot_username);
        let event = EventId::new(id.to_string());
        let inbound = Inbound {
            key: Self::key(m.chat.id, from),
            event_id: Some(event.clone()),
            message_id: Some(m.id.0.to_string()),
            locale: from.language_code.clone(),
            input,
        };
        let reply = self
            .engine
            .handle(inbound)
            .await
            .map_err(|e| Retry(format!("the turn failed: {e}")))?;
        self.deliver(id, m.chat.id, &reply, false).await?;
        self.confirm(&event).await;
        Ok(())
    }

    async fn on_callback(&self, id: u32, q: &CallbackQuery) -> Result<(), Retry> {
        let target = q.message.as_ref().filter(|m| m.chat().is_private());
        let (Some(data), Some(msg)) = (q.data.as_deref(), target) else {
            // Inline-mode buttons, games, or a keyboard in a group: none of
            // them is ours to act on.
            if self.claim_answer(&q.id.0) {
                self.answer(&q.id.0, Some(EXPIRED)).await;
            }
            return Ok(());
        };
        let chat = msg.chat().id;
        let event = EventId::new(id.to_string());
        let inbound = Inbound {
            key: Self::key(chat, &q.from),
            event_id: Some(event.clone()),
            message_id: Some(msg.id().0.to_string()),
            locale: q.from.language_code.clone(),
            input: Input::Button(data.to_string()),
        };
        let result = self.engine.handle(inbound).await;
        // If the turn was quick (a stale button is), the answer carries its
        // notice; if the watchdog answered first, the notice becomes a
        // message.
        let notice = match &result {
            Ok(reply) => notice_of(reply),
            Err(_) => Some(STILL_WORKING),
        };
        let notice_shown = if self.claim_answer(&q.id.0) {
            self.answer(&q.id.0, notice).await;
            notice.is_some()
        } else {
            false
        };
        let reply = result.map_err(|e| Retry(format!("the turn failed: {e}")))?;
        self.deliver(id, chat, &reply, notice_shown).await?;
        self.confirm(&event).await;
        Ok(())
    }

    async fn on_group_message(&self, id: u32, m: &Message) -> Result<(), Retry> {
        let Some(addressed) = commands::addressed(m, &self.bot_username, self.bot_id) else {
            return Ok(()); // chatter
        };
        if self.already_answered(id) {
            return Ok(());
        }
        let text = m.text().or_else(|| m.caption()).unwrap_or_default();
        let secret = redact(text).has_secret();
        let (html, keyboard) = group::reply(&addressed, &self.bot_username, secret);
        let mut ops = Vec::new();
        if secret {
            ops.push(Op::Delete(m.id));
        }
        ops.push(Op::Send { html, keyboard });
        self.answer_outside_engine(id, m.chat.id, true, ops).await
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
        let now = std::time::Instant::now();
        let mut claimed = self
            .callbacks_answered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if claimed.len() > 1000 {
            // Telegram drops unanswered queries after about 15 s anyway.
            claimed.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        }
        claimed.insert(callback_id.to_string(), now).is_none()
    }

    fn already_answered(&self, id: u32) -> bool {
        self.answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    async fn answer_outside_engine(
        &self,
        id: u32,
        chat: ChatId,
        group: bool,
        ops: Vec<Op>,
    ) -> Result<(), Retry> {
        if self.already_answered(id) {
            return Ok(());
        }
        self.run_ops(id, chat, group, ops).await?;
        self.answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        Ok(())
    }

    async fn answer(&self, callback_id: &str, text: Option<&str>) {
        if let Err(e) = self.api.answer_callback(callback_id, text).await {
            tracing::debug!(error = %e, "could not answer a callback query");
        }
    }

    /// Tells the engine the reply went out: a redelivery then gets nothing.
    async fn confirm(&self, event: &EventId) {
        if let Err(e) = self
            .engine
            .mark_delivered(ChannelKind::Telegram, event)
            .await
        {
            // The reply is out; at worst a crash now makes it go out twice.
            tracing::warn!(error = %e, "could not record a reply as delivered");
        }
    }

    async fn deliver(
        &self,
        id: u32,
        chat: ChatId,
        reply: &Reply,
        notice_shown: bool,
    ) -> Result<(), Retry> {
        let ops = plan(&reply.actions, notice_shown);
        self.run_ops(id, chat, false, ops).await
    }

    /// Runs the ops in order, resuming after those a cut-short earlier try
    /// of this update already did.
    async fn run_ops(&self, id: u32, chat: ChatId, group: bool, ops: Vec<Op>) -> Result<(), Retry> {
        let saved = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let (ops, start) = saved.unwrap_or((ops, 0));
        for (i, op) in ops.iter().enumerate().skip(start) {
            let result = match op {
                Op::Send { html, keyboard } => self
                    .api
                    .send_message(chat, group, html, keyboard.clone())
                    .await
                    .map(|_| ()),
                Op::ClearKeyboard(mid) => self.api.clear_keyboard(chat, *mid).await,
                Op::Delete(mid) => self.api.delete_message(chat, *mid).await,
            };
            match result {
                Ok(()) | Err(CallError::Ignorable(_)) => {}
                Err(e) if e.is_transient() || e == CallError::BadToken => {
                    let reason = format!("sending the reply failed: {e}");
                    self.progress
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, (ops, i));
                    return Err(Retry(reason));
                }
                Err(e) => {
                    tracing::warn!(update_id = id, error = %e, "Telegram refused part of a reply");
                    if matches!(op, Op::Send { .. }) {
                        // The chat is unusable (bot blocked, chat gone):
                        // the rest would fail the same way.
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn notice_of(reply: &Reply) -> Option<&str> {
    reply.actions.iter().find_map(|a| match a {
        Outbound::Notice { text } => Some(text.as_str()),
        _ => None,
    })
}

fn send_plain(text: &str) -> Op {
    Op::Send {
        html: escape_html(text),
        keyboard: None,
    }
}

/// The engine's actions as Telegram calls, in order.
fn plan(actions: &[Outbound], notice_shown: bool) -> Vec<Op> {
    let mut ops = Vec::new();
    for action in actions {
        match action {
            Outbound::Message { text, buttons } => {
                let text = if text.trim().is_empty() {
                    BUTTONS_ONLY_TEXT
                } else {
                    text
                };
                let chunks = split_text(text, MAX_MESSAGE_LEN);
                let last = chunks.len().saturating_sub(1);
                for (i, chunk) in chunks.iter().enumerate() {
                    ops.push(Op::Send {
                        html: escape_html(chunk),
                        keyboard: if i == last { keyboard(buttons) } else { None },
                    });
                }
            }
            Outbound::ClearButtons { message_id } => {
                if let Ok(mid) = message_id.parse() {
                    ops.push(Op::ClearKeyboard(MessageId(mid)));
                }
            }
            Outbound::DeleteMessage { message_id } => {
                if let Ok(mid) = message_id.parse() {
                    ops.push(Op::Delete(MessageId(mid)));
                }
            }
            Outbound::Notice { text } => {
                if !notice_shown {
                    ops.push(send_plain(text));
                }
            }
        }
    }
    ops
}

/// A bounded set of recent update ids.
struct RecentIds {
    cap: usize,
    order: VecDeque<u32>,
    set: HashSet<u32>,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.set.contains(&id)
    }

    fn insert(&mut self, id: u32) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// One async mutex per chat, dropped when nobody holds it.
#[derive(Default)]
struct ChatLocks {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl ChatLocks {
    fn get(&self, chat: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(chat)
            .or_default()
            .clone()
    }

    fn release(&self, chat: i64, held: Option<Arc<tokio::sync::Mutex<()>>>) {
        drop(held);
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(&chat).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&chat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OutButton;

    #[test]
    fn a_long_reply_becomes_several_messages_with_the_keyboard_last() {
        let text = (0..200)
            .map(|i| format!("line {i} {}", "y".repeat(60)))
            .collect::<Vec<_>>()
            .join("\n");
        let ops = plan(
            &[
                Outbound::ClearButtons {
                    message_id: "7".into(),
                },
                Outbound::Message {
                    text,
                    buttons: vec![OutButton {
                        label: "OK".into(),
                        payload: "rb1:x:0".into(),
                    }],
                },
            ],
            false,
        );
        assert!(matches!(ops[0], Op::ClearKeyboard(MessageId(7))));
        let sends: Vec<_> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Send { html, keyboard } => Some((html, keyboard.is_some())),
                _ => None,
            })
            .collect();
        assert!(sends.len() >= 3);
        assert!(sends.iter().all(|(h, _)| h.encode_utf16().count() <= 4096));
        assert_eq!(
            sends.iter().map(|(_, k)| *k).collect::<Vec<_>>(),
            [vec![false; sends.len() - 1], vec![true]].concat()
        );
    }

    #[test]
    fn a_notice_already_shown_is_not_sent_again() {
        let actions = [Outbound::Notice {
            text: EXPIRED.into(),
        }];
        assert!(plan(&actions, true).is_empty());
        assert_eq!(plan(&actions, false).len(), 1);
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut r = RecentIds::new(2);
        r.insert(1);
        r.insert(2);
        r.insert(3);
        assert!(!r.contains(1));
        assert!(r.contains(2) && r.contains(3));
    }
}
