//! A whole bot for tests: the real flows, a fresh SQLite database, and the
//! account simulator on a loopback port, talked to over real HTTP.

use super::db::SqliteDb;
use recoverbot::config::Settings;
use recoverbot::domain::{ChannelKind, ConversationKey, EventId, MessageRef};
use recoverbot::engine::{Engine, Inbound, Input, OutButton, Reply};
use recoverbot::startup::{AccountMode, App};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn flows_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

/// Settings for a test bot: the given database, the real flows, the
/// simulator with instant mail delivery unless changed.
pub fn test_settings(db: &SqliteDb) -> Settings {
    let mut s = Settings {
        database: db.settings.clone(),
        ..Settings::default()
    };
    s.simulator.delivery_step_secs = 0;
    s.simulator.admin_token = Some(ADMIN_TOKEN.into());
    s
}

pub struct TestBot {
    pub app: App,
    pub db: SqliteDb,
    http: reqwest::Client,
    buttons: Mutex<HashMap<String, Vec<OutButton>>>,
    events: AtomicU64,
    /// Event ids differ between bots sharing a database.
    run: String,
}

impl TestBot {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = SqliteDb::new();
        let mut settings = test_settings(&db);
        tweak(&mut settings);
        Self::start_on(db, settings).await
    }

    pub async fn start_on(db: SqliteDb, settings: Settings) -> Self {
        let app = App::build(settings, AccountMode::SimulatorByDefault)
            .await
            .expect("the test bot starts");
        app.sync_status().await;
        Self {
            app,
            db,
            http: reqwest::Client::new(),
            buttons: Mutex::new(HashMap::new()),
            events: AtomicU64::new(0),
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.app.engine
    }

    pub fn key(user: &str) -> ConversationKey {
        ConversationKey::new(ChannelKind::Telegram, format!("chat-{user}"), user)
    }

    pub fn next_event(&self) -> EventId {
        EventId::new(format!(
            "ev-{}-{}",
            self.run,
            self.events.fetch_add(1, Ordering::SeqCst)
        ))
    }

    pub async fn send(&self, user: &str, input: Input) -> Reply {
        let event = self.next_event();
        self.send_event(user, input, event).await
    }

    pub async fn send_event(&self, user: &str, input: Input, event: EventId) -> Reply {
        let reply = self
            .engine()
            .handle(Inbound {
                key: Self::key(user),
                message_id: Some(MessageRef::new(format!("msg-{}", event.as_str()))),
                event_id: Some(event),
                locale: Some("en".into()),
                input,
            })
            .await
            .expect("the turn succeeds");
        if !reply.buttons().is_empty() || reply.text().is_some() {
            self.buttons
                .lock()
                .unwrap()
                .insert(user.to_string(), reply.buttons().to_vec());
        }
        reply
    }

    pub async fn say(&self, user: &str, text: &str) -> Reply {
        self.send(user, Input::Text(text.into())).await
    }

    /// Presses the button with this label on the user's latest reply.
    pub async fn press(&self, user: &str, label: &str) -> Reply {
        let payload = self.payload(user, label);
        self.send(user, Input::Button(payload)).await
    }

    pub fn payload(&self, user: &str, label: &str) -> String {
        let buttons = self.buttons.lock().unwrap();
        let shown = buttons.get(user).cloned().unwrap_or_default();
        shown
            .iter()
            .find(|b| b.label == label)
            .unwrap_or_else(|| {
                panic!(
                    "no button {label:?}; the latest reply had {:?}",
                    shown.iter().map(|b| &b.label).collect::<Vec<_>>()
                )
            })
            .payload
            .clone()
    }

    // ---- the simulator's admin side ---------------------------------------

    pub fn sim_url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.app.simulator.as_ref().expect("simulator runs").url
        )
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(self.sim_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.sim_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let answer = r.json().await.unwrap_or(Value::Null);
        if path.starts_with("/_sim/incidents") {
            // The watcher's look at the page, as its next poll would be.
            self.app.sync_status().await;
        }
        answer
    }

    pub async fn outbox(&self) -> Vec<Value> {
        self.admin_get("/_sim/outbox")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The newest verification code mailed to `to`.
    pub async fn mailed_code(&self, to: &str) -> String {
        self.outbox()
            .await
            .iter()
            .rev()
            .find(|m| m["to"] == to && m["kind"] == "verification")
            .and_then(|m| m["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no code was mailed to {to}"))
    }

    /// How many requests the simulator received on a route, e.g.
    /// `POST /v1/password-resets`.
    pub async fn requests(&self, route: &str) -> u64 {
        self.admin_get("/_sim/stats").await["requests"][route]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn authenticator_code(&self, account: &str, drift_steps: i32) -> String {
        self.admin_get(&format!("/_sim/totp/{account}?drift_steps={drift_steps}"))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The labels of a reply's buttons.
pub fn labels(reply: &Reply) -> Vec<&str> {
    reply.buttons().iter().map(|b| b.label.as_str()).collect()
}

pub fn text(reply: &Reply) -> &str {
    reply.text().unwrap_or_default()
}

pub fn at(reply: &Reply) -> (&str, &str) {
    (reply.flow.as_str(), reply.step.as_str())
}
