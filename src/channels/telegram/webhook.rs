//! Webhook mode: Telegram POSTs each update to `telegram.webhook_url`; the
//! bot listens on `telegram.webhook_listen` at that URL's path (put a TLS
//! proxy in front: Telegram only calls HTTPS URLs).
//!
//! Every request must carry `X-Telegram-Bot-Api-Secret-Token` equal to the
//! secret registered with `setWebhook`; otherwise it gets 401 and nothing is
//! processed. An update is answered 200 only once it is done (turn
//! committed, reply sent, marked delivered); on a temporary failure the
//! answer is 500 and Telegram delivers it again later, which the engine
//! deduplicates.

use super::api::CallError;
use super::handler::Handler;
use crate::shutdown::Shutdown;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::Update;
use tokio::net::TcpListener;

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

#[derive(Clone)]
struct Hook {
    handler: Arc<Handler>,
    secret: Arc<SecretString>,
    shutdown: Shutdown,
}

/// The secret Telegram must send: the configured one (checked for
/// Telegram's rules) or a fresh random one.
pub fn secret_token(configured: Option<&SecretString>) -> anyhow::Result<SecretString> {
    match configured {
        Some(s) => {
            let v = s.expose_secret();
            let ok = (1..=256).contains(&v.len())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                anyhow::bail!(
                    "telegram.webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (RECOVERBOT__TELEGRAM__WEBHOOK_SECRET)"
                );
            }
            Ok(s.clone())
        }
        None => Ok(SecretString::from(
            rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(48)
                .map(char::from)
                .collect::<String>(),
        )),
    }
}

/// Parses `telegram.webhook_url`.
pub fn public_url(configured: Option<&str>) -> anyhow::Result<reqwest::Url> {
    let raw = configured.ok_or_else(|| {
        anyhow::anyhow!(
            "telegram.mode is webhook but telegram.webhook_url is not set: export RECOVERBOT__TELEGRAM__WEBHOOK_URL=https://your.host/telegram"
        )
    })?;
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("telegram.webhook_url is not a valid URL ({e})"))?;
    if url.scheme() != "https" {
        tracing::warn!("telegram.webhook_url is not HTTPS: the official Bot API refuses it");
    }
    Ok(url)
}

pub async fn run(
    handler: Arc<Handler>,
    url: reqwest::Url,
    secret: SecretString,
    listener: TcpListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let path = match url.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let hook = Hook {
        handler: handler.clone(),
        secret: Arc::new(secret.clone()),
        shutdown: shutdown.clone(),
    };
    let app = Router::new().route(&path, post(receive)).with_state(hook);
    // Listen first, so Telegram's first delivery finds us.
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let mut s = shutdown.clone();
        async move { s.wait().await }
    });
    let server = tokio::spawn(async move { server.await });
    let mut failures = 0u32;
    loop {
        match handler.api.set_webhook(&url, secret.expose_secret()).await {
            Ok(()) => break,
            Err(CallError::Stopped) => break,
            Err(e @ (CallError::BadToken | CallError::Permanent(_))) => {
                server.abort();
                anyhow::bail!("Telegram refused the webhook: {e}");
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "Telegram: setWebhook failed; retrying");
                let wait = Duration::from_secs(u64::from(failures.min(30)));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.wait() => break,
                }
            }
        }
    }
    tracing::info!(path = %path, "Telegram: webhook registered, receiving updates");
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("the webhook server failed: {e}")),
        Err(_) => Ok(()),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same(given, hook.secret.expose_secret().as_bytes()) {
        tracing::warn!("Telegram webhook: request without the right secret token refused");
        return StatusCode::UNAUTHORIZED;
    }
    if hook.shutdown.is_fired() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    // Processed in its own task: a dropped connection must not cut a turn
    // or a reply in half.
    let handler = hook.handler.clone();
    handler.watch_callbacks(std::slice::from_ref(&update));
    let id = update.id.0;
    let done = tokio::spawn(async move { handler.process(&update).await });
    match done.await {
        Ok(Ok(())) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Ok(Err(retry)) => {
            tracing::warn!(update_id = id, reason = %retry.0, "Telegram: update will be retried");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}
