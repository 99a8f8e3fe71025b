//! End to end: the real `recoverbot serve` process (Telegram channel, long
//! polling, SQLite, the account simulator as a second process) driven by
//! simulated users through a fake Telegram Bot API that lives in this
//! process.
//!
//! `cargo bench --bench e2e -- [--users N] [--turns T] [--think-ms S]
//! [--no-think] [--api-latency-ms L] [--max-secs M] [--bin PATH]
//! [--echo-bot]`
//!
//! `cargo bench --bench e2e -- --broadcast N [--bulk-rate R]` measures the
//! "it's fixed" broadcast instead: N chats subscribed to a login incident,
//! the incident resolved through the simulator, and every notice counted
//! as the fake receives it. In this mode the fake answers 429, as Telegram
//! does, when the bot sends more than 30 messages within a second.
//!
//! Each user walks the password-reset flow ("I forgot my password", "Send me
//! a reset link", a per-user address, "Nothing yet", "Check if it was
//! delivered", "Found it", ...; it starts over with text when a walk ends)
//! for T turns, thinking about S ms (±20%) between a reply and the next
//! input. A turn's latency runs from the moment its update is available to
//! `getUpdates` to the first `sendMessage` the bot makes to that chat after
//! it: the wait a user feels.
//!
//! The fake is lean on purpose (typed bodies, pre-serialised updates, one
//! mutex, one tokio thread) so that the bot, not the harness, is measured;
//! the CPU of each process is printed so one can tell who used the cores.
//! `--echo-bot` replaces the bot by an instant stand-in on another thread,
//! to show what the harness alone can drive.
//! The spec-checked fake in `tests/it/telegram/fake_server.rs` is the
//! reference for the JSON shapes used here.

#[path = "e2e/broadcast.rs"]
mod broadcast;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

const TOKEN: &str = "7000001:AAFakeBenchTokenOnly_xxxxxxxxxxxxxxxx";
const BOT_ID: i64 = 7_000_001;
const DATE: i64 = 1_760_000_000;
const SIM_TOKEN: &str = "bench-sim-token";
/// Users' chat ids start here (private chat id = user id).
const FIRST_USER: i64 = 100_000_000;
/// Buttons a user presses, most wanted first; anything else starts over.
const PREFERRED: &[&str] = &[
    "Send me a reset link",
    "Nothing yet",
    "Check if it was delivered",
    "Found it",
    "It worked, choosing a password",
    "Done, new password set",
    "I'm in",
    "Yes, I'm in",
    "Done, thanks",
    "Send another link",
    "Send a new link",
    "Try again",
    "I found it, try again",
];
const START_TEXT: &str = "I forgot my password";

// ---- options ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    users: usize,
    turns: usize,
    think: Duration,
    api_latency: Duration,
    max_secs: u64,
    bin: PathBuf,
    echo_bot: bool,
    /// Subscribers for the broadcast mode.
    broadcast: Option<usize>,
    /// `telegram.bulk_messages_per_second` for the broadcast mode.
    bulk_rate: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench e2e -- [--users N (5000)] [--turns T (6)] [--think-ms S (1000)] \
         [--no-think] [--api-latency-ms L (0)] [--max-secs M (300)] [--bin PATH] [--echo-bot] \
         | --broadcast N [--bulk-rate R (the bot's default)]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        users: 5000,
        turns: 6,
        think: Duration::from_millis(1000),
        api_latency: Duration::ZERO,
        max_secs: 300,
        echo_bot: false,
        broadcast: None,
        bulk_rate: None,
        bin: std::env::var_os("RECOVERBOT_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_recoverbot")),
            PathBuf::from,
        ),
    };
    let mut args = std::env::args().skip(1);
    let mut no_think = false;
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            "--users" => o.users = usize::try_from(value("--users")).unwrap_or(1).max(1),
            "--turns" => o.turns = usize::try_from(value("--turns")).unwrap_or(1).max(1),
            "--think-ms" => o.think = Duration::from_millis(value("--think-ms")),
            "--no-think" => no_think = true,
            "--api-latency-ms" => o.api_latency = Duration::from_millis(value("--api-latency-ms")),
            "--max-secs" => o.max_secs = value("--max-secs").max(1),
            "--echo-bot" => o.echo_bot = true,
            "--broadcast" => {
                o.broadcast = Some(usize::try_from(value("--broadcast")).unwrap_or(1).max(1));
            }
            "--bulk-rate" => o.bulk_rate = Some(value("--bulk-rate").max(1)),
            "--bin" => o.bin = args.next().map_or_else(|| usage(), PathBuf::from),
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other}");
                usage()
            }
        }
    }
    if no_think {
        o.think = Duration::ZERO;
    }
    o
}

// ---- Bot API shapes ----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Keyboard {
    inline_keyboard: Vec<Vec<Button>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Button {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl Keyboard {
    fn is_empty(&self) -> bool {
        self.inline_keyboard.iter().all(Vec::is_empty)
    }
}

#[derive(Deserialize)]
struct GetUpdates {
    offset: Option<i64>,
    limit: Option<usize>,
    timeout: Option<u64>,
}

#[derive(Deserialize)]
struct SendMessage {
    chat_id: i64,
    text: String,
    reply_markup: Option<Keyboard>,
}

#[derive(Deserialize)]
struct EditMessage {
    chat_id: i64,
    message_id: i64,
    text: Option<String>,
    reply_markup: Option<Keyboard>,
}

#[derive(Deserialize)]
struct DeleteMessage {
    chat_id: i64,
    message_id: i64,
}

#[derive(Deserialize)]
struct AnswerCallback {
    callback_query_id: String,
    text: Option<String>,
}

#[derive(Serialize)]
struct Reply<T> {
    ok: bool,
    result: T,
}

#[derive(Serialize)]
struct UserJson {
    id: i64,
    is_bot: bool,
    first_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language_code: Option<&'static str>,
}

const BOT: UserJson = UserJson {
    id: BOT_ID,
    is_bot: true,
    first_name: "Recover Bench",
    username: Some("recover_bench_bot"),
    language_code: None,
};

fn user_json(id: i64) -> UserJson {
    UserJson {
        id,
        is_bot: false,
        first_name: "User",
        username: None,
        language_code: Some("en"),
    }
}

#[derive(Serialize)]
struct ChatJson {
    id: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    first_name: &'static str,
}

fn private_chat(id: i64) -> ChatJson {
    ChatJson {
        id,
        kind: "private",
        first_name: "User",
    }
}

#[derive(Serialize)]
struct MessageJson<'a> {
    message_id: i64,
    from: &'a UserJson,
    chat: ChatJson,
    date: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a Keyboard>,
}

#[derive(Serialize)]
struct CallbackJson<'a> {
    id: String,
    from: UserJson,
    message: MessageJson<'a>,
    chat_instance: String,
    data: &'a str,
}

#[derive(Serialize)]
struct UpdateJson<'a> {
    update_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<MessageJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_query: Option<CallbackJson<'a>>,
}

fn json_response<T: Serialize>(result: &T) -> Response {
    let body = serde_json::to_vec(&Reply { ok: true, result }).unwrap_or_default();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn error_response(status: u16, description: &str) -> Response {
    let body = serde_json::json!({"ok": false, "error_code": status, "description": description});
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// Telegram shows the text after HTML parsing; the bot only escapes.
fn unescape(html: String) -> String {
    if !html.contains('&') {
        return html;
    }
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

// ---- the fake ----------------------------------------------------------------

/// The bot's newest message in a chat, as the user sees it.
struct Shown {
    message_id: i64,
    text: String,
    keyboard: Option<Keyboard>,
}

#[derive(Default)]
struct ChatState {
    next_message_id: i64,
    /// When the user's latest update became available, and who waits for
    /// the reply.
    awaiting: Option<(Instant, oneshot::Sender<()>)>,
    last: Option<Shown>,
    callbacks: u64,
}

impl ChatState {
    fn next_id(&mut self) -> i64 {
        self.next_message_id += 1;
        self.next_message_id
    }
}

#[derive(Default)]
struct Inner {
    /// Unconfirmed updates in id order, already serialised.
    pending: VecDeque<(i64, String)>,
    next_update_id: i64,
    chats: HashMap<i64, ChatState>,
    /// Reply latencies (µs) of completed turns.
    latencies: Vec<u32>,
    /// Callback queries answered with a notice instead of a message.
    notices: u64,
    /// What users did: texts typed, e-mail addresses, presses per
    /// [`PREFERRED`] label.
    typed: u64,
    emails: u64,
    pressed: [u64; PREFERRED.len()],
    /// When each message arrived (the broadcast mode counts them).
    notice_times: Vec<Instant>,
}

#[derive(Default)]
struct Counters {
    get_updates: AtomicU64,
    updates_handed: AtomicU64,
    send_message: AtomicU64,
    edits: AtomicU64,
    deletes: AtomicU64,
    answers: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

struct Fake {
    inner: Mutex<Inner>,
    /// Telegram's flood control, on in the broadcast mode: send times of
    /// the last second, and the 429s answered.
    flood: Option<Mutex<VecDeque<Instant>>>,
    too_many: AtomicU64,
    updates: Notify,
    latency: Duration,
    polled: AtomicBool,
    calls: Counters,
    bot_path: String,
}

impl Fake {
    fn new(latency: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_update_id: 10_000,
                ..Inner::default()
            }),
            flood: None,
            too_many: AtomicU64::new(0),
            updates: Notify::new(),
            latency,
            polled: AtomicBool::new(false),
            calls: Counters::default(),
            bot_path: format!("bot{TOKEN}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's next input, chosen from what the bot showed last; the
    /// returned receiver fires at the bot's first message after it.
    fn user_acts(&self, user: i64, email: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.next_update_id += 1;
        let update_id = inner.next_update_id;
        let chat = inner.chats.entry(user).or_default();
        let press = chat.last.as_ref().and_then(|shown| {
            let kb = shown.keyboard.as_ref()?;
            PREFERRED.iter().enumerate().find_map(|(i, want)| {
                kb.inline_keyboard
                    .iter()
                    .flatten()
                    .find(|b| b.text == *want)
                    .and_then(|b| b.callback_data.as_deref())
                    .map(|data| (i, shown, data))
            })
        });
        let json = if let Some((label, shown, data)) = press {
            inner.pressed[label] += 1;
            chat.callbacks += 1;
            let update = UpdateJson {
                update_id,
                message: None,
                callback_query: Some(CallbackJson {
                    id: ((user << 20) | i64::try_from(chat.callbacks & 0xF_FFFF).unwrap_or(0))
                        .to_string(),
                    from: user_json(user),
                    message: MessageJson {
                        message_id: shown.message_id,
                        from: &BOT,
                        chat: private_chat(user),
                        date: DATE,
                        text: &shown.text,
                        reply_markup: shown.keyboard.as_ref(),
                    },
                    chat_instance: format!("-{}", 8_000_000_000i64 + user),
                    data,
                }),
            };
            serde_json::to_string(&update)
        } else {
            let asks_email = chat
                .last
                .as_ref()
                .is_some_and(|s| s.keyboard.is_none() && s.text.contains("e-mail address"));
            let text = if asks_email {
                inner.emails += 1;
                email
            } else {
                inner.typed += 1;
                START_TEXT
            };
            let message_id = chat.next_id();
            let from = user_json(user);
            let update = UpdateJson {
                update_id,
                message: Some(MessageJson {
                    message_id,
                    from: &from,
                    chat: private_chat(user),
                    date: DATE,
                    text,
                    reply_markup: None,
                }),
                callback_query: None,
            };
            serde_json::to_string(&update)
        };
        let json = json.expect("an update serialises");
        chat.awaiting = Some((Instant::now(), tx));
        inner.pending.push_back((update_id, json));
        drop(guard);
        self.updates.notify_waiters();
        rx
    }

    async fn get_updates(&self, req: GetUpdates) -> Response {
        self.calls.get_updates.fetch_add(1, Ordering::Relaxed);
        self.polled.store(true, Ordering::Relaxed);
        let limit = req.limit.unwrap_or(100).clamp(1, 100);
        let deadline = Instant::now() + Duration::from_secs(req.timeout.unwrap_or(0));
        loop {
            let notified = self.updates.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if let Some(offset) = req.offset.filter(|o| *o > 0) {
                    while inner.pending.front().is_some_and(|(id, _)| *id < offset) {
                        inner.pending.pop_front();
                    }
                }
                if !inner.pending.is_empty() || Instant::now() >= deadline {
                    let n = inner.pending.len().min(limit);
                    let mut body = String::with_capacity(32 + n * 400);
                    body.push_str(r#"{"ok":true,"result":["#);
                    for (i, (_, json)) in inner.pending.iter().take(n).enumerate() {
                        if i > 0 {
                            body.push(',');
                        }
                        body.push_str(json);
                    }
                    body.push_str("]}");
                    drop(inner);
                    self.calls
                        .updates_handed
                        .fetch_add(n as u64, Ordering::Relaxed);
                    return Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .unwrap_or_default();
                }
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn send_message(&self, req: SendMessage) -> Response {
        self.calls.send_message.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if let Some(flood) = &self.flood {
            let mut sent = flood.lock().unwrap_or_else(|p| p.into_inner());
            while sent
                .front()
                .is_some_and(|t| now - *t >= Duration::from_secs(1))
            {
                sent.pop_front();
            }
            if sent.len() >= FLOOD_PER_SECOND {
                self.too_many.fetch_add(1, Ordering::Relaxed);
                return too_many_requests();
            }
            sent.push_back(now);
        }
        let text = unescape(req.text);
        if text.trim().is_empty() {
            return error_response(400, "Bad Request: message text is empty");
        }
        let keyboard = req.reply_markup.filter(|k| !k.is_empty());
        let mut guard = self.lock();
        let inner = &mut *guard;
        if self.flood.is_some() {
            inner.notice_times.push(now);
        }
        let chat = inner.chats.entry(req.chat_id).or_default();
        let message_id = chat.next_id();
        if let Some((since, tx)) = chat.awaiting.take() {
            let micros = (now - since).as_micros();
            inner
                .latencies
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
            let _ = tx.send(());
        }
        let shown = chat.last.insert(Shown {
            message_id,
            text,
            keyboard,
        });
        json_response(&MessageJson {
            message_id,
            from: &BOT,
            chat: private_chat(req.chat_id),
            date: DATE,
            text: &shown.text,
            reply_markup: shown.keyboard.as_ref(),
        })
    }

    fn edit_message(&self, req: EditMessage) -> Response {
        self.calls.edits.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let chat = inner.chats.entry(req.chat_id).or_default();
        if req.message_id > chat.next_message_id || req.message_id <= 0 {
            return error_response(400, "Bad Request: message to edit not found");
        }
        let keyboard = req.reply_markup.filter(|k| !k.is_empty());
        match chat
            .last
            .as_mut()
            .filter(|s| s.message_id == req.message_id)
        {
            Some(shown) => {
                if let Some(text) = req.text {
                    shown.text = unescape(text);
                }
                shown.keyboard = keyboard;
                json_response(&MessageJson {
                    message_id: shown.message_id,
                    from: &BOT,
                    chat: private_chat(req.chat_id),
                    date: DATE,
                    text: &shown.text,
                    reply_markup: shown.keyboard.as_ref(),
                })
            }
            // An older message: its text is not kept (nobody looks at it).
            None => {
                let text = req
                    .text
                    .map_or_else(|| "(earlier message)".into(), unescape);
                json_response(&MessageJson {
                    message_id: req.message_id,
                    from: &BOT,
                    chat: private_chat(req.chat_id),
                    date: DATE,
                    text: &text,
                    reply_markup: keyboard.as_ref(),
                })
            }
        }
    }

    fn answer_callback(&self, req: AnswerCallback) -> Response {
        self.calls.answers.fetch_add(1, Ordering::Relaxed);
        if req.text.is_some() {
            // A notice ("That button has expired") may be all the bot
            // answers: it ends the user's turn, who then starts over.
            let user = req.callback_query_id.parse::<i64>().unwrap_or(0) >> 20;
            let mut guard = self.lock();
            let inner = &mut *guard;
            if let Some(chat) = inner.chats.get_mut(&user) {
                if let Some(shown) = chat.last.as_mut() {
                    shown.keyboard = None;
                }
                if let Some((_, tx)) = chat.awaiting.take() {
                    inner.notices += 1;
                    let _ = tx.send(());
                }
            }
        }
        json_response(&true)
    }
}

/// Telegram's flood limit for a bot's messages, in the broadcast mode.
const FLOOD_PER_SECOND: usize = 30;

fn too_many_requests() -> Response {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ))
        .expect("a response")
}

/// A request body, or Telegram's description of why it is refused.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("Bad Request: can't parse the request body: {e}"))
}

async fn api(
    State(fake): State<Arc<Fake>>,
    Path((token, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if token != fake.bot_path {
        return error_response(401, "Unauthorized");
    }
    let m = method.as_str();
    let is = |name: &str| m.eq_ignore_ascii_case(name);
    // Send and edit calls take `--api-latency-ms` to answer: the message is
    // shown when the call arrives, the bot learns so only later.
    let mut slow = false;
    let result: Result<Response, String> = if is("getUpdates") {
        match parse::<GetUpdates>(&body) {
            Ok(req) => Ok(fake.get_updates(req).await),
            Err(e) => Err(e),
        }
    } else if is("sendMessage") {
        slow = true;
        parse(&body).map(|req| fake.send_message(req))
    } else if is("editMessageReplyMarkup") || is("editMessageText") {
        slow = true;
        parse(&body).map(|req| fake.edit_message(req))
    } else if is("answerCallbackQuery") {
        parse(&body).map(|req| fake.answer_callback(req))
    } else if is("deleteMessage") {
        slow = true;
        fake.calls.deletes.fetch_add(1, Ordering::Relaxed);
        parse::<DeleteMessage>(&body).map(|req| {
            let _ = (req.chat_id, req.message_id);
            json_response(&true)
        })
    } else if is("getMe") {
        fake.calls.other.fetch_add(1, Ordering::Relaxed);
        Ok(json_response(&serde_json::json!({
            "id": BOT_ID, "is_bot": true, "first_name": BOT.first_name,
            "username": BOT.username, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })))
    } else if is("deleteWebhook") || is("setMyCommands") {
        fake.calls.other.fetch_add(1, Ordering::Relaxed);
        Ok(json_response(&true))
    } else {
        fake.calls.errors.fetch_add(1, Ordering::Relaxed);
        return error_response(404, "Not Found: method not found");
    };
    if slow && !fake.latency.is_zero() {
        tokio::time::sleep(fake.latency).await;
    }
    result.unwrap_or_else(|description| {
        fake.calls.errors.fetch_add(1, Ordering::Relaxed);
        error_response(400, &description)
    })
}

// ---- processes -------------------------------------------------------------------

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based; 12 and 13 after the ')').
    field(11) + field(12)
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// A `/proc/<pid>/status` value in kB (VmHWM, VmRSS).
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Asks a child to stop (SIGTERM), then kills it if it lingers.
fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the children however the bench ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Starts `recoverbot account-sim` on a free loopback port; returns it and
/// its URL.
fn start_simulator(bin: &std::path::Path, dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(["account-sim", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RECOVERBOT__SIMULATOR__TOKEN", SIM_TOKEN)
        .env("RECOVERBOT__SIMULATOR__ADMIN_TOKEN", "bench-admin-token")
        // Each user has its own address; no limit gets in the way.
        .env("RECOVERBOT__SIMULATOR__MAILS_PER_ADDRESS_PER_HOUR", "1000")
        .env("RECOVERBOT__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("account simulator listening on ")
                .map(|u| u.trim().to_string())
        })
        .expect("the account simulator says where it listens");
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, url)
}

fn start_bot(
    bin: &std::path::Path,
    dir: &std::path::Path,
    api_url: &str,
    sim_url: &str,
    extra: &[(&str, String)],
) -> Child {
    let flows = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flows");
    let log = std::fs::File::create(dir.join("bot.log")).expect("bot log file");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "RECOVERBOT__DATABASE__URL",
            format!("sqlite://{}/bot.db", dir.display()),
        )
        .env("RECOVERBOT__ENGINE__FLOWS_DIR", &flows)
        .env("RECOVERBOT__ACCOUNT_API__BASE_URL", sim_url)
        .env("RECOVERBOT__ACCOUNT_API__TOKEN", SIM_TOKEN)
        .env("RECOVERBOT__STATUS__URL", sim_url)
        .env("RECOVERBOT__TELEGRAM__ENABLED", "true")
        .env("RECOVERBOT__TELEGRAM__TOKEN", TOKEN)
        .env("RECOVERBOT__TELEGRAM__API_URL", api_url)
        .env("RECOVERBOT__RATE_LIMITS__RESETS_PER_USER", "1000")
        .env("RECOVERBOT__RATE_LIMITS__RESETS_PER_EMAIL", "1000");
    for (key, value) in extra {
        cmd.env(key, value);
    }
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("bot log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- users ---------------------------------------------------------------------------

/// One user: T turns, thinking between a reply and the next input.
async fn user(fake: Arc<Fake>, id: i64, opts: Arc<Options>, deadline: Instant) -> usize {
    let email = format!("bench.user{id}@example.com");
    let think = opts.think;
    let jittered = |d: Duration| {
        if d.is_zero() {
            d
        } else {
            d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
        }
    };
    // Arrivals spread over one think time, not all at the same instant.
    if !think.is_zero() {
        let start = think.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        tokio::time::sleep(start).await;
    }
    let mut done = 0;
    for turn in 0..opts.turns {
        if Instant::now() >= deadline {
            break;
        }
        let reply = fake.user_acts(id, &email);
        match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(())) => done += 1,
            _ => break,
        }
        if turn + 1 < opts.turns && !think.is_zero() {
            tokio::time::sleep(jittered(think)).await;
        }
    }
    done
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn main() {
    let opts = Arc::new(options());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match opts.broadcast {
        Some(n) => runtime.block_on(broadcast::run(opts.clone(), n)),
        None => runtime.block_on(run(opts)),
    }
}

/// A stand-in for the bot with next to no cost, for `--echo-bot`: it polls
/// and answers every update at once with one button, on its own thread, so
/// the bench thread's CPU per turn is the harness's own cost.
fn echo_bot(api_url: String) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("echo runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let base = format!("{api_url}/bot{TOKEN}");
            let keyboard = serde_json::json!({"inline_keyboard": [[
                {"text": PREFERRED[0], "callback_data": "echo"}
            ]]});
            let mut offset = 0i64;
            loop {
                let Ok(r) = client
                    .post(format!("{base}/getUpdates"))
                    .json(&serde_json::json!({"offset": offset, "timeout": 5, "limit": 100}))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(body) = r.json::<serde_json::Value>().await else {
                    return;
                };
                let updates = body["result"].as_array().cloned().unwrap_or_default();
                let sends = updates.iter().map(|u| {
                    offset = offset.max(u["update_id"].as_i64().unwrap_or(0) + 1);
                    let chat = u["message"]["chat"]["id"]
                        .as_i64()
                        .or_else(|| u["callback_query"]["message"]["chat"]["id"].as_i64())
                        .unwrap_or(0);
                    client
                        .post(format!("{base}/sendMessage"))
                        .json(&serde_json::json!({
                            "chat_id": chat, "text": "Echo", "reply_markup": keyboard,
                        }))
                        .send()
                });
                futures::future::join_all(sends).await;
            }
        });
    });
}

/// The processes under test.
struct Target {
    children: Children,
    bot_pid: Option<u32>,
    sim_pid: Option<u32>,
    log: PathBuf,
}

impl Target {
    fn ticks(pid: Option<u32>) -> u64 {
        pid.map_or(0, |p| cpu_ticks(&p.to_string()))
    }

    fn bot_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.children.0.get_mut(1)?.try_wait().ok().flatten()
    }
}

/// Serves the fake Bot API on a loopback port, on this thread; returns its
/// URL.
async fn serve_fake(fake: Arc<Fake>) -> String {
    let app = Router::new()
        .route("/{token}/{method}", axum::routing::post(api))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Bot API");
    let api_url = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    api_url
}

async fn run(opts: Arc<Options>) {
    let tck = clock_ticks_per_sec() as f64;
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::new(opts.api_latency));
    let api_url = serve_fake(fake.clone()).await;

    let mut target = Target {
        children: Children(Vec::new()),
        bot_pid: None,
        sim_pid: None,
        log: dir.path().join("bot.log"),
    };
    if opts.echo_bot {
        echo_bot(api_url.clone());
    } else {
        let (sim, sim_url) = start_simulator(&opts.bin, dir.path());
        target.sim_pid = Some(sim.id());
        target.children.0.push(sim);
        let bot = start_bot(&opts.bin, dir.path(), &api_url, &sim_url, &[]);
        target.bot_pid = Some(bot.id());
        target.children.0.push(bot);
    }

    // Ready once it polls.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !fake.polled.load(Ordering::Relaxed) {
        if let Some(status) = target.bot_exited() {
            panic!(
                "recoverbot serve exited ({status}):\n{}",
                tail(&target.log, 30)
            );
        }
        assert!(
            Instant::now() < ready_by,
            "recoverbot serve did not poll within 60 s:\n{}",
            tail(&target.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let think_ms = opts.think.as_secs_f64() * 1000.0;
    if opts.echo_bot {
        println!(
            "e2e bench, harness calibration: an instant echo bot (own thread) instead of recoverbot"
        );
    } else {
        println!(
            "e2e bench: recoverbot serve (Telegram long polling, SQLite, account-sim process) via a fake Bot API"
        );
    }
    println!(
        "users: {}, turns per user: {}, think: {}, API latency (send/edit): {} ms, max: {} s",
        opts.users,
        opts.turns,
        if opts.think.is_zero() {
            "none (saturation)".to_string()
        } else {
            format!("{think_ms:.0} ms ±20%")
        },
        opts.api_latency.as_millis(),
        opts.max_secs,
    );
    if opts.think.is_zero() {
        println!(
            "offered load: closed loop, {} users each sending the next input as soon as the reply arrives",
            opts.users
        );
    } else {
        println!(
            "offered load: {:.0} turns/s ({} users / {think_ms:.0} ms think time, at zero reply latency)",
            opts.users as f64 / opts.think.as_secs_f64(),
            opts.users
        );
    }

    // The fake and the users run on this thread alone (the main thread,
    // whose task id is the process id).
    let own = format!("{}/task/{}", std::process::id(), std::process::id());
    let bot_cpu0 = Target::ticks(target.bot_pid);
    let sim_cpu0 = Target::ticks(target.sim_pid);
    let own_cpu0 = cpu_ticks(&own);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(opts.max_secs);
    let tasks: Vec<_> = (0..opts.users)
        .map(|i| {
            let id = FIRST_USER + i64::try_from(i).unwrap_or(0);
            tokio::spawn(user(fake.clone(), id, opts.clone(), deadline))
        })
        .collect();
    let mut turns = 0usize;
    let mut users_done = 0usize;
    for t in tasks {
        let n = t.await.expect("user task");
        turns += n;
        users_done += usize::from(n == opts.turns);
    }
    let wall = t0.elapsed();
    let bot_cpu = Target::ticks(target.bot_pid).saturating_sub(bot_cpu0) as f64 / tck;
    let sim_cpu = Target::ticks(target.sim_pid).saturating_sub(sim_cpu0) as f64 / tck;
    let own_cpu = cpu_ticks(&own).saturating_sub(own_cpu0) as f64 / tck;
    let hwm = target
        .bot_pid
        .and_then(|p| status_kb(p, "VmHWM"))
        .unwrap_or(0);
    let bot_died = target.bot_exited().is_some();

    let (mut lat, notices, inputs) = {
        let mut inner = fake.lock();
        let mut inputs = format!(
            "user inputs: {} \"{START_TEXT}\", {} e-mail addresses",
            inner.typed, inner.emails
        );
        for (label, n) in PREFERRED.iter().zip(inner.pressed) {
            if n > 0 {
                inputs.push_str(&format!(", {n} \"{label}\""));
            }
        }
        (std::mem::take(&mut inner.latencies), inner.notices, inputs)
    };
    lat.sort_unstable();
    let secs = wall.as_secs_f64();
    let per_turn = |cpu: f64| {
        if turns == 0 {
            f64::NAN
        } else {
            cpu * 1e6 / turns as f64
        }
    };
    let planned = opts.users * opts.turns;
    println!(
        "window: {secs:.2} s ({})",
        if turns == planned {
            "every user done"
        } else {
            "stopped at --max-secs"
        }
    );
    println!(
        "turns: {turns} of {planned} ({users_done} of {} users finished; {notices} answered by a notice only)",
        opts.users
    );
    println!("throughput: {:.1} turns/s", turns as f64 / secs);
    println!(
        "reply latency: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
        percentile(&lat, 100.0),
        lat.len()
    );
    if target.bot_pid.is_some() {
        println!(
            "bot CPU: {:.1} µs per turn ({bot_cpu:.2} s over the window, {:.0}% of one core)",
            per_turn(bot_cpu),
            bot_cpu / secs * 100.0
        );
        println!("bot peak RSS (VmHWM): {:.1} MiB", hwm as f64 / 1024.0);
        println!(
            "account-sim CPU: {:.1} µs per turn ({sim_cpu:.2} s, {:.0}% of one core)",
            per_turn(sim_cpu),
            sim_cpu / secs * 100.0
        );
    }
    println!(
        "bench CPU (fake Bot API + users, one thread): {:.1} µs per turn ({own_cpu:.2} s, {:.0}% of one core)",
        per_turn(own_cpu),
        own_cpu / secs * 100.0
    );
    let c = &fake.calls;
    println!(
        "Bot API calls: getUpdates {} ({} updates handed out), sendMessage {}, edits {}, answerCallbackQuery {}, deleteMessage {}, other {}, errors {}",
        c.get_updates.load(Ordering::Relaxed),
        c.updates_handed.load(Ordering::Relaxed),
        c.send_message.load(Ordering::Relaxed),
        c.edits.load(Ordering::Relaxed),
        c.answers.load(Ordering::Relaxed),
        c.deletes.load(Ordering::Relaxed),
        c.other.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
    );
    println!("{inputs}");
    if bot_died {
        println!(
            "recoverbot serve died during the run:\n{}",
            tail(&target.log, 30)
        );
    }

    // The bot may still hold a backlog: SIGTERM, then SIGKILL after 10 s.
    let mut children = std::mem::take(&mut target.children.0);
    tokio::task::spawn_blocking(move || {
        for child in children.iter_mut().rev() {
            stop(child, Duration::from_secs(10));
        }
    })
    .await
    .ok();
}
