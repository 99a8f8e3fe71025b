//! Groups: only commands and mentions are answered, with links into a
//! private chat; no account is discussed there.

use super::fake_server::{BOT_USERNAME, TgChat, TgUser};
use super::harness::Harness;
use recoverbot::domain::{ChannelKind, ConversationKey};

#[tokio::test]
async fn in_a_group_the_bot_answers_help_and_mentions_and_ignores_chatter() {
    let h = Harness::start().await;
    let u = TgUser::new(9101, "Gus");
    for group in [
        TgChat::supergroup(-1_001_234_567_890, "Support lounge"),
        TgChat::Group {
            id: -4_009_876_543,
            title: "Friends".into(),
            supergroup: false,
        },
    ] {
        let gid = group.id(&u);
        let cases = [
            ("hello everyone", false),
            ("/help", true),
            ("my email is bob@example.com, can someone help?", false),
            (
                &*format!("@{BOT_USERNAME} I forgot my password, help!"),
                true,
            ),
            ("/help@some_other_bot", false),
            ("/status", true),
            ("/start", true),
        ];
        for (text, answered) in cases {
            let before = h.fake.messages_to(gid).len();
            let id = h.fake.user_says(&u, &group, text);
            h.fake.wait_done(id).await;
            h.settled().await;
            let got = h.fake.messages_to(gid).len() - before;
            assert_eq!(got, usize::from(answered), "{text:?}");
        }
        for m in h.fake.messages_to(gid) {
            let lower = m.text.to_lowercase();
            assert!(
                !lower.contains("e-mail") && !lower.contains("email"),
                "{}",
                m.text
            );
            assert!(!m.text.contains("@example"), "{}", m.text);
            assert!(!m.buttons.is_empty());
            for (label, data, url) in &m.buttons {
                assert!(data.is_none(), "{label}: no callback buttons in groups");
                let url = url.as_deref().unwrap();
                assert!(
                    url.starts_with(&format!("https://t.me/{BOT_USERNAME}?start=")),
                    "{url}"
                );
            }
        }
        // No conversation was started for the group.
        let key = ConversationKey::new(ChannelKind::Telegram, gid.to_string(), u.id.to_string());
        assert!(h.engine().position(&key).await.unwrap().is_none());
    }

    // Following the link, Telegram sends `/start <payload>` privately.
    let link = h.fake.messages_to(-1_001_234_567_890)[0]
        .buttons
        .iter()
        .find(|b| b.0 == "Reset my password")
        .and_then(|b| b.2.clone())
        .unwrap();
    let payload = link.split("start=").nth(1).unwrap();
    h.say(&u, &format!("/start {payload}")).await;
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("password_reset".into(), "start".into())
    );
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_password_pasted_in_a_group_is_warned_about() {
    let h = Harness::start().await;
    let u = TgUser::new(9201, "Oops");
    let group = TgChat::supergroup(-1_009_999_999_999, "Help");
    let id = h.fake.user_says(
        &u,
        &group,
        &format!("@{BOT_USERNAME} my password is Hunter2-Xyz!"),
    );
    h.fake.wait_done(id).await;
    h.settled().await;
    let deletes = h.fake.calls_of("deleteMessage");
    assert_eq!(deletes.len(), 1, "a delete is attempted");
    assert_eq!(deletes[0].params["chat_id"], -1_009_999_999_999i64);
    let m = h.fake.messages_to(-1_009_999_999_999);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("password or a code"), "{}", m[0].text);
    assert!(!m[0].text.contains("Hunter2"));
    h.assert_spec_clean();
}
