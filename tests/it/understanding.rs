//! Understanding free text: the held-out evaluation set, one typo per
//! phrasing, messages about something else, "Did you mean" end to end, an
//! address in the first message, and the `flows eval`/`flows check` commands.

use crate::flows_check::MAIN;
use crate::support::bot::{TestBot, at, flows_dir, labels, text};
use recoverbot::config::UnderstandingSettings;
use recoverbot::flow::eval::{self, Labelled};
use recoverbot::flow::{self, FlowSet, Route, RouteBy, Target};
use std::process::Command;
use std::sync::LazyLock;

static FLOWS: LazyLock<FlowSet> =
    LazyLock::new(|| flow::load_dir(&flows_dir()).expect("the default flows load"));

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn labelled(name: &str) -> Vec<Labelled> {
    eval::parse_tsv(&FLOWS, &data(name)).expect("the file parses")
}

fn settings() -> UnderstandingSettings {
    UnderstandingSettings::default()
}

/// Routed right: directly, or first in "Did you mean".
fn routes_right(text: &str, expected: &Target) -> bool {
    match FLOWS.route(text, &settings()) {
        Route::Direct { target, .. } => &target == expected,
        Route::Ask(c) => c.first() == Some(expected),
        Route::Unsure => false,
    }
}

#[test]
fn the_held_out_set_reaches_the_right_help_95_percent_of_the_time_and_almost_never_the_wrong_one_unasked()
 {
    let lines = labelled("intents_eval.tsv");
    assert!(lines.len() >= 400, "{} phrasings", lines.len());
    let report = eval::evaluate(&FLOWS, &settings(), &lines);
    assert!(report.accuracy() >= 0.95, "{report}");
    assert!(report.wrong() <= 0.02, "{report}");
}

#[test]
fn the_held_out_phrasings_are_not_training_examples() {
    let normal = |s: &str| flow::normalize(s).replace(['?', '!', '.', ','], "");
    let examples: std::collections::HashSet<String> = FLOWS
        .entry_examples()
        .iter()
        .flat_map(|(_, ex)| ex.iter().map(|e| normal(e)))
        .collect();
    assert!(examples.len() >= 25 * 25, "{} examples", examples.len());
    let out_of_scope = data("intents_out_of_scope.txt");
    let held_out = labelled("intents_eval.tsv")
        .into_iter()
        .chain(labelled("intents_typo_sample.tsv"))
        .map(|l| l.text)
        .chain(out_of_scope.lines().map(str::to_string));
    for text in held_out {
        assert!(
            !examples.contains(&normal(&text)),
            "{text:?} is also a training example"
        );
    }
}

#[test]
fn every_entry_point_has_at_least_25_examples() {
    for (target, examples) in FLOWS.entry_examples() {
        assert!(examples.len() >= 25, "{target}: {}", examples.len());
    }
}

#[test]
fn the_phrasings_from_the_bug_report_land_on_their_entry_points() {
    for (entry, phrasing) in [
        ("password_reset:check_inbox", "the reset email never came"),
        ("two_factor:backup_codes", "where do i enter a backup code"),
        ("status", "is upwork down?"),
        ("security:sessions", "how do i see my login history"),
        (
            "browser:one_device",
            "log in works on my phone but not on my laptop",
        ),
        (
            "browser:logged_out",
            "i get logged out immediately after signing in",
        ),
        (
            "security:phishing",
            "is this message from support legit? they want my login",
        ),
        (
            "browser:form_wont_load",
            "the login form wont load in chrome",
        ),
        ("password_reset", "forgott my pasword"),
        ("password_reset", "i frogot my password"),
    ] {
        let expected = FLOWS.entry(entry).expect("entry exists");
        assert!(
            routes_right(phrasing, &expected),
            "{phrasing:?} -> {:?}",
            FLOWS.route(phrasing, &settings())
        );
    }
}

/// One typo: a letter deleted, two neighbours swapped, or a letter doubled.
fn with_typo(text: &str, kind: usize, rng: &mut u64) -> String {
    let chars: Vec<char> = text.chars().collect();
    let letters: Vec<usize> = (0..chars.len())
        .filter(|&i| chars[i].is_alphabetic() && i + 1 < chars.len())
        .collect();
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let i = letters[(*rng % letters.len() as u64) as usize];
    let mut out = chars.clone();
    match kind {
        0 => {
            out.remove(i);
        }
        1 => out.swap(i, i + 1),
        _ => out.insert(i, chars[i]),
    }
    out.into_iter().collect()
}

#[test]
fn one_typo_in_each_phrasing_of_the_sample_still_routes_right_nine_times_in_ten() {
    let lines = labelled("intents_typo_sample.tsv");
    assert_eq!(lines.len(), 30);
    let mut rng = 0x5eed_1234_abcd_9876u64;
    let (mut right, mut total, mut misses) = (0, 0, Vec::new());
    for l in &lines {
        let expected = l.expected.as_ref().expect("a topic");
        for kind in 0..3 {
            let typo = with_typo(&l.text, kind, &mut rng);
            total += 1;
            if routes_right(&typo, expected) {
                right += 1;
            } else {
                misses.push(format!("{typo:?} (expected {expected})"));
            }
        }
    }
    eprintln!("one typo: {right} of {total} routed right");
    assert!(
        right * 10 >= total * 9,
        "{right} of {total} right; misses: {misses:#?}"
    );
}

#[test]
fn messages_about_something_else_are_not_routed_to_a_topic_by_a_guess() {
    let mut guessed = Vec::new();
    for line in data("intents_out_of_scope.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        // The menu and "goodbye" are right answers; a topic is a guess.
        if let Route::Direct {
            target,
            how: RouteBy::Classifier,
        } = FLOWS.route(line, &settings())
            && !FLOWS.flow(&target.flow).is_some_and(|f| f.utility)
        {
            guessed.push(format!("{line:?} -> {target}"));
        }
    }
    // At most one in forty: the bot asks or shows the menu for the rest.
    assert!(guessed.len() <= 1, "{guessed:#?}");
}

#[test]
fn classifying_is_deterministic_and_the_model_is_small() {
    let again = flow::load_dir(&flows_dir()).unwrap();
    for l in labelled("intents_typo_sample.tsv") {
        assert_eq!(
            FLOWS.route(&l.text, &settings()),
            again.route(&l.text, &settings())
        );
    }
    let model = FLOWS
        .classifier
        .as_deref()
        .expect("the default flows have examples");
    assert!(model.memory_bytes() < 20 * 1024 * 1024, "{model:?}");
}

/// A message the router is unsure between two or three entry points about.
fn an_ambiguous_message() -> (String, Vec<Target>) {
    let held_out = labelled("intents_eval.tsv");
    for candidate in held_out.iter().map(|l| l.text.as_str()).chain([
        "can i sign up with my email",
        "password and code both not working",
        "something wrong with my login and email",
        "problem with email",
        "code",
        "login",
        "account",
        "my email",
        "backup",
    ]) {
        if let Route::Ask(c) = FLOWS.route(candidate, &settings())
            && c.len() >= 2
        {
            return (candidate.to_string(), c);
        }
    }
    panic!("no ambiguous message among the candidates");
}

#[tokio::test]
async fn did_you_mean_offers_the_candidates_as_buttons_and_a_press_goes_there() {
    let bot = TestBot::start().await;
    let (message, candidates) = an_ambiguous_message();
    let r = bot.say("unsure", &message).await;
    assert_eq!(at(&r), ("main", "did_you_mean"), "{}", text(&r));
    assert!(text(&r).contains("Did you mean"), "{}", text(&r));
    let titles: Vec<String> = candidates.iter().map(|t| FLOWS.entry_title(t)).collect();
    let mut expected: Vec<&str> = titles.iter().map(String::as_str).collect();
    expected.push("Something else");
    assert_eq!(labels(&r), expected);

    let r = bot.press("unsure", &titles[1]).await;
    assert_eq!(r.flow, candidates[1].flow, "{}", text(&r));

    // "Something else" is the menu, never a dead end.
    let r = bot.say("unsure2", &message).await;
    assert_eq!(at(&r), ("main", "did_you_mean"));
    let r = bot.press("unsure2", "Something else").await;
    assert_eq!(at(&r), ("main", "menu"));
}

#[tokio::test]
async fn an_address_in_the_first_message_is_used_and_answered_as_if_typed_at_the_prompt() {
    let bot = TestBot::start().await;
    let r = bot
        .say(
            "slot",
            "I forgot my password, my email is alice@example.com",
        )
        .await;
    assert_eq!(at(&r), ("password_reset", "sent"), "{}", text(&r));
    let mails = bot.outbox().await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["to"], "alice@example.com");

    bot.say("typed", "I forgot my password").await;
    bot.press("typed", "Send me a reset link").await;
    let typed = bot.say("typed", "alice@example.com").await;
    assert_eq!(text(&r), text(&typed));

    // No account behind the address: the same answer, no mail.
    let unknown = bot
        .say(
            "slot2",
            "I forgot my password, my email is nobody-here@example.com",
        )
        .await;
    assert_eq!(
        text(&unknown).replace("n***@example.com", "a***@example.com"),
        text(&r)
    );
    // The simulator tells the mailbox that no account uses it, as real
    // platforms do: a third mail, of its own kind.
    let mails = bot.outbox().await;
    assert_eq!(mails.len(), 3);
    assert_eq!(mails[2]["kind"], "reset_no_account");
}

#[tokio::test]
async fn a_confident_first_message_goes_straight_to_the_deep_entry_point() {
    let bot = TestBot::start().await;
    let r = bot
        .say("deep", "the password reset email never arrived")
        .await;
    assert_eq!(at(&r), ("password_reset", "check_inbox"), "{}", text(&r));
    let r = bot.say("deep2", "where do I type my backup code").await;
    assert_eq!(at(&r), ("two_factor", "backup_codes"), "{}", text(&r));
}

fn recoverbot(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("recoverbot runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flows_eval_prints_the_figures_and_fails_below_the_minimum_accuracy() {
    let (code, out, err) = recoverbot(&[
        "flows",
        "eval",
        "tests/data/intents_eval.tsv",
        "--min-accuracy",
        "0.95",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    for needle in [
        "accuracy",
        "\"did you mean\" with the right answer among the buttons",
        "sent to the menu",
        "routed to a wrong entry without asking",
    ] {
        assert!(out.contains(needle), "{needle} missing in {out}");
    }
    let (code, out, err) = recoverbot(&[
        "flows",
        "eval",
        "tests/data/intents_eval.tsv",
        "--min-accuracy",
        "100%",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("below --min-accuracy"), "{err}");
    assert!(
        out.contains("misses:") && out.contains("expected "),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "no_such_flow:step\thello\n").unwrap();
    let (code, _, err) = recoverbot(&["flows", "eval", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("line 1") && err.contains("no_such_flow:step"),
        "{err}"
    );
}

#[test]
fn flows_check_warns_about_thin_examples_and_names_entry_points_too_alike_to_tell_apart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    let same = r#"["i forgot my password X", "forgot password help X", "reset my password please X", "cannot remember the password i set X", "lost my login password X"]"#;
    for id in ["reset", "down"] {
        std::fs::write(
            dir.path().join(format!("{id}.toml")),
            format!(
                "[flow]\nid = \"{id}\"\ntitle = \"{id}\"\nexamples = {}\n\n[[step]]\nid = \"start\"\nsay = \"Hello\"\nend = true\n",
                same.replace('X', id)
            ),
        )
        .unwrap();
    }
    let (code, out, err) = recoverbot(&["flows", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "warnings do not fail the check: {out}{err}");
    assert!(
        err.contains("entry point down:start has 5 example(s)"),
        "{err}"
    );
    assert!(
        err.contains("down:start and reset:start are too alike")
            || err.contains("reset:start and down:start are too alike"),
        "{err}"
    );
}

#[test]
fn flows_check_refuses_a_step_with_examples_but_no_title_and_a_phrasing_for_two_entries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    std::fs::write(
        dir.path().join("reset.toml"),
        "[flow]\nid = \"reset\"\ntitle = \"Reset\"\nexamples = [\"reset it\"]\n\n[[step]]\nid = \"start\"\nsay = \"Hi\"\nend = true\n\n[[step]]\nid = \"deep\"\nsay = \"Deep\"\nexamples = [\"Reset  it\"]\nend = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("down.toml"),
        "[flow]\nid = \"down\"\ntitle = \"Down\"\n\n[[step]]\nid = \"start\"\nsay = \"Hi\"\nend = true\n",
    )
    .unwrap();
    let (code, _, err) = recoverbot(&["flows", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs a title"), "{err}");
    assert!(err.contains("is also an example of reset:start"), "{err}");
    assert!(err.contains("step 'deep'"), "{err}");
}
