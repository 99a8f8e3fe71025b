//! Resumes, slow actions, rate limits, and `recoverbot serve`.

use super::fake::{self, Injected429, SESSION_ID};
use super::{Rig, WAIT, text};
use recoverbot::channels::discord::conversation_key;
use recoverbot::domain::{ChannelKind, ChatRef, EventId};
use recoverbot::engine::ports::{Direction, OutboxState};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_same_message_create_replayed_after_a_resume_gets_one_reply() {
    let rig = Rig::start().await;
    let u = rig.user(1030);
    let id = rig.fake.new_id();
    let seq = rig.fake.dispatch(
        "MESSAGE_CREATE",
        fake::dm_message(id, 1030, "I forgot my password"),
    );
    rig.wait_delivered(id).await;
    assert_eq!(u.messages().len(), 1);

    // The gateway asks for a reconnect; on resume it replays the message.
    rig.fake.reconnect_replaying(vec![seq]);
    rig.fake
        .wait_until("the client to resume", WAIT, |s| !s.resumes.is_empty())
        .await;
    {
        let s = rig.fake.state();
        assert_eq!(s.resumes[0]["session_id"], SESSION_ID);
        assert_eq!(s.resumes[0]["token"], format!("Bot {}", fake::TOKEN));
        assert!(s.resumes[0]["seq"].as_u64().unwrap() >= seq);
        assert_eq!(s.identifies.len(), 1, "a resume, not a new session");
        assert_eq!(s.connections, 2);
    }
    // A later message is answered after the replayed one was handled.
    let r = u.say("menu").await;
    assert_eq!(r.len(), 1);

    let replies = rig
        .fake
        .state()
        .count("POST", &format!("/api/v10/channels/{}/messages", u.dm()));
    assert_eq!(replies, 2, "one reply per message, none for the replay");
    let transcript = rig
        .bot
        .app
        .store
        .transcript(&conversation_key(1030u64), 50)
        .await
        .unwrap();
    let inbound = transcript
        .iter()
        .filter(|e| e.direction == Direction::In)
        .count();
    assert_eq!(inbound, 2, "the replayed message was one turn, not two");
    rig.stop().await;
}

#[tokio::test]
async fn a_button_whose_action_takes_5_s_is_acknowledged_within_3_s_then_answered_in_the_dm() {
    let rig = Rig::start_with(|s| {
        s.account_api.answer_deadline_ms = 8_000;
        s.account_api.request_timeout_ms = 10_000;
    })
    .await;
    let u = rig.user(1040);
    u.say("I forgot my password").await;
    u.press("Send me a reset link").await;
    u.say("alice@example.com").await;
    u.press("Nothing yet").await;
    rig.bot
        .admin_post("/_sim/faults", json!({"latency_ms": 5000}))
        .await;

    let msg = rig
        .fake
        .message_with_button(u.dm(), "Check if it was delivered");
    let custom_id = msg.custom_id("Check if it was delivered").unwrap();
    let id = rig.fake.new_id();
    let pressed_at = tokio::time::Instant::now();
    let token = rig.fake.press(id, 1040, &msg, &custom_id);
    rig.wait_delivered(id).await;

    let answers = rig.fake.callbacks(&token);
    assert_eq!(answers.len(), 1, "one first answer");
    let (at, body) = &answers[0];
    assert_eq!(body["type"], 6, "a deferred update: {body}");
    let first = at.duration_since(pressed_at);
    assert!(first < Duration::from_secs(3), "answered after {first:?}");

    // The next step went to the DM once the action was done, and the
    // pressed message's buttons were cleared, both through the outbox.
    let calls = rig.fake.calls();
    let route = format!("/api/v10/channels/{}/messages", u.dm());
    let sent: Vec<_> = calls
        .iter()
        .filter(|c| c.is("POST", &route) && c.at > *at)
        .collect();
    assert_eq!(sent.len(), 1);
    let took = sent[0].at.duration_since(pressed_at);
    assert!(
        took >= Duration::from_millis(4_500),
        "the action took {took:?}"
    );
    let content = sent[0].body["content"].as_str().unwrap();
    assert!(content.contains("UTC"), "{content}");
    assert_eq!(sent[0].body["allowed_mentions"]["parse"], json!([]));
    let edit = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{route}/{}", msg.id)))
        .expect("the pressed message was edited");
    assert_eq!(edit.body["components"], json!([]));
    let pressed = u.messages().into_iter().find(|m| m.id == msg.id).unwrap();
    assert_eq!(pressed.components, json!([]));
    rig.stop().await;
}

#[tokio::test]
async fn a_429_on_message_create_is_retried_after_the_wait_and_nothing_is_sent_inside_the_window() {
    let rig = Rig::start().await;
    let a = rig.user(1050);
    let b = rig.user(1051);
    let route_a = format!("/api/v10/channels/{}/messages", a.dm());

    // Route-scoped: the reply waits retry_after, then goes once.
    rig.fake.rate_limit(
        "POST",
        &route_a,
        1,
        Injected429 {
            retry_after: 1.5,
            global: false,
        },
    );
    let r = a.say("I forgot my password").await;
    assert!(text(&r).contains("reset link"));
    let calls = rig.fake.calls();
    let sends: Vec<_> = calls.iter().filter(|c| c.is("POST", &route_a)).collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].status, 429);
    assert_eq!(sends[1].status, 200);
    let gap = sends[1].at.duration_since(sends[0].at);
    assert!(gap >= Duration::from_millis(1_500), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(4_000), "retried after {gap:?}");
    assert_eq!(a.messages().len(), 1, "sent once");

    // Global: no request at all inside the window, whatever its route.
    rig.fake.rate_limit(
        "POST",
        &route_a,
        1,
        Injected429 {
            retry_after: 1.0,
            global: true,
        },
    );
    let (ra, rb) = tokio::join!(a.say("menu"), async {
        // B writes just after A's 429.
        rig.fake
            .wait_until("A's 429", WAIT, |s| {
                s.calls.iter().filter(|c| c.status == 429).count() == 2
            })
            .await;
        b.say("menu").await
    });
    assert_eq!(ra.len(), 1);
    assert_eq!(rb.len(), 1);
    let calls = rig.fake.calls();
    let limited = calls.iter().filter(|c| c.status == 429).nth(1).unwrap();
    let inside: Vec<_> = calls
        .iter()
        .filter(|c| c.at > limited.at && c.at < limited.at + Duration::from_millis(1_000))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert!(inside.is_empty(), "sent inside the window: {inside:?}");
    rig.stop().await;
}

#[tokio::test]
async fn serve_runs_the_discord_channel_from_the_environment() {
    let fake = fake::FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bot.db", dir.path().display());
    let flows = crate::support::bot::flows_dir();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("RECOVERBOT__DISCORD__ENABLED", "true")
        .env("RECOVERBOT__DISCORD__TOKEN", fake::TOKEN)
        .env("RECOVERBOT__DISCORD__API_URL", &fake.url)
        .env("RECOVERBOT__DATABASE__URL", &db)
        .env("RECOVERBOT__ENGINE__FLOWS_DIR", flows.display().to_string())
        .env("RECOVERBOT__ACCOUNT_API__USE_SIMULATOR", "true")
        // The most talkative level, serenity's included.
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    fake.wait_ready().await;
    let id = fake.new_id();
    fake.dispatch(
        "MESSAGE_CREATE",
        fake::dm_message(id, 1060, "I forgot my password"),
    );
    fake.wait_until("the bot's reply", WAIT, |s| {
        !s.messages_in(fake::dm_channel_of(1060)).is_empty()
    })
    .await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Discord channel starting"), "{stderr}");
    assert!(
        !stderr.contains(fake::TOKEN),
        "the token never shows: {stderr}"
    );
    assert!(
        !stderr.contains("forgot my password"),
        "message text never shows"
    );
}

#[tokio::test]
async fn a_dm_whose_send_fails_after_the_commit_is_delivered_later_without_a_new_event() {
    let rig = Rig::start().await;
    let u = rig.user(1070);
    let route = format!("/api/v10/channels/{}/messages", u.dm());
    // Discord has a bad moment: the first two sends get 5xx.
    rig.fake.server_error("POST", &route, 1, 500);
    rig.fake.server_error("POST", &route, 1, 503);

    let id = rig.fake.new_id();
    rig.fake.dispatch(
        "MESSAGE_CREATE",
        fake::dm_message(id, 1070, "I forgot my password"),
    );
    rig.fake
        .wait_until("the first send to fail", WAIT, |s| {
            s.calls
                .iter()
                .any(|c| c.is("POST", &route) && c.status == 500)
        })
        .await;
    let store = &rig.bot.app.store;
    assert!(
        store
            .processed_event(ChannelKind::Discord, &EventId::new(id.to_string()))
            .await
            .unwrap()
            .is_some(),
        "the turn was committed before the send failed"
    );
    assert!(u.messages().is_empty(), "nothing arrived yet");

    // Nobody writes again: delivery retries on its own.
    rig.wait_delivered(id).await;
    let got = u.messages();
    assert_eq!(got.len(), 1, "delivered exactly once: {}", text(&got));
    assert!(text(&got).contains("reset link"), "{}", text(&got));
    let sends: Vec<u16> = rig
        .fake
        .calls()
        .iter()
        .filter(|c| c.is("POST", &route))
        .map(|c| c.status)
        .collect();
    assert_eq!(sends, [500, 503, 200], "two failures, then one success");
    let events: Vec<String> = rig
        .fake
        .state()
        .dispatched
        .iter()
        .filter_map(|(_, f)| f["t"].as_str().map(str::to_string))
        .filter(|t| t == "MESSAGE_CREATE" || t == "INTERACTION_CREATE")
        .collect();
    assert_eq!(events, ["MESSAGE_CREATE"], "the user sent nothing else");
    let entries = store
        .chat_outbox(&ChatRef::new(ChannelKind::Discord, "dm:1070"))
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].state, entries[0].attempts),
        (OutboxState::Delivered, 3)
    );
    rig.stop().await;
}
