//! The engine's guarantees: dedupe, button binding, expiry, flow changes,
//! secret hygiene, restarts, rate limits, slow services.

use crate::support::bot::{TestBot, at, flows_dir, test_settings, text};
use crate::support::db::{SqliteDb, contains, database_bytes};
use recoverbot::domain::{ChannelKind, ConversationKey, EventId};
use recoverbot::engine::{Clock, Engine, EngineConfig, Inbound, Input, NoAccountService, Outbound};
use recoverbot::store::MemoryStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_event_delivered_twice_is_answered_once_and_sends_one_reset_mail() {
    let bot = TestBot::start().await;
    bot.say("dup", "I forgot my password").await;
    bot.press("dup", "Send me a reset link").await;
    let event = EventId::new("telegram-update-77");
    let first = bot
        .send_event(
            "dup",
            Input::Text("alice@example.com".into()),
            event.clone(),
        )
        .await;
    let second = bot
        .send_event("dup", Input::Text("alice@example.com".into()), event)
        .await;
    assert_eq!(at(&first), ("password_reset", "sent"));
    assert!(!first.duplicate);
    assert!(second.duplicate, "the redelivery is recognised");
    assert!(second.actions.is_empty(), "and answered with nothing");
    assert_eq!(bot.requests("POST /v1/password-resets").await, 1);
    assert_eq!(bot.outbox().await.len(), 1);
}

#[tokio::test]
async fn forged_stale_and_foreign_buttons_change_nothing() {
    let bot = TestBot::start().await;
    let r = bot.say("owner", "I forgot my password").await;
    let start_payload = bot.payload("owner", "Send me a reset link");
    assert!(r.buttons().iter().all(|b| b.payload.len() <= 64));

    // Another user presses the owner's button.
    bot.say("other", "hello").await;
    let r = bot
        .send("other", Input::Button(start_payload.clone()))
        .await;
    assert!(
        matches!(&r.actions[..], [Outbound::Notice { text }] if text == "That button has expired."),
        "{r:?}"
    );
    assert_eq!(at(&r), ("main", "menu"), "the other user did not move");

    // Forged payloads.
    for forged in [
        "rb1:AAAAAAAAAAAA:0",
        "rb1:x:99",
        "garbage",
        "",
        &"z".repeat(200),
    ] {
        let r = bot.send("owner", Input::Button(forged.to_string())).await;
        assert!(
            matches!(&r.actions[..], [Outbound::Notice { .. }]),
            "{forged}: {r:?}"
        );
        assert_eq!(at(&r), ("password_reset", "start"));
    }

    // The real press works and clears the pressed message's buttons ...
    let r = bot
        .send("owner", Input::Button(start_payload.clone()))
        .await;
    assert_eq!(at(&r), ("password_reset", "ask_email"));
    assert!(
        r.actions
            .iter()
            .any(|a| matches!(a, Outbound::ClearButtons { .. }))
    );
    // ... and pressing it again, now stale, changes nothing.
    let r = bot.send("owner", Input::Button(start_payload)).await;
    assert!(matches!(&r.actions[..], [Outbound::Notice { .. }]));
    assert_eq!(at(&r), ("password_reset", "ask_email"));
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn offline_engine(clock: Arc<TestClock>, idle_secs: u64) -> Engine {
    let mut settings = recoverbot::config::Settings::default();
    settings.engine.idle_timeout_secs = idle_secs;
    Engine::with_clock(
        recoverbot::flow::load_dir(&flows_dir()).unwrap(),
        Arc::new(MemoryStore::new()),
        Arc::new(NoAccountService),
        EngineConfig::from_settings(&settings),
        clock,
    )
}

fn inbound(user: &str, text: &str) -> Inbound {
    Inbound {
        key: ConversationKey::new(ChannelKind::Console, "c", user),
        event_id: None,
        message_id: None,
        locale: None,
        input: Input::Text(text.into()),
    }
}

#[tokio::test]
async fn an_idle_conversation_starts_fresh_with_a_welcome_back() {
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let engine = offline_engine(clock.clone(), 60);
    let r = engine
        .handle(inbound("idle", "I forgot my password"))
        .await
        .unwrap();
    assert_eq!(at(&r), ("password_reset", "start"));
    clock.0.fetch_add(30_000, Ordering::SeqCst);
    let r = engine.handle(inbound("idle", "1")).await.unwrap();
    assert_eq!(
        at(&r),
        ("password_reset", "ask_email"),
        "still within the idle time"
    );
    clock.0.fetch_add(61_000, Ordering::SeqCst);
    let r = engine.handle(inbound("idle", "hi again")).await.unwrap();
    assert!(text(&r).starts_with("Welcome back"), "{}", text(&r));
    assert_eq!(at(&r), ("main", "menu"));
}

#[tokio::test]
async fn after_a_flow_edit_a_conversation_carries_on_or_restarts_with_an_apology() {
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let engine = offline_engine(clock, 3600);
    engine
        .handle(inbound("edit", "I forgot my password"))
        .await
        .unwrap();
    engine.handle(inbound("edit", "2")).await.unwrap(); // -> check_inbox
    engine
        .handle(inbound("keep", "I forgot my password"))
        .await
        .unwrap();

    // New flow files: check_inbox is renamed, start is kept.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path)
            .unwrap()
            .replace("check_inbox", "look_in_inbox");
        std::fs::write(dir.path().join(path.file_name().unwrap()), body).unwrap();
    }
    let edited = recoverbot::flow::load_dir(dir.path()).unwrap();
    assert_ne!(edited.version, engine.flows().version);
    engine.replace_flows(edited);

    let r = engine.handle(inbound("edit", "Found it")).await.unwrap();
    assert!(text(&r).contains("just updated"), "{}", text(&r));
    assert_eq!(at(&r), ("password_reset", "start"));

    let r = engine
        .handle(inbound("keep", "Send me a reset link"))
        .await
        .unwrap();
    assert_eq!(
        at(&r),
        ("password_reset", "ask_email"),
        "its step still exists: carry on"
    );
    assert!(!text(&r).contains("updated"));
}

#[tokio::test]
async fn a_pasted_password_is_deleted_warned_about_and_never_stored() {
    let bot = TestBot::start().await;
    bot.say("paste", "hello").await;
    let r = bot.say("paste", "my password is Tr0ub4dor&3xyz").await;
    assert!(
        r.actions
            .iter()
            .any(|a| matches!(a, Outbound::DeleteMessage { .. })),
        "the channel is asked to delete it"
    );
    assert!(
        text(&r).contains("never share your password"),
        "{}",
        text(&r)
    );
    let r = bot.say("paste", "Tr0ub4dor&3xyz").await;
    assert!(
        text(&r).contains("again"),
        "the second time is a short reminder: {}",
        text(&r)
    );

    let transcript = bot
        .app
        .store
        .transcript(&TestBot::key("paste"), 50)
        .await
        .unwrap();
    assert!(
        transcript
            .iter()
            .any(|e| e.text.contains("[redacted password]"))
    );
    assert!(transcript.iter().all(|e| !e.text.contains("Tr0ub4dor")));
    assert!(!contains(&database_bytes(&bot.db), "Tr0ub4dor&3xyz"));
}

#[tokio::test]
async fn codes_and_addresses_typed_into_a_flow_are_never_stored_in_clear() {
    let bot = TestBot::start().await;
    bot.say("v", "wrong password").await;
    bot.press("v", "Check my account (locked?)").await;
    bot.say("v", "alice@example.com").await;
    let code = bot.mailed_code("alice@example.com").await;
    let r = bot.say("v", &code).await;
    assert!(
        !r.actions
            .iter()
            .any(|a| matches!(a, Outbound::DeleteMessage { .. })),
        "a code the bot asked for is no cause for alarm"
    );
    let bytes = database_bytes(&bot.db);
    assert!(
        !contains(&bytes, "alice@example.com"),
        "no full address in the database"
    );
    assert!(
        !contains(&bytes, &code),
        "no verification code in the database"
    );
}

#[tokio::test]
async fn a_restarted_engine_carries_on_at_the_same_step() {
    let db = SqliteDb::new();
    let settings = test_settings(&db);
    let first = TestBot::start_on(db, settings.clone()).await;
    first.say("r", "I forgot my password").await;
    first.press("r", "I already asked, no mail came").await;
    let TestBot { app, db, .. } = first;
    app.shut_down().await;

    let second = TestBot::start_on(db, settings).await;
    let r = second.say("r", "Found it").await;
    assert_eq!(at(&r), ("password_reset", "follow_link"));
}

#[tokio::test]
async fn reset_rate_limits_survive_an_engine_restart() {
    let db = SqliteDb::new();
    let mut settings = test_settings(&db);
    settings.rate_limits.resets_per_email = 2;
    settings.rate_limits.resets_per_user = 100;
    let first = TestBot::start_on(db, settings.clone()).await;
    for user in ["a", "b"] {
        first.say(user, "I forgot my password").await;
        first.press(user, "Send me a reset link").await;
        let r = first.say(user, "carol@example.com").await;
        assert_eq!(at(&r), ("password_reset", "sent"));
    }
    let TestBot { app, db, .. } = first;
    app.shut_down().await;

    let second = TestBot::start_on(db, settings).await;
    second.say("c", "I forgot my password").await;
    second.press("c", "Send me a reset link").await;
    let r = second.say("c", "Carol@Example.com").await;
    assert_eq!(at(&r), ("password_reset", "rate_limited"), "{}", text(&r));
    assert!(text(&r).contains("minutes"));
    assert_eq!(
        second.requests("POST /v1/password-resets").await,
        0,
        "the service was not called"
    );
}

#[tokio::test]
async fn a_slow_account_service_still_gets_the_user_an_answer_within_three_seconds() {
    let bot = TestBot::start().await;
    bot.admin_post("/_sim/faults", serde_json::json!({ "latency_ms": 10_000 }))
        .await;
    bot.say("slow", "I forgot my password").await;
    bot.press("slow", "Send me a reset link").await;
    let started = Instant::now();
    let r = bot.say("slow", "alice@example.com").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(at(&r), ("password_reset", "service_down"));
    assert!(
        text(&r).contains("https://example.com/forgot-password"),
        "something to try meanwhile"
    );
    assert!(r.buttons().iter().any(|b| b.label == "Try again"));
}

#[tokio::test]
async fn turns_of_one_conversation_run_in_order_and_none_is_lost() {
    let bot = Arc::new(TestBot::start().await);
    bot.say("busy", "hello").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let bot = bot.clone();
        tasks.push(tokio::spawn(async move {
            bot.send_event(
                "busy",
                Input::Text(format!("note {i}")),
                EventId::new(format!("burst-{i}")),
            )
            .await
        }));
    }
    for t in tasks {
        assert!(!t.await.unwrap().duplicate);
    }
    let transcript = bot
        .app
        .store
        .transcript(&TestBot::key("busy"), 100)
        .await
        .unwrap();
    let inbound: Vec<_> = transcript
        .iter()
        .filter(|e| e.direction == recoverbot::engine::ports::Direction::In)
        .collect();
    assert_eq!(inbound.len(), 21, "every turn was kept exactly once");
    let stored = bot
        .app
        .store
        .load_conversation(&TestBot::key("busy"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 21);
}

#[tokio::test]
async fn a_redelivered_event_queues_nothing_twice_and_its_reply_waits_in_the_outbox() {
    let bot = TestBot::start().await;
    let key = TestBot::key("crashy");
    let event = EventId::new("update-after-crash");
    let ask = |event: EventId| Inbound {
        key: key.clone(),
        event_id: Some(event),
        message_id: None,
        locale: None,
        input: Input::Text("I forgot my password".into()),
    };
    // The turn commits (its reply in the outbox); the event comes again, as
    // after a crash before the offset moved.
    let first = bot.engine().handle(ask(event.clone())).await.unwrap();
    let again = bot.engine().handle(ask(event.clone())).await.unwrap();
    assert!(again.duplicate && again.actions.is_empty());
    assert_eq!(at(&again), ("password_reset", "start"), "and nothing moved");
    let queued = bot.app.store.chat_outbox(&key.chat_ref()).await.unwrap();
    assert_eq!(queued.len(), 1, "the reply is queued once: {queued:?}");
    assert_eq!(queued[0].event.as_ref(), Some(&event));
    assert_eq!(Some(&queued[0].op), first.actions.last());
}

#[tokio::test]
async fn a_button_from_before_a_flow_edit_shows_the_step_again_instead_of_pressing_blindly() {
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let engine = offline_engine(clock, 3600);
    let key = ConversationKey::new(ChannelKind::Console, "c", "old-keyboard");
    let r = engine
        .handle(Inbound {
            input: Input::Text("I forgot my password".into()),
            ..inbound("old-keyboard", "")
        })
        .await
        .unwrap();
    let first = r.buttons()[0].payload.clone(); // "Send me a reset link"
    // The edit swaps the first two buttons of the step the user is at.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap().replace(
            "  { label = \"Send me a reset link\", goto = \"ask_email\" },\n  { label = \"I already asked, no mail came\", goto = \"check_inbox\" },",
            "  { label = \"I already asked, no mail came\", goto = \"check_inbox\" },\n  { label = \"Send me a reset link\", goto = \"ask_email\" },",
        );
        std::fs::write(dir.path().join(path.file_name().unwrap()), body).unwrap();
    }
    engine.replace_flows(recoverbot::flow::load_dir(dir.path()).unwrap());
    let r = engine
        .handle(Inbound {
            key: key.clone(),
            input: Input::Button(first),
            ..inbound("old-keyboard", "")
        })
        .await
        .unwrap();
    assert_eq!(at(&r), ("password_reset", "start"), "nothing was pressed");
    assert!(
        r.actions
            .iter()
            .any(|a| matches!(a, Outbound::Notice { .. }))
    );
    assert_eq!(
        r.buttons()[0].label,
        "I already asked, no mail came",
        "fresh buttons"
    );
}

#[tokio::test]
async fn aliases_of_one_mailbox_share_the_reset_limit() {
    let bot = TestBot::start_with(|s| {
        s.rate_limits.resets_per_email = 1;
        s.rate_limits.resets_per_user = 100;
    })
    .await;
    for (user, address, expected) in [
        ("a1", "jane.doe+shop@gmail.com", "sent"),
        ("a2", "JaneDoe@googlemail.com", "rate_limited"),
    ] {
        bot.say(user, "I forgot my password").await;
        bot.press(user, "Send me a reset link").await;
        let r = bot.say(user, address).await;
        assert_eq!(r.step, expected, "{address}");
    }
}

#[tokio::test]
async fn a_message_over_the_cap_is_answered_too_long_and_stored_only_up_to_the_cap() {
    let bot = crate::support::bot::TestBot::start_with(|s| s.engine.max_message_chars = 100).await;
    let long = format!(
        "I forgot my password {}",
        "and then some more words ".repeat(400)
    );
    let r = bot.say("long", &long).await;
    assert!(
        text(&r).contains(recoverbot::engine::TOO_LONG),
        "{}",
        text(&r)
    );
    assert_eq!(at(&r), ("main", "menu"), "nothing is routed from it");
    let stored = bot
        .app
        .store
        .transcript(&crate::support::bot::TestBot::key("long"), 10)
        .await
        .unwrap();
    let incoming = &stored[0].text;
    assert!(
        incoming.chars().count() <= 100 + " [cut]".len(),
        "{incoming}"
    );
    assert!(incoming.ends_with("[cut]"), "{incoming}");
    // Under the cap, the same words are understood.
    let r = bot.say("short", "I forgot my password").await;
    assert_eq!(at(&r), ("password_reset", "start"));
}

#[tokio::test]
async fn codes_for_one_address_are_limited_across_conversations_not_only_per_conversation() {
    let bot = crate::support::bot::TestBot::start_with(|s| {
        s.rate_limits.verification_attempts_per_conversation = 10;
        s.rate_limits.verification_attempts_per_account = 2;
    })
    .await;
    let mut last = Vec::new();
    for user in ["guess-1", "guess-2", "guess-3"] {
        bot.say(user, "menu").await;
        bot.press(user, "I can't log in").await;
        bot.press(user, "Check my account (locked?)").await;
        let r = bot.say(user, "alice@example.com").await;
        assert_eq!(at(&r), ("wrong_password", "verify_code"), "{}", text(&r));
        let r = bot.say(user, "000000").await;
        last.push((r.flow.clone(), r.step.clone()));
    }
    assert_eq!(last[0].1, "verify_wrong_code");
    assert_eq!(last[1].1, "verify_wrong_code");
    assert_eq!(
        last[2].1, "verify_rate_limited",
        "a new conversation buys no more guesses"
    );
}

#[tokio::test]
async fn full_width_punycode_and_unicode_spellings_of_one_mailbox_share_its_reset_limit() {
    let bot = crate::support::bot::TestBot::start_with(|s| {
        s.rate_limits.resets_per_email = 2;
        s.rate_limits.resets_per_user = 100;
    })
    .await;
    let spellings = [
        ("alias-1", "alice@example.com"),
        ("alias-2", "alice@\u{ff45}xample.com"),
        ("alias-3", "\u{ff21}LICE@EXAMPLE.COM"),
        ("idn-1", "bob@bücher.de"),
        ("idn-2", "bob@xn--bcher-kva.de"),
        ("idn-3", "bob@BÜCHER.de"),
    ];
    let mut steps = Vec::new();
    for (user, address) in spellings {
        let r = bot
            .say(
                user,
                &format!("I forgot my password, my email is {address}"),
            )
            .await;
        steps.push(r.step.clone());
    }
    assert_eq!(
        steps,
        [
            "sent",
            "sent",
            "rate_limited",
            "sent",
            "sent",
            "rate_limited"
        ],
        "three spellings of one mailbox are one mailbox"
    );
}

#[tokio::test]
async fn an_address_with_a_right_to_left_override_is_refused_and_never_echoed() {
    let bot = crate::support::bot::TestBot::start().await;
    bot.say("rtl", "I forgot my password").await;
    bot.press("rtl", "Send me a reset link").await;
    let r = bot.say("rtl", "alice\u{202e}moc.elpmaxe@evil.com").await;
    assert_eq!(at(&r), ("password_reset", "ask_email"), "{}", text(&r));
    assert!(!text(&r).contains('\u{202e}'));
    assert!(
        text(&r).contains("doesn't look like an e-mail address"),
        "{}",
        text(&r)
    );
    assert!(bot.outbox().await.is_empty(), "no mail");
}
