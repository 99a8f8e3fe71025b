//! `recoverbot flows check`: exit 0 on the default flows, exit 1 with a
//! precise message (file, step, hint) for each kind of error.

use std::path::Path;
use std::process::Command;

/// The smallest valid main flow (a menu, clarify, "did you mean").
pub(crate) const MAIN: &str = include_str!("../data/minimal_main.toml");

const RESET: &str = r#"
[flow]
id = "reset"
title = "Reset"
triggers = ['reset']

[[step]]
id = "start"
say = "Which address?"
capture = { var = "email", validator = "email", on_fail = "main:menu" }
next = "send"

[[step]]
id = "send"
action = { name = "request_password_reset", on = { default = "done" } }

[[step]]
id = "done"
say = "Sent to {email_masked}."
end = true
"#;

/// Runs `flows check` on a directory holding main.toml and reset.toml,
/// with `reset.toml` edited by `edit`.
fn check_with(edit: impl Fn(&str) -> String) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    std::fs::write(dir.path().join("reset.toml"), edit(RESET)).unwrap();
    run_check(dir.path())
}

fn run_check(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir)
        .env_clear()
        .args(["flows", "check", "."])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_error(edit: impl Fn(&str) -> String, needles: &[&str]) {
    let (code, err) = check_with(edit);
    assert_eq!(code, Some(1), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    assert!(err.contains("(hint: "), "every error has a hint:\n{err}");
}

#[test]
fn the_minimal_fixture_is_clean() {
    let (code, err) = check_with(str::to_string);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn an_unknown_target_is_named_with_a_suggestion() {
    assert_error(
        |s| s.replace(r#"next = "send""#, r#"next = "sned""#),
        &[
            "reset.toml: step 'start': unknown target 'sned'",
            "did you mean 'send'?",
        ],
    );
}

#[test]
fn an_unreachable_step_is_reported() {
    assert_error(
        |s| format!("{s}\n[[step]]\nid = \"orphan\"\nsay = \"Nobody comes here.\"\nend = true\n"),
        &["reset.toml: step 'orphan': step is unreachable"],
    );
}

#[test]
fn a_step_with_no_way_out_is_reported() {
    assert_error(
        |s| s.replace("end = true", ""),
        &["reset.toml: step 'done': step has no way out"],
    );
}

#[test]
fn an_invalid_regex_is_reported() {
    assert_error(
        |s| s.replace("triggers = ['reset']", "triggers = ['(reset']"),
        &["reset.toml: invalid trigger regex \"(reset\""],
    );
}

#[test]
fn an_unknown_action_is_reported() {
    assert_error(
        |s| s.replace("request_password_reset", "request_pasword_reset"),
        &[
            "reset.toml: step 'send': unknown action 'request_pasword_reset'",
            "did you mean 'request_password_reset'?",
        ],
    );
}

#[test]
fn an_unknown_validator_is_reported() {
    assert_error(
        |s| s.replace(r#"validator = "email""#, r#"validator = "emial""#),
        &[
            "reset.toml: step 'start': unknown validator 'emial'",
            "email, code6, yes_no, choice, text",
        ],
    );
}

#[test]
fn an_unknown_variable_is_reported() {
    assert_error(
        |s| s.replace("{email_masked}", "{emial_masked}"),
        &[
            "reset.toml: step 'done': unknown variable '{emial_masked}'",
            "did you mean '{email_masked}'?",
        ],
    );
}

#[test]
fn showing_a_captured_address_in_full_is_refused() {
    assert_error(
        |s| s.replace("{email_masked}", "{email}"),
        &["reset.toml: step 'done': '{email}' would show a secret or an address in full"],
    );
}

#[test]
fn duplicate_step_ids_are_reported() {
    assert_error(
        |s| s.replace(r#"id = "done""#, r#"id = "send""#),
        &["reset.toml: step 'send': duplicate step id"],
    );
}

#[test]
fn duplicate_flow_ids_are_reported() {
    assert_error(
        |s| s.replace(r#"id = "reset""#, r#"id = "main""#),
        &["reset.toml: duplicate flow id 'main'", "already defined in"],
    );
}

#[test]
fn a_prompt_that_asks_for_a_password_is_refused() {
    assert_error(
        |s| {
            s.replace(
                "Which address?",
                "Please type your password here so I can check it.",
            )
        },
        &["reset.toml: step 'start': the prompt asks for a password"],
    );
}

#[test]
fn an_unrouted_action_outcome_is_reported() {
    assert_error(
        |s| s.replace("on = { default = \"done\" }", "on = { ok = \"done\" }"),
        &[
            "reset.toml: step 'send': action 'request_password_reset' does not route outcome(s): invalid, rate_limited, upstream_unavailable",
        ],
    );
}

#[test]
fn a_syntax_error_names_the_line() {
    assert_error(
        |s| s.replace("[[step]]\nid = \"send\"", "[[step]\nid = \"send\""),
        &["reset.toml: line "],
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let (code, err) = check_with(|s| {
        s.replace(r#"next = "send""#, r#"next = "nowhere""#)
            .replace("request_password_reset", "no_such_action")
    });
    assert_eq!(code, Some(1));
    assert!(
        err.contains("unknown target 'nowhere'") && err.contains("unknown action 'no_such_action'"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn the_bot_refuses_to_start_on_broken_flows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    std::fs::write(
        dir.path().join("reset.toml"),
        RESET.replace(r#"next = "send""#, r#"next = "x""#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir.path())
        .env_clear()
        .env("RECOVERBOT__ENGINE__FLOWS_DIR", dir.path())
        .arg("chat")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the flow files have 1 problem(s)"), "{err}");
    assert!(err.contains("unknown target 'x'"), "{err}");
}

/// The fixture's reset flow with a `[commands]` table appended.
fn with_commands(table: &str) -> impl Fn(&str) -> String {
    move |s: &str| format!("{s}\n{table}")
}

#[test]
fn a_clean_command_table_passes() {
    let (code, err) = check_with(with_commands(
        "[commands.help]\ngoto = \"main:menu\"\ndescription = \"What I can help with\"\n\
         [commands.reset]\ngoto = \"reset\"\ndescription = \"Reset my password\"\naliases = [\"forgot\"]\n",
    ));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_command_that_points_nowhere_is_reported() {
    assert_error(
        with_commands("[commands.help]\ngoto = \"mian\"\ndescription = \"What I can help with\"\n"),
        &[
            "reset.toml: command '/help': unknown target 'mian'",
            "did you mean 'main'?",
        ],
    );
    assert_error(
        with_commands(
            "[commands.help]\ngoto = \"main:manu\"\ndescription = \"What I can help with\"\n",
        ),
        &[
            "reset.toml: command '/help': unknown target 'main:manu'",
            "flow 'main' has no step 'manu'; did you mean 'menu'?",
        ],
    );
}

#[test]
fn a_command_name_telegram_would_refuse_is_reported() {
    for bad in ["Help", "talk-to-human", "\"\"", &"x".repeat(33)] {
        let name = if bad.starts_with('"') {
            bad.to_string()
        } else {
            format!("\"{bad}\"")
        };
        assert_error(
            with_commands(&format!(
                "[commands.{name}]\ngoto = \"main\"\ndescription = \"Menu\"\n"
            )),
            &[
                "reset.toml: command '/",
                "is not a valid command name",
                "1 to 32",
            ],
        );
    }
}

#[test]
fn a_command_without_a_description_or_for_an_unknown_channel_is_reported() {
    assert_error(
        with_commands("[commands.help]\ngoto = \"main\"\ndescription = \" \"\n"),
        &["reset.toml: command '/help': the description is empty or too long"],
    );
    assert_error(
        with_commands(
            "[commands.help]\ngoto = \"main\"\ndescription = \"Menu\"\nchannels = [\"slack\"]\n",
        ),
        &["reset.toml: command '/help': unknown channel 'slack'"],
    );
}

#[test]
fn commands_live_in_one_table_with_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let table = "[commands.help]\ngoto = \"main\"\ndescription = \"Menu\"\n";
    std::fs::write(dir.path().join("main.toml"), format!("{MAIN}\n{table}")).unwrap();
    std::fs::write(dir.path().join("reset.toml"), format!("{RESET}\n{table}")).unwrap();
    let (code, err) = run_check(dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("reset.toml: a second [commands] table"),
        "{err}"
    );
    assert!(err.contains("main.toml"), "the hint names the first: {err}");

    assert_error(
        with_commands(
            "[commands.help]\ngoto = \"main\"\ndescription = \"Menu\"\n\
             [commands.menu]\ngoto = \"main\"\ndescription = \"Menu\"\naliases = [\"help\"]\n",
        ),
        &["command '/menu': the name 'help' is taken"],
    );
}

#[test]
fn a_step_reached_only_by_a_command_is_reachable() {
    let (code, err) = check_with(|s| {
        format!(
            "{s}\n[[step]]\nid = \"faq\"\nsay = \"Answers.\"\nend = true\n\
             [commands.faq]\ngoto = \"reset:faq\"\ndescription = \"Questions\"\n"
        )
    });
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_fifo_a_device_behind_a_symlink_and_an_oversized_file_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    std::fs::write(dir.path().join("reset.toml"), RESET).unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.toml")).unwrap();
    std::fs::write(
        dir.path().join("huge.toml"),
        format!("# {}\n", "x".repeat(2 * 1024 * 1024)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, err) = run_check(dir.path());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("fifo.toml: not a regular file"), "{err}");
    assert!(err.contains("zero.toml: not a regular file"), "{err}");
    assert!(
        err.contains("huge.toml: 2097155 bytes, over flows.max_file_bytes (1048576)"),
        "{err}"
    );
}

#[test]
fn a_status_branch_needs_a_known_condition_and_target() {
    assert_error(
        |s| {
            s.replace(
                "id = \"send\"\n",
                "id = \"send\"\nstatus = { login_outage = \"done\" }\n",
            )
        },
        &[
            "reset.toml: step 'send': unknown status condition 'login_outage'",
            "operational, login_incident, other_incident, unknown",
        ],
    );
    assert_error(
        |s| {
            s.replace(
                "id = \"send\"\n",
                "id = \"send\"\nstatus = { login_incident = \"nowhere\" }\n",
            )
        },
        &["reset.toml: step 'send': unknown target 'nowhere'"],
    );
    let (code, err) = check_with(|s| {
        s.replace(
            "id = \"send\"\n",
            "id = \"send\"\nstatus = { login_incident = \"done\" }\n",
        )
    });
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn with_no_directory_anywhere_the_built_in_flows_are_checked() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(empty.path())
        .env_clear()
        .args(["flows", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("<built-in flows>: ") && stdout.contains("no problems"),
        "{stdout}"
    );
}
