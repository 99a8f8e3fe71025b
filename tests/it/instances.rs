//! Several instances on one database: turns of one conversation are
//! serialised across instances (none redone), and a periodic job runs on
//! one instance at a time and moves on when its holder dies.

use crate::support::bot::{TestBot, test_settings};
use crate::support::db::{PgDb, SqliteDb, announce, on_every_store, postgres_base_url};
use recoverbot::domain::{EventId, MessageRef};
use recoverbot::engine::ports::{LeaseStore, Store};
use recoverbot::engine::{Inbound, Input};
use recoverbot::shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_take_turns_of_one_conversation_in_order_and_redo_none() {
    let name = "instances_conversation_lock";
    let Some(base) = postgres_base_url(name) else {
        return;
    };
    let pg = PgDb::create(&base).await;
    let mut bots = Vec::new();
    for _ in 0..2 {
        let mut settings = test_settings(&SqliteDb::new());
        settings.database = pg.settings.clone();
        bots.push(Arc::new(TestBot::start_on(SqliteDb::new(), settings).await));
    }
    const TURNS: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..TURNS {
        let bot = bots[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            bot.engine()
                .handle(Inbound {
                    key: TestBot::key("shared-user"),
                    message_id: Some(MessageRef::new(format!("m{i}"))),
                    event_id: Some(EventId::new(format!("shared-{i}"))),
                    locale: Some("en".into()),
                    input: Input::Text(format!("hello {i}")),
                })
                .await
                .expect("the turn succeeds")
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = bots[0].app.store.clone();
    let stored = store
        .load_conversation(&TestBot::key("shared-user"))
        .await
        .unwrap()
        .expect("the conversation is stored");
    let state: serde_json::Value = serde_json::from_str(&stored.state).unwrap();
    let redone: u64 = bots.iter().map(|b| b.engine().redone_turns()).sum();
    for bot in bots {
        Arc::into_inner(bot).unwrap().app.shut_down().await;
    }
    pg.drop_db().await;
    assert_eq!(state["turns"], TURNS as u64, "every turn counted once");
    assert_eq!(redone, 0, "no turn was redone after a conflict");
    announce(&format!("ran PostgreSQL half of `{name}`"));
}

/// Runs the job `purge-test` as `holder` until the returned trigger fires
/// (or the task is aborted, as a dying instance would stop).
fn run_job(
    store: &Arc<dyn Store>,
    holder: &str,
    runs: Arc<AtomicUsize>,
) -> (shutdown::ShutdownTrigger, tokio::task::JoinHandle<()>) {
    let (trigger, stop) = shutdown::channel();
    let store: Arc<dyn LeaseStore> = store.clone();
    let task = tokio::spawn(recoverbot::lease::run_periodically(
        store,
        Arc::from(holder),
        "purge-test",
        Duration::from_millis(400),
        stop,
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            async {}
        },
    ));
    (trigger, task)
}

#[tokio::test]
async fn a_periodic_job_runs_on_one_instance_and_moves_on_when_its_holder_dies() {
    on_every_store("instances_job_lease", |store| async move {
        let (runs_a, runs_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (_keep_a, a) = run_job(&store, "a", runs_a.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stop_b, b) = run_job(&store, "b", runs_b.clone());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let (first_a, first_b) = (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst));
        assert!(
            first_a >= 2,
            "the holder runs the job every period: {first_a}"
        );
        assert_eq!(first_b, 0, "the other instance waits");
        // The holder dies without releasing its lease.
        a.abort();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let later_b = runs_b.load(Ordering::SeqCst);
        assert!(later_b >= 1, "the job moved to the live instance");
        assert_eq!(runs_a.load(Ordering::SeqCst), first_a);
        stop_b.fire();
        b.await.unwrap();
    })
    .await;
}
