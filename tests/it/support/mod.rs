//! Test helpers: fresh databases on every backend, the binary under test.

pub mod bot;
pub mod db;

use std::process::{Command, Output};

/// Runs the `recoverbot` binary in `dir` with exactly the given environment.
pub fn recoverbot(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recoverbot"));
    cmd.current_dir(dir).env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the recoverbot binary runs")
}
