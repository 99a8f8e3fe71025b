//! Transcript tests: the default flows walked end to end through the engine,
//! against the account simulator over real HTTP.

use crate::support::bot::{TestBot, at, labels, text};

#[tokio::test]
async fn forgot_password_walks_through_reset_spam_delivery_and_feedback() {
    let bot = TestBot::start().await;
    let u = "walker";
    let r = bot.say(u, "I forgot my password").await;
    assert_eq!(at(&r), ("password_reset", "start"));
    assert!(text(&r).contains("reset link"), "{}", text(&r));

    let r = bot.press(u, "Send me a reset link").await;
    assert_eq!(at(&r), ("password_reset", "ask_email"));
    assert!(text(&r).contains("e-mail address"));

    let r = bot.say(u, "alice@example.com").await;
    assert_eq!(at(&r), ("password_reset", "sent"));
    assert!(text(&r).contains("a***@example.com"), "{}", text(&r));
    assert!(
        !text(&r).contains("alice@"),
        "the address is never echoed in full"
    );
    let mails = bot.outbox().await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["kind"], "reset");
    assert_eq!(mails[0]["to"], "alice@example.com");

    let r = bot.press(u, "Nothing yet").await;
    assert_eq!(at(&r), ("password_reset", "check_inbox"));
    for place in ["Gmail", "Outlook", "Yahoo", "Spam", "Junk"] {
        assert!(text(&r).contains(place), "spam advice mentions {place}");
    }

    let r = bot.press(u, "Check if it was delivered").await;
    assert_eq!(at(&r), ("password_reset", "delivered"));
    assert!(text(&r).contains("UTC"), "{}", text(&r));
    assert!(text(&r).contains("example.com mailbox"), "{}", text(&r));

    let r = bot.press(u, "Found it").await;
    assert_eq!(at(&r), ("password_reset", "follow_link"));
    let r = bot.press(u, "It worked, choosing a password").await;
    assert!(text(&r).contains("12 characters"));
    let r = bot.press(u, "Done, new password set").await;
    assert_eq!(at(&r), ("password_reset", "login_again"));
    let r = bot.press(u, "I'm in").await;
    assert_eq!(at(&r), ("feedback", "ask"));
    assert!(text(&r).contains("Did this solve"));
    let r = bot.press(u, "Yes, I'm in").await;
    assert_eq!(at(&r), ("feedback", "thanks"));

    let feedback = bot.app.store.recent_feedback(5).await.unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].topic, "password_reset");
    assert_eq!(feedback[0].answer, "solved");
}

#[tokio::test]
async fn a_bouncing_mailbox_is_reported_as_rejected() {
    let bot = TestBot::start().await;
    let u = "dave";
    bot.say(u, "reset my password").await;
    bot.press(u, "Send me a reset link").await;
    bot.say(u, "dave@example.com").await;
    bot.press(u, "Nothing yet").await;
    let r = bot.press(u, "Check if it was delivered").await;
    assert_eq!(at(&r), ("password_reset", "bounced"));
    assert!(text(&r).contains("rejected"), "{}", text(&r));
}

#[tokio::test]
async fn existing_and_unknown_addresses_get_byte_identical_replies() {
    let bot = TestBot::start().await;
    let mut transcripts = Vec::new();
    for (user, email) in [
        ("known", "alice@example.com"),
        ("unknown", "alice@example.org"),
    ] {
        let mut seen = Vec::new();
        seen.push(bot.say(user, "I forgot my password").await);
        seen.push(bot.press(user, "Send me a reset link").await);
        seen.push(bot.say(user, email).await);
        seen.push(bot.press(user, "Nothing yet").await);
        seen.push(bot.press(user, "Check if it was delivered").await);
        transcripts.push(
            seen.iter()
                .map(|r| {
                    (
                        text(r).replace(".org", ".com"),
                        labels(r).join("|"),
                        r.step.clone(),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(transcripts[0], transcripts[1]);
    // ... even though only the real account got a reset link.
    let kinds: Vec<_> = bot
        .outbox()
        .await
        .iter()
        .map(|m| m["kind"].clone())
        .collect();
    assert_eq!(kinds, ["reset", "reset_no_account"]);
}

#[tokio::test]
async fn a_locked_account_is_explained_after_e_mail_verification() {
    let bot = TestBot::start().await;
    let u = "bob";
    let r = bot.say(u, "wrong password").await;
    assert_eq!(at(&r), ("wrong_password", "start"));
    let r = bot.press(u, "Check my account (locked?)").await;
    assert_eq!(at(&r), ("wrong_password", "verify_email"));
    let r = bot.say(u, "bob@example.com").await;
    assert_eq!(at(&r), ("wrong_password", "verify_code"));
    assert!(text(&r).contains("b***@example.com"));
    let code = bot.mailed_code("bob@example.com").await;
    let r = bot.say(u, &code).await;
    assert_eq!(at(&r), ("wrong_password", "account_locked"), "{}", text(&r));
    assert!(
        text(&r).contains("UTC"),
        "says when it unlocks: {}",
        text(&r)
    );
    assert!(text(&r).contains('7'), "failed attempts: {}", text(&r));
}

#[tokio::test]
async fn a_wrong_verification_code_says_how_many_attempts_are_left() {
    let bot = TestBot::start().await;
    let u = "wrongcode";
    bot.say(u, "wrong password").await;
    bot.press(u, "Check my account (locked?)").await;
    bot.say(u, "alice@example.com").await;
    let real = bot.mailed_code("alice@example.com").await;
    let wrong = if real == "000000" { "111111" } else { "000000" };
    let r = bot.say(u, wrong).await;
    assert_eq!(at(&r), ("wrong_password", "verify_wrong_code"));
    assert!(text(&r).contains('4'), "{}", text(&r));
    let r = bot.say(u, &real).await;
    assert_eq!(at(&r), ("wrong_password", "account_ok"), "{}", text(&r));
    assert!(text(&r).contains("authenticator app"), "{}", text(&r));
    assert!(text(&r).contains("Berlin"), "recent logins: {}", text(&r));
}

#[tokio::test]
async fn a_rejected_authenticator_code_is_traced_to_the_phone_clock() {
    let bot = TestBot::start().await;
    let u = "alice";
    let r = bot.say(u, "my 2fa code is rejected").await;
    assert_eq!(at(&r), ("two_factor", "start"));
    bot.press(u, "The authenticator app code is rejected").await;
    let r = bot.press(u, "Check my phone's clock for me").await;
    assert_eq!(at(&r), ("two_factor", "diag_intro"));
    bot.press(u, "OK, let's check").await;
    bot.say(u, "alice@example.com").await;
    let code = bot.mailed_code("alice@example.com").await;
    let r = bot.say(u, &code).await;
    assert_eq!(at(&r), ("two_factor", "ask_totp"), "{}", text(&r));
    // The phone's clock is 90 seconds behind: its code is three steps old.
    let totp = bot.authenticator_code("acc_alice", -3).await;
    let r = bot.say(u, &totp).await;
    assert_eq!(at(&r), ("two_factor", "clock_fix"), "{}", text(&r));
    assert!(text(&r).contains("about 90 seconds behind"), "{}", text(&r));
    assert!(text(&r).contains("Set time automatically") || text(&r).contains("Set Automatically"));
}

#[tokio::test]
async fn an_in_sync_authenticator_code_says_the_clock_is_fine() {
    let bot = TestBot::start().await;
    let u = "sync";
    bot.say(u, "authenticator code invalid").await;
    bot.press(u, "The authenticator app code is rejected").await;
    bot.press(u, "Check my phone's clock for me").await;
    bot.press(u, "OK, let's check").await;
    bot.say(u, "alice@example.com").await;
    let code = bot.mailed_code("alice@example.com").await;
    bot.say(u, &code).await;
    let totp = bot.authenticator_code("acc_alice", 0).await;
    let r = bot.say(u, &totp).await;
    assert_eq!(at(&r), ("two_factor", "diag_in_sync"), "{}", text(&r));
}

#[tokio::test]
async fn a_lost_phone_without_backup_codes_goes_to_identity_verification() {
    let bot = TestBot::start().await;
    let u = "lost";
    let r = bot.say(u, "I lost my phone").await;
    assert_eq!(at(&r), ("two_factor", "lost_phone"), "{}", text(&r));
    let r = bot.press(u, "I have a backup code").await;
    assert!(text(&r).to_lowercase().contains("backup code"));
    let r = bot.press(u, "I have no working backup code").await;
    assert_eq!(at(&r), ("two_factor", "no_backup"));
    let r = bot.press(u, "Start identity verification").await;
    assert_eq!(at(&r), ("human", "identity"));
    assert!(
        text(&r).contains("esc_"),
        "a reference is given: {}",
        text(&r)
    );
    let esc = bot.app.store.recent_escalations(5).await.unwrap();
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].reason, "identity_verification");
    assert_eq!(esc[0].topic.as_deref(), Some("two_factor"));
}

#[tokio::test]
async fn is_it_down_reads_the_live_status_and_skips_troubleshooting_during_a_login_incident() {
    let bot = TestBot::start().await;
    let r = bot.say("s1", "is the site down?").await;
    assert_eq!(at(&r), ("status", "operational"), "{}", text(&r));
    assert!(labels(&r).iter().any(|l| l.contains("password")));

    bot.admin_post(
        "/_sim/incidents",
        serde_json::json!({"name": "Login failures", "impact": "major", "components": ["Login"], "body": "Logins fail with an error page."}),
    )
    .await;
    let r = bot.say("s2", "is the site down").await;
    assert_eq!(at(&r), ("status", "login_incident"), "{}", text(&r));
    assert!(text(&r).contains("Login failures"), "{}", text(&r));
    assert!(
        text(&r).contains("Logins fail with an error page."),
        "{}",
        text(&r)
    );
    for label in labels(&r) {
        assert!(
            !label.contains("password") && !label.contains("page won't load"),
            "no troubleshooting during an incident: {label}"
        );
    }
}

#[tokio::test]
async fn an_incident_elsewhere_still_offers_troubleshooting() {
    let bot = TestBot::start().await;
    bot.admin_post(
        "/_sim/incidents",
        serde_json::json!({"name": "Slow payouts", "impact": "minor", "components": ["Payments"]}),
    )
    .await;
    let r = bot.say("s3", "status").await;
    assert_eq!(at(&r), ("status", "other_incident"), "{}", text(&r));
    assert!(labels(&r).iter().any(|l| l.contains("password")));
}

#[tokio::test]
async fn browser_troubleshooting_gives_exact_menu_paths() {
    let bot = TestBot::start().await;
    let u = "browser";
    let r = bot
        .say(u, "the login page keeps reloading, maybe cookies?")
        .await;
    assert_eq!(r.flow, "browser", "{}", text(&r));
    bot.press(u, "1. Clear cookies and cache").await;
    for (label, needle) in [
        ("Chrome", "Delete browsing data"),
        ("Firefox", "Cookies and Site Data"),
        ("Safari on a Mac", "Manage Website Data"),
        ("Edge", "Clear browsing data"),
    ] {
        let r = bot.press(u, label).await;
        assert!(text(&r).contains(needle), "{label}: {}", text(&r));
        bot.press(u, "Another browser").await;
    }
}

#[tokio::test]
async fn security_review_shows_recent_logins_after_verification() {
    let bot = TestBot::start().await;
    let u = "sec";
    bot.say(u, "menu").await;
    let r = bot.press(u, "Suspicious login or phishing").await;
    assert_eq!(r.flow, "security", "{}", text(&r));
    bot.press(u, "Check my recent logins with you").await;
    bot.say(u, "alice@example.com").await;
    let code = bot.mailed_code("alice@example.com").await;
    let r = bot.say(u, &code).await;
    assert_eq!(at(&r), ("security", "review_ok"), "{}", text(&r));
    assert!(text(&r).contains("Safari on iPhone"), "{}", text(&r));
}

#[tokio::test]
async fn sign_up_help_covers_the_verification_mail_and_duplicates() {
    let bot = TestBot::start().await;
    let r = bot.say("su", "how do I sign up").await;
    assert_eq!(at(&r), ("signup", "start"));
    let r = bot.press("su", "The verification mail didn't come").await;
    assert!(text(&r).to_lowercase().contains("spam"), "{}", text(&r));
    let r = bot.say("dup", "menu").await;
    assert_eq!(at(&r), ("main", "menu"));
    bot.press("dup", "More topics").await;
    let r = bot.press("dup", "I signed up twice / new profile").await;
    assert_eq!(at(&r), ("signup", "duplicate"));
    let r = bot.press("dup", "I'm back in my old profile").await;
    let r2 = bot.press("dup", "Ask the team to merge or close it").await;
    assert_eq!(r.flow, "signup");
    assert_eq!(at(&r2), ("human", "request"));
}

#[tokio::test]
async fn after_login_tour_and_remember_me_advice() {
    let bot = TestBot::start().await;
    let r = bot.say("tour", "should I tick remember me?").await;
    assert_eq!(at(&r), ("after_login", "start"), "{}", text(&r));
    assert!(text(&r).contains("Remember me"));
    for area in ["Jobs", "Messages", "Notifications"] {
        let r = bot.press("tour", area).await;
        assert_eq!(r.flow, "after_login");
    }
}

#[tokio::test]
async fn every_main_menu_entry_leads_somewhere_that_waits_for_the_user() {
    let bot = TestBot::start().await;
    let menu = bot.say("menu-0", "hello").await;
    assert_eq!(at(&menu), ("main", "menu"));
    let entries: Vec<String> = labels(&menu).iter().map(|s| s.to_string()).collect();
    assert_eq!(entries.len(), 10);
    for (i, label) in entries.iter().enumerate() {
        let user = format!("menu-{}", i + 1);
        bot.say(&user, "hello").await;
        let r = bot.press(&user, label).await;
        assert!(text(&r).len() > 20, "{label} answers with something useful");
        assert!(
            !r.buttons().is_empty() || r.step == "goodbye",
            "{label} leaves the user a next step"
        );
    }
}

#[tokio::test]
async fn typos_and_variants_reach_the_right_topic() {
    let bot = TestBot::start().await;
    let cases = [
        ("I forgot my pasword", "password_reset"),
        ("forgot passwrod", "password_reset"),
        ("2fa not working", "two_factor"),
        ("two factor code wrong", "two_factor"),
        ("my authenticator app code is wrong", "two_factor"),
        ("wrong password", "wrong_password"),
        ("invalid credentials", "wrong_password"),
        ("I cant log in", "wrong_password"),
        ("I can't login", "wrong_password"),
        ("can’t sign in", "wrong_password"),
        ("cannot log in to my account", "wrong_password"),
        ("is the site down?", "status"),
        ("talk to a human", "human"),
    ];
    for (i, (phrase, flow)) in cases.iter().enumerate() {
        let r = bot.say(&format!("typo-{i}"), phrase).await;
        assert_eq!(r.flow, *flow, "{phrase:?} went to {}:{}", r.flow, r.step);
    }
}

#[tokio::test]
async fn unknown_text_gets_a_clarifying_menu_never_a_dead_end() {
    let bot = TestBot::start().await;
    bot.say("lost", "hello").await;
    let r = bot.say("lost", "purple elephants dancing").await;
    assert!(!r.buttons().is_empty(), "buttons offered");
    let r = bot.say("lost", "more purple elephants").await;
    assert_eq!(at(&r), ("main", "clarify"));
    assert!(labels(&r).contains(&"Talk to a human"));
}

#[tokio::test]
async fn talk_to_a_human_works_mid_flow_and_records_an_escalation() {
    let bot = TestBot::start().await;
    bot.say("h", "I forgot my password").await;
    bot.press("h", "Send me a reset link").await;
    let r = bot.say("h", "I want to talk to a human").await;
    assert_eq!(at(&r), ("human", "request"));
    assert!(
        text(&r).contains("Monday to Friday"),
        "support hours: {}",
        text(&r)
    );
    let esc = bot.app.store.recent_escalations(5).await.unwrap();
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].reason, "user_asked");
    assert_eq!(esc[0].topic.as_deref(), Some("password_reset"));
    assert!(text(&r).contains(&esc[0].id));
}

#[tokio::test]
async fn the_ending_did_this_solve_it_answer_is_stored_when_not_solved() {
    let bot = TestBot::start().await;
    bot.say("fb", "wrong password").await;
    bot.press("fb", "The address is right, next").await;
    let r = bot.press("fb", "That was it, I'm in").await;
    assert_eq!(at(&r), ("feedback", "ask"));
    bot.press("fb", "No, still stuck").await;
    let fb = bot.app.store.recent_feedback(1).await.unwrap();
    assert_eq!(
        (fb[0].topic.as_str(), fb[0].answer.as_str()),
        ("wrong_password", "not_solved")
    );
}

/// Every message of a reply, joined (an incident line comes first).
fn all_text(r: &recoverbot::engine::Reply) -> String {
    r.actions
        .iter()
        .filter_map(|a| match a {
            recoverbot::engine::Outbound::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The buttons on the incident line, if the reply opens with one.
fn incident_line_buttons(r: &recoverbot::engine::Reply) -> Vec<recoverbot::engine::OutButton> {
    r.actions
        .iter()
        .filter_map(|a| match a {
            recoverbot::engine::Outbound::Message { text, buttons, .. }
                if text.starts_with("⚠️ Heads-up") =>
            {
                Some(buttons.clone())
            }
            _ => None,
        })
        .next()
        .unwrap_or_default()
}

#[tokio::test]
async fn during_a_login_incident_login_help_opens_with_it_and_skips_cache_advice() {
    let bot = TestBot::start().await;
    // All clear: nothing about status outside the status topic.
    let r = bot.say("h1", "I can't log in").await;
    assert_eq!(r.flow, "wrong_password", "{}", all_text(&r));
    assert!(!all_text(&r).contains("Heads-up"), "{}", all_text(&r));

    let created = bot
        .admin_post(
            "/_sim/incidents",
            serde_json::json!({"name": "Login failures", "impact": "major", "components": ["Login"], "body": "Logins fail with an error page."}),
        )
        .await;
    let r = bot.say("h2", "I can't log in").await;
    assert_eq!(r.flow, "wrong_password", "{}", all_text(&r));
    let all = all_text(&r);
    assert!(all.starts_with("⚠️ Heads-up: Login failures"), "{all}");
    assert!(all.contains("Logins fail with an error page"), "{all}");
    assert!(all.contains("probably not your device"), "{all}");
    let subscribe = incident_line_buttons(&r);
    assert_eq!(subscribe.len(), 1, "{subscribe:?}");
    assert!(subscribe[0].label.contains("Tell me when it's fixed"));

    // The press subscribes and leaves the conversation where it was.
    let r2 = bot
        .send(
            "h2",
            recoverbot::engine::Input::Button(subscribe[0].payload.clone()),
        )
        .await;
    assert_eq!(at(&r2), at(&r), "the topic goes on");
    assert!(text(&r2).contains("as soon as it's fixed"), "{}", text(&r2));
    let id = created["id"].as_str().unwrap();
    let subs = bot
        .app
        .store
        .subscriptions(id, recoverbot::domain::now_millis())
        .await
        .unwrap();
    assert_eq!(subs.len(), 1);

    // The browser topic: no cache advice while login is down.
    let r = bot
        .say("h3", "the login page keeps reloading, maybe cookies?")
        .await;
    assert_eq!(
        at(&r),
        ("browser", "not_your_device_wait"),
        "{}",
        all_text(&r)
    );
    assert!(!all_text(&r).contains("Chrome"), "{}", all_text(&r));
    assert!(
        labels(&r)
            .iter()
            .any(|l| l.contains("Tell me when it's fixed"))
    );

    bot.admin_post(
        &format!("/_sim/incidents/{id}"),
        serde_json::json!({"status": "resolved", "body": "Fixed."}),
    )
    .await;
    let r = bot.say("h4", "I can't log in").await;
    assert!(!all_text(&r).contains("Heads-up"), "{}", all_text(&r));
    let r = bot
        .say("h5", "the login page keeps reloading, maybe cookies?")
        .await;
    assert_eq!(at(&r), ("browser", "start"), "{}", all_text(&r));
    // The subscriber's notice is queued, on the bulk lane.
    let chat = TestBot::key("h2").chat_ref();
    let queued = bot.app.store.chat_outbox(&chat).await.unwrap();
    let notice = queued.last().unwrap();
    assert_eq!(notice.lane, recoverbot::engine::Lane::Bulk);
    assert!(
        matches!(&notice.op, recoverbot::engine::Outbound::Message { text, .. } if text.starts_with("✅ Fixed: Login failures")),
        "{:?}",
        notice.op
    );
}
