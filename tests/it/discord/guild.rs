//! Servers: slash commands answer ephemerally and move to the DM; pasted
//! secrets are deleted or warned about; accounts are never discussed there.

use super::fake::{self, APP_ID, dm_channel_of};
use super::{Rig, WAIT, text};
use recoverbot::channels::discord::conversation_key;
use recoverbot::engine::ports::Direction;
use serde_json::json;

const GUILD: u64 = 4001;
const CHANNEL: u64 = 2002;

#[tokio::test]
async fn recover_in_a_guild_answers_ephemerally_and_continues_in_a_dm() {
    let rig = Rig::start_with(|s| s.discord.guild_ids = vec![GUILD.to_string()]).await;
    // Registered for the configured guild only.
    assert!(rig.fake.calls().iter().any(|c| c.is(
        "PUT",
        &format!("/api/v10/applications/{APP_ID}/guilds/{GUILD}/commands")
    )));
    assert!(
        !rig.fake
            .calls()
            .iter()
            .any(|c| c.is("PUT", &format!("/api/v10/applications/{APP_ID}/commands")))
    );

    let u = rig.user(1010);
    let id = rig.fake.new_id();
    let token = rig.fake.slash(id, 1010, "recover", Some((GUILD, CHANNEL)));
    rig.wait_delivered(id).await;
    rig.fake
        .wait_until("the ephemeral answer", WAIT, |s| {
            s.calls
                .iter()
                .any(|c| c.path.ends_with(&format!("/{token}/callback")))
        })
        .await;
    let answers = rig.fake.callbacks(&token);
    assert_eq!(answers.len(), 1);
    let body = &answers[0].1;
    assert_eq!(body["type"], 4);
    assert_eq!(body["data"]["flags"], 64, "ephemeral: {body}");
    assert!(
        body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("I've sent you a direct message"),
        "{body}"
    );
    assert!(
        body["data"]["components"].is_null(),
        "no buttons in the server"
    );
    // Nothing visible in the server channel.
    assert!(rig.fake.messages_in(CHANNEL).iter().all(|m| m.ephemeral));

    // The DM was opened and holds the menu with its buttons.
    let calls = rig.fake.calls();
    let open = calls
        .iter()
        .find(|c| c.is("POST", "/api/v10/users/@me/channels"))
        .expect("a DM channel was opened");
    assert_eq!(open.body, json!({"recipient_id": "1010"}));
    let dm = u.messages();
    assert_eq!(dm.len(), 1);
    assert!(!dm[0].ephemeral);
    assert!(dm[0].labels().contains(&"I can't log in".to_string()));

    // The conversation continues in the DM, in the same conversation.
    let r = u.press("I can't log in").await;
    assert!(!text(&r).is_empty());
    let r = u.say("menu").await;
    assert!(r[0].labels().contains(&"Is the site down?".to_string()));
    let transcript = rig
        .bot
        .app
        .store
        .transcript(&conversation_key(1010u64), 50)
        .await
        .unwrap();
    assert!(
        transcript
            .iter()
            .any(|e| e.direction == Direction::In && e.text == "menu")
    );

    // /help in the server: ephemeral help, the menu in the DM.
    let id = rig.fake.new_id();
    let token = rig.fake.slash(id, 1010, "help", Some((GUILD, CHANNEL)));
    rig.wait_delivered(id).await;
    rig.fake
        .wait_until("the help answer", WAIT, |s| {
            s.calls
                .iter()
                .any(|c| c.path.ends_with(&format!("/{token}/callback")))
        })
        .await;
    let help = &rig.fake.callbacks(&token)[0].1;
    assert_eq!(help["data"]["flags"], 64);
    assert!(
        help["data"]["content"]
            .as_str()
            .unwrap()
            .contains("/recover")
    );
    rig.stop().await;
}

#[tokio::test]
async fn recover_in_a_guild_says_how_to_open_closed_dms() {
    let rig = Rig::start().await;
    rig.fake.close_dms_of(1011);
    let id = rig.fake.new_id();
    let token = rig.fake.slash(id, 1011, "recover", Some((GUILD, CHANNEL)));
    rig.fake
        .wait_until("the ephemeral answer", WAIT, |s| {
            s.calls
                .iter()
                .any(|c| c.path.ends_with(&format!("/{token}/callback")))
        })
        .await;
    let body = &rig.fake.callbacks(&token)[0].1;
    assert_eq!(body["data"]["flags"], 64);
    let content = body["data"]["content"].as_str().unwrap();
    assert!(content.contains("DMs are closed"), "{content}");
    assert!(content.contains("Privacy Settings"), "{content}");
    assert!(rig.fake.messages_in(dm_channel_of(1011)).is_empty());
    assert!(rig.fake.messages_in(CHANNEL).iter().all(|m| m.ephemeral));
    rig.stop().await;
}

/// The user's transcript holds the message, redacted.
async fn assert_redacted(rig: &Rig, user: u64, secret: &str) {
    let transcript = rig
        .bot
        .app
        .store
        .transcript(&conversation_key(user), 50)
        .await
        .unwrap();
    let inbound: Vec<_> = transcript
        .iter()
        .filter(|e| e.direction == Direction::In)
        .collect();
    assert!(
        inbound
            .iter()
            .any(|e| e.text.contains("[redacted password]")),
        "{inbound:?}"
    );
    assert!(transcript.iter().all(|e| !e.text.contains(secret)));
}

#[tokio::test]
async fn a_secret_pasted_in_a_guild_is_deleted_with_manage_messages_and_warned_about_without() {
    let rig = Rig::start().await;
    let secret = "Hunter2Secret!";
    let paste = format!("my password is {secret}");
    // Guild A: the bot's role has Manage Messages. Guild B: it does not.
    // Guild C: not in the cache, and Discord refuses the delete.
    let (a, ca) = (4101, 2101);
    let (b, cb) = (4201, 2201);
    let (c, cc) = (4301, 2301);
    rig.fake
        .dispatch("GUILD_CREATE", fake::guild_create(a, ca, true));
    rig.fake
        .dispatch("GUILD_CREATE", fake::guild_create(b, cb, false));
    rig.fake.forbid_deletes_in(cc);

    // Chatter that is neither a secret nor for the bot is ignored.
    let chatter = rig.fake.new_id();
    rig.fake.dispatch(
        "MESSAGE_CREATE",
        fake::guild_message(chatter, a, ca, 1029, "hello all", false),
    );

    let mut pasted = Vec::new();
    for (user, guild, channel) in [(1020, a, ca), (1021, b, cb), (1022, c, cc)] {
        let id = rig.fake.new_id();
        rig.fake.dispatch(
            "MESSAGE_CREATE",
            fake::guild_message(id, guild, channel, user, &paste, false),
        );
        pasted.push((id, user, channel));
    }
    for (id, _, channel) in &pasted {
        rig.wait_delivered(*id).await;
        rig.fake
            .wait_until("the notice in the server channel", WAIT, |s| {
                !s.messages_in(*channel).is_empty()
            })
            .await;
    }
    let calls = rig.fake.calls();
    let deletes = |channel: u64| -> Vec<_> {
        calls
            .iter()
            .filter(|c| {
                c.method == "DELETE" && c.path.starts_with(&format!("/api/v10/channels/{channel}/"))
            })
            .cloned()
            .collect()
    };

    // A: deleted, then a notice that says so.
    let (id_a, user_a, _) = pasted[0];
    let del = deletes(ca);
    assert_eq!(del.len(), 1);
    assert_eq!(
        del[0].path,
        format!("/api/v10/channels/{ca}/messages/{id_a}")
    );
    assert_eq!(del[0].status, 204);
    let notice = &rig.fake.messages_in(ca)[0];
    assert!(
        notice.content.starts_with(&format!("<@{user_a}>")),
        "{}",
        notice.content
    );
    assert!(
        notice.content.contains("I removed your message"),
        "{}",
        notice.content
    );
    assert_eq!(
        notice.allowed_mentions,
        json!({"parse": [], "users": [user_a.to_string()], "roles": []})
    );

    // B: no Manage Messages per the cached roles: not even tried; warned.
    assert!(deletes(cb).is_empty(), "{:?}", deletes(cb));
    let notice = &rig.fake.messages_in(cb)[0];
    assert!(
        notice.content.contains("I can't remove it"),
        "{}",
        notice.content
    );

    // C: unknown permissions, Discord said 403/50013: warned.
    let del = deletes(cc);
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].status, 403);
    let notice = &rig.fake.messages_in(cc)[0];
    assert!(
        notice.content.contains("I can't remove it"),
        "{}",
        notice.content
    );

    for (_, user, _) in &pasted {
        // Never in the server: the account talk is in the DM, which warns too.
        let dm = rig.fake.messages_in(dm_channel_of(*user));
        assert!(text_of(&dm).contains("never share"), "{}", text_of(&dm));
        assert_redacted(&rig, *user, secret).await;
    }
    for (_, _, channel) in &pasted {
        for m in rig.fake.messages_in(*channel) {
            assert!(!m.content.contains(secret));
            assert!(!m.content.contains("example.com"));
        }
    }
    // The chatter got nothing.
    assert!(rig.fake.messages_in(dm_channel_of(1029)).is_empty());
    assert_eq!(rig.fake.messages_in(ca).len(), 1);
    rig.stop().await;
}

fn text_of(msgs: &[fake::Msg]) -> String {
    text(msgs).to_lowercase()
}

#[tokio::test]
async fn a_secret_in_a_dm_gets_a_warning_and_is_redacted_but_not_deleted() {
    let rig = Rig::start().await;
    let u = rig.user(1025);
    let r = u.say("my password is Hunter2Secret!").await;
    assert!(text_of(&r).contains("never share"), "{}", text(&r));
    assert!(
        !rig.fake.calls().iter().any(|c| c.method == "DELETE"),
        "a bot cannot delete DMs"
    );
    assert_redacted(&rig, 1025, "Hunter2Secret!").await;
    rig.stop().await;
}

#[tokio::test]
async fn a_mention_in_a_guild_moves_the_conversation_to_a_dm() {
    let rig = Rig::start().await;
    let id = rig.fake.new_id();
    rig.fake.dispatch(
        "MESSAGE_CREATE",
        fake::guild_message(id, GUILD, CHANNEL, 1026, "<@9001> I can't log in", true),
    );
    rig.wait_delivered(id).await;
    rig.fake
        .wait_until("the pointer in the server channel", WAIT, |s| {
            !s.messages_in(CHANNEL).is_empty()
        })
        .await;
    let pointer = &rig.fake.messages_in(CHANNEL)[0];
    assert!(
        pointer.content.contains("I've sent you a direct message"),
        "{}",
        pointer.content
    );
    let dm = rig.fake.messages_in(dm_channel_of(1026));
    assert_eq!(dm.len(), 1);
    let position = rig
        .bot
        .engine()
        .position(&conversation_key(1026u64))
        .await
        .unwrap();
    assert_eq!(position.unwrap().0, "wrong_password");
    rig.stop().await;
}
