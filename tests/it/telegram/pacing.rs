//! Telegram's flood limits: a 429 holds back the chat it was for until
//! `retry_after`; other chats and polling go on.

use super::fake_server::{FaultReply, TgUser};
use super::harness::Harness;
use std::time::Duration;

#[tokio::test]
async fn a_429_holds_back_its_chat_for_retry_after_then_the_reply_goes_out() {
    let h = Harness::start().await;
    let u = TgUser::new(8101, "Flo");
    h.fake
        .fail_next("sendMessage", 1, FaultReply::retry_after(2));
    let r = h.say(&u, "/start").await;
    assert_eq!(r.len(), 1, "delivered once, after the wait");

    let calls = h.fake.calls();
    let k = calls
        .iter()
        .position(|c| c.status == 429)
        .expect("the 429 was served");
    let window_end = calls[k].at + Duration::from_secs(2);
    let next: Vec<_> = calls[k + 1..]
        .iter()
        .filter(|c| c.method == "sendmessage")
        .collect();
    assert!(!next.is_empty());
    for c in &next {
        assert!(
            c.at >= window_end,
            "{} came {:?} into the 2 s window",
            c.method,
            c.at - calls[k].at
        );
    }
    assert_eq!(next[0].method, "sendmessage", "the same message is retried");
    assert_eq!(next[0].status, 200);
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_429_on_get_updates_pauses_polling() {
    let h = Harness::start().await;
    let u = TgUser::new(8201, "Pol");
    h.fake
        .fail_next("getUpdates", 1, FaultReply::retry_after(1));
    h.say(&u, "/start").await;
    // The poll that was waiting returned the update; the next one got 429.
    let r = h.say(&u, "menu").await;
    assert_eq!(r.len(), 1);
    let calls = h.fake.calls();
    let k = calls.iter().position(|c| c.status == 429).unwrap();
    for c in &calls[k + 1..] {
        assert!(c.at - calls[k].at >= Duration::from_secs(1), "{}", c.method);
    }
    h.assert_spec_clean();
}
