//! The real `recoverbot serve` process killed with SIGKILL during status
//! work. Two instances on one PostgreSQL database, both announcing to the
//! same Telegram channel: one set of posts, and when the watching instance
//! is killed mid-incident the other finishes the lifecycle within two poll
//! intervals; the survivor's operator listener takes Statuspage webhooks.
//! And a broadcast killed halfway tells nobody twice.

use super::fake_server::{FakeTelegram, TOKEN};
use super::kill::{SIM_ADMIN, SIM_TOKEN, kill9, start_sim};
use crate::support::db::{PgDb, announce, postgres_base_url};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const CHANNEL: i64 = -100_900;
const POLL_SECS: u64 = 2;
/// The bulk cap of these instances (the default, 25, would make the
/// broadcast below take 80 s).
const BULK: u64 = 250;

fn spawn(dir: &Path, n: usize, db: &str, api: &str, sim: &str, listen: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("bot{n}.log")))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("RECOVERBOT__DATABASE__URL", db)
        .env(
            "RECOVERBOT__ENGINE__FLOWS_DIR",
            crate::support::bot::flows_dir(),
        )
        .env("RECOVERBOT__ACCOUNT_API__BASE_URL", sim)
        .env("RECOVERBOT__ACCOUNT_API__TOKEN", SIM_TOKEN)
        .env("RECOVERBOT__STATUS__URL", sim)
        .env("RECOVERBOT__STATUS__POLL_SECS", POLL_SECS.to_string())
        .env(
            "RECOVERBOT__STATUS__ANNOUNCE",
            format!(r#"[{{"channel": "telegram", "chat_id": "{CHANNEL}"}}]"#),
        )
        .env(
            "RECOVERBOT__STATUS__WEBHOOK_SECRET",
            "hook-secret-for-tests-0123456789",
        )
        .env("RECOVERBOT__HTTP__LISTEN", listen)
        .env("RECOVERBOT__TELEGRAM__ENABLED", "true")
        .env("RECOVERBOT__TELEGRAM__TOKEN", TOKEN)
        .env("RECOVERBOT__TELEGRAM__API_URL", api)
        .env("RECOVERBOT__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env(
            "RECOVERBOT__TELEGRAM__BULK_MESSAGES_PER_SECOND",
            BULK.to_string(),
        )
        .env("RUST_LOG", "recoverbot=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn admin(sim: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{sim}{path}"))
        .bearer_auth(SIM_ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The pid in the watcher lease's holder (`<host>-<pid>-<random>`).
async fn leader_pid(db: &PgDb) -> Option<u32> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.settings.url)
        .await
        .unwrap();
    let holder: Option<String> =
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'status-watcher'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    holder.and_then(|h| h.rsplit('-').nth(1).and_then(|p| p.parse().ok()))
}

fn channel_edits(fake: &FakeTelegram) -> usize {
    fake.calls_of("editMessageText")
        .iter()
        .filter(|c| c.params["chat_id"] == CHANNEL && c.status == 200)
        .count()
}

#[tokio::test]
async fn two_instances_post_once_and_the_second_takes_over_when_the_watcher_dies() {
    let Some(base) = postgres_base_url("status_two_instances") else {
        return;
    };
    let db = PgDb::create(&base).await;
    db.open().await; // migrated once, before both start
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let sim = start_sim(dir.path()).await;
    let listens = [free_port(), free_port()];
    let mut bots: Vec<Child> = (0..2)
        .map(|n| {
            spawn(
                dir.path(),
                n,
                &db.settings.url,
                &fake.url,
                &sim.url,
                &listens[n],
            )
        })
        .collect();
    let created = admin(
        &sim.url,
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let wait = Duration::from_secs(30);
    fake.wait_for("the post", wait, |f| f.messages_to(CHANNEL).len() == 1)
        .await;
    let post = fake.messages_to(CHANNEL)[0].message_id;

    // Kill whichever instance watches, then move the incident on.
    let pid = leader_pid(&db).await.expect("one instance holds the lease");
    let leader = bots
        .iter()
        .position(|b| b.id() == Some(pid))
        .expect("the lease names one of the two");
    kill9(&mut bots[leader]).await;
    let killed = Instant::now();
    admin(
        &sim.url,
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "identified", "body": "We found the cause."}),
    )
    .await;
    fake.wait_for("the takeover's edit", wait, |f| channel_edits(f) == 1)
        .await;
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(2 * POLL_SECS) + Duration::from_millis(500),
        "taken over after {takeover:?}"
    );
    admin(
        &sim.url,
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Logins work again."}),
    )
    .await;
    fake.wait_for("the follow-up", wait, |f| f.messages_to(CHANNEL).len() == 2)
        .await;

    // Webhooks on the survivor's operator listener.
    let survivor = &listens[1 - leader];
    let http = reqwest::Client::new();
    let hook = |secret: &str| format!("http://{survivor}/status/webhook/{secret}");
    let r = http
        .post(hook("wrong-secret"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let good = hook("hook-secret-for-tests-0123456789");
    let r = http.post(&good).body("not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&good)
        .body(r#"{"meta": {}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "neither an incident nor a component");
    // A replay of the resolution, as Statuspage would send it: nothing new.
    let incidents: serde_json::Value = reqwest::get(format!("{}/api/v2/incidents.json", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resolved = incidents["incidents"][0].clone();
    assert_eq!(resolved["status"], "resolved");
    let payload = serde_json::json!({"meta": {"unsubscribe": "", "documentation": ""}, "page": {"id": "p", "status_indicator": "none", "status_description": "All Systems Operational"}, "incident": resolved});
    for _ in 0..2 {
        let r = http.post(&good).json(&payload).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }
    tokio::time::sleep(Duration::from_secs(POLL_SECS * 2)).await;

    let messages = fake.messages_to(CHANNEL);
    assert_eq!(
        messages.len(),
        2,
        "one post and one follow-up, from two instances"
    );
    assert_eq!(messages[0].message_id, post, "edited in place");
    assert!(
        messages[0].text.starts_with("✅ Resolved"),
        "{}",
        messages[0].text
    );
    assert_eq!(channel_edits(&fake), 2, "the update and the resolution");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    eprintln!("status: the second instance took over after {takeover:?} (poll {POLL_SECS} s)");
    for bot in &mut bots {
        kill9(bot).await;
    }
    db.drop_db().await;
    announce("ran PostgreSQL half of `status_two_instances`");
}

#[tokio::test]
async fn a_broadcast_killed_with_sigkill_halfway_tells_nobody_twice() {
    const N: i64 = 2_000;
    const FIRST: i64 = 700_000;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bot.db", dir.path().display());
    let fake = FakeTelegram::start().await;
    fake.set_flood_limit(BULK as usize + 30);
    let sim = start_sim(dir.path()).await;
    let created = admin(
        &sim.url,
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    {
        // The subscriptions, as N presses would have made them.
        let settings = recoverbot::config::DatabaseSettings {
            url: db.clone(),
            ..Default::default()
        };
        let store = recoverbot::store::open(&settings).await.unwrap();
        store.migrate().await.unwrap();
        let now = recoverbot::domain::now_millis();
        let mut turn = recoverbot::engine::ports::TurnCommit::outbox_only(
            recoverbot::domain::ChannelKind::Telegram,
            None,
            now,
            Vec::new(),
        );
        turn.subscriptions = (0..N)
            .map(|i| {
                recoverbot::engine::ports::SubscriptionChange::Subscribe(
                    recoverbot::engine::ports::Subscription {
                        chat: recoverbot::domain::ChatRef::new(
                            recoverbot::domain::ChannelKind::Telegram,
                            (FIRST + i).to_string(),
                        ),
                        incident: id.clone(),
                        created_at: now,
                        expires_at: now + 3_600_000,
                    },
                )
            })
            .collect();
        store.commit_turn(turn).await.unwrap();
        store.close().await;
    }
    let listen = free_port();
    let mut bot = spawn(dir.path(), 0, &db, &fake.url, &sim.url, &listen);
    fake.wait_for("the announcement", Duration::from_secs(30), |f| {
        f.messages_to(CHANNEL).len() == 1
    })
    .await;
    admin(
        &sim.url,
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Fixed."}),
    )
    .await;
    let reached = |f: &FakeTelegram| {
        (0..N)
            .filter(|i| !f.messages_to(FIRST + i).is_empty())
            .count() as i64
    };
    fake.wait_for("half the broadcast", Duration::from_secs(60), |f| {
        reached(f) >= N / 2
    })
    .await;
    kill9(&mut bot).await;
    let at_kill = reached(&fake);
    let mut bot = spawn(dir.path(), 0, &db, &fake.url, &sim.url, &listen);
    fake.wait_for("the rest of the broadcast", Duration::from_secs(60), |f| {
        reached(f) >= N - 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await; // past the in-doubt grace
    let twice = (0..N)
        .filter(|i| fake.messages_to(FIRST + i).len() > 1)
        .count();
    assert_eq!(twice, 0, "nobody hears twice");
    let reached = reached(&fake);
    // A notice in flight at the kill is never sent again: it may be lost,
    // never doubled.
    assert!(reached >= N - 5, "{reached} of {N}");
    let too_many = fake
        .calls_of("sendMessage")
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(too_many, 0);
    eprintln!(
        "broadcast with SIGKILL: {at_kill} sent before the kill, {reached} of {N} in all, none twice"
    );
    kill9(&mut bot).await;
}
