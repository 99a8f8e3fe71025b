//! No account enumeration: every answer the bot gives about an address is
//! the same, byte for byte (the masked address aside), whether the address
//! has an account, has none, bounces with or without an account, or belongs
//! to a suspended account. The simulator's account endpoints answer an
//! unknown id exactly like a real one nobody has confirmed.

use crate::support::bot::{TestBot, text};

const ADDRESSES: [&str; 5] = [
    "alice@example.com",         // an account
    "nobody-here@example.com",   // no account
    "dave@example.com",          // an account whose mailbox bounces
    "bounce-nobody@example.com", // no account, a bouncing mailbox
    "erin@example.com",          // a suspended account
];

/// The reply with the masked address made neutral.
fn neutral(reply: &str, address: &str) -> String {
    let first: String = address.chars().take(1).collect();
    reply.replace(&format!("{first}***@example.com"), "X***@example.com")
}

/// Walks `steps` (texts typed, then `{}` replaced by the address) for every
/// address and requires the same answers.
async fn same_answers(bot: &TestBot, name: &str, steps: &[&str]) {
    let mut seen: Option<Vec<String>> = None;
    for (i, address) in ADDRESSES.iter().enumerate() {
        let user = format!("{name}-{i}");
        let mut answers = Vec::new();
        for step in steps {
            let r = if let Some(label) = step.strip_prefix("press:") {
                bot.press(&user, label).await
            } else {
                bot.say(&user, &step.replace("{}", address)).await
            };
            answers.push(neutral(text(&r), address));
        }
        match &seen {
            None => seen = Some(answers),
            Some(first) => assert_eq!(first, &answers, "{name}: {address} answered differently"),
        }
    }
}

#[tokio::test]
async fn every_answer_about_an_address_is_the_same_for_existing_unknown_bouncing_and_suspended_ones()
 {
    let bot = TestBot::start().await;
    same_answers(
        &bot,
        "reset-slot",
        &["I forgot my password, my email is {}"],
    )
    .await;
    same_answers(
        &bot,
        "reset-typed",
        &["I forgot my password", "press:Send me a reset link", "{}"],
    )
    .await;
    same_answers(
        &bot,
        "check-account",
        &[
            "menu",
            "press:I can't log in",
            "press:Check my account (locked?)",
            "{}",
        ],
    )
    .await;
    same_answers(
        &bot,
        "security-review",
        &[
            "menu",
            "press:Suspicious login or phishing",
            "press:Check my recent logins with you",
            "{}",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_bounce_is_reported_for_the_mailbox_whether_or_not_it_has_an_account() {
    let bot = TestBot::start().await;
    let mut outcomes = Vec::new();
    for (i, address) in ["dave@example.com", "bounce-nobody@example.com"]
        .iter()
        .enumerate()
    {
        let user = format!("bounce-{i}");
        bot.say(
            &user,
            &format!("I forgot my password, my email is {address}"),
        )
        .await;
        bot.press(&user, "Nothing yet").await;
        let r = bot.press(&user, "Check if it was delivered").await;
        outcomes.push((r.step.clone(), neutral(text(&r), address)));
    }
    assert_eq!(outcomes[0].0, "bounced");
    assert_eq!(outcomes[0], outcomes[1]);
}

#[tokio::test]
async fn account_endpoints_answer_an_unknown_id_like_an_unconfirmed_real_one() {
    let bot = TestBot::start().await;
    use secrecy::ExposeSecret;
    let http = reqwest::Client::new();
    let token = bot
        .app
        .simulator
        .as_ref()
        .expect("simulator")
        .token
        .expose_secret()
        .to_string();
    let mut answers = Vec::new();
    for id in ["acc_alice", "acc_nobody_has_this"] {
        let r = http
            .get(bot.sim_url(&format!("/v1/accounts/{id}/login-status")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 403, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
}
