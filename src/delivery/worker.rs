//! One chat's worker: reads the chat's open entries in order and sends each
//! until it is delivered or failed for good.

use super::{Delivery, Outcome, Transport, TransportError};
use crate::domain::{ChatRef, MessageRef, Millis, now_millis};
use crate::engine::Outbound;
use crate::engine::ports::{OutboxEntry, OutboxState};
use std::sync::Arc;
use std::time::Duration;

/// What became of one entry in this worker.
enum Step {
    /// Delivered or failed for good: on to the next.
    Done,
    /// Not yet: look at the chat again after this long.
    Later(Duration),
    /// Shutting down.
    Stop,
}

impl Delivery {
    pub(super) async fn drain(self: Arc<Self>, chat: ChatRef) {
        let Some(transport) = self.transport(chat.channel) else {
            self.quit(&chat);
            return;
        };
        let mut shutdown = self.shutdown.clone();
        loop {
            if shutdown.is_fired() {
                break;
            }
            let entries = match self.store.open_entries(&chat, self.settings.batch).await {
                Ok(e) => {
                    tracing::trace!(%chat, entries = e.len(), "delivery: draining");
                    e
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delivery: cannot read the outbox");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.wait() => break,
                    }
                }
            };
            if entries.is_empty() {
                if self.finished(&chat) {
                    return;
                }
                continue;
            }
            let mut pause = None;
            for entry in &entries {
                match self.deliver(transport.as_ref(), entry).await {
                    Step::Done => {}
                    Step::Later(d) => {
                        pause = Some(d);
                        break;
                    }
                    Step::Stop => {
                        self.quit(&chat);
                        return;
                    }
                }
            }
            if let Some(d) = pause {
                tokio::select! {
                    () = tokio::time::sleep(d) => {}
                    () = shutdown.wait() => break,
                }
            }
        }
        self.quit(&chat);
    }

    /// Sends one entry, retrying transient failures in place (the chat
    /// waits: its order must hold).
    async fn deliver(&self, transport: &dyn Transport, entry: &OutboxEntry) -> Step {
        if entry.state == OutboxState::Attempted
            && let Some(wait) = self.in_doubt_wait(entry, now_millis())
        {
            return Step::Later(wait);
        }
        let mut shutdown = self.shutdown.clone();
        let mut attempts = entry.attempts;
        loop {
            match self
                .store
                .claim_entry(entry.id, attempts, now_millis())
                .await
            {
                Ok(true) => attempts += 1,
                // Another worker (another instance) has it, or a proof of
                // arrival just settled it: read the chat again.
                Ok(false) => return Step::Later(Duration::from_millis(200)),
                Err(e) => {
                    tracing::warn!(error = %e, "delivery: cannot claim an entry");
                    return Step::Later(Duration::from_secs(1));
                }
            }
            let result = self.perform(transport, entry).await;
            match result {
                Ok(message) => {
                    self.settle(entry, Ok(message)).await;
                    return Step::Done;
                }
                Err(TransportError::Permanent(reason)) => {
                    tracing::warn!(chat = %entry.to, entry = entry.id, %reason, "delivery: the platform refused a message for good");
                    self.settle(entry, Err(reason)).await;
                    return Step::Done;
                }
                Err(TransportError::Transient {
                    reason,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempts));
                    tracing::debug!(chat = %entry.to, entry = entry.id, %reason, wait_ms = wait.as_millis() as u64, "delivery: will try again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.wait() => return Step::Stop,
                    }
                }
            }
        }
    }

    /// How long an entry a crash left in doubt still waits for proof; `None`
    /// once its grace is over.
    fn in_doubt_wait(&self, entry: &OutboxEntry, now: Millis) -> Option<Duration> {
        let grace = i64::try_from(self.settings.in_doubt_grace.as_millis()).unwrap_or(i64::MAX);
        let until = entry.updated_at.max(self.started_at).saturating_add(grace);
        (until > now).then(|| Duration::from_millis(u64::try_from(until - now).unwrap_or(0)))
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let base = Duration::from_millis(500) * 2u32.saturating_pow(attempts.min(10));
        base.min(self.settings.max_backoff)
    }

    async fn perform(
        &self,
        transport: &dyn Transport,
        entry: &OutboxEntry,
    ) -> Result<Option<MessageRef>, TransportError> {
        let to = &entry.to;
        match &entry.op {
            Outbound::Message { text, buttons, .. } => transport
                .send(to, entry.lane, text, buttons)
                .await
                .map(Some),
            Outbound::Edit { key, text, buttons } => {
                let message = self
                    .store
                    .keyed_message(to, key)
                    .await
                    .map_err(|e| TransportError::transient(e.to_string()))?
                    .ok_or_else(|| {
                        TransportError::Permanent(format!("no message was sent under {key:?}"))
                    })?;
                transport
                    .edit(to, entry.lane, &message, text, buttons)
                    .await
                    .map(|()| Some(message))
            }
            Outbound::ClearButtons { message_id } => {
                transport.clear_buttons(to, message_id).await.map(|()| None)
            }
            Outbound::DeleteMessage { message_id } => {
                transport.delete(to, message_id).await.map(|()| None)
            }
            Outbound::Notice { text } => {
                transport.notice(to, entry.lane, text).await.map(|()| None)
            }
        }
    }

    /// Records the outcome and tells whoever listens.
    async fn settle(&self, entry: &OutboxEntry, result: Result<Option<MessageRef>, String>) {
        let now = now_millis();
        let stored = match &result {
            Ok(message) => {
                let message = match &entry.op {
                    // An edit's message id is already known under its key.
                    Outbound::Edit { .. } => None,
                    _ => message.as_ref(),
                };
                self.store.entry_delivered(entry.id, message, now).await
            }
            Err(reason) => self.store.entry_failed(entry.id, reason, now).await,
        };
        if let Err(e) = stored {
            // The platform has it; at worst it is sent again after a crash.
            tracing::warn!(error = %e, "delivery: cannot record an outcome");
        }
        let _ = self.outcomes.send(Outcome {
            chat: entry.to.clone(),
            event: entry.event.clone(),
            entry: entry.id,
            result,
        });
    }
}
