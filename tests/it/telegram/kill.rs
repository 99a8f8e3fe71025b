//! SIGKILL at the worst moments. The real `recoverbot serve` process, its
//! SQLite file, an account simulator in a process of its own (it outlives
//! the bot, so its mails can be counted), and the fake Bot API.

use super::fake_server::{FakeTelegram, FaultReply, TOKEN, TgChat, TgUser};
use recoverbot::engine::EXPIRED_BUTTON;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

pub(super) const SIM_TOKEN: &str = "kill-test-sim-token";
pub(super) const SIM_ADMIN: &str = "kill-test-admin-token";

pub(super) struct Sim {
    _child: Child,
    pub url: String,
}

pub(super) async fn start_sim(dir: &Path) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .args(["account-sim", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_clear()
        .env("RECOVERBOT__SIMULATOR__TOKEN", SIM_TOKEN)
        .env("RECOVERBOT__SIMULATOR__ADMIN_TOKEN", SIM_ADMIN)
        .env("RECOVERBOT__SIMULATOR__DELIVERY_STEP_SECS", "0")
        .env("RECOVERBOT__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the simulator says where it listens");
        if let Some(u) = line.strip_prefix("account simulator listening on ") {
            break u.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Sim { _child: child, url }
}

fn spawn_bot(dir: &Path, api_url: &str, sim_url: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bot.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env(
            "RECOVERBOT__DATABASE__URL",
            format!("sqlite://{}/bot.db", dir.display()),
        )
        .env(
            "RECOVERBOT__ENGINE__FLOWS_DIR",
            crate::support::bot::flows_dir(),
        )
        .env("RECOVERBOT__ACCOUNT_API__BASE_URL", sim_url)
        .env("RECOVERBOT__ACCOUNT_API__TOKEN", SIM_TOKEN)
        .env("RECOVERBOT__STATUS__URL", sim_url)
        .env("RECOVERBOT__TELEGRAM__ENABLED", "true")
        .env("RECOVERBOT__TELEGRAM__TOKEN", TOKEN)
        .env("RECOVERBOT__TELEGRAM__API_URL", api_url)
        .env("RECOVERBOT__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env("RECOVERBOT__LOG__LEVEL", "info")
        .env("RUST_LOG", "recoverbot=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// SIGKILL: no shutdown code runs.
pub(super) async fn kill9(child: &mut Child) {
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

async fn mails_to(sim: &Sim, address: &str) -> usize {
    let mails: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/_sim/outbox", sim.url))
        .bearer_auth(SIM_ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    mails
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["to"] == address)
        .count()
}

#[tokio::test]
async fn a_reply_committed_but_not_sent_when_the_bot_is_killed_goes_out_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let sim = start_sim(dir.path()).await;
    let mut bot = spawn_bot(dir.path(), &fake.url, &sim.url);
    let u = TgUser::new(14101, "Kil");
    fake.user_says(&u, &TgChat::Private, "/start");
    fake.wait_for("the first reply", Duration::from_secs(30), |f| {
        f.messages_to(u.id).len() == 1
    })
    .await;

    // The turn commits; its reply is handed to Telegram, which never
    // answers; the bot is killed right there.
    fake.fail_next("sendMessage", 1, FaultReply::Hang);
    fake.user_says(&u, &TgChat::Private, "I forgot my password");
    fake.wait_for("the reply to hang", Duration::from_secs(10), |f| {
        f.calls_of("sendMessage").iter().any(|c| c.status == 0)
    })
    .await;
    kill9(&mut bot).await;
    fake.release_hangs();

    let mut bot = spawn_bot(dir.path(), &fake.url, &sim.url);
    fake.wait_for(
        "the reply after the restart",
        Duration::from_secs(30),
        |f| {
            f.messages_to(u.id)
                .iter()
                .any(|m| m.text.contains("reset link"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = fake.messages_to(u.id);
    let log = std::fs::read_to_string(dir.path().join("bot.log")).unwrap_or_default();
    let texts: Vec<&String> = sent.iter().map(|m| &m.text).collect();
    // The committed, never-sent reply goes out exactly once.
    let replies = sent
        .iter()
        .filter(|m| m.text.contains("reset link"))
        .count();
    assert_eq!(
        replies,
        1,
        "exactly once: {texts:?}; bot log: {}",
        tail(&log)
    );
    // And the kill doubled at most one message (the bound per kill).
    assert!(sent.len() <= 3, "{texts:?}; bot log: {}", tail(&log));
    if sent.len() == 3 {
        eprintln!("note: a message sent before the kill went out twice: {texts:?}");
    }
    kill9(&mut bot).await;
}

/// One user's walk: what to do, and whether it is typed or pressed.
const WALK: [(&str, bool); 4] = [
    ("I forgot my password", false),
    ("Send me a reset link", true),
    ("", false), // the user's own address
    ("Nothing yet", true),
];

#[tokio::test]
async fn random_kills_during_200_conversations_lose_nothing_and_double_no_mail() {
    const USERS: i64 = 200;
    const KILLS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeTelegram::start().await);
    fake.set_latency(Duration::from_millis(100));
    let sim = start_sim(dir.path()).await;
    let mut bot = spawn_bot(dir.path(), &fake.url, &sim.url);
    fake.wait_for("the bot to poll", Duration::from_secs(30), |f| {
        !f.calls_of("getUpdates").is_empty()
    })
    .await;

    let lost = Arc::new(AtomicUsize::new(0));
    let mut users = tokio::task::JoinSet::new();
    for n in 0..USERS {
        let (fake, lost) = (fake.clone(), lost.clone());
        users.spawn(async move {
            // Arrivals spread over the kills; a little thinking between turns.
            tokio::time::sleep(Duration::from_millis(100 * n as u64)).await;
            let u = TgUser::new(15_000 + n, "Walker");
            for (i, (what, press)) in WALK.iter().enumerate() {
                let before = fake.messages_to(u.id).len();
                if *press {
                    fake.press(&u, what);
                } else if what.is_empty() {
                    fake.user_says(&u, &TgChat::Private, &format!("walker{n}@example.com"));
                } else {
                    fake.user_says(&u, &TgChat::Private, what);
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while fake.messages_to(u.id).len() <= before {
                    if tokio::time::Instant::now() > deadline {
                        lost.fetch_add(1, Ordering::SeqCst);
                        eprintln!("user {n}: no answer to turn {i}");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(300 + 37 * (n as u64 % 10))).await;
            }
        });
    }
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..KILLS {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let wait = 1_000 + rng_state % 1_500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        kill9(&mut bot).await;
        bot = spawn_bot(dir.path(), &fake.url, &sim.url);
    }
    while let Some(done) = users.join_next().await {
        done.expect("a user's walk does not panic");
    }
    let log = std::fs::read_to_string(dir.path().join("bot.log")).unwrap_or_default();
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "lost turns; bot log tail: {}",
        tail(&log)
    );

    let mut doubled_mails = 0;
    let mut extra_replies = 0;
    for n in 0..USERS {
        if mails_to(&sim, &format!("walker{n}@example.com")).await != 1 {
            doubled_mails += 1;
        }
        extra_replies += fake
            .messages_to(15_000 + n)
            .len()
            .saturating_sub(WALK.len());
    }
    let expired = fake
        .calls_of("answerCallbackQuery")
        .iter()
        .filter(|c| c.params["text"] == EXPIRED_BUTTON)
        .count();
    eprintln!(
        "random kills: {KILLS} kills, {USERS} conversations, {extra_replies} doubled replies, {expired} expired notices"
    );
    assert_eq!(doubled_mails, 0, "reset mails sent twice (or not at all)");
    assert!(
        extra_replies <= KILLS,
        "{extra_replies} doubled replies for {KILLS} kills"
    );
    assert_eq!(expired, 0, "no press was answered \"expired\"");
    kill9(&mut bot).await;
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
