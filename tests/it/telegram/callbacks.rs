//! Inline keyboard presses: answered at once, stale or forged ones change
//! nothing.

use super::fake_server::TgUser;
use super::harness::{Harness, texts};
use std::time::Duration;

#[tokio::test]
async fn a_stale_or_forged_button_shows_only_the_expired_notice() {
    let h = Harness::start().await;
    let u = TgUser::new(6101, "Sam");
    let menu = h.say(&u, "/start").await.remove(0);
    h.press(&u, "I can't log in").await;
    let at = h.position(&u).await.unwrap();
    let sent = h.fake.messages_to(u.id).len();
    let edits = h.fake.calls_of("editMessageReplyMarkup").len();

    // The old menu's data (its keyboard is gone, but a client can replay
    // it), a forged payload, and garbage.
    let stale = menu
        .buttons
        .iter()
        .find(|b| b.0 == "Is the site down?")
        .and_then(|b| b.1.clone())
        .unwrap();
    let newest = h.fake.messages_to(u.id).last().unwrap().message_id;
    for (message, data) in [
        (menu.message_id, stale.as_str()),
        (newest, "rb1:AAAAAAAAAAAA:0"),
        (newest, "not-ours"),
    ] {
        let id = h.fake.callback(&u, message, data);
        h.fake.wait_done(id).await;
        h.settled().await;
        assert_eq!(
            h.fake.callback_answer(id),
            Some(Some("That button has expired.".to_string())),
            "{data}"
        );
    }
    assert_eq!(h.fake.messages_to(u.id).len(), sent, "no message was sent");
    assert_eq!(
        h.fake.calls_of("editMessageReplyMarkup").len(),
        edits,
        "no keyboard was touched"
    );
    assert_eq!(h.fake.calls_of("deleteMessage").len(), 0);
    assert_eq!(h.position(&u).await.unwrap(), at, "nothing moved");
    h.assert_spec_clean();
}

#[tokio::test]
async fn the_spinner_clears_at_once_even_when_the_action_is_slow() {
    let h = Harness::start().await;
    let u = TgUser::new(6201, "Slo");
    h.say(&u, "I forgot my password").await;
    h.press(&u, "Send me a reset link").await;
    h.say(&u, "alice@example.com").await;
    h.press(&u, "Nothing yet").await;
    h.admin_post("/_sim/faults", serde_json::json!({"latency_ms": 1500}))
        .await;
    let id = h.fake.press(&u, "Check if it was delivered");
    h.fake
        .wait_for("the callback answer", Duration::from_secs(5), |f| {
            f.callback_answer(id).is_some()
        })
        .await;
    let delay = h.fake.callback_answer_delay(id).unwrap();
    assert!(delay < Duration::from_secs(1), "answered after {delay:?}");
    h.fake.wait_done(id).await;
    h.settled().await;
    let last = h.fake.messages_to(u.id).pop().unwrap();
    assert!(
        last.at - h.fake.calls_of("answerCallbackQuery").last().unwrap().at
            >= Duration::from_millis(1000),
        "the reply came well after the answer"
    );
    assert!(
        texts(&[last]).contains("UTC"),
        "the slow answer still arrives"
    );
    h.assert_spec_clean();
}
