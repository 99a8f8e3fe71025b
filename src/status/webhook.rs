//! Statuspage webhooks: `POST /status/webhook/<status.webhook_secret>` on
//! the operator listener. An incident payload is taken in like a poll's
//! incident, a component payload updates that component. A wrong path gets
//! 404, a body that is not a Statuspage webhook gets 400 and changes
//! nothing, and a replay changes nothing (the memory already has it).

use super::Status;
use crate::account_api::statuspage::Incident;
use crate::domain::now_millis;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    incident: Option<Incident>,
    #[serde(default)]
    component: Option<WebhookComponent>,
    #[serde(default)]
    page: Option<WebhookPage>,
}

#[derive(Debug, Deserialize)]
struct WebhookComponent {
    name: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct WebhookPage {
    #[serde(default)]
    status_description: Option<String>,
}

struct Hook {
    status: Arc<Status>,
    /// SHA-256 of the secret: compared digest to digest, so the time a
    /// comparison takes says nothing about the secret.
    secret: [u8; 32],
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The webhook route, for the operator listener.
pub fn router(status: Arc<Status>, secret: &SecretString) -> Router {
    let hook = Arc::new(Hook {
        status,
        secret: digest(secret.expose_secret()),
    });
    Router::new()
        .route("/status/webhook/{secret}", post(receive))
        .with_state(hook)
}

async fn receive(
    State(hook): State<Arc<Hook>>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Response {
    if digest(&secret) != hook.secret {
        return StatusCode::NOT_FOUND.into_response();
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "not a Statuspage webhook payload\n",
            )
                .into_response();
        }
    };
    if payload.incident.is_none() && payload.component.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "a Statuspage webhook carries an incident or a component\n",
        )
            .into_response();
    }
    let now = now_millis();
    let applied = hook
        .status
        .apply(None, |tracked| {
            if let Some(d) = payload
                .page
                .as_ref()
                .and_then(|p| p.status_description.clone())
            {
                tracked.description = d;
            }
            if let Some(c) = &payload.component {
                tracked.components.insert(c.name.clone(), c.status.clone());
            }
            payload
                .incident
                .as_ref()
                .and_then(|i| tracked.observe_incident(i, now))
                .into_iter()
                .collect()
        })
        .await;
    match applied {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "status: cannot apply a webhook");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
