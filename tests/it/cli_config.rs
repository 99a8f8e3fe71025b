//! `recoverbot config` and `recoverbot migrate` as an operator runs them.

use crate::support::db::{PgDb, postgres_base_url};
use crate::support::recoverbot;
use std::fs;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The failure is exit code 2 and exactly one line that mentions `needle`.
fn assert_config_error(out: &std::process::Output, needle: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("config.toml"),
        "[platform]\nname = \"From File\"\nsupport_hours = \"file hours\"\n",
    )
    .unwrap();
    let out = recoverbot(
        dir.path(),
        &["config"],
        &[
            ("RECOVERBOT__PLATFORM__NAME", "From Env"),
            ("RECOVERBOT__DATABASE__MAX_CONNECTIONS", "3"),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let shown = stdout_of(&out);
    assert!(shown.contains("name = \"From Env\""), "{shown}");
    assert!(shown.contains("support_hours = \"file hours\""), "{shown}");
    assert!(shown.contains("max_connections = 3"), "{shown}");
    assert!(!shown.contains("From File"));
}

#[test]
fn an_explicit_config_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("other.toml"), "[log]\nformat = \"json\"\n").unwrap();
    let out = recoverbot(dir.path(), &["--config", "other.toml", "config"], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("format = \"json\""));
}

#[test]
fn config_output_never_contains_a_secret_set_through_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("RECOVERBOT__TELEGRAM__TOKEN", "abc123secret"),
        ("RECOVERBOT__DISCORD__TOKEN", "discord-secret-xyz"),
        ("RECOVERBOT__ACCOUNT_API__TOKEN", "api-secret-777"),
        ("RECOVERBOT__TELEGRAM__WEBHOOK_SECRET", "hook-secret-555"),
        ("RECOVERBOT__SIMULATOR__ADMIN_TOKEN", "admin-secret-999"),
        (
            "RECOVERBOT__DATABASE__URL",
            "postgres://bot:dbpass-secret@127.0.0.1/recoverbot",
        ),
    ];
    let out = recoverbot(dir.path(), &["config"], &secrets);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let shown = format!("{}{}", stdout_of(&out), stderr_of(&out));
    for secret in [
        "abc123secret",
        "discord-secret-xyz",
        "api-secret-777",
        "hook-secret-555",
        "admin-secret-999",
        "dbpass-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    assert!(shown.contains("token = \"********\""), "{shown}");
}

#[test]
fn an_unknown_key_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("config.toml"), "[database]\nurll = \"x\"\n").unwrap();
    let out = recoverbot(dir.path(), &["config"], &[]);
    assert_config_error(&out, "unknown key `database.urll`");
    assert_config_error(&out, "config.toml");
}

#[test]
fn an_unknown_section_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("config.toml"),
        "[telegarm]\nenabled = true\n",
    )
    .unwrap();
    let out = recoverbot(dir.path(), &["config"], &[]);
    assert_config_error(&out, "unknown key `telegarm`");
}

#[test]
fn an_unknown_key_in_the_environment_is_named_with_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = recoverbot(
        dir.path(),
        &["config"],
        &[("RECOVERBOT__TELEGRAM__TOKN", "x")],
    );
    assert_config_error(
        &out,
        "RECOVERBOT__TELEGRAM__TOKN: unknown key `telegram.tokn`",
    );
}

#[test]
fn a_wrong_type_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("config.toml"),
        "[database]\nmax_connections = \"many\"\n",
    )
    .unwrap();
    let out = recoverbot(dir.path(), &["config"], &[]);
    assert_config_error(&out, "key `database.max_connections` has the wrong type");
    assert!(!stderr_of(&out).contains("many"), "values are not echoed");
}

#[test]
fn a_wrong_type_in_the_environment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = recoverbot(
        dir.path(),
        &["config"],
        &[("RECOVERBOT__TELEGRAM__ENABLED", "perhaps")],
    );
    assert_config_error(
        &out,
        "RECOVERBOT__TELEGRAM__ENABLED: key `telegram.enabled` has the wrong type",
    );
}

#[test]
fn an_unreadable_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = recoverbot(dir.path(), &["--config", "missing.toml", "config"], &[]);
    assert_config_error(&out, "cannot read config file missing.toml");
}

#[test]
fn a_config_file_with_broken_syntax_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("config.toml"), "[log]\nformat = \n").unwrap();
    let out = recoverbot(dir.path(), &["config"], &[]);
    assert_config_error(&out, "config.toml: line 2");
}

#[test]
fn an_unparsable_database_url_is_named_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "mysql://root:pw-secret@localhost/db",
        "postgres://",
        "sqlite://",
    ] {
        let out = recoverbot(
            dir.path(),
            &["migrate"],
            &[("RECOVERBOT__DATABASE__URL", url)],
        );
        assert_config_error(&out, "RECOVERBOT__DATABASE__URL: key `database.url`");
        assert!(!stderr_of(&out).contains("pw-secret"));
    }
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["config", "--help"],
    ] {
        let out = recoverbot(dir.path(), &args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout_of(&out).contains("Usage"), "{args:?}");
    }
}

#[test]
fn migrate_creates_the_sqlite_file_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/recoverbot.db");
    let first = recoverbot(dir.path(), &["migrate"], &[]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    assert!(db.exists(), "the default SQLite file is created");
    assert!(
        stdout_of(&first).contains("sqlite: applied"),
        "{}",
        stdout_of(&first)
    );
    let second = recoverbot(dir.path(), &["migrate"], &[]);
    assert!(second.status.success(), "{}", stderr_of(&second));
    assert!(
        stdout_of(&second).contains("sqlite: up to date"),
        "{}",
        stdout_of(&second)
    );
}

#[test]
fn migrate_against_an_unreachable_database_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let out = recoverbot(
        dir.path(),
        &["migrate"],
        &[
            (
                "RECOVERBOT__DATABASE__URL",
                "postgres://nobody:pw-secret@127.0.0.1:1/none",
            ),
            ("RECOVERBOT__DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        ],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot connect to the postgres database"),
        "{err}"
    );
    assert!(!err.contains("pw-secret"));
}

#[tokio::test]
async fn migrate_against_postgres_applies_once_then_changes_nothing() {
    let Some(base) = postgres_base_url("migrate_against_postgres") else {
        return;
    };
    let pg = PgDb::create(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("RECOVERBOT__DATABASE__URL", pg.settings.url.as_str())];
    let first = recoverbot(dir.path(), &["migrate"], &env);
    let second = recoverbot(dir.path(), &["migrate"], &env);
    pg.drop_db().await;
    assert!(
        stdout_of(&first).contains("postgres: applied"),
        "{}",
        stderr_of(&first)
    );
    assert!(
        stdout_of(&second).contains("postgres: up to date"),
        "{}",
        stderr_of(&second)
    );
}

#[test]
fn the_shipped_config_file_documents_every_key_with_its_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let text = fs::read_to_string(&path).unwrap();
    let shipped = recoverbot::config::load(Some(&path), Vec::new()).unwrap();
    let defaults = recoverbot::config::Settings::default();
    assert_eq!(shipped.to_masked_toml(), defaults.to_masked_toml());
    // Every key (optional ones included, commented out) is mentioned.
    let rendered: toml::Value = toml::from_str(&defaults.to_masked_toml()).unwrap();
    for (section, table) in rendered.as_table().unwrap() {
        assert!(text.contains(&format!("[{section}]")), "section {section}");
        for key in table.as_table().unwrap().keys() {
            assert!(text.contains(&format!("{key} =")), "{section}.{key}");
        }
    }
    for optional in [
        "base_url",
        "token",
        "webhook_url",
        "webhook_secret",
        "public_key",
        "admin_token",
        "accounts_file",
    ] {
        assert!(text.contains(&format!("# {optional} =")), "{optional}");
    }
}
