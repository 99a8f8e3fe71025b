//! Status announcements over the Telegram fake: an incident scripted
//! through the simulator's admin endpoints is posted once per target,
//! edited in place, resolved with one follow-up, across restarts; and the
//! "it's fixed" broadcast reaches every subscriber once, paced, even when
//! the bot is killed halfway.

use super::fake_server::TgUser;
use super::harness::Harness;
use recoverbot::config::{AnnounceTarget, Impact};
use recoverbot::domain::{ChannelKind, ChatRef};
use recoverbot::engine::ports::{Subscription, SubscriptionChange, TurnCommit};
use std::time::Duration;

const CHANNEL: i64 = -100_500;
const PAYMENTS_ONLY: i64 = -100_600;
const CRITICAL_ONLY: i64 = -100_700;

fn target(chat: i64, components: &[&str], min_impact: Impact) -> AnnounceTarget {
    AnnounceTarget {
        channel: ChannelKind::Telegram,
        chat_id: chat.to_string(),
        components: components.iter().map(|c| c.to_string()).collect(),
        min_impact,
    }
}

async fn announcing() -> Harness {
    Harness::start_with(|s| {
        s.status.poll_secs = 1;
        s.status.announce = vec![
            target(CHANNEL, &[], Impact::Minor),
            target(PAYMENTS_ONLY, &["Payments"], Impact::Minor),
            target(CRITICAL_ONLY, &[], Impact::Critical),
        ];
    })
    .await
}

async fn latest_incident(h: &Harness) -> String {
    let list = h.admin_get("/_sim/incidents").await;
    list.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn edits(h: &Harness) -> usize {
    h.fake
        .calls_of("editMessageText")
        .iter()
        .filter(|c| c.params["chat_id"] == CHANNEL && c.status == 200)
        .count()
}

#[tokio::test]
async fn an_incident_is_posted_once_edited_in_place_and_resolved_across_restarts() {
    let mut h = announcing().await;
    h.admin_post(
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "We are looking into failed logins."}),
    )
    .await;
    let id = latest_incident(&h).await;
    let wait = Duration::from_secs(15);
    h.fake
        .wait_for("the post", wait, |f| f.messages_to(CHANNEL).len() == 1)
        .await;
    let post = h.fake.messages_to(CHANNEL)[0].clone();
    assert!(post.text.contains("Login failures"), "{}", post.text);
    assert!(post.text.contains("failed logins"), "{}", post.text);

    for (n, (status, body)) in [
        ("identified", "We found the cause."),
        ("monitoring", "A fix is out; we are watching."),
    ]
    .into_iter()
    .enumerate()
    {
        h.stop().await;
        h.launch().await;
        h.admin_post(
            &format!("/_sim/incidents/{id}"),
            serde_json::json!({"status": status, "body": body}),
        )
        .await;
        h.fake
            .wait_for("an edit", wait, |f| {
                f.calls_of("editMessageText")
                    .iter()
                    .filter(|c| c.status == 200)
                    .count()
                    == n + 1
            })
            .await;
        let edited = h.fake.messages_to(CHANNEL)[0].clone();
        assert_eq!(edited.message_id, post.message_id, "edited in place");
        assert!(edited.text.contains(body), "{}", edited.text);
    }

    h.crash().await;
    h.launch().await;
    h.admin_post(
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Logins work again."}),
    )
    .await;
    h.fake
        .wait_for("the follow-up", wait, |f| f.messages_to(CHANNEL).len() == 2)
        .await;
    // A few more polls: nothing else happens.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let messages = h.fake.messages_to(CHANNEL);
    assert_eq!(messages.len(), 2, "one post and one follow-up");
    assert!(
        messages[0].text.starts_with("✅ Resolved"),
        "{}",
        messages[0].text
    );
    assert!(
        messages[1].text.contains("resolved"),
        "{}",
        messages[1].text
    );
    assert_eq!(edits(&h), 3, "two updates and the resolution");
    assert!(
        h.fake.messages_to(PAYMENTS_ONLY).is_empty(),
        "component filter"
    );
    assert!(
        h.fake.messages_to(CRITICAL_ONLY).is_empty(),
        "impact threshold"
    );
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_user_subscribes_from_is_it_down_and_hears_once_when_it_is_fixed() {
    let h = announcing().await;
    h.admin_post(
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
    )
    .await;
    let id = latest_incident(&h).await;
    let user = TgUser::new(4_200, "Sub");
    // The watcher has seen it within a poll.
    h.fake
        .wait_for("the post", Duration::from_secs(10), |f| {
            f.messages_to(CHANNEL).len() == 1
        })
        .await;
    let reply = h.say(&user, "is the site down?").await;
    let last = reply.last().unwrap();
    assert!(last.text.contains("Login failures"), "{}", last.text);
    let label = "🔔 Tell me when it's fixed";
    assert!(last.labels().contains(&label), "{:?}", last.labels());
    let reply = h.press(&user, label).await;
    assert!(
        reply
            .iter()
            .any(|m| m.text.contains("I'll message you here")),
        "{:?}",
        reply.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    let before = h.fake.messages_to(user.id).len();
    h.admin_post(
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Logins work again."}),
    )
    .await;
    h.fake
        .wait_for("the notice", Duration::from_secs(10), |f| {
            f.messages_to(user.id).len() == before + 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let messages = h.fake.messages_to(user.id);
    assert_eq!(messages.len(), before + 1, "one notice, once");
    assert!(messages.last().unwrap().text.starts_with("✅ Fixed"));
    h.assert_spec_clean();
}

/// Subscribes `n` private chats to `incident` directly in the store (as
/// their "tell me when it's fixed" presses would).
async fn subscribers(h: &Harness, incident: &str, n: i64) {
    let store = h.store();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut t = TurnCommit::outbox_only(ChannelKind::Telegram, None, 1, Vec::new());
        for i in chunk {
            t.subscriptions
                .push(SubscriptionChange::Subscribe(Subscription {
                    chat: ChatRef::new(ChannelKind::Telegram, (500_000 + i).to_string()),
                    incident: incident.into(),
                    created_at: recoverbot::domain::now_millis(),
                    expires_at: recoverbot::domain::now_millis() + 3_600_000,
                }));
        }
        store.commit_turn(t).await.unwrap();
    }
}

fn notices(h: &Harness, n: i64) -> Vec<usize> {
    (0..n)
        .map(|i| h.fake.messages_to(500_000 + i).len())
        .collect()
}

#[tokio::test]
async fn a_broadcast_is_paced_reaches_everyone_once_and_survives_a_kill_halfway() {
    const N: i64 = 2_000;
    const CAP: u32 = 250;
    let mut h = Harness::start_with(|s| {
        s.status.poll_secs = 1;
        s.telegram.bulk_messages_per_second = CAP;
    })
    .await;
    // Telegram's flood control, a little above the bot's bulk cap.
    h.fake.set_flood_limit(CAP as usize + 30);
    h.admin_post(
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
    )
    .await;
    let id = latest_incident(&h).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    subscribers(&h, &id, N).await;
    h.admin_post(
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Fixed."}),
    )
    .await;
    // Someone else talks to the bot meanwhile: answered promptly.
    h.fake
        .wait_for("the broadcast to start", Duration::from_secs(10), |f| {
            f.messages_to(500_000).len() + f.messages_to(500_001).len() > 0
        })
        .await;
    let started = tokio::time::Instant::now();
    let user = TgUser::new(4_300, "Other");
    let asked = tokio::time::Instant::now();
    h.fake.user_says(
        &user,
        &super::fake_server::TgChat::Private,
        "I forgot my password",
    );
    h.fake
        .wait_for("the reply", Duration::from_secs(10), |f| {
            !f.messages_to(user.id).is_empty()
        })
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "a reply waited {:?} behind the broadcast",
        asked.elapsed()
    );
    h.fake
        .wait_for("half the broadcast", Duration::from_secs(30), |f| {
            (0..N)
                .filter(|i| !f.messages_to(500_000 + i).is_empty())
                .count()
                >= (N / 2) as usize
        })
        .await;
    let _ = started;
    // The cap is a sliding window: no second holds more than CAP notices.
    let times: Vec<tokio::time::Instant> = h
        .fake
        .calls_of("sendMessage")
        .iter()
        .filter(|c| {
            c.status == 200
                && c.params["chat_id"]
                    .as_i64()
                    .is_some_and(|id| (500_000..500_000 + N).contains(&id))
        })
        .map(|c| c.at)
        .collect();
    let busiest = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= CAP as usize,
        "{busiest} notices within one second (cap {CAP})"
    );
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    h.crash().await;
    h.launch().await;
    h.fake
        .wait_for("the rest of the broadcast", Duration::from_secs(60), |f| {
            (0..N)
                .filter(|i| !f.messages_to(500_000 + i).is_empty())
                .count() as i64
                >= N - 10
        })
        .await;
    tokio::time::sleep(Duration::from_secs(7)).await; // past the in-doubt grace
    let counts = notices(&h, N);
    assert!(counts.iter().all(|c| *c <= 1), "nobody hears twice");
    let reached = counts.iter().filter(|c| **c == 1).count() as i64;
    assert!(reached >= N - 10, "{reached} of {N} notified");
    let too_many = h
        .fake
        .calls_of("sendMessage")
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(too_many, 0, "no 429s");
    eprintln!(
        "broadcast: {reached} of {N} notified once, {rate:.0} notices/s before the kill (cap {CAP}/s)"
    );
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_dropped_after_the_first_refusal() {
    // No announcement targets: the user's notice is the only message.
    let h = Harness::start_with(|s| s.status.poll_secs = 1).await;
    for name in ["Login failures", "Slow e-mails"] {
        h.admin_post(
            "/_sim/incidents",
            serde_json::json!({"name": name, "status": "investigating", "impact": "major", "components": ["Login"], "body": "Looking."}),
        )
        .await;
    }
    let list = h.admin_get("/_sim/incidents").await;
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let chat = ChatRef::new(ChannelKind::Telegram, "4400");
    let mut t = TurnCommit::outbox_only(ChannelKind::Telegram, None, 1, Vec::new());
    for id in &ids {
        t.subscriptions
            .push(SubscriptionChange::Subscribe(Subscription {
                chat: chat.clone(),
                incident: id.clone(),
                created_at: recoverbot::domain::now_millis(),
                expires_at: recoverbot::domain::now_millis() + 3_600_000,
            }));
    }
    h.store().commit_turn(t).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the watcher has seen both
    h.fake.fail_next(
        "sendMessage",
        1,
        super::fake_server::FaultReply::error(403, "Forbidden: bot was blocked by the user"),
    );
    h.admin_post(
        &format!("/_sim/incidents/{}", ids[0]),
        serde_json::json!({"status": "resolved", "body": "Fixed."}),
    )
    .await;
    let store = h.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = store
            .subscriptions(&ids[1], recoverbot::domain::now_millis())
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still subscribed after the refusal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tries: Vec<u16> = h
        .fake
        .calls_of("sendMessage")
        .iter()
        .filter(|c| c.params["chat_id"] == 4400)
        .map(|c| c.status)
        .collect();
    assert_eq!(tries, [403], "one try, no retry of a permanent refusal");
}
