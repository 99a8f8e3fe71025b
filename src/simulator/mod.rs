//! The account service simulator: `recoverbot account-sim`, the local
//! default of `recoverbot chat`, and the tests' account service.
//!
//! It implements the whole contract (`docs/account-api.yaml`): bearer token,
//! idempotency keys, 422/429/410 answers, enumeration-safe resets whose
//! delivery moves from queued through sent to delivered (or bounced),
//! verification codes, TOTP drift diagnosis, login status and the staff
//! actions. It serves a Statuspage v2 summary, and admin endpoints under
//! `/_sim/` behind their own token: the outbox, incidents, faults, a clock,
//! request counts and authenticator codes.

mod state;
mod status;

pub use state::{Faults, SimMail, demo_accounts, load_accounts};

use crate::account_api::wire::*;
use crate::config::SimulatorSettings;
use crate::domain::Email;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use state::{ConfirmOutcome, DiagnoseOutcome, SimIncident, World, random_id};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

#[derive(Clone)]
struct Sim {
    world: Arc<Mutex<World>>,
    token: Arc<SecretString>,
    admin_token: Arc<SecretString>,
}

impl Sim {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A simulator serving on a loopback port.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub url: String,
    pub token: SecretString,
    pub admin_token: SecretString,
    mails: broadcast::Sender<SimMail>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Every mail the simulator sends from now on.
    pub fn mails(&self) -> broadcast::Receiver<SimMail> {
        self.mails.subscribe()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn token_or_random(secret: &Option<SecretString>) -> SecretString {
    match secret {
        Some(s) if !s.expose_secret().is_empty() => s.clone(),
        _ => SecretString::from(random_id("sim_", 32)),
    }
}

/// Starts the simulator on `listener` (bind `127.0.0.1:0` for a free port).
/// Unset tokens are generated at random.
pub async fn start(
    settings: &SimulatorSettings,
    listener: TcpListener,
) -> Result<RunningSim, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let url = format!("http://{addr}");
    let accounts = load_accounts(settings)?;
    let (mails, _) = broadcast::channel(64);
    let mut world = World::new(settings, accounts, url.clone());
    world.mail_tx = Some(mails.clone());
    let token = token_or_random(&settings.token);
    let admin_token = token_or_random(&settings.admin_token);
    let sim = Sim {
        world: Arc::new(Mutex::new(world)),
        token: Arc::new(token.clone()),
        admin_token: Arc::new(admin_token.clone()),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(sim);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningSim {
        addr,
        url,
        token,
        admin_token,
        mails,
        shutdown: Some(tx),
        task,
    })
}

fn router(sim: Sim) -> Router {
    let api = Router::new()
        .route("/v1/password-resets", post(create_reset))
        .route("/v1/password-resets/{id}", get(get_reset))
        .route("/v1/verifications", post(create_verification))
        .route("/v1/verifications/{id}/confirm", post(confirm_verification))
        .route("/v1/accounts/{id}/login-status", get(login_status))
        .route("/v1/accounts/{id}/two-factor/diagnose", post(diagnose))
        .route("/v1/accounts/{id}/unlock", post(unlock))
        .route("/v1/accounts/{id}/two-factor/reset", post(reset_two_factor))
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_gate));
    let admin = Router::new()
        .route("/_sim/outbox", get(outbox))
        .route("/_sim/incidents", get(list_incidents).post(create_incident))
        .route("/_sim/incidents/{id}", post(update_incident))
        .route(
            "/_sim/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/_sim/clock", post(advance_clock))
        .route("/_sim/stats", get(stats))
        .route("/_sim/totp/{id}", get(totp_code))
        .route_layer(middleware::from_fn_with_state(sim.clone(), admin_gate));
    Router::new()
        .merge(api)
        .merge(admin)
        .route("/api/v2/summary.json", get(summary))
        .route("/api/v2/incidents.json", get(incidents))
        .route("/reset/{token}", get(reset_page))
        .with_state(sim)
}

// ---- responses -----------------------------------------------------------

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// The JSON body, or a 400 in the contract's error format when it is
/// missing or malformed (`message` says what was expected).
fn required<T>(body: Option<Json<T>>, message: &str) -> Result<T, Box<Response>> {
    match body {
        Some(Json(b)) => Ok(b),
        None => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            message,
        ))),
    }
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn too_many(retry_after: u64, message: &str) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    if let Ok(v) = retry_after.to_string().parse() {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Compares without an early exit, so timing reveals nothing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn api_gate(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    if !bearer(request.headers()).is_some_and(|t| same(t, sim.token.expose_secret())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
    }
    let route = format!("{} {}", request.method(), route_name(request.uri().path()));
    let (latency, injected) = {
        let mut w = sim.world();
        *w.requests.entry(route).or_default() += 1;
        let f = &mut w.faults;
        let injected = if f.fail_next > 0 {
            f.fail_next -= 1;
            Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "injected failure",
            ))
        } else if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            Some(too_many(f.retry_after_secs.max(1), "injected rate limit"))
        } else if f.error_rate > 0.0 && rand::thread_rng().r#gen::<f64>() < f.error_rate {
            Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "injected outage",
            ))
        } else {
            None
        };
        (f.latency_ms, injected)
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    match injected {
        Some(r) => r,
        None => next.run(request).await,
    }
}

/// `/v1/password-resets/rst_x` -> `/v1/password-resets/{id}` for counting.
fn route_name(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with("rst_") || seg.starts_with("ver_") || seg.starts_with("acc_") {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn admin_gate(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    if !bearer(request.headers()).is_some_and(|t| same(t, sim.admin_token.expose_secret())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token",
        );
    }
    next.run(request).await
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .map(str::to_string)
}

/// Runs `work` once per idempotency key (24 h); a repeat gets the first
/// response again and does nothing new.
fn idempotent(
    sim: &Sim,
    headers: &HeaderMap,
    work: impl FnOnce(&mut World) -> (u16, String),
) -> Response {
    let key = idempotency_key(headers);
    let mut w = sim.world();
    let now = w.now();
    w.idempotent
        .retain(|_, (_, _, at)| now - *at < chrono::Duration::hours(24));
    if let Some(k) = &key
        && let Some((status, body, _)) = w.idempotent.get(k)
    {
        return json_response(*status, body.clone());
    }
    let (status, body) = work(&mut w);
    // 5xx and 429 are not final: a retry with the same key should try again.
    if let Some(k) = key
        && status < 500
        && status != 429
    {
        w.idempotent.insert(k, (status, body.clone(), now));
    }
    if status == 429 {
        let retry: u64 = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["retry_after"].as_u64())
            .unwrap_or(60);
        return too_many(retry, "too many mails to this address; try later");
    }
    json_response(status, body)
}

fn body_of<T: serde::Serialize>(status: u16, value: &T) -> (u16, String) {
    (
        status,
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    )
}

fn error_body(status: u16, code: &str, message: &str) -> (u16, String) {
    body_of(status, &ErrorBody::new(code, message))
}

// ---- /v1 ------------------------------------------------------------------

/// A request that mails an address (a reset link, a code): 422 for a
/// malformed address, 429 past the per-address limit, 202 otherwise.
fn mail_request<T: serde::Serialize>(
    sim: &Sim,
    headers: &HeaderMap,
    body: Option<Json<EmailBody>>,
    send: impl FnOnce(&mut World, &Email) -> Result<T, u64>,
) -> Response {
    let body = match required(body, "expected {\"email\": ...}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    idempotent(sim, headers, |w| match Email::parse(&body.email) {
        Err(_) => error_body(422, "invalid_email", "that is not a valid e-mail address"),
        Ok(email) => match send(w, &email) {
            Ok(accepted) => body_of(202, &accepted),
            Err(retry) => (429, serde_json::json!({ "retry_after": retry }).to_string()),
        },
    })
}

async fn create_reset(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Option<Json<EmailBody>>,
) -> Response {
    mail_request(&sim, &headers, body, World::request_reset)
}

async fn create_verification(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Option<Json<EmailBody>>,
) -> Response {
    mail_request(&sim, &headers, body, World::start_verification)
}

async fn get_reset(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.world().reset_status(&id) {
        Some(status) => (StatusCode::OK, Json(status)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such reset"),
    }
}

async fn confirm_verification(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<CodeBody>>,
) -> Response {
    let body = match required(body, "expected {\"code\": ...}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    idempotent(&sim, &headers, |w| match w.confirm(&id, body.code.trim()) {
        ConfirmOutcome::Result(r) => body_of(200, &r),
        ConfirmOutcome::Expired => {
            error_body(410, "expired", "the code expired or has no attempts left")
        }
        ConfirmOutcome::NotFound => error_body(404, "not_found", "no such verification"),
    })
}

async fn login_status(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.world();
    // An unknown id gets the same answer as a real account nobody has
    // confirmed: the status code says nothing about which ids exist.
    if !w.recently_confirmed(&id) {
        return error(
            StatusCode::FORBIDDEN,
            "not_verified",
            "confirm an e-mail code for this account first",
        );
    }
    match w.login_status(&id) {
        Some(s) => (StatusCode::OK, Json(s)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such account"),
    }
}

async fn diagnose(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<CodeBody>>,
) -> Response {
    let body = match required(body, "expected {\"code\": ...}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    idempotent(&sim, &headers, |w| {
        match w.diagnose(&id, body.code.trim()) {
            DiagnoseOutcome::Result(d) => body_of(200, &d),
            DiagnoseOutcome::NotVerified => error_body(
                403,
                "not_verified",
                "confirm an e-mail code for this account first",
            ),
            DiagnoseOutcome::NotFound => error_body(404, "not_found", "no such account"),
        }
    })
}

fn staff_checks(headers: &HeaderMap, body: &Option<Json<ReasonBody>>) -> Result<(), Box<Response>> {
    let staff = headers
        .get("x-staff-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if staff.trim().is_empty() {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "staff_id_required",
            "X-Staff-Id is required",
        )));
    }
    match body {
        Some(Json(b)) if !b.reason.trim().is_empty() => Ok(()),
        _ => Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
            "a reason is required",
        ))),
    }
}

async fn unlock(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ReasonBody>>,
) -> Response {
    if let Err(r) = staff_checks(&headers, &body) {
        return *r;
    }
    idempotent(&sim, &headers, |w| match w.unlock(&id) {
        Some(u) => body_of(200, &u),
        None => error_body(404, "not_found", "no such account"),
    })
}

async fn reset_two_factor(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ReasonBody>>,
) -> Response {
    if let Err(r) = staff_checks(&headers, &body) {
        return *r;
    }
    idempotent(&sim, &headers, |w| match w.reset_two_factor(&id) {
        Some(r) => body_of(200, &r),
        None => error_body(404, "not_found", "no such account"),
    })
}

// ---- status page and reset page ------------------------------------------

async fn summary(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let body = status::summary(&sim.world());
    with_validators(&body, &headers)
}

async fn incidents(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let body = status::incidents(&sim.world());
    with_validators(&body, &headers)
}

/// The page as JSON with an `ETag` (a hash of the body), or `304 Not
/// Modified` when the caller's `If-None-Match` is still current.
fn with_validators<T: serde::Serialize>(body: &T, headers: &HeaderMap) -> Response {
    use std::hash::{Hash, Hasher};
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    let etag = format!("\"{:016x}\"", h.finish());
    let fresh = headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response()
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&etag) {
        response.headers_mut().insert(axum::http::header::ETAG, v);
    }
    response
}

async fn reset_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "recoverbot account simulator: this is where the real site would let you choose a new password.\n",
    )
        .into_response()
}

// ---- /_sim admin ------------------------------------------------------------

async fn outbox(State(sim): State<Sim>) -> Response {
    Json(sim.world().outbox.clone()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncident {
    name: String,
    #[serde(default = "investigating")]
    status: String,
    #[serde(default = "major")]
    impact: String,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    body: Option<String>,
}

fn investigating() -> String {
    "investigating".into()
}
fn major() -> String {
    "major".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentChange {
    status: String,
    #[serde(default)]
    body: Option<String>,
}

const INCIDENT_STATUSES: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
];
const IMPACTS: &[&str] = &["none", "minor", "major", "critical"];

fn incident_json(w: &World, id: &str) -> Response {
    let s = status::summary(w);
    match w.incidents.iter().find(|i| i.id == id) {
        Some(i) => Json(serde_json::json!({
            "id": i.id, "name": i.name, "status": i.status, "impact": i.impact,
            "components": i.components,
            "open": s.incidents.iter().any(|x| x.id == i.id),
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such incident"),
    }
}

async fn list_incidents(State(sim): State<Sim>) -> Response {
    let w = sim.world();
    let all: Vec<_> = w
        .incidents
        .iter()
        .map(|i| serde_json::json!({ "id": i.id, "name": i.name, "status": i.status, "impact": i.impact, "components": i.components }))
        .collect();
    Json(all).into_response()
}

async fn create_incident(State(sim): State<Sim>, body: Option<Json<NewIncident>>) -> Response {
    let new = match required(
        body,
        "expected {\"name\", \"status\", \"impact\", \"components\", \"body\"}",
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !INCIDENT_STATUSES.contains(&new.status.as_str()) || !IMPACTS.contains(&new.impact.as_str())
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "unknown status or impact",
        );
    }
    let mut w = sim.world();
    let now = w.now();
    let id = random_id("inc_", 12).to_lowercase();
    let body = new
        .body
        .unwrap_or_else(|| "We are investigating this issue.".into());
    w.incidents.push(SimIncident {
        id: id.clone(),
        name: new.name,
        status: new.status.clone(),
        impact: new.impact,
        components: new.components,
        created: now,
        resolved: None,
        updates: vec![(new.status, body, now)],
    });
    let mut r = incident_json(&w, &id);
    *r.status_mut() = StatusCode::CREATED;
    r
}

async fn update_incident(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Option<Json<IncidentChange>>,
) -> Response {
    let change = match required(body, "expected {\"status\", \"body\"}") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !INCIDENT_STATUSES.contains(&change.status.as_str()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "unknown status",
        );
    }
    let mut w = sim.world();
    let now = w.now();
    let Some(incident) = w.incidents.iter_mut().find(|i| i.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such incident");
    };
    incident.status = change.status.clone();
    if change.status == "resolved" {
        incident.resolved = Some(now);
    }
    let body = change
        .body
        .unwrap_or_else(|| format!("Status changed to {}.", change.status));
    incident.updates.push((change.status, body, now));
    incident_json(&w, &id)
}

async fn get_faults(State(sim): State<Sim>) -> Response {
    Json(sim.world().faults.clone()).into_response()
}

async fn set_faults(State(sim): State<Sim>, body: Option<Json<Faults>>) -> Response {
    let faults = match required(body, "expected a faults object") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "error_rate is between 0 and 1",
        );
    }
    sim.world().faults = faults.clone();
    Json(faults).into_response()
}

async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.world().faults = Faults::default();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct Advance {
    advance_secs: i64,
}

async fn advance_clock(State(sim): State<Sim>, Json(a): Json<Advance>) -> Response {
    let mut w = sim.world();
    w.clock_offset += chrono::Duration::seconds(a.advance_secs);
    Json(serde_json::json!({ "now": rfc3339(w.now()) })).into_response()
}

async fn stats(State(sim): State<Sim>) -> Response {
    let w = sim.world();
    Json(serde_json::json!({ "requests": w.requests, "mails": w.outbox.len() })).into_response()
}

#[derive(Debug, Deserialize)]
struct TotpQuery {
    #[serde(default)]
    drift_steps: i32,
}

async fn totp_code(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Query(q): Query<TotpQuery>,
) -> Response {
    match sim.world().authenticator_code(&id, q.drift_steps) {
        Some(code) => Json(serde_json::json!({ "code": code })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no authenticator app on that account",
        ),
    }
}
