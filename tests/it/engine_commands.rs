//! Commands (`/human`, a slash command) are their own input: the flows'
//! `[commands]` table says where each leads, whatever the intents say.

use crate::support::bot::{TestBot, at, flows_dir, labels, text};
use crate::support::db::{contains, database_bytes};
use recoverbot::domain::{ChannelKind, ConversationKey};
use recoverbot::engine::{Engine, EngineConfig, Inbound, Input, NoAccountService, Outbound, Reply};
use recoverbot::flow::FlowSet;
use recoverbot::store::MemoryStore;
use std::path::Path;
use std::sync::Arc;

fn command(name: &str, args: Option<&str>) -> Input {
    Input::Command {
        name: name.into(),
        args: args.map(str::to_string),
    }
}

/// An engine without an account service on `flows`, talked to from the console.
fn console_engine(flows: FlowSet) -> Engine {
    Engine::new(
        flows,
        Arc::new(MemoryStore::new()),
        Arc::new(NoAccountService),
        EngineConfig::from_settings(&recoverbot::config::Settings::default()),
    )
}

async fn on_console(engine: &Engine, user: &str, input: Input) -> Reply {
    engine
        .handle(Inbound {
            key: ConversationKey::new(ChannelKind::Console, "console", user),
            event_id: None,
            message_id: None,
            locale: None,
            input,
        })
        .await
        .unwrap()
}

/// The shipped flows with `edit` applied to the files it is `for_file`.
fn edited_flows(for_file: impl Fn(&str) -> bool, edit: impl Fn(&str) -> String) -> FlowSet {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut body = std::fs::read_to_string(&path).unwrap();
        if for_file(path.file_name().unwrap().to_str().unwrap()) {
            body = edit(&body);
        }
        std::fs::write(dir.path().join(path.file_name().unwrap()), body).unwrap();
    }
    recoverbot::flow::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test]
async fn human_cancel_help_and_status_land_on_their_entry_points_mid_flow() {
    let bot = TestBot::start().await;
    let cases = [
        ("human", ("human", "request")),
        ("cancel", ("main", "menu")),
        ("help", ("main", "menu")),
        ("menu", ("main", "menu")),
        ("status", ("status", "operational")),
    ];
    for (name, (flow, step)) in cases {
        let user = format!("mid-{name}");
        bot.say(&user, "I forgot my password").await;
        let r = bot.press(&user, "Send me a reset link").await;
        assert_eq!(at(&r), ("password_reset", "ask_email"));
        let r = bot.send(&user, command(name, None)).await;
        assert_eq!(at(&r), (flow, step), "/{name}");
        assert!(!text(&r).is_empty(), "/{name} gets an answer");
        assert!(!r.buttons().is_empty(), "/{name} is no dead end");
    }
    let r = bot.send("esc", command("human", None)).await;
    assert!(
        text(&r).contains("reference esc_"),
        "the hand-off is recorded: {}",
        text(&r)
    );
}

#[tokio::test]
async fn a_command_works_on_first_contact_and_from_a_step_without_a_question() {
    let bot = TestBot::start().await;
    let r = bot.send("first", command("human", None)).await;
    assert_eq!(at(&r), ("human", "request"));

    bot.say("buttons", "menu").await;
    let r = bot.press("buttons", "Is the site down?").await;
    assert_eq!(at(&r), ("status", "operational"));
    let r = bot.send("buttons", command("cancel", None)).await;
    assert_eq!(at(&r), ("main", "menu"));
}

#[tokio::test]
async fn renaming_or_removing_the_intents_does_not_break_a_command() {
    // Every [[intent]] renamed, its phrases changed beyond recognition.
    let flows = edited_flows(
        |f| f == "main.toml",
        |main| {
            main.replace("id = \"human\"", "id = \"a_person\"")
                .replace("id = \"start_over\"", "id = \"over_again\"")
                .replace("talk|speak|chat", "parlez")
                .replace("start over|restart", "recommencer")
                .replace("/human", "/personne")
                .replace("/cancel", "/annuler")
        },
    );
    assert!(flows.match_intent("start over").is_none());
    assert!(flows.match_intent("talk to a human").is_none());
    let engine = console_engine(flows);
    for (name, at_) in [
        ("human", ("human", "request")),
        ("cancel", ("main", "menu")),
    ] {
        let user = format!("renamed-{name}");
        on_console(&engine, &user, Input::Text("I forgot my password".into())).await;
        let r = on_console(&engine, &user, command(name, None)).await;
        assert_eq!(at(&r), at_, "/{name}");
    }
    let r = on_console(&engine, "renamed-text", Input::Text("start over".into())).await;
    assert_ne!(
        text(&r),
        "",
        "the old phrase is ordinary text now, and still answered"
    );
}

#[tokio::test]
async fn an_unknown_command_gets_a_clear_answer_and_the_menu() {
    let bot = TestBot::start().await;
    let r = bot.send("unknown", command("frobnicate", None)).await;
    assert!(
        text(&r).contains("I don't know that command (/frobnicate)"),
        "{}",
        text(&r)
    );
    assert!(
        text(&r).contains("/help"),
        "what works instead: {}",
        text(&r)
    );
    assert_eq!(at(&r), ("main", "menu"));
    assert!(labels(&r).contains(&"I can't log in"));

    // Mid-flow too, and a name that is not a command name is not echoed.
    bot.say("unknown", "I forgot my password").await;
    let r = bot
        .send("unknown", command("<b>x</b>", Some("whatever")))
        .await;
    assert!(
        text(&r).contains("I don't know that command."),
        "{}",
        text(&r)
    );
    assert!(!text(&r).contains("<b>"));
    assert_eq!(at(&r), ("main", "menu"));

    // A command offered only on Discord is unknown on Telegram.
    let r = bot.send("unknown", command("recover", None)).await;
    assert!(text(&r).contains("I don't know that command"));
}

#[tokio::test]
async fn a_fresh_command_starts_afresh_into_the_topic_it_names() {
    let engine = console_engine(recoverbot::flow::load_dir(&flows_dir()).unwrap());
    on_console(&engine, "fresh", Input::Text("I forgot my password".into())).await;
    let r = on_console(&engine, "fresh", command("recover", Some("two_factor"))).await;
    assert_eq!(at(&r), ("two_factor", "start"));
    let r = on_console(&engine, "fresh", command("start", None)).await;
    assert_eq!(at(&r), ("main", "menu"));
    let r = on_console(&engine, "fresh", command("recover", Some("no such topic"))).await;
    assert_eq!(
        at(&r),
        ("main", "menu"),
        "an unknown topic lands on the entry point"
    );
}

#[tokio::test]
async fn a_secret_typed_after_a_command_is_deleted_warned_about_and_never_stored() {
    let bot = TestBot::start().await;
    let r = bot
        .send(
            "cmd-secret",
            command("human", Some("my password is Tr0ub4dor&3xyz")),
        )
        .await;
    assert_eq!(at(&r), ("human", "request"));
    assert!(
        r.actions
            .iter()
            .any(|a| matches!(a, Outbound::DeleteMessage { .. }))
    );
    assert!(
        text(&r).contains("never share your password"),
        "{}",
        text(&r)
    );
    let transcript = bot
        .app
        .store
        .transcript(&TestBot::key("cmd-secret"), 50)
        .await
        .unwrap();
    assert!(transcript.iter().any(|e| e.text.starts_with("/human ")));
    assert!(transcript.iter().all(|e| !e.text.contains("Tr0ub4dor")));
    assert!(!contains(&database_bytes(&bot.db), "Tr0ub4dor&3xyz"));

    let debug = format!("{:?}", command("human", Some("Tr0ub4dor&3xyz")));
    assert_eq!(debug, "Command(/human)");
}

#[tokio::test]
async fn after_a_flow_edit_a_command_goes_straight_to_its_entry_point() {
    let flows_before = recoverbot::flow::load_dir(&flows_dir()).unwrap();
    let engine = console_engine(flows_before);
    on_console(&engine, "edit", Input::Text("I forgot my password".into())).await;
    let r = on_console(&engine, "edit", Input::Text("2".into())).await;
    assert_eq!(at(&r), ("password_reset", "check_inbox"));
    // The step is renamed: the conversation's step is gone.
    let edited = edited_flows(|_| true, |f| f.replace("check_inbox", "look_in_inbox"));
    engine.replace_flows(edited);
    let r = on_console(&engine, "edit", command("human", None)).await;
    assert_eq!(at(&r), ("human", "request"));
    assert!(!text(&r).contains("just updated"), "{}", text(&r));
}

#[test]
fn the_shipped_command_table_points_where_the_old_phrases_did() {
    let flows = recoverbot::flow::load_dir(Path::new(&flows_dir())).unwrap();
    for (command, phrase) in [
        ("human", "talk to a human"),
        ("cancel", "start over"),
        ("help", "menu"),
        ("status", "status"),
    ] {
        let c = flows.command(ChannelKind::Telegram, command).unwrap();
        let intent = flows.match_intent(phrase).unwrap();
        assert_eq!(c.goto, intent.goto, "/{command} and {phrase:?}");
    }
}
