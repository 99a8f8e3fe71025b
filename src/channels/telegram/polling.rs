//! Long polling with an exact offset, and no batch barrier.
//!
//! Telegram forgets an update once `getUpdates` is called with an offset
//! above its id, so the offset never passes an update whose turn has not
//! committed (its replies are then in the outbox; sending them is
//! delivery's job, off this path). Within that rule nothing waits for a
//! whole batch: the offset of each call is the oldest update still in
//! flight, updates already taken are recognised and skipped, and the next
//! call goes out as soon as the oldest one is done (or shortly, to pick up
//! new ones). Throughput is then bounded by the turns themselves, not by
//! the slowest turn of each batch of 100.
//!
//! One chat's updates run one at a time, in order; chats run in parallel.
//! An update that fails (a store error) holds its chat and the offset: it
//! comes again and is retried after a backoff, and the engine recognises
//! what was already done. After a restart, the first call has no offset
//! and Telegram hands out every update not yet confirmed.

use super::api::CallError;
use super::handler::{Handler, Retry};
use crate::shutdown::Shutdown;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teloxide::types::{Update, UpdateKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// While updates are in flight, the next call waits until half of them
/// are done (each call hands out the unfinished ones again: waiting for
/// half keeps that repetition small), or at most this long.
const IN_FLIGHT_REPOLL: Duration = Duration::from_millis(50);

/// Where an update this process has taken stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
    /// Failed; it (and its chat) is retried from then on.
    Failed {
        retry_at: Instant,
    },
}

/// The updates at or above the offset that this process knows about.
#[derive(Default)]
struct Window {
    states: BTreeMap<u32, State>,
    /// Chats held back by a failed update, until the retry.
    held: HashMap<i64, Instant>,
    /// One past the highest update id seen.
    next: Option<u32>,
    failures: u32,
}

impl Window {
    /// The offset for the next call: the oldest update not done (or past
    /// everything seen). Done updates below it are forgotten: the call
    /// confirms them.
    fn offset(&mut self) -> Option<i32> {
        let oldest_open = self
            .states
            .iter()
            .find(|(_, s)| **s != State::Done)
            .map(|(id, _)| *id);
        let offset = oldest_open.or(self.next)?;
        self.states = self.states.split_off(&offset);
        i32::try_from(offset).ok()
    }

    fn in_flight(&self) -> bool {
        self.in_flight_count() > 0
    }

    fn in_flight_count(&self) -> usize {
        self.states
            .values()
            .filter(|s| **s == State::InFlight)
            .count()
    }

    /// Whether to start this update now.
    fn take(&mut self, u: &Update, now: Instant) -> bool {
        let id = u.id.0;
        self.next = Some(self.next.map_or(id + 1, |n| n.max(id + 1)));
        if let Some(chat) = chat_of(u)
            && let Some(until) = self.held.get(&chat)
        {
            if *until > now {
                return false;
            }
            self.held.remove(&chat);
        }
        match self.states.get(&id) {
            None => {}
            Some(State::Failed { retry_at }) if *retry_at <= now => {}
            Some(_) => return false,
        }
        self.states.insert(id, State::InFlight);
        true
    }

    fn finish(&mut self, f: Finished) {
        let Finished { id, chat, result } = f;
        match result {
            Ended::Done => {
                self.states.insert(id, State::Done);
                self.failures = 0;
            }
            // Never started: taken again when it comes back.
            Ended::Dropped => {
                self.states.remove(&id);
            }
            Ended::Failed(retry) => {
                self.failures += 1;
                let retry_at = Instant::now() + backoff(self.failures);
                tracing::warn!(update_id = id, reason = %retry.0, "Telegram: update will be retried");
                self.states.insert(id, State::Failed { retry_at });
                if let Some(chat) = chat {
                    self.held.insert(chat, retry_at);
                }
            }
        }
    }
}

pub async fn run(
    handler: Arc<Handler>,
    poll_timeout_secs: u32,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let api = &handler.api;
    let mut window = Window::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let chats = Arc::new(ChatQueues::default());
    // The offset Telegram has last been told.
    let mut confirmed: Option<i32> = None;
    let mut poll_failures: u32 = 0;
    tracing::info!("Telegram: polling for updates");
    loop {
        if shutdown.is_fired() {
            break;
        }
        while let Ok(f) = done_rx.try_recv() {
            window.finish(f);
        }
        let offset = window.offset();
        let timeout = if window.in_flight() {
            0
        } else {
            poll_timeout_secs
        };
        let polled = tokio::select! {
            r = api.get_updates(offset, timeout, 100) => r,
            () = shutdown.wait() => break,
        };
        let updates = match polled {
            Ok(u) => {
                confirmed = offset;
                poll_failures = 0;
                u
            }
            Err(CallError::Stopped) => break,
            Err(CallError::BadToken) => anyhow::bail!("{}", CallError::BadToken),
            Err(e) => {
                poll_failures += 1;
                if let CallError::Conflict(reason) = &e {
                    tracing::error!(error = %e, "Telegram: cannot poll (another instance running, or a webhook set?)");
                    if reason.contains("webhook") {
                        let _ = api.delete_webhook().await;
                    }
                } else {
                    tracing::warn!(error = %e, "Telegram: getUpdates failed");
                }
                if !pause(backoff(poll_failures), &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        let now = Instant::now();
        let fresh: Vec<Update> = updates
            .into_iter()
            .filter(|u| window.take(u, now))
            .collect();
        handler.watch_callbacks(&fresh);
        for u in fresh {
            chats.start(handler.clone(), u, done_tx.clone());
        }
        // Wait for half of what is in flight to finish (the offset moves,
        // room opens in the window), briefly.
        let busy = window.in_flight_count();
        let until = Instant::now() + IN_FLIGHT_REPOLL;
        let mut finished = 0;
        while busy > 0 && finished * 2 < busy.max(2) {
            tokio::select! {
                Some(f) = done_rx.recv() => {
                    window.finish(f);
                    finished += 1;
                }
                () = tokio::time::sleep_until(until) => break,
                () = shutdown.wait() => break,
            }
        }
    }
    // Let what is in flight commit, then confirm it, so a restart does not
    // see it again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while window.in_flight() && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(f)) => window.finish(f),
            _ => break,
        }
    }
    if let Some(o) = window.offset()
        && Some(o) != confirmed
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), api.confirm_offset(o)).await;
    }
    tracing::info!("Telegram: polling stopped");
    Ok(())
}

/// An update's turn is over (or will not start).
struct Finished {
    id: u32,
    chat: Option<i64>,
    result: Ended,
}

enum Ended {
    Done,
    Failed(Retry),
    /// Queued behind a failed update of its chat: not started.
    Dropped,
}

impl From<Result<(), Retry>> for Ended {
    fn from(r: Result<(), Retry>) -> Self {
        match r {
            Ok(()) => Self::Done,
            Err(retry) => Self::Failed(retry),
        }
    }
}

/// One worker per chat with updates, taking them in order.
#[derive(Default)]
struct ChatQueues {
    queues: Mutex<HashMap<i64, VecDeque<Update>>>,
}

impl ChatQueues {
    fn start(
        self: &Arc<Self>,
        handler: Arc<Handler>,
        u: Update,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let Some(chat) = chat_of(&u) else {
            tokio::spawn(async move {
                let result = handler.process(&u).await.into();
                let _ = done.send(Finished {
                    id: u.id.0,
                    chat: None,
                    result,
                });
            });
            return;
        };
        {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(queue) = queues.get_mut(&chat) {
                queue.push_back(u);
                return;
            }
            queues.insert(chat, VecDeque::new());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut next = Some(u);
            while let Some(u) = next {
                let result = handler.process(&u).await;
                let failed = result.is_err();
                let _ = done.send(Finished {
                    id: u.id.0,
                    chat: Some(chat),
                    result: result.into(),
                });
                let mut queues = me.queues.lock().unwrap_or_else(|p| p.into_inner());
                if failed {
                    // The chat waits for the failed update's retry; what
                    // was queued behind it comes again with later polls.
                    for dropped in queues.remove(&chat).unwrap_or_default() {
                        let _ = done.send(Finished {
                            id: dropped.id.0,
                            chat: Some(chat),
                            result: Ended::Dropped,
                        });
                    }
                    return;
                }
                next = queues.get_mut(&chat).and_then(VecDeque::pop_front);
                if next.is_none() {
                    queues.remove(&chat);
                }
            }
        });
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(500) * 2u32.saturating_pow(failures.saturating_sub(1).min(8)))
        .min(MAX_BACKOFF)
}

/// Sleeps unless shutdown comes first; false if it did.
async fn pause(d: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.wait() => false,
    }
}

fn chat_of(u: &Update) -> Option<i64> {
    match &u.kind {
        UpdateKind::Message(m) => Some(m.chat.id.0),
        UpdateKind::CallbackQuery(q) => q.message.as_ref().map(|m| m.chat().id.0),
        _ => None,
    }
}
