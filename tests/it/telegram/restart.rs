//! Stopping, crashing and starting again: the conversation goes on at the
//! same step; no update is lost, none is answered twice.

use super::fake_server::{FaultReply, TgChat, TgUser};
use super::harness::{Harness, texts};
use std::time::Duration;

#[tokio::test]
async fn a_stopped_bot_resumes_the_conversation_where_it_was() {
    let mut h = Harness::start().await;
    let u = TgUser::new(12101, "Res");
    h.say(&u, "I forgot my password").await;
    h.press(&u, "Send me a reset link").await;
    let sent_before = h.fake.messages_to(u.id).len();

    h.stop().await;
    // The user writes while the bot is down.
    let id = h.fake.user_says(&u, &TgChat::Private, "alice@example.com");
    h.launch().await;
    h.fake.wait_done(id).await;
    h.settled().await;

    let replies = &h.fake.messages_to(u.id)[sent_before..];
    assert_eq!(replies.len(), 1, "answered once: {}", texts(replies));
    assert!(replies[0].text.contains("a***@example.com"));
    assert_eq!(h.requests("POST /v1/password-resets").await, 1);
    let r = h.press(&u, "Nothing yet").await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("password_reset".into(), "check_inbox".into())
    );
    // Nothing is left unconfirmed.
    h.stop().await;
    assert!(
        h.fake.pending_ids().is_empty(),
        "{:?}",
        h.fake.pending_ids()
    );
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_crash_between_commit_and_send_sends_the_reply_once_after_the_restart() {
    let mut h = Harness::start().await;
    let u = TgUser::new(12201, "Cra");
    h.say(&u, "I forgot my password").await;
    h.press(&u, "Send me a reset link").await;
    let sent_before = h.fake.messages_to(u.id).len();

    // The turn commits (reply in the outbox) and the reset is requested,
    // then the process dies while the reply is on its way; Telegram never
    // got it.
    h.fake.fail_next("sendMessage", 1, FaultReply::Hang);
    let id = h.fake.user_says(&u, &TgChat::Private, "alice@example.com");
    h.fake
        .wait_for("the reply to hang", Duration::from_secs(10), |f| {
            f.calls_of("sendMessage").iter().any(|c| c.status == 0)
        })
        .await;
    h.crash().await;
    h.fake.release_hangs();
    assert_eq!(h.requests("POST /v1/password-resets").await, 1);

    h.launch().await;
    h.fake.wait_done(id).await;
    h.settled().await;
    let replies = &h.fake.messages_to(u.id)[sent_before..];
    assert_eq!(replies.len(), 1, "{}", texts(replies));
    assert!(replies[0].text.contains("a***@example.com"));
    assert_eq!(
        h.requests("POST /v1/password-resets").await,
        1,
        "the reset was not requested again"
    );
    let r = h.press(&u, "Nothing yet").await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("password_reset".into(), "check_inbox".into())
    );
    h.assert_spec_clean();
}
