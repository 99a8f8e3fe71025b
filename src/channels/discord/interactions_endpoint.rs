//! Discord's HTTP interactions endpoint (`discord.interactions_endpoint`):
//! Discord POSTs each interaction to a public URL instead of sending it over
//! the gateway, and the HTTP response is the first answer.
//!
//! Every request must carry a valid Ed25519 signature, by the application's
//! public key (`discord.public_key`), over `X-Signature-Timestamp` followed
//! by the raw body, hex in `X-Signature-Ed25519`. A missing or bad
//! signature gets 401 and nothing else happens (Discord checks this when the
//! URL is saved, and stops sending to an endpoint that accepts forgeries). A
//! PING gets PONG; commands and buttons go through the same code as gateway
//! interactions.

use super::Core;
use super::interactions::{DEFER_AFTER, Responder};
use crate::config::DiscordSettings;
use crate::shutdown::Shutdown;
use anyhow::{Context as _, anyhow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serenity::model::application::Interaction;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// Discord waits 3 s for the answer; the turn defers well before.
const ANSWER_WITHIN: Duration = Duration::from_millis(2900);
/// Larger bodies are refused before any parsing.
const MAX_BODY: usize = 256 * 1024;

/// Checks Discord's signature: Ed25519 by `key` over `timestamp || body`,
/// `signature_hex` being 128 hex digits.
pub fn verify_signature(
    key: &VerifyingKey,
    signature_hex: &str,
    timestamp: &str,
    body: &[u8],
) -> bool {
    let Ok(raw) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &Signature::from_bytes(&bytes)).is_ok()
}

/// The application's public key from its hex form.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let raw = hex::decode(hex_key.trim()).map_err(|_| "not hex".to_string())?;
    let bytes = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| "not 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 key".to_string())
}

#[derive(Clone)]
struct Endpoint {
    core: Arc<Core>,
    key: VerifyingKey,
}

/// Starts the endpoint on `discord.interactions_listen`; it stops with
/// `shutdown`. Returns once it listens.
pub(crate) async fn serve(
    core: Arc<Core>,
    settings: &DiscordSettings,
    mut shutdown: Shutdown,
) -> anyhow::Result<JoinHandle<()>> {
    let hex_key = settings.public_key.as_deref().ok_or_else(|| {
        anyhow!("discord.interactions_endpoint is on but discord.public_key is not set (the application's public key, from the developer portal)")
    })?;
    let key = parse_public_key(hex_key)
        .map_err(|e| anyhow!("discord.public_key is unusable ({e}): copy the application's public key from the developer portal"))?;
    let listener = tokio::net::TcpListener::bind(&settings.interactions_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on discord.interactions_listen = {}",
                settings.interactions_listen
            )
        })?;
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "Discord interactions endpoint listening");
    let app = router(core, key);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the interactions endpoint stopped");
        }
    }))
}

fn router(core: Arc<Core>, key: VerifyingKey) -> Router {
    Router::new()
        .route("/", post(interaction))
        .route("/interactions", post(interaction))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Endpoint { core, key })
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn interaction(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let timestamp = headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return plain(StatusCode::UNAUTHORIZED, "missing request signature");
    };
    if !verify_signature(&ep.key, signature, timestamp, &body) {
        return plain(StatusCode::UNAUTHORIZED, "invalid request signature");
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable interaction"),
    };
    if matches!(interaction, Interaction::Ping(_)) {
        return json(serde_json::json!({ "type": 1 }).to_string().into_bytes());
    }
    let (tx, rx) = oneshot::channel();
    let core = ep.core.clone();
    tokio::spawn(async move {
        core.on_interaction(interaction, Responder::Http(tx)).await;
    });
    debug_assert!(ANSWER_WITHIN > DEFER_AFTER);
    match tokio::time::timeout(ANSWER_WITHIN, rx).await {
        Ok(Ok(response)) => json(
            super::render::response_json(&response)
                .to_string()
                .into_bytes(),
        ),
        _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "no answer"),
    }
}

fn json(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let pk = parse_public_key(&hex::encode(sk.verifying_key().to_bytes())).unwrap();
        let body = br#"{"type":1}"#;
        let sig = hex::encode(
            sk.sign(&[b"1700000000".as_slice(), body].concat())
                .to_bytes(),
        );
        assert!(verify_signature(&pk, &sig, "1700000000", body));
        assert!(!verify_signature(&pk, &sig, "1700000001", body));
        assert!(!verify_signature(&pk, &sig, "1700000000", br#"{"type":2}"#));
        assert!(!verify_signature(&pk, "zz", "1700000000", body));
        assert!(!verify_signature(&pk, "", "1700000000", body));
        assert!(parse_public_key("abcd").is_err());
    }
}
