//! Telegram's flood limits: a 429 holds back the chat it was for until
//! `retry_after`; other chats and polling go on.

use super::fake_server::{FaultReply, TgChat, TgUser};
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
    // Polling waits out the 429 (a reply already on its way may finish).
    for c in calls[k + 1..].iter().filter(|c| c.method == "getupdates") {
        assert!(c.at - calls[k].at >= Duration::from_secs(1), "{}", c.method);
    }
    h.assert_spec_clean();
}

#[tokio::test]
async fn the_offset_passes_an_update_whose_reply_is_still_held_back_by_a_429() {
    let h = Harness::start().await;
    let a = TgUser::new(8301, "Fro");
    let b = TgUser::new(8302, "Oth");
    // The first reply (to A) gets a 429: A's chat is frozen for 3 s.
    h.fake
        .fail_next("sendMessage", 1, FaultReply::retry_after(3));
    let id_a = h.fake.user_says(&a, &TgChat::Private, "/start");
    h.fake
        .wait_for("A's reply to get its 429", Duration::from_secs(10), |f| {
            f.calls_of("sendMessage").iter().any(|c| c.status == 429)
        })
        .await;
    h.fake
        .wait_for("A's update to be confirmed", Duration::from_secs(5), |f| {
            f.confirmed(id_a)
        })
        .await;
    assert!(
        h.fake.messages_to(a.id).is_empty(),
        "the update was confirmed while its reply was still waiting"
    );

    // B writes meanwhile: B's reply does not wait for A's chat.
    let id_b = h.fake.user_says(&b, &TgChat::Private, "/start");
    h.fake
        .wait_for("B's reply", Duration::from_secs(10), |f| {
            !f.messages_to(b.id).is_empty()
        })
        .await;
    assert!(h.fake.confirmed(id_b));
    assert!(
        h.fake.messages_to(a.id).is_empty(),
        "B was answered while A's chat was still frozen"
    );

    h.settled().await;
    let to_a = h.fake.messages_to(a.id);
    assert_eq!(to_a.len(), 1, "A's reply arrived once");
    assert_eq!(h.fake.messages_to(b.id).len(), 1);

    let calls = h.fake.calls();
    let sends_to_a: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "sendmessage" && c.params["chat_id"].as_i64() == Some(a.id))
        .collect();
    assert_eq!(
        sends_to_a.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200],
        "refused once, then sent once"
    );
    let passed = calls
        .iter()
        .find(|c| c.method == "getupdates" && c.params["offset"].as_i64() > Some(id_a))
        .expect("a getUpdates passed A's update");
    assert!(
        passed.at < sends_to_a[1].at,
        "the offset passed A's update {:?} before A's reply went out",
        sends_to_a[1].at - passed.at
    );
    assert!(
        sends_to_a[1].at >= sends_to_a[0].at + Duration::from_secs(3),
        "A's reply waited out retry_after"
    );
    let to_b = calls
        .iter()
        .find(|c| {
            c.method == "sendmessage"
                && c.status == 200
                && c.params["chat_id"].as_i64() == Some(b.id)
        })
        .unwrap();
    assert!(
        to_b.at < sends_to_a[1].at,
        "B's reply was not held back by A's freeze"
    );
    h.assert_spec_clean();
}
