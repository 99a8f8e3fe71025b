//! A whole bot on the Telegram channel for tests: the real flows, a fresh
//! SQLite database, the account simulator (shared across restarts of the
//! bot), and the real teloxide client talking to the fake Bot API server.

use super::fake_server::{BotMessage, FakeTelegram, TOKEN, TgChat, TgUser};
use crate::support::bot::{ADMIN_TOKEN, test_settings};
use crate::support::db::SqliteDb;
use recoverbot::channels::telegram::{RunOptions, run_with};
use recoverbot::config::{Settings, TelegramMode};
use recoverbot::domain::{ChannelKind, ConversationKey};
use recoverbot::engine::Engine;
use recoverbot::shutdown::{self, ShutdownTrigger};
use recoverbot::simulator::{self as sim, RunningSim};
use recoverbot::startup::{AccountMode, App};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

struct Running {
    app: App,
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
    /// Delivery stops on its own trigger, so a crash can stop it too.
    stop_delivery: ShutdownTrigger,
    delivery: JoinHandle<()>,
}

pub struct Harness {
    pub fake: FakeTelegram,
    pub sim: RunningSim,
    pub db: SqliteDb,
    pub settings: Settings,
    /// The local address of the bot's webhook server (webhook mode).
    pub webhook_addr: Option<SocketAddr>,
    running: Option<Running>,
    http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let fake = FakeTelegram::start().await;
        let db = SqliteDb::new();
        let mut settings = test_settings(&db);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = sim::start(&settings.simulator, listener).await.unwrap();
        settings.account_api.base_url = Some(sim.url.clone());
        settings.account_api.token = Some(sim.token.clone());
        settings.status.url = Some(sim.url.clone());
        settings.telegram.enabled = true;
        settings.telegram.token = Some(TOKEN.into());
        settings.telegram.api_url = fake.url.clone();
        settings.telegram.poll_timeout_secs = 10;
        tweak(&mut settings);
        let mut h = Self {
            fake,
            sim,
            db,
            settings,
            webhook_addr: None,
            running: None,
            http: reqwest::Client::new(),
        };
        h.launch().await;
        h
    }

    /// Starts the bot (a fresh process, as far as the bot can tell) and
    /// waits until it listens for updates.
    pub async fn launch(&mut self) {
        assert!(self.running.is_none(), "already running");
        let app = App::build(self.settings.clone(), AccountMode::SimulatorByDefault)
            .await
            .expect("the bot starts");
        let (trigger, shutdown) = shutdown::channel();
        let mut options = RunOptions::default();
        let webhook = self.settings.telegram.mode == TelegramMode::Webhook;
        if webhook {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            self.webhook_addr = Some(listener.local_addr().unwrap());
            options.webhook_listener = Some(listener);
        }
        let calls_before = self.fake.calls().len();
        let (stop_delivery, delivery_shutdown) = shutdown::channel();
        app.sync_status().await;
        app.spawn_status(delivery_shutdown.clone());
        let delivery = app.spawn_delivery(delivery_shutdown);
        let task = tokio::spawn(run_with(
            app.engine.clone(),
            app.delivery.clone(),
            self.settings.telegram.clone(),
            shutdown,
            options,
        ));
        self.running = Some(Running {
            app,
            trigger,
            task,
            stop_delivery,
            delivery,
        });
        let ready = if webhook { "setwebhook" } else { "getupdates" };
        self.fake
            .wait_for("the bot to start", Duration::from_secs(15), |f| {
                f.calls()[calls_before..]
                    .iter()
                    .any(|c| c.method == ready && (!webhook || c.status == 200))
            })
            .await;
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("the bot runs")
    }

    pub fn store(&self) -> Arc<dyn recoverbot::store::Database> {
        self.running().app.store.clone()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.running().app.engine
    }

    /// Stops the bot the way SIGTERM does; the channel must end cleanly.
    pub async fn stop(&mut self) {
        let r = self.running.take().expect("the bot runs");
        r.trigger.fire();
        let result = tokio::time::timeout(Duration::from_secs(10), r.task)
            .await
            .expect("the channel stops within 10 s")
            .expect("the channel task does not panic");
        result.expect("the channel ends without error");
        r.stop_delivery.fire();
        let _ = r.delivery.await;
        r.app.shut_down().await;
    }

    /// Kills the bot where it stands, as a crash would: polling and
    /// delivery stop, and what was committed stays in the database.
    pub async fn crash(&mut self) {
        let r = self.running.take().expect("the bot runs");
        r.task.abort();
        r.delivery.abort();
        r.stop_delivery.fire();
        let _ = r.task.await;
        r.app.shut_down().await;
    }

    pub fn key(user: &TgUser) -> ConversationKey {
        ConversationKey::new(
            ChannelKind::Telegram,
            user.id.to_string(),
            user.id.to_string(),
        )
    }

    /// Where the user's private conversation stands.
    pub async fn position(&self, user: &TgUser) -> Option<(String, String)> {
        self.engine().position(&Self::key(user)).await.unwrap()
    }

    /// The user writes in their private chat; returns what the bot sent back.
    pub async fn say(&self, user: &TgUser, text: &str) -> Vec<BotMessage> {
        let before = self.fake.messages_to(user.id).len();
        let id = self.fake.user_says(user, &TgChat::Private, text);
        self.fake.wait_done(id).await;
        self.settled().await;
        self.fake.messages_to(user.id)[before..].to_vec()
    }

    /// Waits until delivery has sent everything committed so far.
    pub async fn settled(&self) {
        let store = &self.running().app.store;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if store.open_chats(1).await.unwrap().is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "delivery did not finish within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The user presses a button; returns what the bot sent back.
    pub async fn press(&self, user: &TgUser, label: &str) -> Vec<BotMessage> {
        let before = self.fake.messages_to(user.id).len();
        let id = self.fake.press(user, label);
        self.fake.wait_done(id).await;
        self.settled().await;
        assert!(
            self.fake.callback_answer(id).is_some(),
            "the callback query was answered"
        );
        self.fake.messages_to(user.id)[before..].to_vec()
    }

    /// Telegram POSTing an update to the bot's webhook.
    pub async fn post_update(&self, update: &Value, secret: Option<&str>) -> reqwest::StatusCode {
        let addr = self.webhook_addr.expect("webhook mode");
        let url = self.settings.telegram.webhook_url.clone().unwrap();
        let path = reqwest::Url::parse(&url).unwrap().path().to_string();
        let mut req = self.http.post(format!("http://{addr}{path}")).json(update);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send().await.unwrap().status()
    }

    // ---- the simulator's admin side ---------------------------------------

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.sim.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    /// Requests the simulator received on a route, e.g. `POST /v1/password-resets`.
    pub async fn requests(&self, route: &str) -> u64 {
        self.admin_get("/_sim/stats").await["requests"][route]
            .as_u64()
            .unwrap_or(0)
    }

    /// Every request and answer so far conformed to the Bot API spec.
    pub fn assert_spec_clean(&self) {
        let v = self.fake.violations();
        assert!(v.is_empty(), "Bot API spec violations: {v:#?}");
    }
}

/// The texts of messages, joined for assertions.
pub fn texts(messages: &[BotMessage]) -> String {
    messages
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join("\n---\n")
}
