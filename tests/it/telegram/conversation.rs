//! A user's private conversation through inline keyboards and typed text.

use super::fake_server::TgUser;
use super::harness::{Harness, texts};

#[tokio::test]
async fn a_password_reset_runs_through_buttons_and_typed_text() {
    let h = Harness::start().await;
    let mut ann = TgUser::new(4201, "Ann");
    ann.language_code = Some("de".into());

    // The command list is registered at start-up.
    let commands: Vec<String> = h.fake.commands().into_iter().map(|c| c.0).collect();
    assert_eq!(
        commands,
        ["start", "help", "status", "stop", "cancel", "human"]
    );

    let r = h.say(&ann, "/start").await;
    assert_eq!(r.len(), 1);
    assert!(
        r[0].labels().contains(&"I can't log in"),
        "{:?}",
        r[0].labels()
    );
    assert_eq!(
        h.position(&ann).await.unwrap(),
        ("main".into(), "menu".into())
    );

    let r = h.say(&ann, "I forgot my password").await;
    assert_eq!(
        h.position(&ann).await.unwrap(),
        ("password_reset".into(), "start".into())
    );
    let start_msg = r.last().unwrap().message_id;

    let r = h.press(&ann, "Send me a reset link").await;
    assert!(texts(&r).contains("e-mail address"), "{}", texts(&r));
    assert!(
        h.fake.keyboard_of(ann.id, start_msg).is_empty(),
        "the pressed keyboard is removed"
    );

    let r = h.say(&ann, "alice@example.com").await;
    assert!(texts(&r).contains("a***@example.com"), "{}", texts(&r));
    assert!(!texts(&r).contains("alice@"), "the address is never echoed");
    assert_eq!(h.requests("POST /v1/password-resets").await, 1);

    h.press(&ann, "Nothing yet").await;
    let r = h.press(&ann, "Check if it was delivered").await;
    assert!(texts(&r).contains("UTC"), "{}", texts(&r));
    h.press(&ann, "Found it").await;
    h.press(&ann, "It worked, choosing a password").await;
    h.press(&ann, "Done, new password set").await;
    let r = h.press(&ann, "I'm in").await;
    assert!(texts(&r).contains("Did this solve"), "{}", texts(&r));
    h.press(&ann, "Yes, I'm in").await;
    assert_eq!(
        h.position(&ann).await.unwrap(),
        ("feedback".into(), "thanks".into())
    );

    // The user's language reached the engine.
    let stored = h
        .engine()
        .store()
        .load_conversation(&Harness::key(&ann))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.state.contains("\"de\""), "{}", stored.state);

    // Every message went out as HTML without a single tag, and every
    // callback query was answered, each within a second.
    for m in h.fake.messages_to(ann.id) {
        assert!(m.tags.is_empty(), "{:?}", m.tags);
    }
    for c in h.fake.calls_of("sendMessage") {
        assert_eq!(c.params["parse_mode"], "HTML");
    }
    let presses = h.fake.calls_of("answerCallbackQuery").len();
    assert_eq!(presses, 8);
    for c in h.fake.calls_of("answerCallbackQuery") {
        assert_eq!(c.status, 200);
    }
    h.assert_spec_clean();
}

#[tokio::test]
async fn deep_links_and_commands_lead_to_their_flows() {
    let h = Harness::start().await;
    let cases = [
        ("/start reset", ("password_reset", "start")),
        ("/start 2fa", ("two_factor", "start")),
        ("/status", ("status", "operational")),
        ("/human", ("human", "request")),
        ("/cancel", ("main", "menu")),
        ("/help", ("main", "menu")),
    ];
    for (i, (text, (flow, step))) in cases.into_iter().enumerate() {
        // A new user each time: a deep link works on first contact.
        let u = TgUser::new(5100 + i64::try_from(i).unwrap(), "Deep");
        let r = h.say(&u, text).await;
        assert!(!r.is_empty(), "{text}: a reply");
        let (f, s) = h.position(&u).await.unwrap();
        assert_eq!((f.as_str(), s.as_str()), (flow, step), "{text}");
    }
    h.assert_spec_clean();
}

#[tokio::test]
async fn text_from_settings_or_users_cannot_inject_markup() {
    let h = Harness::start_with(|s| {
        s.platform.name = "<b>Evil</b> & <a href=\"https://evil.example\">Co</a>".into();
    })
    .await;
    let u = TgUser::new(5301, "Eve");
    let r = h.say(&u, "menu").await;
    let m = &r[0];
    assert!(m.tags.is_empty(), "no tag got through: {:?}", m.tags);
    assert!(
        m.text
            .contains("<b>Evil</b> & <a href=\"https://evil.example\">Co</a>"),
        "shown literally: {}",
        m.text
    );
    assert!(
        m.html.contains("&lt;b&gt;Evil&lt;/b&gt; &amp; &lt;a href"),
        "{}",
        m.html
    );
    h.assert_spec_clean();
}

#[tokio::test]
async fn a_photo_gets_a_hint_to_write_instead() {
    let h = Harness::start().await;
    let u = TgUser::new(5401, "Pix");
    let id = h
        .fake
        .user_sends_photo(&u, &super::fake_server::TgChat::Private);
    h.fake.wait_done(id).await;
    h.settled().await;
    let m = h.fake.messages_to(u.id);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("only read text"), "{}", m[0].text);
    h.assert_spec_clean();
}
