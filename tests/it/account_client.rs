//! The account API client: against the simulator for every endpoint, and
//! against fault-injecting fakes (wiremock) for retries, 429s, hangs, the
//! circuit breaker and token hygiene.

use recoverbot::account_api::breaker::BreakerState;
use recoverbot::account_api::statuspage::Summary;
use recoverbot::account_api::{AccountClient, ApiError, ClientOptions};
use recoverbot::config::{AccountApiSettings, SimulatorSettings};
use recoverbot::domain::{AccountId, Email, OneTimeCode};
use recoverbot::engine::ports::IdempotencyStore;
use recoverbot::simulator::{self as sim, RunningSim};
use recoverbot::store::MemoryStore;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "sk-test-token-do-not-leak-3141";
const ADMIN: &str = "admin-secret";

fn options() -> ClientOptions {
    ClientOptions {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(2_000),
        ..ClientOptions::from(&AccountApiSettings::default())
    }
}

async fn simulator() -> RunningSim {
    let settings = SimulatorSettings {
        token: Some(TOKEN.into()),
        admin_token: Some(ADMIN.into()),
        delivery_step_secs: 0,
        mails_per_address_per_hour: 3,
        ..SimulatorSettings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::start(&settings, listener).await.unwrap()
}

fn client_for(url: &str, store: Arc<MemoryStore>) -> AccountClient {
    AccountClient::new(url, &SecretString::from(TOKEN), options(), store).unwrap()
}

async fn admin(sim: &RunningSim, verb: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(verb, format!("{}{path}", sim.url))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

#[tokio::test]
async fn the_simulator_refuses_requests_without_the_token() {
    let sim = simulator().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/password-resets", sim.url))
        .json(&serde_json::json!({"email": "alice@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = AccountClient::new(
        &sim.url,
        &SecretString::from("nope"),
        options(),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let err = wrong
        .request_password_reset(&email("a@b.co"), "s")
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized), "{err}");
}

#[tokio::test]
async fn password_resets_are_accepted_tracked_and_rejected_when_malformed() {
    let sim = simulator().await;
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    let accepted = client
        .request_password_reset(&email("alice@example.com"), "r1")
        .await
        .unwrap();
    assert!(accepted.reset_id.starts_with("rst_"));
    assert_eq!(accepted.status, "queued");
    let status = client.reset_status(&accepted.reset_id).await.unwrap();
    assert_eq!(status.status, "delivered");
    assert!(status.sent_at.is_some() && status.delivered_at.is_some());
    assert_eq!(status.recipient_domain, "example.com");
    assert!(matches!(
        client.reset_status("rst_missing").await,
        Err(ApiError::NotFound)
    ));

    // The contract's 422 for a malformed address (sent raw: Email would refuse it).
    let r = reqwest::Client::new()
        .post(format!("{}/v1/password-resets", sim.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"email": "not-an-address"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_email"
    );
}

#[tokio::test]
async fn unknown_addresses_get_the_same_answers_and_statuses() {
    let sim = simulator().await;
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    let known = client
        .request_password_reset(&email("alice@example.com"), "k")
        .await
        .unwrap();
    let unknown = client
        .request_password_reset(&email("nobody@example.com"), "u")
        .await
        .unwrap();
    assert_eq!(known.status, unknown.status);
    let (a, b) = (
        client.reset_status(&known.reset_id).await.unwrap(),
        client.reset_status(&unknown.reset_id).await.unwrap(),
    );
    assert_eq!(
        (a.status.as_str(), a.recipient_domain.as_str()),
        (b.status.as_str(), b.recipient_domain.as_str())
    );
}

#[tokio::test]
async fn too_many_resets_for_one_address_get_429_with_retry_after() {
    let sim = simulator().await;
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    for i in 0..3 {
        client
            .request_password_reset(&email("carol@example.com"), &format!("lim{i}"))
            .await
            .unwrap();
    }
    let err = client
        .request_password_reset(&email("Carol@example.com"), "lim3")
        .await
        .unwrap_err();
    match err {
        ApiError::RateLimited { retry_after_secs } => {
            assert!(retry_after_secs > 3000, "{retry_after_secs}")
        }
        other => panic!("expected a rate limit, got {other}"),
    }
}

#[tokio::test]
async fn verification_codes_confirm_expire_and_run_out_of_attempts() {
    let sim = simulator().await;
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    let started = client
        .start_verification(&email("alice@example.com"), "v1")
        .await
        .unwrap();
    assert!(started.verification_id.starts_with("ver_"));
    let outbox = admin(&sim, reqwest::Method::GET, "/_sim/outbox", None).await;
    let code = outbox[0]["code"].as_str().unwrap().to_string();
    let wrong = OneTimeCode::parse(if code == "999999" { "111111" } else { "999999" }).unwrap();
    let r = client
        .confirm_verification(&started.verification_id, &wrong, "c1")
        .await
        .unwrap();
    assert!(!r.verified);
    assert_eq!(r.attempts_left, Some(4));
    let r = client
        .confirm_verification(
            &started.verification_id,
            &OneTimeCode::parse(&code).unwrap(),
            "c2",
        )
        .await
        .unwrap();
    assert!(r.verified);
    assert_eq!(r.account_id.as_deref(), Some("acc_alice"));

    // Five wrong tries use a code up.
    let other = client
        .start_verification(&email("bob@example.com"), "v2")
        .await
        .unwrap();
    for i in 0..5 {
        client
            .confirm_verification(&other.verification_id, &wrong, &format!("w{i}"))
            .await
            .unwrap();
    }
    let err = client
        .confirm_verification(&other.verification_id, &wrong, "w5")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 410, .. }),
        "{err}"
    );

    // Ten minutes later a code has expired.
    let late = client
        .start_verification(&email("carol@example.com"), "v3")
        .await
        .unwrap();
    admin(
        &sim,
        reqwest::Method::POST,
        "/_sim/clock",
        Some(serde_json::json!({"advance_secs": 601})),
    )
    .await;
    let err = client
        .confirm_verification(&late.verification_id, &wrong, "l1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 410, ref code } if code == "expired"),
        "{err}"
    );
}

async fn verified_client(sim: &RunningSim, who: &str) -> AccountClient {
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    let started = client
        .start_verification(&email(&format!("{who}@example.com")), "vv")
        .await
        .unwrap();
    let outbox = admin(sim, reqwest::Method::GET, "/_sim/outbox", None).await;
    let code = outbox
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["to"] == format!("{who}@example.com"))
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .confirm_verification(
            &started.verification_id,
            &OneTimeCode::parse(&code).unwrap(),
            "cc",
        )
        .await
        .unwrap();
    assert!(r.verified);
    client
}

#[tokio::test]
async fn login_status_needs_a_recent_confirmation_and_reports_locks() {
    let sim = simulator().await;
    let client = client_for(&sim.url, Arc::new(MemoryStore::new()));
    let bob = AccountId::parse("acc_bob").unwrap();
    let err = client.login_status(&bob).await.unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 403, ref code } if code == "not_verified"),
        "{err}"
    );
    let client = verified_client(&sim, "bob").await;
    let s = client.login_status(&bob).await.unwrap();
    assert!(s.locked_until.is_some());
    assert_eq!(s.failed_attempts_24h, 7);
    assert!(s.two_factor.enabled);
    assert!(!s.recent_logins.is_empty());
    // Thirty minutes later the confirmation no longer counts.
    admin(
        &sim,
        reqwest::Method::POST,
        "/_sim/clock",
        Some(serde_json::json!({"advance_secs": 1801})),
    )
    .await;
    assert!(client.login_status(&bob).await.is_err());
}

#[tokio::test]
async fn two_factor_diagnosis_finds_the_clock_drift_and_spends_the_code() {
    let sim = simulator().await;
    let client = verified_client(&sim, "alice").await;
    let alice = AccountId::parse("acc_alice").unwrap();
    let code = admin(
        &sim,
        reqwest::Method::GET,
        "/_sim/totp/acc_alice?drift_steps=-3",
        None,
    )
    .await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let code = OneTimeCode::parse(&code).unwrap();
    let d = client
        .diagnose_two_factor(&alice, &code, "d1")
        .await
        .unwrap();
    assert!(d.matches);
    assert_eq!(d.drift_steps, Some(-3));
    // Spent: a second, separate diagnosis of the same code finds nothing.
    let again = client
        .diagnose_two_factor(&alice, &code, "d2")
        .await
        .unwrap();
    assert!(!again.matches);
    let far = admin(
        &sim,
        reqwest::Method::GET,
        "/_sim/totp/acc_alice?drift_steps=12",
        None,
    )
    .await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let d = client
        .diagnose_two_factor(&alice, &OneTimeCode::parse(&far).unwrap(), "d3")
        .await
        .unwrap();
    assert!(!d.matches, "beyond ±10 steps");
}

#[tokio::test]
async fn staff_can_unlock_an_account_and_reset_two_factor() {
    let sim = simulator().await;
    let client = verified_client(&sim, "bob").await;
    let bob = AccountId::parse("acc_bob").unwrap();
    let u = client
        .unlock(&bob, "staff-7", "verified by phone", "u1")
        .await
        .unwrap();
    assert_eq!(u.locked_until, None);
    assert_eq!(client.login_status(&bob).await.unwrap().locked_until, None);
    let r = client
        .reset_two_factor(&bob, "staff-7", "lost phone, identity checked", "t1")
        .await
        .unwrap();
    assert!(!r.enabled);
    let err = client
        .unlock(&bob, "staff-7", "  ", "u2")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 422, ref code } if code == "reason_required"),
        "{err}"
    );
}

#[tokio::test]
async fn one_idempotency_scope_sends_one_mail_however_often_it_is_called() {
    let sim = simulator().await;
    let store = Arc::new(MemoryStore::new());
    let client = client_for(&sim.url, store.clone());
    let a = client
        .request_password_reset(&email("alice@example.com"), "same-click")
        .await
        .unwrap();
    let b = client
        .request_password_reset(&email("alice@example.com"), "same-click")
        .await
        .unwrap();
    assert_eq!(a, b);
    // After a crash the response may be unrecorded: the stored key alone
    // still makes the service answer the same and send nothing new.
    let key = store
        .idempotency_record("same-click", "unused", 0)
        .await
        .unwrap()
        .key;
    let replay_store = Arc::new(MemoryStore::new());
    replay_store
        .idempotency_record("same-click", &key, 0)
        .await
        .unwrap();
    let replayed = client_for(&sim.url, replay_store)
        .request_password_reset(&email("alice@example.com"), "same-click")
        .await
        .unwrap();
    assert_eq!(replayed, a);
    let outbox = admin(&sim, reqwest::Method::GET, "/_sim/outbox", None).await;
    assert_eq!(outbox.as_array().unwrap().len(), 1);
    let stats = admin(&sim, reqwest::Method::GET, "/_sim/stats", None).await;
    assert_eq!(
        stats["requests"]["POST /v1/password-resets"], 2,
        "the recorded response spared one call"
    );
}

#[tokio::test]
async fn the_status_page_is_served_in_statuspage_v2_format() {
    let sim = simulator().await;
    let raw: Value = reqwest::get(format!("{}/api/v2/summary.json", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "page",
        "status",
        "components",
        "incidents",
        "scheduled_maintenances",
    ] {
        assert!(raw.get(key).is_some(), "{key}");
    }
    assert_eq!(raw["status"]["indicator"], "none");
    assert_eq!(raw["status"]["description"], "All Systems Operational");
    assert!(
        raw["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "operational")
    );

    let created = admin(
        &sim,
        reqwest::Method::POST,
        "/_sim/incidents",
        Some(serde_json::json!({"name": "Login errors", "impact": "major", "components": ["Login"], "body": "Investigating."})),
    )
    .await;
    let summary_url = format!("{}/api/v2/summary.json", sim.url);
    let read = || async {
        reqwest::get(&summary_url)
            .await
            .unwrap()
            .json::<Summary>()
            .await
            .unwrap()
    };
    let summary = read().await;
    assert_eq!(summary.status.indicator, "major");
    let incident = &summary.incidents[0];
    assert_eq!(incident.status, "investigating");
    assert_eq!(incident.incident_updates[0].body, "Investigating.");
    assert!(
        summary
            .components
            .iter()
            .any(|c| c.name == "Login" && c.status == "major_outage")
    );

    let id = created["id"].as_str().unwrap();
    admin(
        &sim,
        reqwest::Method::POST,
        &format!("/_sim/incidents/{id}"),
        Some(serde_json::json!({"status": "resolved", "body": "Fixed."})),
    )
    .await;
    let summary = read().await;
    assert!(summary.incidents.is_empty());
    assert_eq!(summary.status.indicator, "none");
}

#[tokio::test]
async fn the_admin_endpoints_need_their_own_token() {
    let sim = simulator().await;
    let r = reqwest::Client::new()
        .get(format!("{}/_sim/outbox", sim.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API token is not the admin token");
}

// ---- fault-injecting fakes ------------------------------------------------

/// When each request arrived, and its Idempotency-Key.
type Seen = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Answers from a script, one response per request, recording each request.
struct Script {
    replies: Mutex<Vec<ResponseTemplate>>,
    seen: Seen,
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.seen.lock().unwrap().push((Instant::now(), key));
        let mut replies = self.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.remove(0)
        } else {
            replies[0].clone()
        }
    }
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(202)
        .set_body_json(serde_json::json!({"reset_id": "rst_1", "status": "queued"}))
}

async fn scripted(
    replies: Vec<ResponseTemplate>,
) -> (MockServer, Arc<Mutex<Vec<(Instant, Option<String>)>>>) {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/password-resets"))
        .respond_with(Script {
            replies: Mutex::new(replies),
            seen: seen.clone(),
        })
        .mount(&server)
        .await;
    (server, seen)
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_idempotency_key() {
    let (server, seen) = scripted(vec![
        ResponseTemplate::new(503),
        ResponseTemplate::new(500),
        accepted(),
    ])
    .await;
    let client = client_for(&server.uri(), Arc::new(MemoryStore::new()));
    let r = client
        .request_password_reset(&email("a@b.co"), "retry-me")
        .await
        .unwrap();
    assert_eq!(r.reset_id, "rst_1");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let key = seen[0].1.clone().expect("an Idempotency-Key is sent");
    assert!(
        seen.iter().all(|(_, k)| k.as_deref() == Some(key.as_str())),
        "{seen:?}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (server, seen) = scripted(vec![ResponseTemplate::new(422).set_body_json(
        serde_json::json!({"error": {"code": "invalid_email", "message": "no"}}),
    )])
    .await;
    let client = client_for(&server.uri(), Arc::new(MemoryStore::new()));
    let err = client
        .request_password_reset(&email("a@b.co"), "once")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_email"));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let (server, seen) = scripted(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        accepted(),
    ])
    .await;
    let client = client_for(&server.uri(), Arc::new(MemoryStore::new()));
    client
        .request_password_reset(&email("a@b.co"), "wait")
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].0 - seen[0].0;
    assert!(
        gap >= Duration::from_millis(1000),
        "nothing was sent inside the window: {gap:?}"
    );
}

#[tokio::test]
async fn a_long_retry_after_is_handed_back_instead_of_waited_out() {
    let (server, seen) = scripted(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "120"),
    ])
    .await;
    let client = client_for(&server.uri(), Arc::new(MemoryStore::new()));
    let err = client
        .request_password_reset(&email("a@b.co"), "later")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::RateLimited {
                retry_after_secs: 120
            }
        ),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_circuit_opens_and_makes_no_calls_while_open() {
    let (server, seen) = scripted(vec![ResponseTemplate::new(500)]).await;
    let opts = ClientOptions {
        max_attempts: 1,
        breaker_threshold: 3,
        breaker_open_for: Duration::from_secs(60),
        ..options()
    };
    let client = AccountClient::new(
        &server.uri(),
        &SecretString::from(TOKEN),
        opts,
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    for i in 0..3 {
        let err = client
            .request_password_reset(&email("a@b.co"), &format!("f{i}"))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Unavailable(_)), "{err}");
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);
    let calls_when_opened = seen.lock().unwrap().len();
    for i in 0..5 {
        let err = client
            .request_password_reset(&email("a@b.co"), &format!("o{i}"))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::CircuitOpen), "{err}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        calls_when_opened,
        "zero calls while open"
    );
}

#[tokio::test]
async fn a_request_that_never_answers_gets_the_user_a_fallback_within_three_seconds() {
    use recoverbot::engine::{Engine, EngineConfig, Inbound, Input};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted().set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let client = Arc::new(client_for(&server.uri(), store.clone()));
    let actions = recoverbot::account_api::ApiActions::new(client);
    let engine = Engine::new(
        recoverbot::flow::load_dir(&crate::support::bot::flows_dir()).unwrap(),
        store,
        Arc::new(actions),
        EngineConfig::from_settings(&recoverbot::config::Settings::default()),
    );
    let key = recoverbot::domain::ConversationKey::new(
        recoverbot::domain::ChannelKind::Console,
        "c",
        "hang",
    );
    let say = |text: &str| Inbound {
        key: key.clone(),
        event_id: None,
        message_id: None,
        locale: None,
        input: Input::Text(text.into()),
    };
    engine.handle(say("I forgot my password")).await.unwrap();
    engine.handle(say("Send me a reset link")).await.unwrap();
    let started = Instant::now();
    let r = engine.handle(say("alice@example.com")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.step, "service_down");
    assert!(r.buttons().iter().any(|b| b.label == "Try again"));
}

/// Collects everything logged while it is installed.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn transport_errors_never_reveal_the_token_in_errors_debug_or_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut texts = Vec::new();
        // Nothing listens on port 1; then a server that sends garbage.
        let closed = AccountClient::new(
            "http://127.0.0.1:1",
            &SecretString::from(TOKEN),
            options(),
            Arc::new(MemoryStore::new()),
        )
        .unwrap();
        let err = closed
            .request_password_reset(&email("a@b.co"), "t")
            .await
            .unwrap_err();
        texts.push(format!("{err} {err:?} {closed:?}"));
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
            .mount(&server)
            .await;
        let garbage = client_for(&server.uri(), Arc::new(MemoryStore::new()));
        let err = garbage.reset_status("rst_1").await.unwrap_err();
        texts.push(format!("{err} {err:?} {garbage:?}"));
        let err = garbage
            .login_status(&AccountId::parse("acc_x").unwrap())
            .await
            .unwrap_err();
        texts.push(format!("{err} {err:?}"));
        for t in &texts {
            assert!(!t.contains(TOKEN), "{t}");
        }
    });
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logged.is_empty(), "the failures were logged");
    assert!(!logged.contains(TOKEN), "{logged}");
    assert!(!logged.contains("a@b.co"), "no addresses in logs either");
}
