//! `recoverbot serve` as an operator runs it: the token from the
//! environment, the Telegram channel against the fake Bot API server.

use super::fake_server::{FakeTelegram, TOKEN, TgChat, TgUser};
use std::process::Stdio;
use std::time::Duration;

fn env(dir: &std::path::Path, api_url: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "RECOVERBOT__DATABASE__URL",
            format!("sqlite://{}/bot.db", dir.display()),
        ),
        (
            "RECOVERBOT__ENGINE__FLOWS_DIR",
            crate::support::bot::flows_dir().display().to_string(),
        ),
        ("RECOVERBOT__ACCOUNT_API__USE_SIMULATOR", "true".into()),
        ("RECOVERBOT__TELEGRAM__ENABLED", "true".into()),
        ("RECOVERBOT__TELEGRAM__TOKEN", TOKEN.into()),
        ("RECOVERBOT__TELEGRAM__API_URL", api_url.into()),
        ("RECOVERBOT__TELEGRAM__POLL_TIMEOUT_SECS", "5".into()),
        // As chatty as it gets: even then the token must not show.
        ("RUST_LOG", "debug".into()),
    ]
}

#[tokio::test]
async fn serve_runs_the_channel_and_never_prints_the_token() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .envs(env(dir.path(), &fake.url))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    fake.wait_for("serve to poll", Duration::from_secs(30), |f| {
        !f.calls_of("getUpdates").is_empty()
    })
    .await;
    let u = TgUser::new(13101, "Ops");
    let id = fake.user_says(&u, &TgChat::Private, "/start");
    fake.wait_done(id).await;
    fake.wait_for("the reply", Duration::from_secs(15), |f| {
        f.messages_to(u.id).len() == 1
    })
    .await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    let secret_part = TOKEN.split(':').nth(1).unwrap();
    assert!(
        !printed.contains(secret_part),
        "the token leaked into the output"
    );
    assert!(
        printed.contains("Telegram"),
        "it says what it runs: {printed}"
    );
}

#[test]
fn webhook_mode_without_a_public_url_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = env(dir.path(), "http://127.0.0.1:9");
    vars.push(("RECOVERBOT__TELEGRAM__MODE", "webhook".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crate::support::recoverbot(dir.path(), &["serve"], &vars);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RECOVERBOT__TELEGRAM__WEBHOOK_URL"), "{err}");
}
