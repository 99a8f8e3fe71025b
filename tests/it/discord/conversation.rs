//! DMs with buttons, and buttons that were not ours.

use super::fake::{APP_ID, TOKEN};
use super::{Rig, WAIT, labels, text};
use recoverbot::channels::discord::{conversation_key, intents};
use serde_json::json;

#[tokio::test]
async fn a_dm_conversation_with_buttons_walks_a_full_password_reset() {
    let rig = Rig::start().await;

    // Connected as the bot, with only the intents it needs, and the
    // commands registered globally (no guild_ids configured).
    {
        let s = rig.fake.state();
        let identify = &s.identifies[0];
        assert_eq!(identify["token"], format!("Bot {TOKEN}"));
        assert_eq!(identify["intents"], intents().bits());
        assert_eq!(identify["intents"], 1 | (1 << 9) | (1 << 12) | (1 << 15));
        let put = s
            .calls
            .iter()
            .find(|c| c.is("PUT", &format!("/api/v10/applications/{APP_ID}/commands")))
            .expect("commands registered globally");
        let names: Vec<_> = put
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["recover", "help", "status", "stop"]);
        assert!(s.calls.iter().any(|c| c.is("GET", "/api/v10/gateway")));
    }

    let u = rig.user(1001);
    let r = u.say("I forgot my password").await;
    assert_eq!(r.len(), 1, "one message");
    assert!(text(&r).contains("reset link"), "{}", text(&r));
    assert!(labels(&r).contains(&"Send me a reset link".to_string()));
    let asked = r[0].id;

    let r = u.press("Send me a reset link").await;
    assert!(text(&r).contains("e-mail address"), "{}", text(&r));
    // The pressed message lost its buttons (type 7 update), its text stayed.
    let pressed = u.messages().into_iter().find(|m| m.id == asked).unwrap();
    assert_eq!(pressed.components, json!([]));
    assert!(pressed.content.contains("reset link"));

    let r = u.say("alice@example.com").await;
    assert!(text(&r).contains("a***@example.com"), "{}", text(&r));
    assert!(!text(&r).contains("alice@"), "the address is never echoed");
    let mails = rig.bot.outbox().await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["kind"], "reset");
    assert_eq!(mails[0]["to"], "alice@example.com");

    let r = u.press("Nothing yet").await;
    assert!(text(&r).contains("Spam"), "{}", text(&r));
    let r = u.press("Check if it was delivered").await;
    assert!(text(&r).contains("UTC"), "{}", text(&r));
    u.press("Found it").await;
    let r = u.press("It worked, choosing a password").await;
    assert!(text(&r).contains("12 characters"), "{}", text(&r));
    u.press("Done, new password set").await;
    let r = u.press("I'm in").await;
    assert!(text(&r).contains("Did this solve"), "{}", text(&r));
    u.press("Yes, I'm in").await;

    let position = rig
        .bot
        .engine()
        .position(&conversation_key(1001u64))
        .await
        .unwrap();
    assert_eq!(position, Some(("feedback".into(), "thanks".into())));
    let feedback = rig.bot.app.store.recent_feedback(5).await.unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].topic, "password_reset");
    assert_eq!(feedback[0].answer, "solved");

    // Every message the bot made mentions nobody.
    let msgs = u.messages();
    assert!(msgs.len() >= 10);
    for m in &msgs {
        assert_eq!(
            m.allowed_mentions,
            json!({"parse": [], "users": [], "roles": []}),
            "{m:?}"
        );
    }
    // Button presses were acknowledged with type 6; the pressed message
    // lost its buttons (an edit in the DM) and the next step came as a new
    // DM message, both through the outbox.
    let calls = rig.fake.calls();
    let callbacks: Vec<_> = calls
        .iter()
        .filter(|c| c.path.ends_with("/callback"))
        .collect();
    assert_eq!(callbacks.len(), 8);
    for c in &callbacks {
        assert_eq!(c.body["type"], 6, "{:?}", c.body);
        assert_eq!(c.status, 204);
    }
    let edits: Vec<_> = calls
        .iter()
        .filter(|c| {
            c.method == "PATCH"
                && c.path
                    .starts_with(&format!("/api/v10/channels/{}/messages/", u.dm()))
        })
        .collect();
    assert_eq!(edits.len(), 8, "one cleared keyboard per press");
    assert!(edits.iter().all(|c| c.body["components"] == json!([])));
    assert!(
        msgs.iter()
            .all(|m| m.components == json!([]) || m.id == msgs.last().unwrap().id),
        "only the newest message keeps buttons"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_forged_custom_id_gets_an_ephemeral_expired_and_changes_nothing() {
    let rig = Rig::start().await;
    let u = rig.user(1002);
    u.say("I forgot my password").await;
    let msg = rig.fake.message_with_button(u.dm(), "Send me a reset link");
    let real = msg.custom_id("Send me a reset link").unwrap();
    let key = conversation_key(1002u64);
    let before = rig.bot.engine().position(&key).await.unwrap();
    let made = u.messages().len();

    // A well-formed payload with a made-up nonce, garbage, and a real
    // payload pressed by someone who has no conversation.
    let presses = [
        (1002, "rb1:forgedforged:0".to_string()),
        (1002, "../admin?x=1".to_string()),
        (1002, format!("{real}:9")),
        (1003, real.clone()),
    ];
    for (user, custom_id) in presses {
        let id = rig.fake.new_id();
        let token = rig.fake.press(id, user, &msg, &custom_id);
        rig.fake
            .wait_until("the expired answer", WAIT, |s| {
                s.calls
                    .iter()
                    .any(|c| c.path.ends_with(&format!("/{token}/callback")))
            })
            .await;
        let answers = rig.fake.callbacks(&token);
        assert_eq!(answers.len(), 1);
        let body = &answers[0].1;
        assert_eq!(body["type"], 4, "{body}");
        assert_eq!(body["data"]["flags"], 64, "ephemeral: {body}");
        assert_eq!(body["data"]["content"], "That button has expired.");
        assert_eq!(body["data"]["allowed_mentions"]["parse"], json!([]));
    }

    // Nothing changed: same step, no new visible message, buttons intact.
    assert_eq!(rig.bot.engine().position(&key).await.unwrap(), before);
    let after: Vec<_> = u.messages()[made..].to_vec();
    assert!(after.iter().all(|m| m.ephemeral), "{after:?}");
    let still = u.messages().into_iter().find(|m| m.id == msg.id).unwrap();
    assert_eq!(still.components, msg.components);
    assert_eq!(
        rig.bot
            .engine()
            .position(&conversation_key(1003u64))
            .await
            .unwrap(),
        None
    );

    // ... and the real button still works.
    let r = u.press("Send me a reset link").await;
    assert!(text(&r).contains("e-mail address"), "{}", text(&r));
    rig.stop().await;
}

#[tokio::test]
async fn recover_in_the_dm_answers_with_the_menu_and_its_buttons_work() {
    let rig = Rig::start().await;
    let u = rig.user(1004);
    let id = rig.fake.new_id();
    let token = rig.fake.slash(id, 1004, "recover", None);
    rig.wait_delivered(id).await;
    let answers = rig.fake.callbacks(&token);
    assert_eq!(answers.len(), 1);
    let body = &answers[0].1;
    assert_eq!(body["type"], 4);
    assert_eq!(body["data"]["flags"], 64, "a short ephemeral line: {body}");
    // The menu comes as the conversation's next DM message: nine buttons
    // in two rows.
    let menu = u
        .messages()
        .into_iter()
        .rfind(|m| !m.ephemeral)
        .expect("the menu was sent to the DM");
    let rows = menu.components.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["components"].as_array().unwrap().len(), 5);

    let r = u.press("I can't log in").await;
    assert!(!text(&r).is_empty());
    let position = rig
        .bot
        .engine()
        .position(&conversation_key(1004u64))
        .await
        .unwrap();
    assert_eq!(position.unwrap().0, "wrong_password");
    rig.stop().await;
}

#[tokio::test]
async fn a_password_pasted_in_a_dm_is_not_claimed_removed_because_a_bot_cannot_remove_it_there() {
    let rig = Rig::start().await;
    let u = rig.user(1077);
    let r = u.say("my password is Hunter2Secret!").await;
    assert!(
        text(&r).contains("never share your password"),
        "{}",
        text(&r)
    );
    assert!(
        !text(&r).contains("I've removed your message"),
        "a DM cannot be cleaned by the bot: {}",
        text(&r)
    );
    assert!(text(&r).contains("please delete yours"), "{}", text(&r));
    let s = rig.fake.state();
    assert!(
        !s.calls.iter().any(|c| c.method == "DELETE"),
        "nothing was deleted"
    );
}
