//! `flows check` at scale: a generated flow of 100,000 steps (each leading
//! to the next), and one with 20,000 targets that do not exist, checked and
//! compiled the way the bot loads them. Prints the time and the process's
//! peak memory.
//!
//! `cargo bench --bench flows_check` (optionally `-- --steps N`).

use std::fmt::Write;
use std::time::Instant;

const MAIN: &str = include_str!("../tests/data/minimal_main.toml");

fn big_flow(steps: usize, unknown_every: usize) -> String {
    // Named `reset`: the shared minimal main flow's menu leads there.
    let mut s = String::from("[flow]\nid = \"reset\"\ntitle = \"Big\"\ntriggers = ['big']\n\n");
    for i in 0..steps {
        let next = if unknown_every > 0 && i % unknown_every == 0 {
            format!("nowhere_{i}")
        } else {
            format!("s{}", i + 1)
        };
        if i + 1 == steps {
            let _ = writeln!(
                s,
                "[[step]]\nid = \"s{i}\"\nsay = \"Step {i}\"\nend = true\n"
            );
        } else {
            let _ = writeln!(
                s,
                "[[step]]\nid = \"s{i}\"\nsay = \"Step {i}\"\nbuttons = [{{ label = \"Next\", goto = \"{next}\" }}, {{ label = \"Menu\", goto = \"main:menu\" }}]\n"
            );
        }
    }
    s
}

/// The peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run(name: &str, steps: usize, unknown_every: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("main.toml"), MAIN).unwrap();
    let text = big_flow(steps, unknown_every);
    std::fs::write(dir.path().join("reset.toml"), &text).unwrap();
    let t0 = Instant::now();
    let parsed = recoverbot::flow::parse_flow_file(&text).map(|f| f.steps.len());
    let parse = t0.elapsed();
    drop(parsed);
    let t0 = Instant::now();
    let result = recoverbot::flow::load_dir_with(dir.path(), u64::MAX);
    let took = t0.elapsed();
    let problems = result.as_ref().err().map_or(0, Vec::len);
    if let Err(diags) = &result
        && unknown_every == 0
    {
        for d in diags.iter().take(3) {
            println!("  unexpected: {d}");
        }
    }
    println!(
        "{name:<26} {steps:>7} steps, {:>5.1} MiB of TOML: {:>6.0} ms in all (parsing alone {:>5.0} ms), {problems} problem(s), peak memory {:.0} MiB",
        text.len() as f64 / (1024.0 * 1024.0),
        took.as_secs_f64() * 1000.0,
        parse.as_secs_f64() * 1000.0,
        peak_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000usize);
    let only_valid = args.iter().any(|a| a == "--valid");
    run("valid chain", steps, 0);
    if !only_valid {
        run("every 5th target unknown", steps, 5);
    }
}
