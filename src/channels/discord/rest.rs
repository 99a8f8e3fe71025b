//! The bot's REST sender: every call the channel makes to Discord's HTTP API
//! goes through [`Rest`].
//!
//! Why not `serenity::http::Http` for these calls: with a base URL other
//! than `https://discord.com` (a test fake), serenity's rate limiter must be
//! off, because the limiter ignores the proxy; and with it off, a 429 comes
//! back as an error that has lost its `retry_after`. So this sender builds
//! each request with serenity's own [`Route`] and [`Request`] (the same URLs,
//! headers and bodies serenity would send), executes it, and handles rate
//! limits itself, in production and in tests alike:
//!
//! * a 429 closes a window for its bucket (serenity's per-route bucket), or
//!   for every request when Discord says the limit is global, for
//!   `retry_after` seconds (the body's value, else the `Retry-After`
//!   header); the request is sent again after the window, up to
//!   [`MAX_ATTEMPTS`] times;
//! * `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` closes the
//!   bucket's window before a 429 happens;
//! * no request is ever sent while its bucket's window or the global window
//!   is closed.
//!
//! Errors are this module's own words: they never carry the token, and never
//! the URL (an interaction token is part of some URLs).

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serenity::http::{LightMethod, RatelimitingBucket, Request, Route};
use serenity::model::id::{ApplicationId, ChannelId, GuildId, InteractionId, MessageId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Tries per request, the first included, when Discord keeps answering 429.
pub const MAX_ATTEMPTS: u32 = 5;
/// Used when a 429 says neither `retry_after` nor `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A single wait is never longer than this: past it the request fails.
const LONGEST_WAIT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Discord's JSON error codes the channel acts on.
pub mod codes {
    pub const UNKNOWN_MESSAGE: i64 = 10008;
    pub const CANNOT_DM_USER: i64 = 50007;
    pub const MISSING_PERMISSIONS: i64 = 50013;
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("Discord refused the request: HTTP {status}, code {code}")]
    Api { status: u16, code: i64 },
    #[error("Discord kept rate limiting the request after {MAX_ATTEMPTS} tries")]
    RateLimited,
    #[error("cannot reach Discord ({0})")]
    Transport(String),
    #[error("Discord's answer could not be read ({0})")]
    Decode(String),
}

impl RestError {
    /// Discord's JSON error code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The bot lacks a permission it needs here.
    pub fn is_missing_permissions(&self) -> bool {
        self.code() == Some(codes::MISSING_PERMISSIONS)
            || (self.status() == Some(403) && self.code() != Some(codes::CANNOT_DM_USER))
    }
}

fn transport(e: &reqwest::Error) -> RestError {
    // `without_url`: some URLs hold an interaction token.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    RestError::Transport(kind.into())
}

#[derive(Default)]
struct Windows {
    global: Option<Instant>,
    buckets: HashMap<RatelimitingBucket, Instant>,
}

impl Windows {
    /// When the request may go, if not now.
    fn closed_until(&mut self, bucket: &RatelimitingBucket, now: Instant) -> Option<Instant> {
        if self.global.is_some_and(|t| t <= now) {
            self.global = None;
        }
        if self.buckets.get(bucket).is_some_and(|t| *t <= now) {
            self.buckets.remove(bucket);
        }
        match (self.global, self.buckets.get(bucket).copied()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn close(&mut self, bucket: Option<RatelimitingBucket>, until: Instant) {
        let slot = match bucket {
            None => &mut self.global,
            Some(b) => {
                let t = self.buckets.entry(b).or_insert(until);
                *t = (*t).max(until);
                return;
            }
        };
        *slot = Some(slot.map_or(until, |t| t.max(until)));
    }
}

/// Discord's HTTP API, with rate limits handled here.
pub struct Rest {
    client: reqwest::Client,
    /// Replaces `https://discord.com` in every URL (a test fake); `None` in
    /// production.
    base: Option<String>,
    /// `Bot <token>`.
    auth: SecretString,
    windows: Mutex<Windows>,
}

/// The parts of a 429 body that matter.
#[derive(serde::Deserialize)]
struct RateLimited {
    #[serde(default)]
    retry_after: Option<f64>,
    #[serde(default)]
    global: bool,
}

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<i64>,
}

pub const DISCORD: &str = "https://discord.com";

impl Rest {
    /// `api_url` is `https://discord.com` or a stand-in for it.
    pub fn new(api_url: &str, token: &SecretString) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|_| "cannot build the HTTP client".to_string())?;
        let api_url = api_url.trim().trim_end_matches('/');
        let parsed = url::Url::parse(api_url)
            .map_err(|_| "discord.api_url is not a URL (expected e.g. https://discord.com)")?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("discord.api_url must be an http or https URL".into());
        }
        let raw = token.expose_secret().trim();
        let raw = raw.strip_prefix("Bot ").unwrap_or(raw);
        if raw.is_empty() {
            return Err("discord.token is empty: set RECOVERBOT__DISCORD__TOKEN".into());
        }
        Ok(Self {
            client,
            base: (api_url != DISCORD).then(|| api_url.to_string()),
            auth: SecretString::from(format!("Bot {raw}")),
            windows: Mutex::new(Windows::default()),
        })
    }

    /// The token without the `Bot ` prefix, for serenity's client.
    pub fn bare_token(&self) -> &str {
        let t = self.auth.expose_secret();
        t.strip_prefix("Bot ").unwrap_or(t)
    }

    /// The base URL when it is not Discord's own.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// Sends one request; returns the body of a 2xx answer.
    async fn call(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, RestError> {
        let bucket = route.ratelimiting_bucket();
        for _ in 0..MAX_ATTEMPTS {
            self.wait_for_window(&bucket).await;
            let request = Request::new(route, method)
                .body(body.clone())
                .build(
                    &self.client,
                    self.auth.expose_secret(),
                    self.base.as_deref(),
                )
                .ok()
                .and_then(|b| b.build().ok())
                .ok_or_else(|| RestError::Decode("cannot build the request".into()))?;
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| transport(&e))?;
            self.note_headers(&bucket, &headers);
            if status.as_u16() == 429 {
                let parsed: Option<RateLimited> = serde_json::from_slice(&bytes).ok();
                let wait = parsed
                    .as_ref()
                    .and_then(|p| p.retry_after)
                    .or_else(|| header_f64(&headers, "retry-after"))
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_RETRY_AFTER);
                if wait > LONGEST_WAIT {
                    return Err(RestError::RateLimited);
                }
                let global = parsed.is_some_and(|p| p.global)
                    || headers.contains_key("x-ratelimit-global")
                    || header_str(&headers, "x-ratelimit-scope") == Some("global");
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    global,
                    "Discord rate limit hit; waiting before sending again"
                );
                self.windows
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .close((!global).then_some(bucket), Instant::now() + wait);
                continue;
            }
            if status.is_success() {
                return Ok(bytes.to_vec());
            }
            let code = serde_json::from_slice::<ApiError>(&bytes)
                .ok()
                .and_then(|e| e.code)
                .unwrap_or(0);
            return Err(RestError::Api {
                status: status.as_u16(),
                code,
            });
        }
        Err(RestError::RateLimited)
    }

    async fn wait_for_window(&self, bucket: &RatelimitingBucket) {
        loop {
            let until = self
                .windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .closed_until(bucket, Instant::now());
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => return,
            }
        }
    }

    /// `X-RateLimit-Remaining: 0` closes the bucket until the reset.
    fn note_headers(&self, bucket: &RatelimitingBucket, headers: &reqwest::header::HeaderMap) {
        let remaining = header_f64(headers, "x-ratelimit-remaining");
        let reset_after = header_f64(headers, "x-ratelimit-reset-after");
        if let (Some(r), Some(after)) = (remaining, reset_after)
            && r <= 0.0
            && after.is_finite()
            && after > 0.0
        {
            let wait = Duration::from_secs_f64(after).min(LONGEST_WAIT);
            self.windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .close(Some(*bucket), Instant::now() + wait);
        }
    }

    async fn call_json<T: Serialize + ?Sized>(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: &T,
    ) -> Result<Vec<u8>, RestError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|_| RestError::Decode("cannot encode the request".into()))?;
        self.call(route, method, Some(bytes)).await
    }

    // ---- the calls the channel makes ---------------------------------------

    /// `GET /gateway`: the gateway's WebSocket URL.
    pub async fn gateway_url(&self) -> Result<String, RestError> {
        #[derive(serde::Deserialize)]
        struct Gateway {
            url: String,
        }
        let bytes = self.call(Route::Gateway, LightMethod::Get, None).await?;
        serde_json::from_slice::<Gateway>(&bytes)
            .map(|g| g.url)
            .map_err(|_| RestError::Decode("GET /gateway".into()))
    }

    /// `POST /users/@me/channels`: the DM channel with a user.
    pub async fn create_dm(&self, user: UserId) -> Result<ChannelId, RestError> {
        let body = serde_json::json!({ "recipient_id": user.to_string() });
        let bytes = self
            .call_json(Route::UserMeDmChannels, LightMethod::Post, &body)
            .await?;
        id_of(&bytes).map(ChannelId::new)
    }

    /// `POST /channels/{c}/messages`.
    pub async fn create_message(
        &self,
        channel: ChannelId,
        message: &serenity::builder::CreateMessage,
    ) -> Result<MessageId, RestError> {
        let bytes = self
            .call_json(
                Route::ChannelMessages {
                    channel_id: channel,
                },
                LightMethod::Post,
                message,
            )
            .await?;
        id_of(&bytes).map(MessageId::new)
    }

    /// `PATCH /channels/{c}/messages/{m}`.
    pub async fn edit_message(
        &self,
        channel: ChannelId,
        message: MessageId,
        edit: &serenity::builder::EditMessage,
    ) -> Result<(), RestError> {
        self.call_json(
            Route::ChannelMessage {
                channel_id: channel,
                message_id: message,
            },
            LightMethod::Patch,
            edit,
        )
        .await
        .map(drop)
    }

    /// `DELETE /channels/{c}/messages/{m}`.
    pub async fn delete_message(
        &self,
        channel: ChannelId,
        message: MessageId,
    ) -> Result<(), RestError> {
        self.call(
            Route::ChannelMessage {
                channel_id: channel,
                message_id: message,
            },
            LightMethod::Delete,
            None,
        )
        .await
        .map(drop)
    }

    /// `POST /interactions/{id}/{token}/callback`: the first answer.
    pub async fn interaction_callback(
        &self,
        id: InteractionId,
        token: &str,
        response: &serenity::builder::CreateInteractionResponse,
    ) -> Result<(), RestError> {
        self.call_json(
            Route::InteractionResponse {
                interaction_id: id,
                token,
            },
            LightMethod::Post,
            &super::render::response_json(response),
        )
        .await
        .map(drop)
    }

    /// `PATCH /webhooks/{app}/{token}/messages/@original`.
    pub async fn edit_original(
        &self,
        app: ApplicationId,
        token: &str,
        edit: &serenity::builder::EditInteractionResponse,
    ) -> Result<(), RestError> {
        self.call_json(
            Route::WebhookOriginalInteractionResponse {
                application_id: app,
                token,
            },
            LightMethod::Patch,
            edit,
        )
        .await
        .map(drop)
    }

    /// `PUT /applications/{app}/commands` or
    /// `PUT /applications/{app}/guilds/{g}/commands`.
    pub async fn set_commands(
        &self,
        app: ApplicationId,
        guild: Option<GuildId>,
        commands: &[serenity::builder::CreateCommand],
    ) -> Result<(), RestError> {
        let route = match guild {
            None => Route::Commands {
                application_id: app,
            },
            Some(guild_id) => Route::GuildCommands {
                application_id: app,
                guild_id,
            },
        };
        self.call_json(route, LightMethod::Put, commands)
            .await
            .map(drop)
    }
}

fn header_str<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn header_f64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<f64> {
    header_str(headers, name)?.trim().parse().ok()
}

/// The non-zero snowflake `id` of a JSON object.
fn id_of(bytes: &[u8]) -> Result<u64, RestError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| RestError::Decode("not JSON".into()))?;
    let id = match &value["id"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    };
    id.filter(|id| *id != 0)
        .ok_or_else(|| RestError::Decode("no id in the answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_window_holds_every_bucket_and_a_route_window_only_its_own() {
        let mut w = Windows::default();
        let now = Instant::now();
        let a = Route::ChannelMessages {
            channel_id: ChannelId::new(1),
        }
        .ratelimiting_bucket();
        let b = Route::ChannelMessages {
            channel_id: ChannelId::new(2),
        }
        .ratelimiting_bucket();
        w.close(Some(a), now + Duration::from_secs(2));
        assert!(w.closed_until(&a, now).is_some());
        assert!(w.closed_until(&b, now).is_none());
        w.close(None, now + Duration::from_secs(5));
        assert_eq!(w.closed_until(&b, now), Some(now + Duration::from_secs(5)));
        assert_eq!(
            w.closed_until(&a, now + Duration::from_secs(6)),
            None,
            "windows reopen"
        );
    }

    #[test]
    fn tokens_keep_one_bot_prefix() {
        let rest = Rest::new("https://discord.com/", &SecretString::from("Bot abc")).unwrap();
        assert_eq!(rest.bare_token(), "abc");
        assert!(rest.base().is_none());
        let rest = Rest::new("http://127.0.0.1:9", &SecretString::from("abc")).unwrap();
        assert_eq!(rest.base(), Some("http://127.0.0.1:9"));
    }
}
