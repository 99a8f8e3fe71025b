//! Delivery: the outbox drained to the platforms.
//!
//! Every outgoing message (a reply, later a staff message or an
//! announcement) is an [`Envelope`](crate::engine::Envelope) committed to
//! the outbox with the change that caused it. [`Delivery`] sends them:
//!
//! - **Order.** One worker per chat at a time drains that chat's entries in
//!   sequence order; chats run in parallel, so a slow or frozen chat holds
//!   up nobody else.
//! - **No delay.** The engine wakes the chat's worker the moment a commit
//!   lands ([`OutboxWaker`]); a start-up scan (and a periodic one) picks up
//!   whatever an earlier process committed and never sent.
//! - **Retries.** Transient failures (timeouts, 5xx, 429) are retried with
//!   capped backoff, honouring `retry_after`; permanent ones (bot blocked,
//!   chat gone, message too old) mark the entry failed, with the reason,
//!   and the chat's later entries go on.
//! - **At most one doubt.** An entry is claimed (`attempted`) before it is
//!   handed to the platform and marked `delivered` after, with the
//!   platform's message id (kept under its logical key for later edits).
//!   An entry a crash left `attempted` is in doubt: it is sent again only
//!   after [`DeliverySettings::in_doubt_grace`] and only if nothing proved
//!   it arrived meanwhile (a later event referring to a bot message the
//!   store did not know binds that message to it: see
//!   [`TurnCommit::seen_message`](crate::engine::ports::TurnCommit)).
//!
//! - **Several instances.** With shared storage (PostgreSQL) every
//!   instance drains the outbox, each chat under a lease (`outbox:<chat>`)
//!   that one instance holds at a time, so the chat's order holds and no
//!   entry is sent by two; claims are compare-and-set on the attempt count.
//!
//! Pacing is the platform's business ([`Transport`]): replies are limited
//! per chat and by 429s, bulk sends by a bot-wide cap.

mod lanes;
mod transport;
mod worker;

pub use lanes::{LaneCaps, LanePermit};
pub use transport::{Transport, TransportError};

use crate::domain::{ChannelKind, ChatRef, EventId, MessageRef, now_millis};
use crate::engine::ports::{OutboxWaker, Store};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// How delivery behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long an entry a crash left in doubt waits for proof that it
    /// arrived before it is sent again (counted from the later of its
    /// attempt and this process's start).
    pub in_doubt_grace: Duration,
    /// How often the outbox is scanned for chats nobody woke (entries of
    /// another instance, of a crashed one).
    pub rescan_every: Duration,
    /// The longest pause between two tries of one entry.
    pub max_backoff: Duration,
    /// Entries a worker reads at once.
    pub batch: u32,
    /// With storage shared by several instances: this instance's lease
    /// holder name. A chat is then drained by one instance at a time, under
    /// the lease `outbox:<chat>`; `None` (one instance) skips the leases.
    pub chat_leases: Option<Arc<str>>,
    /// How long a chat's lease lasts unless renewed (renewed before a send
    /// once a third of it has passed); after a crash, another instance
    /// drains the chat within this time.
    pub chat_lease_ttl: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            in_doubt_grace: Duration::from_secs(5),
            rescan_every: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            batch: 32,
            chat_leases: None,
            chat_lease_ttl: Duration::from_secs(30),
        }
    }
}

/// What became of one entry, for whoever waits on it (a Discord slash
/// command's pointer text, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub chat: ChatRef,
    pub event: Option<EventId>,
    pub entry: i64,
    /// The platform's message id on success; the reason on failure.
    pub result: Result<Option<MessageRef>, String>,
}

/// The outbox's sender. Cheap to share; see the module docs.
pub struct Delivery {
    store: Arc<dyn Store>,
    transports: RwLock<HashMap<ChannelKind, Arc<dyn Transport>>>,
    settings: DeliverySettings,
    /// Chats with a running worker, and whether it was woken again since
    /// it last read the outbox.
    active: Mutex<HashMap<ChatRef, bool>>,
    outcomes: broadcast::Sender<Outcome>,
    started_at: crate::domain::Millis,
    /// Fired when [`Delivery::run`]'s shutdown fires: stops the workers.
    stop: ShutdownTrigger,
    shutdown: Shutdown,
}

impl Delivery {
    /// A delivery with no transport yet: each channel registers its own
    /// when it connects ([`Delivery::register`]).
    pub fn new(store: Arc<dyn Store>, settings: DeliverySettings) -> Arc<Self> {
        let (outcomes, _) = broadcast::channel(4096);
        let (stop, shutdown) = crate::shutdown::channel();
        Arc::new(Self {
            store,
            transports: RwLock::default(),
            settings,
            active: Mutex::default(),
            outcomes,
            started_at: now_millis(),
            stop,
            shutdown,
        })
    }

    /// Adds a channel's transport and sends what that channel has waiting.
    pub async fn register(self: &Arc<Self>, channel: ChannelKind, transport: Arc<dyn Transport>) {
        self.transports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel, transport);
        self.scan().await;
    }

    pub(super) fn transport(&self, channel: ChannelKind) -> Option<Arc<dyn Transport>> {
        self.transports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&channel)
            .cloned()
    }

    /// Outcomes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Outcome> {
        self.outcomes.subscribe()
    }

    /// Makes sure a worker drains `chat` soon.
    pub fn wake_chat(self: &Arc<Self>, chat: &ChatRef) {
        if self.transport(chat.channel).is_none() || self.shutdown.is_fired() {
            tracing::trace!(%chat, "delivery: no transport for this chat (yet)");
            return;
        }
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(again) = active.get_mut(chat) {
                *again = true;
                return;
            }
            active.insert(chat.clone(), false);
        }
        let me = self.clone();
        let chat = chat.clone();
        tokio::spawn(async move { me.drain(chat).await });
    }

    /// Called by a worker that found nothing more to send: true if it may
    /// stop (nobody woke it meanwhile), false if it must look again.
    fn finished(&self, chat: &ChatRef) -> bool {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        match active.get_mut(chat) {
            Some(again) if *again => {
                *again = false;
                false
            }
            _ => {
                active.remove(chat);
                true
            }
        }
    }

    fn quit(&self, chat: &ChatRef) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(chat);
    }

    /// Chats with a running worker.
    pub fn busy_chats(&self) -> usize {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Scans the outbox at start-up and every `rescan_every`, until
    /// `shutdown`; then stops the workers, giving them a moment to finish
    /// what they are sending.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            self.scan().await;
            tokio::select! {
                () = tokio::time::sleep(self.settings.rescan_every) => {}
                () = shutdown.wait() => break,
            }
        }
        self.stop.fire();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.busy_chats() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wakes every chat with open entries.
    pub async fn scan(self: &Arc<Self>) {
        match self.store.open_chats(100_000).await {
            Ok(chats) => {
                if !chats.is_empty() {
                    tracing::info!(chats = chats.len(), "delivery: chats with unsent messages");
                }
                for chat in chats {
                    self.wake_chat(&chat);
                }
            }
            Err(e) => tracing::warn!(error = %e, "delivery: cannot scan the outbox"),
        }
    }
}

impl OutboxWaker for Arc<Delivery> {
    fn wake(&self, chat: &ChatRef) {
        self.wake_chat(chat);
    }
}
