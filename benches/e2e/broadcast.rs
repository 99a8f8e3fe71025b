//! The broadcast mode of the e2e bench (`--broadcast N`): N chats are
//! subscribed to a login incident straight in the bot's database (as their
//! "tell me when it's fixed" presses would), the real `recoverbot serve`
//! watches the simulator's status page, the incident is resolved, and the
//! fake Bot API counts every notice, the rate, the busiest second and its
//! 429 answers (Telegram's flood control, 30 messages a second).

use super::{
    Children, Fake, Options, clock_ticks_per_sec, cpu_ticks, serve_fake, start_bot,
    start_simulator, tail,
};
use recoverbot::config::DatabaseSettings;
use recoverbot::domain::{ChannelKind, ChatRef, now_millis};
use recoverbot::engine::ports::{Subscription, SubscriptionChange, TurnCommit};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Subscribers' chat ids start here.
const FIRST: i64 = 300_000_000;
const ADMIN: &str = "bench-admin-token";

async fn admin(sim: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{sim}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("JSON")
}

/// Subscribes `n` chats to `incident` in the bot's (not yet running)
/// database, through the store.
async fn subscribe(db: &std::path::Path, incident: &str, n: usize) {
    let settings = DatabaseSettings {
        url: format!("sqlite://{}", db.display()),
        ..DatabaseSettings::default()
    };
    let store = recoverbot::store::open(&settings)
        .await
        .expect("open the database");
    store.migrate().await.expect("migrate");
    let now = now_millis();
    for chunk in (0..n as i64).collect::<Vec<_>>().chunks(1_000) {
        let mut turn = TurnCommit::outbox_only(ChannelKind::Telegram, None, now, Vec::new());
        turn.subscriptions = chunk
            .iter()
            .map(|i| {
                SubscriptionChange::Subscribe(Subscription {
                    chat: ChatRef::new(ChannelKind::Telegram, (FIRST + i).to_string()),
                    incident: incident.to_string(),
                    created_at: now,
                    expires_at: now + 86_400_000,
                })
            })
            .collect();
        store.commit_turn(turn).await.expect("subscribe");
    }
    store.close().await;
}

pub async fn run(opts: Arc<Options>, n: usize) {
    let tck = clock_ticks_per_sec() as f64;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fake = Fake::new(opts.api_latency);
    fake.flood = Some(std::sync::Mutex::default());
    let fake = Arc::new(fake);
    let api_url = serve_fake(fake.clone()).await;
    let mut children = Children(Vec::new());
    let (sim, sim_url) = start_simulator(&opts.bin, dir.path());
    children.0.push(sim);

    let created = admin(
        &sim_url,
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
    )
    .await;
    let incident = created["id"].as_str().expect("an incident id").to_string();
    let t = Instant::now();
    subscribe(&dir.path().join("bot.db"), &incident, n).await;
    let subscribing = t.elapsed();

    let mut extra = vec![("RECOVERBOT__STATUS__POLL_SECS", "1".to_string())];
    if let Some(rate) = opts.bulk_rate {
        extra.push((
            "RECOVERBOT__TELEGRAM__BULK_MESSAGES_PER_SECOND",
            rate.to_string(),
        ));
    }
    let bot = start_bot(&opts.bin, dir.path(), &api_url, &sim_url, &extra);
    let bot_pid = bot.id().to_string();
    children.0.push(bot);
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !fake.polled.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < ready_by,
            "recoverbot serve did not poll within 60 s:\n{}",
            tail(&dir.path().join("bot.log"), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the watcher see the incident before it ends.
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "e2e bench, broadcast: recoverbot serve (Telegram, SQLite) and {n} subscribers of one incident"
    );
    println!(
        "bulk cap: {}; the fake answers 429 above {} messages a second",
        opts.bulk_rate
            .map_or_else(|| "the bot's default".to_string(), |r| format!("{r}/s")),
        super::FLOOD_PER_SECOND
    );
    println!(
        "subscribing {n} chats in the store: {:.2} s",
        subscribing.as_secs_f64()
    );
    let cpu_before = cpu_ticks(&bot_pid);
    let resolved = Instant::now();
    admin(
        &sim_url,
        &format!("/_sim/incidents/{incident}"),
        serde_json::json!({"status": "resolved", "body": "Logins work again."}),
    )
    .await;
    let deadline = resolved + Duration::from_secs(opts.max_secs);
    let mut first = None;
    let mut sends: Vec<Duration> = Vec::with_capacity(n);
    loop {
        let (reached, more) = {
            let inner = fake.lock();
            let reached = (0..n as i64)
                .filter(|i| {
                    inner
                        .chats
                        .get(&(FIRST + i))
                        .is_some_and(|c| c.next_message_id > 0)
                })
                .count();
            (reached, inner.notice_times.len())
        };
        if first.is_none() && more > 0 {
            first = Some(resolved.elapsed());
        }
        if reached >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = resolved.elapsed();
    let cpu = cpu_ticks(&bot_pid) - cpu_before;
    let inner = fake.lock();
    let counts: Vec<i64> = (0..n as i64)
        .map(|i| {
            inner
                .chats
                .get(&(FIRST + i))
                .map_or(0, |c| c.next_message_id)
        })
        .collect();
    sends.extend(inner.notice_times.iter().map(|t| *t - resolved));
    drop(inner);
    sends.sort();
    let reached = counts.iter().filter(|c| **c >= 1).count();
    let doubled = counts.iter().filter(|c| **c > 1).count();
    let busiest = (0..sends.len())
        .map(|i| {
            sends[i..]
                .iter()
                .take_while(|t| **t - sends[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = match (sends.first(), sends.last()) {
        (Some(a), Some(b)) if b > a => (*b - *a).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "notified: {reached} of {n} (twice: {doubled}) in {:.1} s; first notice {:.2} s after the resolution",
        elapsed.as_secs_f64(),
        first.unwrap_or_default().as_secs_f64()
    );
    println!(
        "rate: {:.1} notices/s on average, {busiest} in the busiest second; 429s: {}",
        if span > 0.0 {
            (sends.len() - 1) as f64 / span
        } else {
            0.0
        },
        fake.too_many.load(Ordering::Relaxed)
    );
    println!(
        "bot CPU: {:.0} µs per notice ({:.1}% of a core)",
        cpu as f64 / tck * 1e6 / reached.max(1) as f64,
        cpu as f64 / tck / elapsed.as_secs_f64() * 100.0
    );
}
