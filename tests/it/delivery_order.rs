//! Delivery on a real store (memory, SQLite, PostgreSQL when configured)
//! through a recording transport: one chat's messages go out in order,
//! exactly once, while other chats are not held up; a refused message is
//! marked failed and its chat goes on; a transient failure waits its
//! `retry_after` and then goes out once.

use crate::support::db::on_every_store;
use async_trait::async_trait;
use recoverbot::delivery::{Delivery, DeliverySettings, Transport, TransportError};
use recoverbot::domain::{ChannelKind, ChatRef, MessageRef};
use recoverbot::engine::ports::{OutboxEntry, OutboxState, Store, TurnCommit};
use recoverbot::engine::{Envelope, Lane, OutButton, Outbound};
use recoverbot::shutdown::{self, ShutdownTrigger};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One `send` as the transport saw it.
#[derive(Debug, Clone)]
struct Sent {
    chat: String,
    text: String,
    at: Instant,
    /// Whether the platform took it.
    ok: bool,
}

/// A platform that takes every message after `per_send`, except the
/// failures scripted per text (each consumed once, in order).
#[derive(Default)]
struct Recorder {
    per_send: Duration,
    log: Mutex<Vec<Sent>>,
    script: Mutex<HashMap<String, VecDeque<TransportError>>>,
    next_id: AtomicU64,
}

impl Recorder {
    fn new(per_send: Duration) -> Arc<Self> {
        Arc::new(Self {
            per_send,
            ..Self::default()
        })
    }

    fn fail(&self, text: &str, error: TransportError) {
        self.script
            .lock()
            .unwrap()
            .entry(text.to_string())
            .or_default()
            .push_back(error);
    }

    fn log(&self) -> Vec<Sent> {
        self.log.lock().unwrap().clone()
    }

    /// Texts the platform took in `chat`, in arrival order.
    fn delivered(&self, chat: &str) -> Vec<Sent> {
        self.log()
            .into_iter()
            .filter(|s| s.ok && s.chat == chat)
            .collect()
    }

    fn attempts_of(&self, text: &str) -> Vec<Sent> {
        self.log().into_iter().filter(|s| s.text == text).collect()
    }
}

#[async_trait]
impl Transport for Recorder {
    async fn send(
        &self,
        to: &ChatRef,
        _lane: Lane,
        text: &str,
        _buttons: &[OutButton],
    ) -> Result<MessageRef, TransportError> {
        let at = Instant::now();
        tokio::time::sleep(self.per_send).await;
        let failure = self
            .script
            .lock()
            .unwrap()
            .get_mut(text)
            .and_then(VecDeque::pop_front);
        self.log.lock().unwrap().push(Sent {
            chat: to.chat.clone(),
            text: text.to_string(),
            at,
            ok: failure.is_none(),
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(MessageRef::new(
                self.next_id.fetch_add(1, Ordering::SeqCst).to_string(),
            )),
        }
    }

    async fn edit(
        &self,
        _to: &ChatRef,
        _lane: Lane,
        _message: &MessageRef,
        _text: &str,
        _buttons: &[OutButton],
    ) -> Result<(), TransportError> {
        Ok(())
    }

    async fn clear_buttons(
        &self,
        _to: &ChatRef,
        _message: &MessageRef,
    ) -> Result<(), TransportError> {
        Ok(())
    }

    async fn delete(&self, _to: &ChatRef, _message: &MessageRef) -> Result<(), TransportError> {
        Ok(())
    }

    async fn notice(&self, to: &ChatRef, lane: Lane, text: &str) -> Result<(), TransportError> {
        self.send(to, lane, text, &[]).await.map(|_| ())
    }
}

fn chat(name: &str) -> ChatRef {
    ChatRef::new(ChannelKind::Telegram, name)
}

/// Queues `texts` for `to` in one commit (as one turn's replies would be).
async fn queue(store: &Arc<dyn Store>, to: &ChatRef, texts: &[String]) {
    let envelopes = texts
        .iter()
        .map(|t| Envelope::reply(to.clone(), Outbound::message(t.as_str(), Vec::new())))
        .collect();
    store
        .commit_turn(TurnCommit::outbox_only(
            ChannelKind::Telegram,
            None,
            1_000,
            envelopes,
        ))
        .await
        .unwrap();
}

/// The real delivery on `store`, with `transport` for Telegram chats.
struct Running {
    delivery: Arc<Delivery>,
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(store: &Arc<dyn Store>, transport: Arc<Recorder>) -> Self {
        Self::start_with(store, transport, DeliverySettings::default()).await
    }

    async fn start_with(
        store: &Arc<dyn Store>,
        transport: Arc<Recorder>,
        settings: DeliverySettings,
    ) -> Self {
        let settings = DeliverySettings {
            max_backoff: Duration::from_millis(200),
            ..settings
        };
        let delivery = Delivery::new(store.clone(), settings);
        delivery.register(ChannelKind::Telegram, transport).await;
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(delivery.clone().run(shutdown));
        Self {
            delivery,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("delivery stops")
            .unwrap();
    }
}

/// Waits until the outbox has no open entries.
async fn settled(store: &Arc<dyn Store>, within: Duration) {
    let deadline = Instant::now() + within;
    while !store.open_chats(1).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text_of(e: &OutboxEntry) -> &str {
    match &e.op {
        Outbound::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

#[tokio::test]
async fn a_chat_with_100_queued_messages_gets_them_in_order_while_other_chats_get_theirs_at_once() {
    on_every_store("delivery_order_busy_chat", |store| async move {
        let platform = Recorder::new(Duration::from_millis(5));
        let running = Running::start(&store, platform.clone()).await;

        let busy = chat("busy");
        let texts: Vec<String> = (0..100).map(|i| format!("busy {i:03}")).collect();
        for ten in texts.chunks(10) {
            queue(&store, &busy, ten).await;
        }
        running.delivery.wake_chat(&busy);
        // The busy chat is draining when the others write.
        let deadline = Instant::now() + Duration::from_secs(5);
        while platform.delivered("busy").is_empty() {
            assert!(Instant::now() < deadline, "the busy chat never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let others: Vec<ChatRef> = (0..5).map(|i| chat(&format!("other-{i}"))).collect();
        for (i, other) in others.iter().enumerate() {
            queue(&store, other, &[format!("reply {i}")]).await;
            running.delivery.wake_chat(other);
        }
        settled(&store, Duration::from_secs(30)).await;

        let got: Vec<String> = platform
            .delivered("busy")
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(got, texts, "every message once, in sequence order");
        assert!(
            platform.log().iter().all(|s| s.ok),
            "no send failed or was repeated"
        );
        let busy_sent = platform.delivered("busy");
        let twentieth = busy_sent[19].at;
        for (i, other) in others.iter().enumerate() {
            let sent = platform.delivered(&other.chat);
            assert_eq!(
                sent.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
                [format!("reply {i}")],
                "{}",
                other.chat
            );
            assert!(
                sent[0].at < twentieth,
                "{} waited for the busy chat: sent {:?} after its first, its 20th at {:?}",
                other.chat,
                sent[0].at - busy_sent[0].at,
                twentieth - busy_sent[0].at
            );
        }
        let entries = store.chat_outbox(&busy).await.unwrap();
        assert_eq!(entries.len(), 100);
        assert!(
            entries
                .iter()
                .all(|e| e.state == OutboxState::Delivered && e.attempts == 1),
            "each entry delivered on its first attempt"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_message_is_marked_failed_with_its_reason_and_the_chats_later_messages_go_out() {
    on_every_store("delivery_order_refused", |store| async move {
        let platform = Recorder::new(Duration::from_millis(1));
        const REASON: &str = "Forbidden: bot was blocked by the user";
        platform.fail("two", TransportError::Permanent(REASON.into()));
        let running = Running::start(&store, platform.clone()).await;
        let mut outcomes = running.delivery.subscribe();

        let c = chat("refusing");
        queue(&store, &c, &["one".into(), "two".into()]).await;
        queue(&store, &c, &["three".into()]).await;
        running.delivery.wake_chat(&c);
        settled(&store, Duration::from_secs(10)).await;

        let got: Vec<String> = platform
            .delivered("refusing")
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(got, ["one", "three"]);
        assert_eq!(platform.attempts_of("two").len(), 1, "never retried");

        let entries = store.chat_outbox(&c).await.unwrap();
        let refused = entries.iter().find(|e| text_of(e) == "two").unwrap();
        let stored = store.outbox_entry(refused.id).await.unwrap().unwrap();
        assert_eq!(stored.state, OutboxState::Failed);
        assert_eq!(stored.error.as_deref(), Some(REASON));
        assert_eq!(stored.message, None);
        for e in entries.iter().filter(|e| text_of(e) != "two") {
            assert_eq!(e.state, OutboxState::Delivered, "{}", text_of(e));
        }
        // Whoever listens is told, with the reason.
        let told = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let o = outcomes.recv().await.unwrap();
                if o.entry == refused.id {
                    return o.result;
                }
            }
        })
        .await
        .expect("the failure was reported");
        assert_eq!(told, Err(REASON.to_string()));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_transient_failure_with_retry_after_is_retried_after_the_wait_and_delivered_once() {
    on_every_store("delivery_order_retry_after", |store| async move {
        let platform = Recorder::new(Duration::from_millis(1));
        let wait = Duration::from_millis(700);
        platform.fail(
            "held",
            TransportError::Transient {
                reason: "Too Many Requests: retry after 0.7".into(),
                retry_after: Some(wait),
            },
        );
        let running = Running::start(&store, platform.clone()).await;

        let c = chat("held-back");
        queue(&store, &c, &["held".into(), "after".into()]).await;
        running.delivery.wake_chat(&c);
        settled(&store, Duration::from_secs(10)).await;

        let tries = platform.attempts_of("held");
        assert_eq!(
            tries.iter().map(|s| s.ok).collect::<Vec<_>>(),
            [false, true],
            "refused once, then taken once"
        );
        let gap = tries[1].at - tries[0].at;
        assert!(gap >= wait, "retried after {gap:?}, before retry_after");
        assert!(gap < wait * 4, "retried only after {gap:?}");
        let got: Vec<String> = platform
            .delivered("held-back")
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(got, ["held", "after"], "the later message waited its turn");

        let entries = store.chat_outbox(&c).await.unwrap();
        let held = entries.iter().find(|e| text_of(e) == "held").unwrap();
        assert_eq!(
            (held.state, held.attempts, held.error.clone()),
            (OutboxState::Delivered, 2, None)
        );
        running.stop().await;
    })
    .await;
}

/// An instance sharing the store with others: chats under leases held as
/// `holder`, and an in-doubt grace far shorter than a send takes (a slow
/// platform), so only the lease keeps a second instance off a message in
/// flight.
fn shared(holder: &str) -> DeliverySettings {
    DeliverySettings {
        chat_leases: Some(Arc::from(holder)),
        in_doubt_grace: Duration::from_millis(10),
        rescan_every: Duration::from_millis(50),
        ..DeliverySettings::default()
    }
}

#[tokio::test]
async fn two_instances_draining_one_outbox_send_every_message_once_and_in_order() {
    on_every_store("delivery_two_instances", |store| async move {
        let platform = Recorder::new(Duration::from_millis(40));
        let one = Running::start_with(&store, platform.clone(), shared("instance-1")).await;
        let two = Running::start_with(&store, platform.clone(), shared("instance-2")).await;
        let chats: Vec<ChatRef> = (0..4).map(|i| chat(&format!("shared-{i}"))).collect();
        let mut expected: HashMap<String, Vec<String>> = HashMap::new();
        for round in 0..3 {
            for (c, to) in chats.iter().enumerate() {
                let texts: Vec<String> = (0..3)
                    .map(|i| format!("chat {c} round {round} line {i}"))
                    .collect();
                queue(&store, to, &texts).await;
                expected.entry(to.chat.clone()).or_default().extend(texts);
                // Both instances hear of every commit, as both scan.
                one.delivery.wake_chat(to);
                two.delivery.wake_chat(to);
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        settled(&store, Duration::from_secs(60)).await;
        for to in &chats {
            let got: Vec<String> = platform
                .delivered(&to.chat)
                .into_iter()
                .map(|s| s.text)
                .collect();
            assert_eq!(got, expected[&to.chat], "{}: once each, in order", to.chat);
        }
        assert_eq!(platform.log().len(), 4 * 3 * 3, "nothing sent twice");
        one.stop().await;
        two.stop().await;
    })
    .await;
}
