//! Status announcements over the Discord fake: an incident scripted through
//! the simulator is posted once in the announcement channel, edited in
//! place, resolved with one follow-up; a post a moderator deleted is posted
//! again once.

use super::{Rig, WAIT};
use recoverbot::config::{AnnounceTarget, Impact};
use recoverbot::domain::ChannelKind;
use serde_json::json;

const CHANNEL: u64 = 900_000_000_000_000_001;
const LOGIN_ONLY: u64 = 900_000_000_000_000_002;

fn target(channel: u64, components: &[&str]) -> AnnounceTarget {
    AnnounceTarget {
        channel: ChannelKind::Discord,
        chat_id: channel.to_string(),
        components: components.iter().map(|c| c.to_string()).collect(),
        min_impact: Impact::Minor,
    }
}

async fn rig() -> Rig {
    Rig::start_with(|s| {
        s.status.announce = vec![target(CHANNEL, &[]), target(LOGIN_ONLY, &["Login"])];
    })
    .await
}

fn posts(rig: &Rig, channel: u64) -> usize {
    rig.fake
        .state()
        .calls
        .iter()
        .filter(|c| {
            c.is("POST", &format!("/api/v10/channels/{channel}/messages")) && c.status == 200
        })
        .count()
}

fn edits(rig: &Rig, channel: u64) -> usize {
    let prefix = format!("/api/v10/channels/{channel}/messages/");
    rig.fake
        .state()
        .calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.starts_with(&prefix) && c.status == 200)
        .count()
}

#[tokio::test]
async fn an_incident_is_posted_once_edited_in_place_and_resolved_on_discord() {
    let rig = rig().await;
    let created = rig
        .bot
        .admin_post(
            "/_sim/incidents",
            json!({"name": "Slow payouts", "status": "investigating", "impact": "minor", "components": ["Payments"], "body": "Payouts are delayed."}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    rig.fake
        .wait_until("the post", WAIT, |s| s.messages_in(CHANNEL).len() == 1)
        .await;
    let post_id = rig.fake.messages_in(CHANNEL)[0].id;
    for (n, body) in ["We found the cause.", "A fix is rolling out."]
        .iter()
        .enumerate()
    {
        rig.bot
            .admin_post(
                &format!("/_sim/incidents/{id}"),
                json!({"status": if n == 0 { "identified" } else { "monitoring" }, "body": body}),
            )
            .await;
        rig.fake
            .wait_until("an edit", WAIT, |s| {
                s.messages_in(CHANNEL)
                    .first()
                    .is_some_and(|m| m.content.contains(body))
            })
            .await;
    }
    rig.bot
        .admin_post(
            &format!("/_sim/incidents/{id}"),
            json!({"status": "resolved", "body": "Payouts are on time again."}),
        )
        .await;
    rig.fake
        .wait_until("the follow-up", WAIT, |s| s.messages_in(CHANNEL).len() == 2)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let messages = rig.fake.messages_in(CHANNEL);
    assert_eq!(messages[0].id, post_id, "edited in place");
    assert!(
        messages[0].content.starts_with("✅ Resolved"),
        "{}",
        messages[0].content
    );
    assert!(
        messages[1].content.contains("is resolved"),
        "{}",
        messages[1].content
    );
    assert_eq!(posts(&rig, CHANNEL), 2, "one post and one follow-up");
    assert_eq!(edits(&rig, CHANNEL), 3, "two updates and the resolution");
    assert_eq!(
        posts(&rig, LOGIN_ONLY),
        0,
        "a Payments incident is not for the Login-only channel"
    );
    assert_eq!(
        messages[0].allowed_mentions["parse"],
        json!([]),
        "an announcement pings nobody"
    );
}

#[tokio::test]
async fn a_post_a_moderator_deleted_is_posted_again_once() {
    let rig = rig().await;
    let created = rig
        .bot
        .admin_post(
            "/_sim/incidents",
            json!({"name": "Login failures", "status": "investigating", "impact": "major", "components": ["Login"], "body": "Logins fail."}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    rig.fake
        .wait_until("the posts", WAIT, |s| {
            s.messages_in(CHANNEL).len() == 1 && s.messages_in(LOGIN_ONLY).len() == 1
        })
        .await;
    // A moderator deletes the post in one channel.
    rig.fake.state().messages.retain(|m| m.channel != CHANNEL);
    rig.bot
        .admin_post(
            &format!("/_sim/incidents/{id}"),
            json!({"status": "identified", "body": "We found the cause."}),
        )
        .await;
    rig.fake
        .wait_until("the repost", WAIT, |s| s.messages_in(CHANNEL).len() == 1)
        .await;
    let again = rig.fake.messages_in(CHANNEL)[0].clone();
    assert!(
        again.content.contains("We found the cause."),
        "{}",
        again.content
    );
    // The next update edits the new post: no third post.
    rig.bot
        .admin_post(
            &format!("/_sim/incidents/{id}"),
            json!({"status": "monitoring", "body": "Watching."}),
        )
        .await;
    rig.fake
        .wait_until("the edit of the new post", WAIT, |s| {
            s.messages_in(CHANNEL)
                .first()
                .is_some_and(|m| m.content.contains("Watching."))
        })
        .await;
    assert_eq!(rig.fake.messages_in(CHANNEL)[0].id, again.id);
    assert_eq!(posts(&rig, CHANNEL), 2, "the first post and its one repost");
    assert_eq!(posts(&rig, LOGIN_ONLY), 1);
}
