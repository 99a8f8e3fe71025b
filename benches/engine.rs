//! Engine throughput: 10,000 concurrent conversations walk the password-reset
//! flow (typed text, button presses and two actions each), once on the
//! SQLite store (WAL, synchronous=NORMAL, every turn a durable transaction)
//! and once on the in-memory store (the engine alone). Prints turns/s and
//! CPU microseconds per turn. First, the intent classifier: the time to load
//! the flows and train it, and the time to classify one message (every
//! phrasing of `tests/data/intents_eval.tsv`, median and p99).
//!
//! `cargo bench --bench engine` (optionally `-- --conversations N` and
//! `--store sqlite|memory`).
//! The account actions answer instantly in-process: this measures the
//! engine and the store, not the network.

use async_trait::async_trait;
use recoverbot::config::Settings;
use recoverbot::domain::{ChannelKind, ConversationKey, EventId};
use recoverbot::engine::ports::Store;
use recoverbot::engine::{
    AccountActions, ActionRequest, ActionResult, Engine, EngineConfig, Inbound, Input, Reply,
};
use recoverbot::flow::classifier::{Classifier, Example, TrainOptions};
use recoverbot::store::MemoryStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct InstantActions;

#[async_trait]
impl AccountActions for InstantActions {
    async fn perform(&self, request: ActionRequest) -> ActionResult {
        match request.action.id() {
            "request_password_reset" => ActionResult::outcome("ok")
                .with("reset_id", "rst_bench")
                .with("email_masked", "b***@example.com"),
            "reset_delivery_status" => ActionResult::outcome("delivered")
                .with("delivery_status", "delivered")
                .with("delivered_at", "14:02 UTC")
                .with("recipient_domain", "example.com"),
            _ => ActionResult::unavailable(),
        }
    }
}

/// One user's walk: what they type or press, in order.
enum Step {
    Say(&'static str),
    Press(&'static str),
}

const WALK: &[Step] = &[
    Step::Say("I forgot my password"),
    Step::Press("Send me a reset link"),
    Step::Say("bench.user@example.com"),
    Step::Press("Nothing yet"),
    Step::Press("Check if it was delivered"),
    Step::Press("Found it"),
    Step::Press("It worked, choosing a password"),
    Step::Press("Done, new password set"),
    Step::Press("I'm in"),
    Step::Press("Yes, I'm in"),
];

async fn walk(engine: Arc<Engine>, user: usize) -> usize {
    let key = ConversationKey::new(
        ChannelKind::Telegram,
        format!("c{user}"),
        format!("u{user}"),
    );
    let mut last: Option<Reply> = None;
    for (i, step) in WALK.iter().enumerate() {
        let input = match step {
            Step::Say(text) => Input::Text((*text).into()),
            Step::Press(label) => {
                let reply = last.as_ref().expect("a reply to press on");
                let b = reply
                    .buttons()
                    .iter()
                    .find(|b| b.label == *label)
                    .unwrap_or_else(|| panic!("no {label:?} at {}:{}", reply.flow, reply.step));
                Input::Button(b.payload.clone())
            }
        };
        let reply = engine
            .handle(Inbound {
                key: key.clone(),
                event_id: Some(EventId::new(format!("{user}-{i}"))),
                message_id: None,
                locale: None,
                input,
            })
            .await
            .expect("turn");
        last = Some(reply);
    }
    WALK.len()
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based; 12 and 13 after the ')').
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Flow loading with training, and one classification per message.
fn classifier_figures(settings: &Settings) {
    let t0 = Instant::now();
    let flows = recoverbot::flow::load_dir(std::path::Path::new("flows")).expect("flows");
    let load = t0.elapsed();
    let model = flows
        .classifier
        .as_deref()
        .expect("the flows have examples");
    let phrasings: Vec<String> = std::fs::read_to_string("tests/data/intents_eval.tsv")
        .expect("the evaluation set")
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, p)| p.to_string()))
        .collect();
    let examples = flows.entry_examples();
    let labelled: Vec<Example<'_>> = examples
        .iter()
        .flat_map(|(label, texts)| texts.iter().map(move |text| Example { label, text }))
        .collect();
    let t0 = Instant::now();
    std::hint::black_box(Classifier::train(&labelled, TrainOptions::default()));
    let training = t0.elapsed();
    let mut times = Vec::with_capacity(phrasings.len() * 20);
    for _ in 0..20 {
        for p in &phrasings {
            let t = Instant::now();
            let route = flows.route(p, &settings.understanding);
            times.push(t.elapsed());
            std::hint::black_box(route);
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "classifier: {} entry points, {} examples, {:.1} MiB; flows loaded and trained in {} ms (training alone {} ms); route one message: median {:.1} µs, p99 {:.1} µs ({} messages)",
        model.labels().len(),
        model.examples(),
        model.memory_bytes() as f64 / (1024.0 * 1024.0),
        load.as_millis(),
        training.as_millis(),
        at(0.5),
        at(0.99),
        times.len()
    );
}

async fn run(name: &str, store: Arc<dyn Store>, settings: &Settings, conversations: usize) {
    let flows = recoverbot::flow::load_dir(std::path::Path::new("flows")).expect("flows");
    let engine = Arc::new(Engine::new(
        flows,
        store,
        Arc::new(InstantActions),
        EngineConfig::from_settings(settings),
    ));
    // Warm up (regexes, pool connections).
    walk(engine.clone(), usize::MAX).await;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conversations)
        .map(|u| tokio::spawn(walk(engine.clone(), u)))
        .collect();
    let mut turns = 0;
    for t in tasks {
        turns += t.await.expect("conversation task");
    }
    let wall = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    println!(
        "{name:<28} {conversations:>6} conversations  {turns:>7} turns  {:>7.2} s  {:>9.0} turns/s  {:>7.1} µs CPU/turn",
        wall.as_secs_f64(),
        turns as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / turns as f64,
    );
}

fn main() {
    let mut conversations = 10_000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--conversations") {
        conversations = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(conversations);
    }
    let only = args
        .iter()
        .position(|a| a == "--store")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "both".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut settings = Settings::default();
        // Every conversation is a different user: no limit gets in the way.
        settings.rate_limits.resets_per_user = u32::MAX;
        settings.rate_limits.resets_per_email = u32::MAX;
        println!(
            "engine bench: password-reset walk of {} turns per conversation, {} worker threads",
            WALK.len(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        classifier_figures(&settings);

        if only != "memory" {
            let dir = tempfile::tempdir().expect("tempdir");
            settings.database.url = format!("sqlite://{}/bench.db", dir.path().display());
            let sqlite = recoverbot::store::open(&settings.database)
                .await
                .expect("sqlite");
            sqlite.migrate().await.expect("migrate");
            run(
                "sqlite (WAL, sync=NORMAL)",
                sqlite.clone(),
                &settings,
                conversations,
            )
            .await;
            sqlite.close().await;
        }

        if only != "sqlite" {
            run(
                "in-memory (engine alone)",
                Arc::new(MemoryStore::without_transcripts()),
                &settings,
                conversations,
            )
            .await;
        }
    });
}
