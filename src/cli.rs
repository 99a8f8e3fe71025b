//! The `recoverbot` command line: parse, load settings, run one command.
//!
//! Exit codes: 0 success; 1 the command failed (a flow file has errors, the
//! database refused, ...); 2 bad usage or bad configuration. Every failure is
//! reported as one line on stderr, never a panic or a backtrace.

use crate::channels::console::{Console, ConsoleMode};
use crate::channels::console_transport::ConsoleTransport;
use crate::config::{self, ConfigError, Settings};
use crate::domain::ChannelKind;
use crate::flow::graph::GraphFormat;
use crate::startup::{AccountMode, App, StartError, shutdown_signal};
use crate::{flow, store};
use clap::{Parser, Subcommand};
use futures::FutureExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "recoverbot",
    version,
    about = "A support bot that gets locked-out users back into their accounts"
)]
pub struct Cli {
    /// Configuration file (default: ./config.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the effective configuration (file + environment), secrets masked.
    Config,
    /// Talk to the bot in this terminal (SQLite and the default flows).
    Chat {
        /// Machine-readable lines in and out (see README).
        #[arg(long)]
        jsonl: bool,
        /// The chat user id, so scripts can run several conversations.
        #[arg(long, default_value = "local-user")]
        user: String,
    },
    /// Run the bot on the enabled channels (Telegram, Discord) until stopped.
    Serve,
    /// Run the account service simulator (the contract, a status page, admin endpoints).
    AccountSim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
    /// Check or draw the flow files.
    #[command(subcommand)]
    Flows(FlowsCommand),
}

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Check flow files; exits 1 and lists every problem if there are any.
    Check {
        /// Directory of flow files (default: engine.flows_dir, else the built-in flows).
        dir: Option<PathBuf>,
    },
    /// How well free text reaches the right help: routes every line of a
    /// labelled file (`entry<TAB>phrasing`) and prints accuracy, the share
    /// asked "did you mean", the share sent to the menu, a confusion list
    /// and every miss.
    Eval {
        /// The labelled phrasings. Without it, `--examples` is needed.
        file: Option<PathBuf>,
        /// Evaluate the flows' own examples (the training set) instead.
        #[arg(long)]
        examples: bool,
        /// Exit 1 when the accuracy is below this (0.95 or 95%).
        #[arg(long, value_parser = parse_share)]
        min_accuracy: Option<f64>,
        /// Directory of flow files (default: engine.flows_dir, else the built-in flows).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Where one message would go, and the classifier's top candidates
    /// with their probability and similarity (for tuning examples).
    Route {
        /// The message, as a user would type it.
        text: String,
        /// Directory of flow files (default: engine.flows_dir, else the built-in flows).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Draw the flows: steps, buttons and outcomes.
    Graph {
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
        /// Directory of flow files (default: engine.flows_dir, else the built-in flows).
        dir: Option<PathBuf>,
    },
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => return config_failure(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("recoverbot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command, settings))
}

/// `0.95`, `95` or `95%` as a share between 0 and 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    let share = if s.ends_with('%') || n > 1.0 {
        n / 100.0
    } else {
        n
    };
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!(
            "{s:?} is not a share between 0 and 1 (or 0% and 100%)"
        ))
    }
}

fn eval_flows(
    dir: Option<&Path>,
    file: Option<&Path>,
    examples: bool,
    min_accuracy: Option<f64>,
    settings: &Settings,
) -> ExitCode {
    let started = std::time::Instant::now();
    let set = match flow::load_configured(dir, settings.flows.max_file_bytes) {
        Ok(set) => set,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    let loaded = started.elapsed();
    let lines = match (file, examples) {
        (Some(path), false) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("recoverbot: cannot read {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            match flow::eval::parse_tsv(&set, &text) {
                Ok(lines) => lines,
                Err(e) => {
                    eprintln!("recoverbot: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
        (None, true) => flow::eval::training_set(&set),
        _ => {
            eprintln!("recoverbot: give either a FILE or --examples");
            return ExitCode::from(2);
        }
    };
    let report = flow::eval::evaluate(&set, &settings.understanding, &lines);
    print!("{report}");
    if let Some(model) = set.classifier.as_deref() {
        println!(
            "
model: {} entry points, {} examples, {:.1} MiB; flows loaded and trained in {} ms",
            model.labels().len(),
            model.examples(),
            model.memory_bytes() as f64 / (1024.0 * 1024.0),
            loaded.as_millis()
        );
    }
    match min_accuracy {
        Some(min) if report.accuracy() < min => {
            eprintln!(
                "accuracy {:.1}% is below --min-accuracy {:.1}%",
                report.accuracy() * 100.0,
                min * 100.0
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// How a flow set is named in `flows` output: its directory, or the
/// built-in set.
fn flows_name(dir: Option<&std::path::Path>) -> String {
    dir.map_or_else(
        || flow::load::BUILTIN_NAME.to_string(),
        |d| d.display().to_string(),
    )
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("recoverbot: configuration error: {e}");
    ExitCode::from(2)
}

async fn run(command: Command, settings: Settings) -> ExitCode {
    match command {
        Command::Config => {
            print!("{}", settings.to_masked_toml());
            ExitCode::SUCCESS
        }
        Command::Flows(FlowsCommand::Check { dir }) => {
            let dir = dir.or_else(|| settings.engine.flows_dir.clone());
            match flow::load_configured(dir.as_deref(), settings.flows.max_file_bytes) {
                Ok(set) => {
                    let steps: usize = set.flows.values().map(|f| f.steps.len()).sum();
                    println!(
                        "{}: {} flows, {} steps, no problems",
                        flows_name(dir.as_deref()),
                        set.flows.len(),
                        steps
                    );
                    for w in flow::eval::example_warnings(&set) {
                        eprintln!("warning: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{d}");
                    }
                    eprintln!(
                        "{} problem(s) in {}",
                        diags.len(),
                        flows_name(dir.as_deref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Flows(FlowsCommand::Eval {
            file,
            examples,
            min_accuracy,
            dir,
        }) => {
            let dir = dir.or_else(|| settings.engine.flows_dir.clone());
            eval_flows(
                dir.as_deref(),
                file.as_deref(),
                examples,
                min_accuracy,
                &settings,
            )
        }
        Command::Flows(FlowsCommand::Route { text, dir }) => {
            let dir = dir.or_else(|| settings.engine.flows_dir.clone());
            match flow::load_configured(dir.as_deref(), settings.flows.max_file_bytes) {
                Ok(set) => {
                    println!("route: {:?}", set.route(&text, &settings.understanding));
                    if let Some(model) = set.classifier.as_deref() {
                        for s in model.classify(&text).iter().take(5) {
                            println!(
                                "  {:<32} probability {:.3}  similarity {:.3}",
                                s.target.to_string(),
                                s.probability,
                                s.similarity
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{d}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Flows(FlowsCommand::Graph { format, dir }) => {
            let dir = dir.or_else(|| settings.engine.flows_dir.clone());
            match flow::load_configured(dir.as_deref(), settings.flows.max_file_bytes) {
                Ok(set) => {
                    print!("{}", flow::graph::render(&set, format));
                    ExitCode::SUCCESS
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{d}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Chat { jsonl, user } => {
            crate::telemetry::init(&settings.log, true);
            chat(settings, jsonl, &user).await
        }
        Command::Serve => serve(settings).await,
        Command::AccountSim { listen } => {
            crate::telemetry::init(&settings.log, false);
            account_sim(settings, &listen).await
        }
        Command::Migrate => {
            crate::telemetry::init(&settings.log, false);
            migrate(&settings).await
        }
    }
}

async fn migrate(settings: &Settings) -> ExitCode {
    let store = match store::open(&settings.database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("recoverbot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = store.migrate().await;
    store.close().await;
    match result {
        Ok(report) if report.applied.is_empty() => {
            println!(
                "{}: up to date ({} migrations)",
                report.backend.name(),
                report.known
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "{}: applied {} migration(s) {:?}; {} known",
                report.backend.name(),
                report.applied.len(),
                report.applied,
                report.known
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("recoverbot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn chat(settings: Settings, jsonl: bool, user: &str) -> ExitCode {
    let app = match App::build(settings, AccountMode::SimulatorByDefault).await {
        Ok(app) => app,
        Err(e) => return start_failure(&e),
    };
    tracing::info!("{}", app.account_api_description);
    let mode = ConsoleMode::detect(jsonl);
    let (transport, mut shown) = ConsoleTransport::new();
    app.delivery
        .register(ChannelKind::Console, std::sync::Arc::new(transport))
        .await;
    // What an interrupted earlier session queued goes out now, unshown:
    // that terminal is gone, and this one starts clean.
    let settle = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while app.delivery.busy_chats() > 0 && tokio::time::Instant::now() < settle {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    while shown.try_recv().is_ok() {}
    let (stop_delivery, delivery_shutdown) = crate::shutdown::channel();
    app.sync_status().await;
    let watcher = app.spawn_status(delivery_shutdown.clone());
    let delivery = app.spawn_delivery(delivery_shutdown);
    let mut console = Console::new(app.engine.clone(), shown, user, mode);
    if let Some(sim) = &app.simulator {
        console = console.with_simulated_mail(sim.mails());
        if mode == ConsoleMode::Interactive {
            println!(
                "(Running against the built-in account simulator: demo accounts alice@, bob@, carol@, dave@ and erin@example.com; its mails are shown here.)"
            );
        }
    }
    let result = console.run(shutdown_signal()).await;
    stop_delivery.fire();
    let _ = watcher.await;
    let _ = delivery.await;
    app.shut_down().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recoverbot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start_failure(e: &StartError) -> ExitCode {
    eprintln!("recoverbot: {e}");
    ExitCode::from(e.exit_code())
}

async fn account_sim(settings: Settings, listen: &str) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("recoverbot: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match crate::simulator::start(&settings.simulator, listener).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("recoverbot: {e}");
            return ExitCode::from(2);
        }
    };
    println!("account simulator listening on {}", running.url);
    match &settings.simulator.token {
        Some(_) => println!("API token: from simulator.token (RECOVERBOT__SIMULATOR__TOKEN)"),
        None => println!(
            "API token (generated for this run; set RECOVERBOT__SIMULATOR__TOKEN to choose one): {}",
            secrecy::ExposeSecret::expose_secret(&running.token)
        ),
    }
    match &settings.simulator.admin_token {
        Some(_) => {
            println!("admin token: from simulator.admin_token (RECOVERBOT__SIMULATOR__ADMIN_TOKEN)")
        }
        None => println!(
            "admin token (generated for this run; set RECOVERBOT__SIMULATOR__ADMIN_TOKEN to choose one): {}",
            secrecy::ExposeSecret::expose_secret(&running.admin_token)
        ),
    }
    println!("status page: {}/api/v2/summary.json", running.url);
    shutdown_signal().await;
    running.stop().await;
    ExitCode::SUCCESS
}

async fn serve(settings: Settings) -> ExitCode {
    let (telegram, discord) = (settings.telegram.enabled, settings.discord.enabled);
    if !telegram && !discord {
        eprintln!(
            "recoverbot: no channel is enabled. Set RECOVERBOT__TELEGRAM__ENABLED=true and RECOVERBOT__TELEGRAM__TOKEN, \
             or RECOVERBOT__DISCORD__ENABLED=true and RECOVERBOT__DISCORD__TOKEN (try `recoverbot chat` for a local conversation)"
        );
        return ExitCode::from(2);
    }
    for (enabled, token, var) in [
        (
            telegram,
            settings.telegram.token.is_some(),
            "RECOVERBOT__TELEGRAM__TOKEN",
        ),
        (
            discord,
            settings.discord.token.is_some(),
            "RECOVERBOT__DISCORD__TOKEN",
        ),
    ] {
        if enabled && !token {
            eprintln!("recoverbot: the channel is enabled but its token is missing: set {var}");
            return ExitCode::from(2);
        }
    }
    if telegram
        && settings.telegram.mode == config::TelegramMode::Webhook
        && settings.telegram.webhook_url.is_none()
    {
        eprintln!(
            "recoverbot: telegram.mode is webhook but no public URL is set: set RECOVERBOT__TELEGRAM__WEBHOOK_URL (https://...) and RECOVERBOT__TELEGRAM__WEBHOOK_SECRET, or use RECOVERBOT__TELEGRAM__MODE=polling"
        );
        return ExitCode::from(2);
    }
    crate::telemetry::init(&settings.log, false);
    let app = match App::build(settings, AccountMode::ExplicitOnly).await {
        Ok(app) => app,
        Err(e) => return start_failure(&e),
    };
    println!("{}", app.account_api_description);
    tracing::info!("{}", app.account_api_description);
    let (trigger, shutdown) = crate::shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        crate::startup::purge_periodically(
            app.store.clone(),
            app.settings.clone(),
            app.instance.clone(),
            shutdown.clone(),
        )
        .map(|()| Ok(())),
    );
    let delivery = app.spawn_delivery(shutdown.clone());
    if let Some(secret) = &app.settings.status.webhook_secret {
        let listen = app.settings.http.listen.trim();
        if listen.is_empty() {
            eprintln!(
                "recoverbot: status.webhook_secret is set but http.listen is empty: set RECOVERBOT__HTTP__LISTEN (host:port)"
            );
            return ExitCode::from(2);
        }
        let listener = match crate::http::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("recoverbot: {e}");
                return ExitCode::FAILURE;
            }
        };
        let router = crate::status::webhook::router(app.status.clone(), secret);
        tasks.spawn(
            crate::http::serve(listener, router, shutdown.clone())
                .map(|r| r.map_err(anyhow::Error::from)),
        );
    }
    tasks.spawn(app.spawn_status(shutdown.clone()).map(|_| Ok(())));
    if telegram {
        tasks.spawn(crate::channels::telegram::run(
            app.engine.clone(),
            app.delivery.clone(),
            app.settings.telegram.clone(),
            shutdown.clone(),
        ));
    }
    if discord {
        tasks.spawn(crate::channels::discord::run(
            app.engine.clone(),
            app.delivery.clone(),
            app.settings.discord.clone(),
            shutdown.clone(),
        ));
    }
    let mut failed = false;
    tokio::select! {
        () = shutdown_signal() => tracing::info!("stopping"),
        Some(result) = tasks.join_next() => {
            // A channel that stops on its own has failed, however it stopped.
            report_task(result);
            failed = true;
        }
    }
    trigger.fire();
    while let Some(result) = tasks.join_next().await {
        failed |= report_task(result);
    }
    let _ = delivery.await;
    app.shut_down().await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reports how a background task ended; `true` if it failed.
fn report_task(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> bool {
    match result {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            eprintln!("recoverbot: {e:#}");
            true
        }
        Err(e) if e.is_panic() => {
            eprintln!("recoverbot: a channel crashed");
            true
        }
        Err(_) => false,
    }
}
