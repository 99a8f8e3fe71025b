//! `recoverbot chat` as a newcomer and a script use it: piped lines and
//! `--jsonl`, on the embedded default (SQLite file, default flows, the
//! simulator in-process). The bot runs in an empty directory: the default
//! flows are inside the binary.

use crate::support::bot::flows_dir;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

fn chat(dir: &std::path::Path, args: &[&str], input: &str) -> (String, String, Option<i32>) {
    chat_bytes(dir, args, input.as_bytes())
}

fn chat_bytes(dir: &std::path::Path, args: &[&str], input: &[u8]) -> (String, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir)
        .env_clear()
        .env("RECOVERBOT__SIMULATOR__DELIVERY_STEP_SECS", "0")
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn a_piped_session_walks_from_forgot_password_to_the_feedback_question() {
    let dir = tempfile::tempdir().unwrap();
    let script = [
        "I forgot my password",
        "Send me a reset link",
        "alice@example.com",
        "Nothing yet",
        "Check if it was delivered",
        "Found it",
        "It worked, choosing a password",
        "Done, new password set",
        "I'm in",
        "1",
    ]
    .join("\n");
    let (out, err, code) = chat(dir.path(), &[], &script);
    assert_eq!(code, Some(0), "{err}");
    for expected in [
        "reset link",
        "SIMULATED MAIL",
        "Subject: Reset your password",
        "Spam",
        "Gmail",
        "accepted the reset mail at",
        "Did this solve your problem?",
        "welcome back",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    assert!(
        dir.path().join("data/recoverbot.db").exists(),
        "the embedded default database"
    );
}

#[test]
fn jsonl_mode_reads_and_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = [
        r#"{"text": "I forgot my password"}"#,
        r#"{"press": "Send me a reset link"}"#,
        r#"{"text": "dave@example.com"}"#,
        r#"{"press": "Nothing yet"}"#,
        r#"{"press": "Check if it was delivered"}"#,
        r#"{"press": "no such button"}"#,
        r#"not json"#,
    ]
    .join("\n");
    let (out, err, code) = chat(dir.path(), &["--jsonl", "--user", "script-1"], &script);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let replies: Vec<&Value> = lines.iter().filter(|l| l.get("text").is_some()).collect();
    assert_eq!(replies[0]["flow"], "password_reset");
    assert_eq!(replies[0]["step"], "start");
    assert_eq!(replies[0]["buttons"][0], "Send me a reset link");
    assert_eq!(replies[2]["step"], "sent");
    assert_eq!(
        replies[4]["step"], "bounced",
        "the delivery status is reported"
    );
    assert!(replies[5]["error"].as_str().unwrap().contains("no button"));
    assert!(
        replies[6]["error"]
            .as_str()
            .unwrap()
            .contains("bad input line")
    );
    let mails: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("simulator_mail").is_some())
        .collect();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["simulator_mail"]["to"], "dave@example.com");
}

#[test]
fn users_have_separate_conversations_over_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, _) = chat(
        dir.path(),
        &["--jsonl", "--user", "a"],
        r#"{"text": "I forgot my password"}"#,
    );
    assert!(out.contains(r#""step":"start""#));
    let (out, _, _) = chat(
        dir.path(),
        &["--jsonl", "--user", "b"],
        r#"{"text": "hello"}"#,
    );
    assert!(out.contains(r#""flow":"main""#), "{out}");
    // User a carries on where they were.
    let (out, _, _) = chat(
        dir.path(),
        &["--jsonl", "--user", "a"],
        r#"{"press": "Send me a reset link"}"#,
    );
    assert!(
        out.contains("no button"),
        "a press needs a reply in this run: {out}"
    );
    let (out, _, _) = chat(
        dir.path(),
        &["--jsonl", "--user", "a"],
        r#"{"text": "Send me a reset link"}"#,
    );
    assert!(out.contains(r#""step":"ask_email""#), "{out}");
}

#[test]
fn a_pasted_password_never_reaches_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, err, code) = chat(dir.path(), &[], "hello\nmy password is Tr0ub4dor&3xyz\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("never share your password"), "{out}");
    let db = dir.path().join("data/recoverbot.db");
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("data/recoverbot.db-wal")) {
        bytes.extend(wal);
    }
    assert!(!bytes.windows(14).any(|w| w == b"Tr0ub4dor&3xyz"));
    assert!(
        bytes.windows(19).any(|w| w == b"[redacted password]"),
        "the redacted transcript is there"
    );
}

#[test]
fn flows_check_accepts_the_default_flows_and_graph_draws_them() {
    let dir = tempfile::tempdir().unwrap();
    let flows = flows_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir.path())
        .env_clear()
        .args(["flows", "check"])
        .arg(&flows)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for format in ["mermaid", "dot"] {
        let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
            .current_dir(dir.path())
            .env_clear()
            .args(["flows", "graph", "--format", format])
            .arg(&flows)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains("password_reset__check_inbox"), "{format}");
        assert!(
            text.contains("Send me a reset link"),
            "{format}: buttons are drawn"
        );
    }
}

#[test]
fn serve_without_a_channel_says_what_to_set_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir.path())
        .env_clear()
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RECOVERBOT__TELEGRAM__ENABLED"), "{err}");
}

#[test]
fn serve_never_falls_back_to_the_simulator_silently() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .current_dir(dir.path())
        .env_clear()
        .env("RECOVERBOT__ENGINE__FLOWS_DIR", flows_dir())
        .env("RECOVERBOT__TELEGRAM__ENABLED", "true")
        .env("RECOVERBOT__TELEGRAM__TOKEN", "123:abc")
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("account_api.base_url is not set"), "{err}");
    assert!(!err.contains("123:abc"));
}

#[tokio::test]
async fn account_sim_serves_the_contract_and_refuses_requests_without_the_token() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recoverbot"))
        .env_clear()
        .env("RECOVERBOT__SIMULATOR__TOKEN", "sim-token-for-test")
        .args(["account-sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        assert!(
            !line.contains("sim-token-for-test"),
            "a configured token is not printed"
        );
        if let Some(u) = line.strip_prefix("account simulator listening on ") {
            url = Some(u.to_string());
        }
        if line.starts_with("status page") {
            break;
        }
    }
    let url = url.expect("the simulator says where it listens");
    let http = reqwest::Client::new();
    let body = serde_json::json!({"email": "alice@example.com"});
    let r = http
        .post(format!("{url}/v1/password-resets"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{url}/v1/password-resets"))
        .bearer_auth("sim-token-for-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let summary: Value = reqwest::get(format!("{url}/api/v2/summary.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["status"]["indicator"], "none");
    child.kill().await.unwrap();
}

#[test]
fn a_bad_byte_or_a_blank_line_gets_an_answer_with_its_line_number_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"text\": \"I forgot my password\"}\n");
    input.extend_from_slice(b"{\"text\": \"caf\xe9\"}\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"not json at all\n");
    input.extend_from_slice(b"{\"text\": \"menu\"}\n");
    let (out, err, code) = chat_bytes(dir.path(), &["--jsonl"], &input);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l.get("simulator_mail").is_none())
        .collect();
    assert_eq!(lines.len(), 5, "one answer per line: {out}");
    assert_eq!(lines[0]["flow"], "password_reset");
    assert_eq!(lines[1]["error"], "line 2: not valid UTF-8");
    assert!(
        lines[2]["error"].as_str().unwrap().contains("empty"),
        "{out}"
    );
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 4: not JSON"),
        "{out}"
    );
    assert_eq!(lines[4]["step"], "menu");
}
