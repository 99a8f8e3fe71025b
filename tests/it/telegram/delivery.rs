//! Redelivered updates and long replies.

use super::fake_server::{FaultReply, TgChat, TgUser};
use super::harness::{Harness, texts};

#[tokio::test]
async fn the_same_update_delivered_twice_gets_one_reply_and_one_reset() {
    let h = Harness::start().await;
    let u = TgUser::new(7101, "Dup");
    h.say(&u, "I forgot my password").await;
    h.press(&u, "Send me a reset link").await;

    let before = h.fake.messages_to(u.id).len();
    let id = h.fake.user_says(&u, &TgChat::Private, "alice@example.com");
    h.fake.wait_done(id).await;
    h.settled().await;
    assert_eq!(h.fake.messages_to(u.id).len(), before + 1);

    // Telegram hands the same update out again (a lost acknowledgement).
    h.fake.redeliver(id);
    h.fake.wait_done(id).await;
    h.settled().await;
    assert_eq!(
        h.fake.messages_to(u.id).len(),
        before + 1,
        "no second reply"
    );
    assert_eq!(h.requests("POST /v1/password-resets").await, 1);

    // A redelivered button press does nothing either.
    let press = h.fake.press(&u, "Nothing yet");
    h.fake.wait_done(press).await;
    h.settled().await;
    let after_press = h.fake.messages_to(u.id).len();
    h.fake.redeliver(press);
    h.fake.wait_done(press).await;
    h.settled().await;
    assert_eq!(h.fake.messages_to(u.id).len(), after_press);
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("password_reset".into(), "check_inbox".into())
    );
    h.assert_spec_clean();
}

fn long_text() -> String {
    (1..=135)
        .map(|i| {
            format!("Line {i:03}: keep this & that <safe> while reading a rather long explanation.")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_ten_thousand_character_reply_is_split_under_the_limit() {
    let flows = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::support::bot::flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, flows.path().join(path.file_name().unwrap())).unwrap();
    }
    let text = long_text();
    assert!(text.chars().count() >= 10_000, "{}", text.chars().count());
    std::fs::write(
        flows.path().join("long_read.toml"),
        format!(
            "[flow]\nid = \"long_read\"\ntitle = \"A long read\"\ntriggers = ['\\blong read\\b']\n\n\
             [[step]]\nid = \"start\"\nsay = \"\"\"\n{text}\"\"\"\n\
             buttons = [{{ label = \"Back to the menu\", goto = \"main:menu\" }}]\n"
        ),
    )
    .unwrap();
    let dir = flows.path().to_path_buf();
    let h = Harness::start_with(move |s| s.engine.flows_dir = Some(dir)).await;
    let u = TgUser::new(7201, "Long");
    let r = h.say(&u, "a long read please").await;
    assert!(r.len() >= 3, "{} messages", r.len());
    for m in &r {
        assert!(m.text.encode_utf16().count() <= 4096, "{}", m.text.len());
        assert!(m.tags.is_empty());
    }
    for m in &r[..r.len() - 1] {
        assert!(m.buttons.is_empty(), "only the last part has the keyboard");
    }
    assert_eq!(r.last().unwrap().labels(), ["Back to the menu"]);
    // Split on line boundaries: nothing lost, nothing cut.
    assert_eq!(texts(&r).replace("\n---\n", "\n"), text);
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_does_not_stall_the_others() {
    let h = Harness::start().await;
    let gone = TgUser::new(7301, "Gone");
    let next = TgUser::new(7302, "Next");
    h.fake.fail_next(
        "sendMessage",
        1,
        FaultReply::error(403, "Forbidden: bot was blocked by the user"),
    );
    let id = h.fake.user_says(&gone, &TgChat::Private, "/start");
    h.fake.wait_done(id).await;
    h.settled().await;
    assert!(h.fake.messages_to(gone.id).is_empty());
    // The update is done with (not retried forever), and others get answers.
    let r = h.say(&next, "/start").await;
    assert_eq!(r.len(), 1);
    assert_eq!(h.fake.calls_of("sendMessage").len(), 2);
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_store_failure_holds_the_offset_until_the_turn_commits() {
    let mut h = Harness::start_with(|s| s.database.busy_timeout_ms = 200).await;
    let u = TgUser::new(7401, "Lock");
    h.say(&u, "/start").await;

    // Another writer holds the database: the next turn cannot commit.
    let path =
        h.db.settings
            .url
            .trim_start_matches("sqlite://")
            .to_string();
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = h.fake.messages_to(u.id).len();
    let id = h
        .fake
        .user_says(&u, &TgChat::Private, "I forgot my password");
    h.fake
        .wait_for(
            "the bot to ask for the same update again",
            std::time::Duration::from_secs(15),
            |f| {
                f.calls_of("getUpdates")
                    .iter()
                    .filter(|c| c.params["offset"].as_i64() == Some(id))
                    .count()
                    >= 2
            },
        )
        .await;
    assert!(!h.fake.confirmed(id), "the offset did not pass the update");
    assert_eq!(h.fake.messages_to(u.id).len(), before, "nothing was sent");

    blocker.execute_batch("ROLLBACK").unwrap();
    h.fake.wait_done(id).await;
    h.settled().await;
    let replies = &h.fake.messages_to(u.id)[before..];
    assert_eq!(replies.len(), 1, "{}", texts(replies));
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("password_reset".into(), "start".into())
    );
    drop(blocker);
    h.stop().await;
    h.assert_spec_clean();
}
