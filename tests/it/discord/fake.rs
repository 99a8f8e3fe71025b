//! A fake Discord for the real serenity client: the REST API under
//! `/api/v10` and a gateway WebSocket, on a loopback port.
//!
//! Gateway: sends Hello; answers Identify (op 2) with READY and heartbeats
//! (op 1) with ACKs (op 11); pushes dispatches the test asks for
//! (MESSAGE_CREATE, INTERACTION_CREATE, GUILD_CREATE); sends op 7 Reconnect
//! on request and answers the client's Resume (op 6) by replaying the
//! dispatches the test chose (with their original sequence numbers) and then
//! RESUMED.
//!
//! REST: records every call (time, method, path, JSON body, status) and
//! keeps a timeline of the messages the bot made, per channel, whichever
//! route made them (channel messages, interaction answers, follow-ups,
//! edits). It can answer a route with 429 (`retry_after` in the body and
//! `Retry-After` in the header, route-scoped or global), refuse deletes in a
//! channel (403, code 50013) and refuse DMs to a user (403, code 50007).
//!
//! Checked against discord/discord-api-spec (`specs/openapi.json`, v10),
//! read through the route list and model docs of a client generated from
//! it (dc-api/dc-rest-typescript-axios; the spec is too large to read
//! whole). Routes: `GET /gateway`, `PUT /applications/{application_id}/commands`
//! and `.../guilds/{guild_id}/commands`, `POST /users/@me/channels`,
//! `POST /channels/{channel_id}/messages`, `PATCH` and `DELETE
//! /channels/{channel_id}/messages/{message_id}`, `POST
//! /interactions/{interaction_id}/{interaction_token}/callback`, `POST
//! /webhooks/{application_id}/{token}`, `PATCH
//! /webhooks/{application_id}/{token}/messages/@original`. Schemas:
//! CreatePrivateChannelRequest (`recipient_id`); the callback requests
//! (Pong and DeferredUpdateMessage are `{type}` only, so the fake refuses a
//! `data` that is not a message body; UpdateMessage's `data` is the
//! IncomingWebhookUpdateForInteractionCallbackRequestPartial: `content,
//! embeds, allowed_mentions, components, attachments, flags`);
//! ButtonComponentForMessageRequest (`type, style, custom_id, label,
//! disabled`); MessageAllowedMentionsRequest (`parse, users, roles,
//! replied_user`); ApplicationCommandResponse (required `id,
//! application_id, version, type, name, description`); RatelimitedResponse
//! (`code, message, retry_after` in seconds, `global`). Form limits (2000
//! characters, 5 rows of 5 buttons, `custom_id` up to 100, label up to 80)
//! follow Discord's documentation; the fake answers 400/50035 past them.
//! The gateway payloads follow Discord's gateway documentation and what
//! serenity 0.12.5 needs to parse them (read in its source):
//! READY with `v, user, guilds, session_id, resume_gateway_url,
//! application{id,flags}`; MESSAGE_CREATE with `tts, mention_everyone,
//! mentions, mention_roles, attachments, embeds, pinned, type, timestamp`;
//! INTERACTION_CREATE with `id, application_id, type, token, version,
//! channel_id, locale, entitlements, attachment_size_limit, data` and
//! `user` or `guild_id` + `member`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub const TOKEN: &str = "test-bot-token";
pub const BOT_ID: u64 = 9001;
pub const APP_ID: u64 = 9001;
pub const SESSION_ID: &str = "fake-session-1";
/// Added to a user id to make their DM channel id.
const DM_BASE: u64 = 1_000_000;

pub fn dm_channel_of(user: u64) -> u64 {
    DM_BASE + user
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

impl Call {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// A message the bot made, as the fake sees it now.
#[derive(Debug, Clone)]
pub struct Msg {
    pub id: u64,
    pub channel: u64,
    pub content: String,
    pub components: Value,
    pub ephemeral: bool,
    pub allowed_mentions: Value,
}

impl Msg {
    pub fn labels(&self) -> Vec<String> {
        buttons(&self.components)
            .into_iter()
            .map(|(label, _)| label)
            .collect()
    }

    pub fn custom_id(&self, label: &str) -> Option<String> {
        buttons(&self.components)
            .into_iter()
            .find(|(l, _)| l == label)
            .map(|(_, id)| id)
    }
}

fn buttons(components: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in components.as_array().into_iter().flatten() {
        for b in row["components"].as_array().into_iter().flatten() {
            out.push((
                b["label"].as_str().unwrap_or_default().to_string(),
                b["custom_id"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[derive(Debug, Clone)]
struct InteractionInfo {
    channel: u64,
    /// The message a component sat on.
    message: Option<u64>,
    /// The message made by the first answer (type 4 or 5).
    original: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Injected429 {
    pub retry_after: f64,
    pub global: bool,
}

#[derive(Default)]
pub struct State_ {
    pub calls: Vec<Call>,
    pub messages: Vec<Msg>,
    pub identifies: Vec<Value>,
    pub resumes: Vec<Value>,
    pub connections: u32,
    pub heartbeats: u32,
    /// Sequence numbers and frames of the dispatches sent.
    pub dispatched: Vec<(u64, Value)>,
    next_id: u64,
    seq: u64,
    interactions: HashMap<String, InteractionInfo>,
    rate_limits: HashMap<String, VecDeque<Injected429>>,
    /// Injected server errors (status codes) per `METHOD path`.
    server_errors: HashMap<String, VecDeque<u16>>,
    forbidden_deletes: HashSet<u64>,
    closed_dms: HashSet<u64>,
    replay_on_resume: Vec<u64>,
}

impl State_ {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn messages_in(&self, channel: u64) -> Vec<&Msg> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel)
            .collect()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.calls.iter().filter(|c| c.is(method, path)).count()
    }
}

enum GatewayCmd {
    Send(Value),
    Reconnect,
}

struct Shared {
    state: Mutex<State_>,
    gateway: Mutex<Option<mpsc::UnboundedSender<GatewayCmd>>>,
    ws_url: String,
}

pub struct FakeDiscord {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State_ {
                next_id: 700_000,
                ..State_::default()
            }),
            gateway: Mutex::new(None),
            ws_url: format!("ws://{addr}/gateway-ws"),
        });
        let app = Router::new()
            .route("/gateway-ws", any(gateway))
            .fallback(rest)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            server,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        self.shared.state.lock().unwrap()
    }

    /// Polls `check` until it holds; panics with `what` after `within`.
    pub async fn wait_until(&self, what: &str, within: Duration, check: impl Fn(&State_) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if check(&self.state()) {
                return;
            }
            if Instant::now() > deadline {
                let calls: Vec<String> = self
                    .state()
                    .calls
                    .iter()
                    .map(|c| format!("{} {} -> {}", c.method, c.path, c.status))
                    .collect();
                panic!("timed out waiting for {what}; REST calls so far: {calls:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Connected, identified, and the slash commands registered.
    pub async fn wait_ready(&self) {
        self.wait_until(
            "the bot to identify and register its commands",
            Duration::from_secs(20),
            |s| {
                !s.identifies.is_empty()
                    && s.calls
                        .iter()
                        .any(|c| c.method == "PUT" && c.path.ends_with("/commands"))
            },
        )
        .await;
    }

    /// Sends a dispatch on the live gateway connection; returns its `s`.
    pub fn dispatch(&self, t: &str, d: Value) -> u64 {
        let frame = {
            let mut s = self.state();
            s.seq += 1;
            let seq = s.seq;
            let frame = json!({"op": 0, "s": seq, "t": t, "d": d});
            s.dispatched.push((seq, frame.clone()));
            frame
        };
        let seq = frame["s"].as_u64().unwrap();
        self.shared
            .gateway
            .lock()
            .unwrap()
            .as_ref()
            .expect("a gateway connection")
            .send(GatewayCmd::Send(frame))
            .expect("the gateway connection is open");
        seq
    }

    /// Sends op 7; the client resumes, and gets the dispatches `replay`
    /// (sequence numbers) again before RESUMED.
    pub fn reconnect_replaying(&self, replay: Vec<u64>) {
        self.state().replay_on_resume = replay;
        self.shared
            .gateway
            .lock()
            .unwrap()
            .as_ref()
            .expect("a gateway connection")
            .send(GatewayCmd::Reconnect)
            .expect("the gateway connection is open");
    }

    /// The next `n` answers on `METHOD /api/v10/path` get 429.
    pub fn rate_limit(&self, method: &str, path: &str, n: usize, limit: Injected429) {
        let mut s = self.state();
        let q = s.rate_limits.entry(format!("{method} {path}")).or_default();
        for _ in 0..n {
            q.push_back(limit);
        }
    }

    /// The next `n` answers on `METHOD /api/v10/path` are `status` (a 5xx:
    /// Discord having a bad moment), and nothing is done.
    pub fn server_error(&self, method: &str, path: &str, n: usize, status: u16) {
        let mut s = self.state();
        let q = s
            .server_errors
            .entry(format!("{method} {path}"))
            .or_default();
        for _ in 0..n {
            q.push_back(status);
        }
    }

    pub fn forbid_deletes_in(&self, channel: u64) {
        self.state().forbidden_deletes.insert(channel);
    }

    pub fn close_dms_of(&self, user: u64) {
        self.state().closed_dms.insert(user);
    }

    pub fn messages_in(&self, channel: u64) -> Vec<Msg> {
        self.state()
            .messages_in(channel)
            .into_iter()
            .cloned()
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The newest message in `channel` with a button labelled `label`.
    pub fn message_with_button(&self, channel: u64, label: &str) -> Msg {
        let msgs = self.messages_in(channel);
        msgs.iter()
            .rev()
            .find(|m| m.custom_id(label).is_some())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no message in {channel} has a button {label:?}; buttons: {:?}",
                    msgs.iter().map(|m| m.labels()).collect::<Vec<_>>()
                )
            })
    }

    /// A new id (for messages and interactions the test sends).
    pub fn new_id(&self) -> u64 {
        self.state().id()
    }

    fn register_interaction(&self, token: &str, channel: u64, message: Option<u64>) {
        self.state().interactions.insert(
            token.to_string(),
            InteractionInfo {
                channel,
                message,
                original: None,
            },
        );
    }
}

// ---- payloads ------------------------------------------------------------------

pub fn user(id: u64) -> Value {
    json!({"id": id.to_string(), "username": format!("user{id}"), "discriminator": "0", "global_name": null, "avatar": null})
}

pub fn bot_user() -> Value {
    json!({"id": BOT_ID.to_string(), "username": "recoverbot", "discriminator": "0", "bot": true, "avatar": null})
}

pub fn message_json(
    id: u64,
    channel: u64,
    author: Value,
    content: &str,
    components: Value,
    guild: Option<u64>,
    mentions: Vec<Value>,
) -> Value {
    let mut m = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "author": author,
        "content": content,
        "timestamp": "2025-01-01T00:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": components,
    });
    if let Some(g) = guild {
        m["guild_id"] = json!(g.to_string());
    }
    m
}

/// A user's DM to the bot.
pub fn dm_message(id: u64, user_id: u64, content: &str) -> Value {
    message_json(
        id,
        dm_channel_of(user_id),
        user(user_id),
        content,
        json!([]),
        None,
        vec![],
    )
}

/// A message in a server channel.
pub fn guild_message(
    id: u64,
    guild: u64,
    channel: u64,
    user_id: u64,
    content: &str,
    mentions_bot: bool,
) -> Value {
    let mentions = if mentions_bot {
        vec![bot_user()]
    } else {
        vec![]
    };
    message_json(
        id,
        channel,
        user(user_id),
        content,
        json!([]),
        Some(guild),
        mentions,
    )
}

fn interaction_base(
    id: u64,
    kind: u8,
    token: &str,
    channel: u64,
    user_id: u64,
    guild: Option<u64>,
) -> Value {
    let mut v = json!({
        "id": id.to_string(),
        "application_id": APP_ID.to_string(),
        "type": kind,
        "token": token,
        "version": 1,
        "channel_id": channel.to_string(),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": 26_214_400,
        "authorizing_integration_owners": {},
    });
    match guild {
        Some(g) => {
            v["guild_id"] = json!(g.to_string());
            v["guild_locale"] = json!("en-US");
            v["member"] = json!({
                "user": user(user_id), "roles": [], "deaf": false, "mute": false, "flags": 0,
                "joined_at": "2025-01-01T00:00:00.000000+00:00", "permissions": "3072"
            });
            v["app_permissions"] = json!("3072");
        }
        None => v["user"] = user(user_id),
    }
    v
}

impl FakeDiscord {
    /// INTERACTION_CREATE for a slash command; returns the interaction
    /// token. `guild`: `(guild id, channel id)`, else the user's DM.
    pub fn slash(&self, id: u64, user_id: u64, name: &str, guild: Option<(u64, u64)>) -> String {
        let (token, d) = self.command_payload(id, user_id, name, guild);
        self.dispatch("INTERACTION_CREATE", d);
        token
    }

    /// A slash command interaction (registered with the fake, not sent).
    pub fn command_payload(
        &self,
        id: u64,
        user_id: u64,
        name: &str,
        guild: Option<(u64, u64)>,
    ) -> (String, Value) {
        let token = format!("itok-{id}");
        let channel = guild.map_or(dm_channel_of(user_id), |(_, c)| c);
        let mut d = interaction_base(id, 2, &token, channel, user_id, guild.map(|(g, _)| g));
        d["data"] = json!({"id": "6001", "name": name, "type": 1});
        self.register_interaction(&token, channel, None);
        (token, d)
    }

    /// The payload of a button press on `message` with `custom_id`.
    pub fn button_payload(
        &self,
        id: u64,
        user_id: u64,
        message: &Msg,
        custom_id: &str,
    ) -> (String, Value) {
        let token = format!("itok-{id}");
        let mut d = interaction_base(id, 3, &token, message.channel, user_id, None);
        d["data"] = json!({"custom_id": custom_id, "component_type": 2});
        d["message"] = message_json(
            message.id,
            message.channel,
            bot_user(),
            &message.content,
            message.components.clone(),
            None,
            vec![],
        );
        self.register_interaction(&token, message.channel, Some(message.id));
        (token, d)
    }

    /// INTERACTION_CREATE for a button press; returns the token.
    pub fn press(&self, id: u64, user_id: u64, message: &Msg, custom_id: &str) -> String {
        let (token, d) = self.button_payload(id, user_id, message, custom_id);
        self.dispatch("INTERACTION_CREATE", d);
        token
    }

    /// The answers (callback bodies) to the interaction with `token`.
    pub fn callbacks(&self, token: &str) -> Vec<(Instant, Value)> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with(&format!("/{token}/callback")))
            .map(|c| (c.at, c.body.clone()))
            .collect()
    }
}

/// GUILD_CREATE for a server with one text channel, where the bot has (or
/// lacks) Manage Messages through its role.
pub fn guild_create(guild: u64, channel: u64, bot_may_manage: bool) -> Value {
    let bot_role = guild + 1;
    let role = |id: u64, name: &str, perms: &str, pos: u64| {
        json!({"id": id.to_string(), "name": name, "color": 0, "colors": {"primary_color": 0},
               "hoist": false, "managed": false, "mentionable": false, "permissions": perms,
               "position": pos, "flags": 0})
    };
    // 3072 = VIEW_CHANNEL | SEND_MESSAGES; 8192 = MANAGE_MESSAGES.
    let bot_perms = if bot_may_manage { "11264" } else { "3072" };
    json!({
        "id": guild.to_string(), "name": format!("guild{guild}"), "owner_id": "1",
        "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
        "mfa_level": 0, "system_channel_flags": 0, "premium_tier": 0, "nsfw_level": 0,
        "preferred_locale": "en-US", "features": [], "emojis": [], "stickers": [],
        "premium_progress_bar_enabled": false, "joined_at": "2025-01-01T00:00:00+00:00",
        "large": false, "member_count": 2, "voice_states": [], "threads": [], "presences": [],
        "stage_instances": [], "guild_scheduled_events": [], "unavailable": false,
        "roles": [role(guild, "@everyone", "3072", 0), role(bot_role, "recoverbot", bot_perms, 1)],
        "members": [{"user": bot_user(), "roles": [bot_role.to_string()], "deaf": false, "mute": false,
                     "flags": 0, "joined_at": "2025-01-01T00:00:00+00:00"}],
        "channels": [{"id": channel.to_string(), "type": 0, "name": "support", "position": 0,
                      "guild_id": guild.to_string(), "permission_overwrites": []}],
    })
}

// ---- the gateway -------------------------------------------------------------------

async fn gateway(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, shared))
}

async fn send(socket: &mut WebSocket, v: &Value) -> bool {
    socket
        .send(WsMessage::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn connection(mut socket: WebSocket, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    *shared.gateway.lock().unwrap() = Some(tx);
    shared.state.lock().unwrap().connections += 1;
    if !send(
        &mut socket,
        &json!({"op": 10, "d": {"heartbeat_interval": 30_000}}),
    )
    .await
    {
        return;
    }
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(GatewayCmd::Send(frame)) => { if !send(&mut socket, &frame).await { return; } }
                Some(GatewayCmd::Reconnect) => {
                    if !send(&mut socket, &json!({"op": 7, "d": null})).await { return; }
                }
                None => return,
            },
            incoming = socket.recv() => {
                let Some(Ok(msg)) = incoming else { return };
                let text = match msg {
                    WsMessage::Text(t) => t.to_string(),
                    WsMessage::Close(_) => return,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                match frame["op"].as_u64() {
                    Some(1) => {
                        shared.state.lock().unwrap().heartbeats += 1;
                        if !send(&mut socket, &json!({"op": 11, "d": null})).await { return; }
                    }
                    Some(2) => {
                        let ready = {
                            let mut s = shared.state.lock().unwrap();
                            s.identifies.push(frame["d"].clone());
                            s.seq += 1;
                            json!({"op": 0, "s": s.seq, "t": "READY", "d": {
                                "v": 10, "user": bot_user(), "guilds": [], "session_id": SESSION_ID,
                                "resume_gateway_url": shared.ws_url, "shard": [0, 1],
                                "application": {"id": APP_ID.to_string(), "flags": 0}
                            }})
                        };
                        if !send(&mut socket, &ready).await { return; }
                    }
                    Some(6) => {
                        let (replay, resumed) = {
                            let mut s = shared.state.lock().unwrap();
                            s.resumes.push(frame["d"].clone());
                            let wanted = std::mem::take(&mut s.replay_on_resume);
                            let replay: Vec<Value> = s
                                .dispatched
                                .iter()
                                .filter(|(seq, _)| wanted.contains(seq))
                                .map(|(_, f)| f.clone())
                                .collect();
                            s.seq += 1;
                            (replay, json!({"op": 0, "s": s.seq, "t": "RESUMED", "d": {}}))
                        };
                        for f in &replay {
                            if !send(&mut socket, f).await { return; }
                        }
                        if !send(&mut socket, &resumed).await { return; }
                    }
                    _ => {}
                }
            }
        }
    }
}

// ---- REST ----------------------------------------------------------------------------

fn error(status: StatusCode, code: u64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn rest(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let headers: HeaderMap = request.headers().clone();
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let response = if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bot {TOKEN}"))
    {
        error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    } else {
        route(&shared, &method, &path, &body)
    };
    shared.state.lock().unwrap().calls.push(Call {
        at: Instant::now(),
        method: method.to_string(),
        path,
        body,
        status: response.status().as_u16(),
    });
    response
}

fn route(shared: &Shared, method: &Method, path: &str, body: &Value) -> Response {
    let mut s = shared.state.lock().unwrap();
    let key = format!("{method} {path}");
    if let Some(limit) = s.rate_limits.get_mut(&key).and_then(|q| q.pop_front()) {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": limit.retry_after, "global": limit.global, "code": 0})),
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(
            "retry-after",
            limit.retry_after.ceil().to_string().parse().unwrap(),
        );
        if limit.global {
            h.insert("x-ratelimit-global", "true".parse().unwrap());
            h.insert("x-ratelimit-scope", "global".parse().unwrap());
        } else {
            h.insert("x-ratelimit-scope", "user".parse().unwrap());
        }
        return r;
    }
    if let Some(status) = s.server_errors.get_mut(&key).and_then(|q| q.pop_front()) {
        return error(
            StatusCode::from_u16(status).unwrap(),
            0,
            &format!("{status}: Server Error"),
        );
    }
    let Some(rest) = path.strip_prefix("/api/v10/") else {
        return error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let num = |i: usize| seg.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["gateway"]) => ok_json(json!({"url": shared.ws_url})),
        ("PUT", ["applications", _, "commands"])
        | ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            let mut out = Vec::new();
            for c in body.as_array().into_iter().flatten() {
                let id = s.id();
                let mut c = c.clone();
                c["id"] = json!(id.to_string());
                c["application_id"] = json!(APP_ID.to_string());
                c["version"] = json!("1");
                c["type"] = c.get("type").cloned().unwrap_or(json!(1));
                out.push(c);
            }
            ok_json(Value::Array(out))
        }
        ("POST", ["users", "@me", "channels"]) => {
            let recipient: u64 = body["recipient_id"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if recipient == 0 {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            ok_json(
                json!({"id": dm_channel_of(recipient).to_string(), "type": 1, "last_message_id": null,
                           "recipients": [user(recipient)]}),
            )
        }
        ("POST", ["channels", _, "messages"]) => {
            let channel = num(1);
            if channel > DM_BASE && s.closed_dms.contains(&(channel - DM_BASE)) {
                return error(
                    StatusCode::FORBIDDEN,
                    50007,
                    "Cannot send messages to this user",
                );
            }
            if !valid_message(body) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let msg = new_msg(&mut s, channel, body);
            ok_json(msg)
        }
        ("PATCH", ["channels", _, "messages", _]) => {
            if !valid_message(body) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let (channel, id) = (num(1), num(3));
            match edit_msg(&mut s, id, body) {
                Some(m) => ok_json(message_json(
                    m.id,
                    channel,
                    bot_user(),
                    &m.content,
                    m.components,
                    None,
                    vec![],
                )),
                None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            }
        }
        ("DELETE", ["channels", _, "messages", _]) => {
            if s.forbidden_deletes.contains(&num(1)) {
                error(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        ("POST", ["interactions", _, token, "callback"]) => {
            let Some(info) = s.interactions.get(*token).cloned() else {
                return error(StatusCode::NOT_FOUND, 10062, "Unknown interaction");
            };
            if s.calls.iter().any(|c| c.status == 204 && c.path == path) {
                return error(
                    StatusCode::BAD_REQUEST,
                    40060,
                    "Interaction has already been acknowledged.",
                );
            }
            // The spec has no `data` on types 1 and 6; where there is one it
            // is a message body.
            if body.get("data").is_some_and(|d| !valid_message(d)) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            match body["type"].as_u64() {
                Some(4) | Some(5) => {
                    let data = if body["type"] == 5 {
                        json!({"content": "", "flags": body["data"]["flags"].clone()})
                    } else {
                        body["data"].clone()
                    };
                    let m = new_msg(&mut s, info.channel, &data);
                    let id = m["id"].as_str().unwrap().parse().unwrap();
                    s.interactions.get_mut(*token).unwrap().original = Some(id);
                }
                Some(7) => {
                    if let Some(id) = info.message {
                        edit_msg(&mut s, id, &body["data"]);
                    }
                }
                Some(1) | Some(6) => {}
                _ => return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body"),
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["webhooks", _, token]) => {
            let Some(info) = s.interactions.get(*token).cloned() else {
                return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            };
            if !valid_message(body) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            ok_json(new_msg(&mut s, info.channel, body))
        }
        ("PATCH", ["webhooks", _, token, "messages", "@original"]) => {
            let Some(info) = s.interactions.get(*token).cloned() else {
                return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            };
            if !valid_message(body) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let Some(id) = info.message.or(info.original) else {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            };
            match edit_msg(&mut s, id, body) {
                Some(m) => ok_json(message_json(
                    m.id,
                    info.channel,
                    bot_user(),
                    &m.content,
                    m.components,
                    None,
                    vec![],
                )),
                None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

/// Discord's form checks on a message body (400, code 50035 when broken):
/// content up to 2000 characters, at most 5 action rows (type 1) of at most
/// 5 buttons (type 2) with a `custom_id` up to 100 and a label up to 80
/// characters.
fn valid_message(body: &Value) -> bool {
    if !body.is_object() {
        return false;
    }
    if body["content"]
        .as_str()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return false;
    }
    let Some(rows) = body.get("components").filter(|c| !c.is_null()) else {
        return true;
    };
    let Some(rows) = rows.as_array() else {
        return false;
    };
    rows.len() <= 5
        && rows.iter().all(|row| {
            row["type"] == 1
                && row["components"].as_array().is_some_and(|bs| {
                    !bs.is_empty()
                        && bs.len() <= 5
                        && bs.iter().all(|b| {
                            b["type"] == 2
                                && b["style"].as_u64().is_some_and(|s| (1..=4).contains(&s))
                                && b["custom_id"]
                                    .as_str()
                                    .is_some_and(|id| !id.is_empty() && id.chars().count() <= 100)
                                && b["label"].as_str().is_none_or(|l| l.chars().count() <= 80)
                        })
                })
        })
}

fn new_msg(s: &mut State_, channel: u64, body: &Value) -> Value {
    let id = s.id();
    let content = body["content"].as_str().unwrap_or_default().to_string();
    let components = body.get("components").cloned().unwrap_or(json!([]));
    s.messages.push(Msg {
        id,
        channel,
        content: content.clone(),
        components: components.clone(),
        ephemeral: body["flags"].as_u64().is_some_and(|f| f & 64 != 0),
        allowed_mentions: body.get("allowed_mentions").cloned().unwrap_or(Value::Null),
    });
    message_json(id, channel, bot_user(), &content, components, None, vec![])
}

fn edit_msg(s: &mut State_, id: u64, body: &Value) -> Option<Msg> {
    let m = s.messages.iter_mut().find(|m| m.id == id)?;
    if let Some(c) = body.get("content").and_then(Value::as_str) {
        m.content = c.to_string();
    }
    if let Some(c) = body.get("components").filter(|c| !c.is_null()) {
        m.components = c.clone();
    }
    if let Some(a) = body.get("allowed_mentions") {
        m.allowed_mentions = a.clone();
    }
    Some(m.clone())
}
