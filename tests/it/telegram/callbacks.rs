//! Inline keyboard presses: answered at once, stale or forged ones change
//! nothing.

use super::fake_server::{FaultReply, TgUser};
use super::harness::{Harness, texts};
use recoverbot::domain::{ChannelKind, ConversationKey};
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

/// How many times the bot answered callback query `update_id` with `text`.
fn answers_with(h: &Harness, update_id: i64, text: &str) -> usize {
    let qid = h.fake.update_json(update_id)["callback_query"]["id"].clone();
    h.fake
        .calls_of("answerCallbackQuery")
        .iter()
        .filter(|c| c.params["callback_query_id"] == qid && c.params["text"] == text)
        .count()
}

/// Alice at the login step; returns her newest message with a keyboard and
/// one of its buttons' data.
async fn alice_with_a_keyboard(h: &Harness, alice: &TgUser) -> (i64, String) {
    h.say(alice, "/start").await;
    h.press(alice, "I can't log in").await;
    let shown = h
        .fake
        .messages_to(alice.id)
        .into_iter()
        .rev()
        .find(|m| m.buttons.iter().any(|b| b.1.is_some()))
        .expect("Alice has a keyboard");
    let data = shown.buttons.iter().find_map(|b| b.1.clone()).unwrap();
    (shown.message_id, data)
}

#[tokio::test]
async fn a_press_by_someone_else_on_alices_keyboard_is_expired_and_changes_nothing() {
    let h = Harness::start().await;
    let alice = TgUser::new(6301, "Alice");
    let mallory = TgUser::new(6302, "Mallory");
    let (message, data) = alice_with_a_keyboard(&h, &alice).await;
    let store = h.engine().store().clone();
    let alices = Harness::key(&alice);
    let before = store.load_conversation(&alices).await.unwrap().unwrap();
    let chat = alices.chat_ref();
    let queued = store.chat_outbox(&chat).await.unwrap().len();
    let sent = h.fake.messages_to(alice.id).len();
    let edits = h.fake.calls_of("editMessageReplyMarkup").len();

    // Mallory's client sends a press on Alice's message, in Alice's chat.
    let id = h.fake.callback_as(&mallory, &alice, message, &data);
    h.fake.wait_done(id).await;
    h.settled().await;
    assert_eq!(
        h.fake.callback_answer(id),
        Some(Some(recoverbot::engine::EXPIRED_BUTTON.to_string()))
    );
    assert_eq!(
        h.fake.messages_to(alice.id).len(),
        sent,
        "nothing was sent to Alice's chat"
    );
    assert!(h.fake.messages_to(mallory.id).is_empty());
    assert_eq!(
        store.chat_outbox(&chat).await.unwrap().len(),
        queued,
        "nothing was queued for Alice's chat"
    );
    assert_eq!(
        h.fake.calls_of("editMessageReplyMarkup").len(),
        edits,
        "Alice's keyboard was not touched"
    );
    let in_alices_chat = ConversationKey::new(
        ChannelKind::Telegram,
        alice.id.to_string(),
        mallory.id.to_string(),
    );
    assert!(
        store
            .load_conversation(&in_alices_chat)
            .await
            .unwrap()
            .is_none(),
        "no conversation was created for Mallory"
    );
    assert!(h.position(&mallory).await.is_none());
    let after = store.load_conversation(&alices).await.unwrap().unwrap();
    assert_eq!(
        (after.flow, after.step, after.version, after.variables),
        (before.flow, before.step, before.version, before.variables),
        "Alice's conversation did not move"
    );

    // Telegram hands the same press out again: no second notice either.
    h.fake.redeliver(id);
    h.fake
        .wait_for("the redelivery", Duration::from_secs(10), |f| {
            !f.pending_ids().contains(&id)
        })
        .await;
    h.fake.wait_done(id).await;
    h.settled().await;
    assert_eq!(
        answers_with(&h, id, recoverbot::engine::EXPIRED_BUTTON),
        1,
        "one notice"
    );
    assert_eq!(h.fake.messages_to(alice.id).len(), sent);
    assert_eq!(store.chat_outbox(&chat).await.unwrap().len(), queued);
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_stale_press_redelivered_after_a_crash_gets_no_second_notice() {
    let mut h = Harness::start().await;
    let alice = TgUser::new(6401, "Alice");
    let mallory = TgUser::new(6402, "Mallory");
    let (message, data) = alice_with_a_keyboard(&h, &alice).await;
    let sent = h.fake.messages_to(alice.id).len();

    // The press is handled and committed, but the poll that would confirm
    // it never returns: the bot dies first.
    h.fake.fail_next("getUpdates", 1, FaultReply::Hang);
    let id = h.fake.callback_as(&mallory, &alice, message, &data);
    h.fake
        .wait_for("the press to be handled", Duration::from_secs(10), |f| {
            f.callback_answer(id).is_some()
                && f.calls_of("getUpdates").iter().any(|c| c.status == 0)
        })
        .await;
    assert_eq!(
        h.fake.callback_answer(id),
        Some(Some(recoverbot::engine::EXPIRED_BUTTON.to_string()))
    );
    h.crash().await;
    h.fake.release_hangs();
    assert!(!h.fake.confirmed(id), "the offset never passed the press");
    assert!(h.fake.pending_ids().contains(&id));

    // The next process gets the press again.
    h.launch().await;
    h.fake
        .wait_for("the press to be confirmed", Duration::from_secs(15), |f| {
            f.confirmed(id)
        })
        .await;
    h.settled().await;
    // Let the answer watchdog run out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        answers_with(&h, id, recoverbot::engine::EXPIRED_BUTTON),
        1,
        "one notice, none after the restart"
    );
    assert_eq!(h.fake.messages_to(alice.id).len(), sent, "nothing sent");
    assert!(h.fake.messages_to(mallory.id).is_empty());
    assert_eq!(
        h.position(&alice).await.unwrap(),
        ("wrong_password".into(), "start".into())
    );
    h.assert_spec_clean();
}
