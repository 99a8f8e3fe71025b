//! A fake Telegram Bot API server on a loopback port, for the real teloxide
//! client to talk to.
//!
//! It speaks the wire protocol as teloxide and Telegram do:
//! `POST /bot<token>/<Method>` (method names are case-insensitive, as on
//! Telegram), JSON bodies (multipart for `setWebhook`), answers
//! `{"ok":true,"result":..}` or `{"ok":false,"error_code":..,"description":..
//! [,"parameters":{"retry_after":N}]}` with Telegram's own error texts.
//!
//! What was checked against the official definitions (see [`super::spec`]):
//! every request's parameters (required ones present, none unknown, types
//! right) and every object it answers with (Update, Message, User, Chat,
//! MessageEntity, CallbackQuery, InlineKeyboardMarkup) carry the fields real
//! Telegram sends: `message_id`, `from`, `chat{id,type,first_name|title}`,
//! `date`, `text`, `entities` (UTF-16 offsets), `chat_instance`, ... and no
//! field the spec does not define. Deviations are recorded as violations;
//! tests assert there are none.
//!
//! Behaviour modelled on Telegram's:
//! - `getUpdates`: an update is confirmed (forgotten) once a call's offset
//!   is above its id; without an offset every unconfirmed update is handed
//!   out; long polling waits up to `timeout` for one; fails with 409 while a
//!   webhook is set.
//! - `sendMessage`: HTML is parsed (only Telegram's tags and entities; a
//!   bad one is "can't parse entities"), the text must be 1-4096 UTF-16
//!   units after parsing; inline keyboards are checked (one action per
//!   button, `callback_data` 1-64 bytes).
//! - `editMessageReplyMarkup`, `editMessageText`: only the bot's own
//!   messages ("message to edit not found" otherwise); an identical text
//!   and markup is "message is not modified".
//! - `deleteMessage`, `answerCallbackQuery` (once per query),
//!   `setMyCommands` (command syntax), `setWebhook` (HTTPS, secret syntax).
//! - Flood control (opt-in, [`FakeTelegram::set_flood_limit`]): more than
//!   N `sendMessage` calls within a second get 429 "Too Many Requests:
//!   retry after 1", as Telegram answers a bot over its limit.
//! - Injected faults: any reply (a 429 with `retry_after`, an error text)
//!   for the next N calls of a method, or a hang until released.
//!
//! Every call is recorded with its arrival time, parameters and outcome.

use super::spec;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BOT_ID: i64 = 7_000_001;
pub const BOT_USERNAME: &str = "recover_test_bot";
pub const TOKEN: &str = "7000001:AAFakeTokenForTestsOnly_xxxxxxxxxxxx";
const DATE: i64 = 1_760_000_000;

/// One API call as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// Lowercased method name.
    pub method: String,
    pub params: Value,
    /// HTTP status of the answer (0 while a hung call is held).
    pub status: u16,
    /// The error description, for failed calls.
    pub error: Option<String>,
}

/// A message the bot sent, as a user would see it.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub chat: i64,
    pub message_id: i64,
    /// The text after HTML parsing.
    pub text: String,
    /// The text as sent (HTML source).
    pub html: String,
    /// Tags found in the HTML source (the bot should send none).
    pub tags: Vec<String>,
    /// (label, callback_data, url) per button, row by row.
    pub buttons: Vec<(String, Option<String>, Option<String>)>,
    pub deleted: bool,
    pub at: Instant,
}

impl BotMessage {
    pub fn labels(&self) -> Vec<&str> {
        self.buttons.iter().map(|b| b.0.as_str()).collect()
    }
}

/// A user message the fake created (kept for deletes and redelivery).
#[derive(Debug, Clone)]
pub struct UserMessage {
    pub chat: i64,
    pub message_id: i64,
    pub deleted: bool,
}

/// What an injected fault answers.
#[derive(Debug, Clone)]
pub enum FaultReply {
    Error {
        status: u16,
        description: String,
        retry_after: Option<u64>,
    },
    /// Holds the request until [`FakeTelegram::release_hangs`], then fails
    /// it with 502 without doing anything.
    Hang,
}

impl FaultReply {
    pub fn retry_after(secs: u64) -> Self {
        Self::Error {
            status: 429,
            description: format!("Too Many Requests: retry after {secs}"),
            retry_after: Some(secs),
        }
    }

    pub fn error(status: u16, description: &str) -> Self {
        Self::Error {
            status,
            description: description.into(),
            retry_after: None,
        }
    }
}

#[derive(Debug)]
struct Fault {
    method: String,
    remaining: usize,
    reply: FaultReply,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Option<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Unconfirmed updates, by id.
    pending: BTreeMap<i64, Value>,
    /// Every update ever created, for redelivery.
    created: HashMap<i64, Value>,
    next_update_id: i64,
    /// The highest offset any getUpdates call has given.
    offset: i64,
    /// Updates handed out again regardless of the offset (redeliveries).
    forced: std::collections::BTreeSet<i64>,
    /// update id -> index of the getUpdates call that last handed it out.
    handed: HashMap<i64, usize>,
    next_message_id: HashMap<i64, i64>,
    bot_messages: Vec<BotMessage>,
    /// (chat, message_id) -> current inline keyboard JSON (Null: none).
    markups: HashMap<(i64, i64), Value>,
    user_messages: Vec<UserMessage>,
    /// callback query id -> answered text (Some(None): answered without text).
    callbacks: HashMap<String, Option<Option<String>>>,
    callback_answer_at: HashMap<String, Instant>,
    callback_created_at: HashMap<String, Instant>,
    next_callback: u64,
    faults: Vec<Fault>,
    /// Flood control, when a test turns it on: at most this many
    /// `sendMessage` calls within any second, else 429 `retry_after` 1.
    flood_limit: Option<usize>,
    recent_sends: std::collections::VecDeque<Instant>,
    webhook: Option<Webhook>,
    commands: Vec<(String, String)>,
    violations: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    updates: Notify,
    release: Notify,
    /// How long every call but getUpdates takes, as real Bot API calls do:
    /// half before Telegram acts on it, half before the answer reaches the
    /// bot (so a crash can hide a call that did happen).
    latency: Mutex<Duration>,
}

/// A simulated Telegram user.
#[derive(Debug, Clone)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

impl TgUser {
    pub fn new(id: i64, first_name: &str) -> Self {
        Self {
            id,
            first_name: first_name.into(),
            username: Some(format!("{}_{id}", first_name.to_lowercase())),
            language_code: Some("en".into()),
        }
    }

    fn json(&self) -> Value {
        let mut u = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let Some(n) = &self.username {
            u["username"] = json!(n);
        }
        if let Some(l) = &self.language_code {
            u["language_code"] = json!(l);
        }
        u
    }
}

/// Where a message is written.
#[derive(Debug, Clone)]
pub enum TgChat {
    /// The user's private chat with the bot (chat id = user id).
    Private,
    /// A basic group (`-4xxxxxxxx`) or a supergroup (`-100xxxxxxxxxx`).
    Group {
        id: i64,
        title: String,
        supergroup: bool,
    },
}

impl TgChat {
    pub fn supergroup(id: i64, title: &str) -> Self {
        Self::Group {
            id,
            title: title.into(),
            supergroup: true,
        }
    }

    pub fn id(&self, user: &TgUser) -> i64 {
        match self {
            Self::Private => user.id,
            Self::Group { id, .. } => *id,
        }
    }

    fn json(&self, user: &TgUser) -> Value {
        match self {
            Self::Private => {
                let mut c =
                    json!({"id": user.id, "type": "private", "first_name": user.first_name});
                if let Some(n) = &user.username {
                    c["username"] = json!(n);
                }
                c
            }
            Self::Group {
                id,
                title,
                supergroup,
            } => json!({
                "id": id,
                "type": if *supergroup { "supergroup" } else { "group" },
                "title": title,
            }),
        }
    }
}

pub struct FakeTelegram {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Recover Test", "username": BOT_USERNAME})
}

fn utf16_len(s: &str) -> i64 {
    i64::try_from(s.encode_utf16().count()).unwrap_or(i64::MAX)
}

/// Entities Telegram's clients attach to a typed text: a leading
/// `/command[@bot]` and `@username` mentions, with UTF-16 offsets.
pub fn entities_for(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut utf16_pos = 0i64;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (byte, c) = chars[i];
        let at_word_start = i == 0 || !chars[i - 1].1.is_alphanumeric();
        if (c == '/' && i == 0) || (c == '@' && at_word_start) {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].1.is_ascii_alphanumeric()
                    || chars[j].1 == '_'
                    || (c == '/' && chars[j].1 == '@'))
            {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |(b, _)| *b);
            let token = &text[byte..end];
            let valid = if c == '/' {
                token.len() > 1
            } else {
                token.len() >= 6 // @ + at least 5 characters
            };
            if valid {
                out.push(json!({
                    "type": if c == '/' { "bot_command" } else { "mention" },
                    "offset": utf16_pos,
                    "length": utf16_len(token),
                }));
            }
            utf16_pos += utf16_len(token);
            i = j;
            continue;
        }
        utf16_pos += i64::try_from(c.len_utf16()).unwrap_or(0);
        i += 1;
    }
    out
}

/// Parses Telegram HTML: the text it shows, the tags used, or the error
/// Telegram would give.
pub fn parse_html(html: &str) -> Result<(String, Vec<String>), String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    ];
    let mut text = String::new();
    let mut tags = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or("Bad Request: can't parse entities: unclosed start tag")?;
                let inner = &rest[1..end];
                let closing = inner.starts_with('/');
                let name = inner
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or_default()
                    .to_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!(
                        "Bad Request: can't parse entities: unsupported start tag \"{name}\""
                    ));
                }
                if closing {
                    if stack.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!(
                            "Bad Request: can't parse entities: unmatched end tag \"{name}\""
                        ));
                    }
                } else {
                    stack.push(name.clone());
                    tags.push(inner.to_string());
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').filter(|e| *e <= 10).ok_or(
                    "Bad Request: can't parse entities: character '&' is reserved and must be escaped",
                )?;
                let entity = &rest[1..end];
                let ch = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    e if e.starts_with('#') => e[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or("Bad Request: can't parse entities: bad numeric entity")?,
                    _ => {
                        return Err(format!(
                            "Bad Request: can't parse entities: unsupported entity \"&{entity};\""
                        ));
                    }
                };
                text.push(ch);
                rest = &rest[end + 1..];
            }
            _ => {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Bad Request: can't parse entities: can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok((text, tags))
}

/// Parses `multipart/form-data` (as teloxide sends `setWebhook`).
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Map<String, Value>> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let body = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut map = Map::new();
    for part in body.split(&delimiter) {
        let part = part.trim_start_matches("\r\n");
        if part.starts_with("--") || part.trim().is_empty() {
            continue;
        }
        let (head, value) = part.split_once("\r\n\r\n")?;
        let name = head.split("name=\"").nth(1)?.split('"').next()?.to_string();
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        // Form fields are text; JSON-looking ones (arrays, objects) and
        // plain scalars are read as Telegram reads them.
        let parsed = if value.starts_with('[') || value.starts_with('{') {
            serde_json::from_str(value).unwrap_or(Value::String(value.into()))
        } else if value == "true" || value == "false" {
            Value::Bool(value == "true")
        } else if let Ok(n) = value.parse::<i64>() {
            json!(n)
        } else {
            Value::String(value.into())
        };
        map.insert(name, parsed);
    }
    Some(map)
}

fn ok(result: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": true, "result": result})),
    )
        .into_response()
}

fn fail(status: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(s) = retry_after {
        body["parameters"] = json!({"retry_after": s});
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

impl Inner {
    fn next_message_id(&mut self, chat: i64) -> i64 {
        let n = self.next_message_id.entry(chat).or_insert(100);
        *n += 1;
        *n
    }

    fn check(&mut self, value: &Value, ty: &str, at: &str) {
        let problems = spec::check_value(value, ty, at);
        self.violations.extend(problems);
    }

    fn push_update(&mut self, update: Value) -> i64 {
        let id = update["update_id"].as_i64().unwrap();
        self.check(&update, "Update", "update");
        self.created.insert(id, update.clone());
        self.pending.insert(id, update);
        id
    }

    fn new_update_id(&mut self) -> i64 {
        if self.next_update_id == 0 {
            self.next_update_id = 500_000_000;
        }
        self.next_update_id += 1;
        self.next_update_id
    }

    fn message_json(&self, m: &BotMessage) -> Value {
        let chat = if m.chat > 0 {
            json!({"id": m.chat, "type": "private", "first_name": "User"})
        } else if m.chat < -1_000_000_000_000 {
            json!({"id": m.chat, "type": "supergroup", "title": "Group"})
        } else {
            json!({"id": m.chat, "type": "group", "title": "Group"})
        };
        let mut v = json!({
            "message_id": m.message_id,
            "from": bot_user(),
            "chat": chat,
            "date": DATE,
            "text": m.text,
        });
        if let Some(markup) = self.markups.get(&(m.chat, m.message_id))
            && !markup.is_null()
        {
            v["reply_markup"] = markup.clone();
        }
        v
    }
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            updates: Notify::new(),
            release: Notify::new(),
            latency: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/{token}/{method}", axum::routing::post(api).get(api))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { url, shared, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, more than `per_second` messages within a second get a
    /// 429, as Telegram's flood control answers.
    pub fn set_flood_limit(&self, per_second: usize) {
        self.inner().flood_limit = Some(per_second);
    }

    /// Every call but getUpdates takes this long from now on.
    pub fn set_latency(&self, latency: Duration) {
        *self
            .shared
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = latency;
    }

    // ---- users' side -------------------------------------------------------

    /// The user writes `text` in `chat`; returns the update id.
    pub fn user_says(&self, user: &TgUser, chat: &TgChat, text: &str) -> i64 {
        let mut inner = self.inner();
        let chat_id = chat.id(user);
        let message_id = inner.next_message_id(chat_id);
        let mut message = json!({
            "message_id": message_id,
            "from": user.json(),
            "chat": chat.json(user),
            "date": DATE,
            "text": text,
        });
        let entities = entities_for(text);
        if !entities.is_empty() {
            message["entities"] = json!(entities);
        }
        inner.user_messages.push(UserMessage {
            chat: chat_id,
            message_id,
            deleted: false,
        });
        let id = inner.new_update_id();
        let id = inner.push_update(json!({"update_id": id, "message": message}));
        drop(inner);
        self.shared.updates.notify_waiters();
        id
    }

    /// The user sends a photo (no text) in `chat`.
    pub fn user_sends_photo(&self, user: &TgUser, chat: &TgChat) -> i64 {
        let mut inner = self.inner();
        let chat_id = chat.id(user);
        let message_id = inner.next_message_id(chat_id);
        let id = inner.new_update_id();
        let update = json!({"update_id": id, "message": {
            "message_id": message_id, "from": user.json(), "chat": chat.json(user), "date": DATE,
            "photo": [{"file_id": "AgAD", "file_unique_id": "AQAD", "width": 90, "height": 90}],
        }});
        let id = inner.push_update(update);
        drop(inner);
        self.shared.updates.notify_waiters();
        id
    }

    /// The user presses the button labelled `label` on the newest bot
    /// message in their private chat that shows it; returns the update id.
    pub fn press(&self, user: &TgUser, label: &str) -> i64 {
        let (message_id, data) = {
            let inner = self.inner();
            let found = inner
                .bot_messages
                .iter()
                .rev()
                .filter(|m| m.chat == user.id && !m.deleted)
                .find_map(|m| {
                    let markup = inner.markups.get(&(m.chat, m.message_id))?;
                    markup["inline_keyboard"]
                        .as_array()?
                        .iter()
                        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                        .find(|b| b["text"] == label)
                        .and_then(|b| b["callback_data"].as_str().map(str::to_string))
                        .map(|d| (m.message_id, d))
                });
            found.unwrap_or_else(|| {
                let shown: Vec<_> = inner
                    .bot_messages
                    .iter()
                    .filter(|m| m.chat == user.id)
                    .map(|m| (m.message_id, m.labels().join("|")))
                    .collect();
                panic!(
                    "no visible button {label:?} for user {}; messages: {shown:?}",
                    user.id
                )
            })
        };
        self.callback(user, message_id, &data)
    }

    /// A callback query with any data on any bot message of the user's
    /// private chat (a client can send forged data).
    pub fn callback(&self, user: &TgUser, message_id: i64, data: &str) -> i64 {
        self.callback_as(user, user, message_id, data)
    }

    /// A callback query from `presser` on a bot message in `owner`'s
    /// private chat (forged: Telegram shows that keyboard to `owner` only).
    pub fn callback_as(
        &self,
        presser: &TgUser,
        owner: &TgUser,
        message_id: i64,
        data: &str,
    ) -> i64 {
        let user = presser;
        let mut inner = self.inner();
        let message = inner
            .bot_messages
            .iter()
            .find(|m| m.chat == owner.id && m.message_id == message_id)
            .cloned()
            .map(|m| inner.message_json(&m))
            .unwrap_or_else(|| {
                json!({"message_id": message_id, "from": bot_user(), "date": DATE,
                       "chat": TgChat::Private.json(owner), "text": "..."})
            });
        inner.next_callback += 1;
        let qid = format!("{}{:06}", user.id, inner.next_callback);
        inner.callbacks.insert(qid.clone(), None);
        inner
            .callback_created_at
            .insert(qid.clone(), Instant::now());
        let id = inner.new_update_id();
        let update = json!({"update_id": id, "callback_query": {
            "id": qid,
            "from": user.json(),
            "message": message,
            "chat_instance": format!("-{}", 8_000_000 + user.id),
            "data": data,
        }});
        let id = inner.push_update(update);
        drop(inner);
        self.shared.updates.notify_waiters();
        id
    }

    /// The JSON of an update created earlier.
    pub fn update_json(&self, id: i64) -> Value {
        self.inner()
            .created
            .get(&id)
            .cloned()
            .expect("known update")
    }

    /// Hands an update out again even though it was confirmed (as Telegram
    /// may after a lost acknowledgement).
    pub fn redeliver(&self, id: i64) {
        let mut inner = self.inner();
        let update = inner.created.get(&id).cloned().expect("known update");
        inner.forced.insert(id);
        inner.pending.insert(id, update);
        drop(inner);
        self.shared.updates.notify_waiters();
    }

    // ---- faults ------------------------------------------------------------

    /// The next `times` calls of `method` get `reply` instead.
    pub fn fail_next(&self, method: &str, times: usize, reply: FaultReply) {
        self.inner().faults.push(Fault {
            method: method.to_lowercase(),
            remaining: times,
            reply,
        });
    }

    pub fn release_hangs(&self) {
        self.shared.release.notify_waiters();
    }

    // ---- what happened -----------------------------------------------------

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        let m = method.to_lowercase();
        self.inner()
            .calls
            .iter()
            .filter(|c| c.method == m)
            .cloned()
            .collect()
    }

    /// Messages the bot sent to `chat`, oldest first.
    pub fn messages_to(&self, chat: i64) -> Vec<BotMessage> {
        self.inner()
            .bot_messages
            .iter()
            .filter(|m| m.chat == chat)
            .cloned()
            .collect()
    }

    pub fn user_message(&self, chat: i64, message_id: i64) -> Option<UserMessage> {
        self.inner()
            .user_messages
            .iter()
            .find(|m| m.chat == chat && m.message_id == message_id)
            .cloned()
    }

    /// The current keyboard of a bot message (labels), if any.
    pub fn keyboard_of(&self, chat: i64, message_id: i64) -> Vec<String> {
        self.inner()
            .markups
            .get(&(chat, message_id))
            .and_then(|m| m["inline_keyboard"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .collect()
    }

    /// How a callback query was answered: `None` not yet, `Some(text)`.
    pub fn callback_answer(&self, update_id: i64) -> Option<Option<String>> {
        let inner = self.inner();
        let qid = inner.created.get(&update_id)?["callback_query"]["id"]
            .as_str()?
            .to_string();
        inner.callbacks.get(&qid).cloned().flatten()
    }

    /// Time from a callback query's creation to its answer.
    pub fn callback_answer_delay(&self, update_id: i64) -> Option<Duration> {
        let inner = self.inner();
        let qid = inner.created.get(&update_id)?["callback_query"]["id"].as_str()?;
        Some(*inner.callback_answer_at.get(qid)? - *inner.callback_created_at.get(qid)?)
    }

    pub fn commands(&self) -> Vec<(String, String)> {
        self.inner().commands.clone()
    }

    /// Sets a webhook as if another deployment had (getUpdates then fails).
    pub fn force_webhook(&self, url: &str) {
        self.inner().webhook = Some(Webhook {
            url: url.into(),
            secret: None,
        });
    }

    pub fn webhook(&self) -> Option<Webhook> {
        self.inner().webhook.clone()
    }

    /// Whether the bot has confirmed `update_id` (called getUpdates with an
    /// offset above it).
    pub fn confirmed(&self, update_id: i64) -> bool {
        self.inner().offset > update_id
    }

    pub fn pending_ids(&self) -> Vec<i64> {
        self.inner().pending.keys().copied().collect()
    }

    /// Problems found by checking requests and answers against the spec.
    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }

    /// Polls `cond` until it holds, or panics after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() > deadline {
                let calls: Vec<_> = self
                    .calls()
                    .iter()
                    .map(|c| format!("{} {} {:?}", c.method, c.status, c.error))
                    .collect();
                panic!("timed out waiting for {what}; calls: {calls:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the bot has finished with the latest delivery of
    /// `update_id`: it was handed out, and the bot has asked for updates
    /// again since (it only asks once a batch is done).
    pub fn done(&self, update_id: i64) -> bool {
        let inner = self.inner();
        let Some(&k) = inner.handed.get(&update_id) else {
            return false;
        };
        inner.calls[k + 1..]
            .iter()
            .any(|c| c.method == "getupdates" && c.params["offset"].as_i64() > Some(update_id))
    }

    /// Waits until the bot is done with `update_id` (see [`Self::done`]).
    pub async fn wait_done(&self, update_id: i64) {
        self.wait_for(
            &format!("update {update_id} to be processed"),
            Duration::from_secs(20),
            |f| f.done(update_id) && f.confirmed(update_id),
        )
        .await;
    }
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path((token, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if token.strip_prefix("bot") != Some(TOKEN) {
        return fail(401, "Unauthorized", None);
    }
    let method_lc = method.to_lowercase();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let params: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else if content_type.starts_with("multipart/form-data") {
        match parse_multipart(&content_type, &body) {
            Some(m) => m,
            None => return fail(400, "Bad Request: can't parse multipart body", None),
        }
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => return fail(400, "Bad Request: can't parse JSON body", None),
        }
    };
    let now = Instant::now();
    let Some(def) = spec::method(&method_lc) else {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.calls.push(Call {
            at: now,
            method: method_lc.clone(),
            params: Value::Object(params.clone()),
            status: 404,
            error: Some("method not found".into()),
        });
        return fail(404, "Not Found: method not found", None);
    };
    let (index, fault) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.calls.push(Call {
            at: now,
            method: method_lc.clone(),
            params: Value::Object(params.clone()),
            status: 0,
            error: None,
        });
        let index = inner.calls.len() - 1;
        let problems = spec::check_fields(&params, def.params, def.name);
        inner.violations.extend(problems);
        let fault = inner
            .faults
            .iter_mut()
            .find(|f| f.method == method_lc && f.remaining > 0)
            .map(|f| {
                f.remaining -= 1;
                f.reply.clone()
            });
        inner.faults.retain(|f| f.remaining > 0);
        let fault = fault.or_else(|| {
            let limit = inner.flood_limit.filter(|_| method_lc == "sendmessage")?;
            while inner
                .recent_sends
                .front()
                .is_some_and(|t| now - *t >= Duration::from_secs(1))
            {
                inner.recent_sends.pop_front();
            }
            if inner.recent_sends.len() >= limit {
                return Some(FaultReply::retry_after(1));
            }
            inner.recent_sends.push_back(now);
            None
        });
        (index, fault)
    };
    let set = |status: u16, error: Option<String>| {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.calls[index].status = status;
        inner.calls[index].error = error;
    };
    match fault {
        Some(FaultReply::Hang) => {
            shared.release.notified().await;
            set(502, Some("Bad Gateway".into()));
            return fail(502, "Bad Gateway", None);
        }
        Some(FaultReply::Error {
            status,
            description,
            retry_after,
        }) => {
            set(status, Some(description.clone()));
            return fail(status, &description, retry_after);
        }
        None => {}
    }
    let latency = *shared.latency.lock().unwrap_or_else(|p| p.into_inner());
    let result = if method_lc == "getupdates" {
        get_updates(&shared, &params, index).await
    } else {
        // (No await at all without latency: a test that sees the call
        // arrive may rely on its effect being there.)
        if !latency.is_zero() {
            tokio::time::sleep(latency / 2).await;
        }
        let result = {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            handle(&mut inner, &method_lc, &params)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency / 2).await;
        }
        result
    };
    match result {
        Ok(value) => {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.check(&value, def.returns, &format!("{method} result"));
            inner.calls[index].status = 200;
            drop(inner);
            ok(value)
        }
        Err((status, description)) => {
            set(status, Some(description.clone()));
            fail(status, &description, None)
        }
    }
}

type Handled = Result<Value, (u16, String)>;

fn bad(description: &str) -> (u16, String) {
    (400, format!("Bad Request: {description}"))
}

async fn get_updates(shared: &Shared, params: &Map<String, Value>, index: usize) -> Handled {
    let offset = params.get("offset").and_then(Value::as_i64);
    let limit = params
        .get("limit")
        .and_then(Value::as_i64)
        .unwrap_or(100)
        .clamp(1, 100);
    let timeout = params.get("timeout").and_then(Value::as_i64).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
    {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.webhook.is_some() {
            return Err((
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first".into(),
            ));
        }
        if let Some(o) = offset.filter(|o| *o > 0) {
            let forced = std::mem::take(&mut inner.forced);
            inner
                .pending
                .retain(|id, _| *id >= o || forced.contains(id));
            inner.forced = forced;
            inner.offset = inner.offset.max(o);
        }
    }
    loop {
        let notified = shared.updates.notified();
        {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            let from = offset.unwrap_or(0);
            let ids: Vec<i64> = inner
                .pending
                .keys()
                .copied()
                .filter(|id| *id >= from || inner.forced.contains(id))
                .take(usize::try_from(limit).unwrap_or(100))
                .collect();
            if !ids.is_empty() || Instant::now() >= deadline {
                let mut batch = Vec::new();
                for id in ids {
                    batch.push(inner.pending[&id].clone());
                    inner.handed.insert(id, index);
                    if inner.forced.remove(&id) {
                        // A redelivery happens once.
                        inner.pending.remove(&id);
                    }
                }
                return Ok(Value::Array(batch));
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn chat_id(params: &Map<String, Value>) -> Result<i64, (u16, String)> {
    params
        .get("chat_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("chat_id is empty"))
}

fn message_id(params: &Map<String, Value>) -> Result<i64, (u16, String)> {
    params
        .get("message_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("message identifier is not specified"))
}

/// Checks an inline keyboard as Telegram does.
fn check_keyboard(markup: &Value) -> Result<(), (u16, String)> {
    let rows = markup["inline_keyboard"]
        .as_array()
        .ok_or_else(|| bad("field \"inline_keyboard\" must be of type Array"))?;
    for row in rows {
        for b in row
            .as_array()
            .ok_or_else(|| bad("field \"inline_keyboard\" must be of type Array of Array"))?
        {
            if b["text"].as_str().is_none_or(str::is_empty) {
                return Err(bad("text buttons are unallowed in the inline keyboard"));
            }
            let actions = [
                "url",
                "callback_data",
                "web_app",
                "login_url",
                "switch_inline_query",
                "switch_inline_query_current_chat",
                "callback_game",
                "pay",
            ]
            .iter()
            .filter(|k| b.get(**k).is_some())
            .count();
            if actions != 1 {
                return Err(bad(
                    "can't parse inline keyboard button: exactly one action is needed",
                ));
            }
            if let Some(d) = b.get("callback_data") {
                let len = d.as_str().map_or(0, str::len);
                if !(1..=64).contains(&len) {
                    return Err(bad("BUTTON_DATA_INVALID"));
                }
            }
            if let Some(u) = b.get("url") {
                let u = u.as_str().unwrap_or_default();
                if !(u.starts_with("https://")
                    || u.starts_with("http://")
                    || u.starts_with("tg://"))
                {
                    return Err(bad("BUTTON_URL_INVALID"));
                }
            }
        }
    }
    Ok(())
}

fn buttons_of(markup: &Value) -> Vec<(String, Option<String>, Option<String>)> {
    markup["inline_keyboard"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["text"].as_str().unwrap_or_default().to_string(),
                b["callback_data"].as_str().map(str::to_string),
                b["url"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// A message's `text` as `sendMessage` and `editMessageText` take it: the
/// source, the text after parsing, and the tags found; 1 to 4096 UTF-16
/// units after parsing.
fn message_text(
    params: &Map<String, Value>,
) -> Result<(String, String, Vec<String>), (u16, String)> {
    let html = params
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("message text is empty"))?;
    let (text, tags) = match params.get("parse_mode").and_then(Value::as_str) {
        Some("HTML") => parse_html(html).map_err(|e| (400, e))?,
        None => (html.to_string(), Vec::new()),
        Some(other) => {
            return Err(bad(&format!("unsupported parse_mode {other} in this fake")));
        }
    };
    if text.trim().is_empty() {
        return Err(bad("message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return Err(bad("message is too long"));
    }
    Ok((html.to_string(), text, tags))
}

fn handle(inner: &mut Inner, method: &str, params: &Map<String, Value>) -> Handled {
    match method {
        "getme" => {
            let mut me = bot_user();
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            Ok(me)
        }
        "setmycommands" => {
            let commands = params
                .get("commands")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("parameter \"commands\" is required"))?;
            let mut parsed = Vec::new();
            for c in commands {
                let name = c["command"].as_str().unwrap_or_default();
                let desc = c["description"].as_str().unwrap_or_default();
                let name_ok = (1..=32).contains(&name.len())
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
                if !name_ok {
                    return Err(bad("BOT_COMMAND_INVALID"));
                }
                if !(1..=256).contains(&desc.chars().count()) {
                    return Err(bad("BOT_COMMAND_DESCRIPTION_INVALID"));
                }
                parsed.push((name.to_string(), desc.to_string()));
            }
            inner.commands = parsed;
            Ok(json!(true))
        }
        "deletewebhook" => {
            inner.webhook = None;
            if params.get("drop_pending_updates") == Some(&json!(true)) {
                inner.pending.clear();
            }
            Ok(json!(true))
        }
        "setwebhook" => {
            let url = params
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if url.is_empty() {
                inner.webhook = None;
                return Ok(json!(true));
            }
            if !url.starts_with("https://") {
                return Err(bad(
                    "bad webhook: An HTTPS URL must be provided for webhook",
                ));
            }
            let secret = params
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(s) = &secret {
                let ok = (1..=256).contains(&s.len())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(bad("secret token contains unallowed characters"));
                }
            }
            inner.webhook = Some(Webhook {
                url: url.into(),
                secret,
            });
            Ok(json!(true))
        }
        "sendmessage" => {
            let chat = chat_id(params)?;
            let (html, text, tags) = message_text(params)?;
            let markup = params.get("reply_markup").cloned().unwrap_or(Value::Null);
            if !markup.is_null() {
                check_keyboard(&markup)?;
            }
            let message_id = inner.next_message_id(chat);
            let message = BotMessage {
                chat,
                message_id,
                text,
                html,
                tags,
                buttons: buttons_of(&markup),
                deleted: false,
                at: Instant::now(),
            };
            let empty_kb = markup["inline_keyboard"]
                .as_array()
                .is_some_and(Vec::is_empty);
            inner.markups.insert(
                (chat, message_id),
                if empty_kb { Value::Null } else { markup },
            );
            let v = inner.message_json(&message);
            inner.bot_messages.push(message);
            Ok(v)
        }
        "editmessagetext" => {
            let chat = chat_id(params)?;
            let mid = message_id(params)?;
            let (html, text, tags) = message_text(params)?;
            let markup = params.get("reply_markup").cloned().unwrap_or(Value::Null);
            if !markup.is_null() {
                check_keyboard(&markup)?;
            }
            let old_markup = inner
                .markups
                .get(&(chat, mid))
                .cloned()
                .unwrap_or(Value::Null);
            let Some(message) = inner
                .bot_messages
                .iter_mut()
                .find(|m| m.chat == chat && m.message_id == mid && !m.deleted)
            else {
                return Err(bad("message to edit not found"));
            };
            if message.text == text && old_markup == markup {
                return Err(bad(
                    "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                ));
            }
            message.text = text;
            message.html = html;
            message.tags = tags;
            message.buttons = buttons_of(&markup);
            let message = message.clone();
            inner.markups.insert((chat, mid), markup);
            let v = inner.message_json(&message);
            Ok(v)
        }
        "editmessagereplymarkup" => {
            let chat = chat_id(params)?;
            let mid = message_id(params)?;
            let Some(message) = inner
                .bot_messages
                .iter()
                .find(|m| m.chat == chat && m.message_id == mid && !m.deleted)
                .cloned()
            else {
                return Err(bad("message to edit not found"));
            };
            let new = params.get("reply_markup").cloned().unwrap_or(Value::Null);
            if !new.is_null() {
                check_keyboard(&new)?;
            }
            let new = if new["inline_keyboard"].as_array().is_some_and(Vec::is_empty) {
                Value::Null
            } else {
                new
            };
            let old = inner
                .markups
                .get(&(chat, mid))
                .cloned()
                .unwrap_or(Value::Null);
            if old == new {
                return Err(bad(
                    "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                ));
            }
            inner.markups.insert((chat, mid), new);
            let v = inner.message_json(&message);
            Ok(v)
        }
        "deletemessage" => {
            let chat = chat_id(params)?;
            let mid = message_id(params)?;
            if let Some(m) = inner
                .user_messages
                .iter_mut()
                .find(|m| m.chat == chat && m.message_id == mid && !m.deleted)
            {
                if chat < 0 {
                    // In groups the bot needs the admin right to delete.
                    return Err(bad("message can't be deleted"));
                }
                m.deleted = true;
                return Ok(json!(true));
            }
            if let Some(m) = inner
                .bot_messages
                .iter_mut()
                .find(|m| m.chat == chat && m.message_id == mid && !m.deleted)
            {
                m.deleted = true;
                return Ok(json!(true));
            }
            Err(bad("message to delete not found"))
        }
        "answercallbackquery" => {
            let qid = params
                .get("callback_query_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let text = params
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_string);
            if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
                return Err(bad("MESSAGE_TOO_LONG"));
            }
            match inner.callbacks.get(&qid) {
                Some(None) => {
                    inner.callbacks.insert(qid.clone(), Some(text));
                    inner.callback_answer_at.insert(qid, Instant::now());
                    Ok(json!(true))
                }
                _ => Err(bad(
                    "query is too old and response timeout expired or query id is invalid",
                )),
            }
        }
        other => Err((404, format!("Not Found: method {other} is not faked"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_use_utf16_offsets() {
        let e = entities_for("/start reset");
        assert_eq!(
            e,
            [json!({"type": "bot_command", "offset": 0, "length": 6})]
        );
        let e = entities_for("🙂 hi @recover_test_bot!");
        assert_eq!(e, [json!({"type": "mention", "offset": 6, "length": 17})]);
        assert!(entities_for("mail me at a@b.c").is_empty());
    }

    #[test]
    fn html_is_parsed_like_telegram() {
        assert_eq!(parse_html("a &lt;b&gt; &amp; c").unwrap().0, "a <b> & c");
        assert!(parse_html("<b>x</b>").unwrap().1 == ["b"]);
        assert!(parse_html("<script>").is_err());
        assert!(parse_html("<b>x").is_err());
        assert!(parse_html("a & b").is_err());
    }

    #[test]
    fn updates_built_here_match_the_spec() {
        let mut inner = Inner::default();
        let u = TgUser::new(42, "Ann");
        let m = json!({"message_id": 1, "from": u.json(), "chat": TgChat::Private.json(&u),
                       "date": DATE, "text": "/start", "entities": entities_for("/start")});
        inner.push_update(json!({"update_id": 1, "message": m}));
        let g = TgChat::supergroup(-1001234567890, "Support");
        let m = json!({"message_id": 2, "from": u.json(), "chat": g.json(&u), "date": DATE, "text": "hi"});
        inner.push_update(json!({"update_id": 2, "message": m}));
        assert!(inner.violations.is_empty(), "{:?}", inner.violations);
    }
}
