//! One chat's worker: takes the chat's entries one by one, in sequence
//! order, and sends each until it is delivered or failed for good. One
//! store operation per message on the hot path: settling an entry takes
//! the next one.

use super::{Delivery, Outcome, Transport, TransportError};
use crate::domain::{ChatRef, MessageRef, Millis, now_millis};
use crate::engine::{Lane, Outbound};

/// Why a bulk entry a crash left in doubt was not sent again.
pub const IN_DOUBT_BULK: &str = "in doubt after a restart; a bulk message is never sent twice";
use crate::engine::ports::{NextEntry, OutboxEntry, OutboxState, Settled, StoreError};
use crate::lease::Lease;
use std::sync::Arc;
use std::time::Duration;

/// True while the chat's lease (if delivery uses leases) is ours.
async fn keep(lease: Option<&mut Lease>) -> bool {
    let Some(lease) = lease else {
        return true;
    };
    match lease.hold().await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "delivery: cannot renew a chat's lease");
            false
        }
    }
}

/// What to do with the entry at the head of the chat.
enum Step {
    /// Send it (it is claimed for this attempt).
    Send(Box<OutboxEntry>),
    /// Look at the chat again after this long.
    Later(Duration),
}

impl Delivery {
    /// Drains `chat` until it has nothing more to send. With shared
    /// storage, only while this instance holds the chat's lease; after
    /// giving it up, looks once more, so an entry another instance
    /// committed meanwhile (and could not send: the lease was ours) is not
    /// left behind.
    pub(super) async fn drain(self: Arc<Self>, chat: ChatRef) {
        let Some(transport) = self.transport(chat.channel) else {
            self.quit(&chat);
            return;
        };
        let mut lease = self.settings.chat_leases.as_ref().map(|holder| {
            Lease::new(
                self.store.clone(),
                format!("outbox:{chat}"),
                holder.clone(),
                self.settings.chat_lease_ttl,
            )
        });
        if !keep(lease.as_mut()).await {
            // Another instance drains this chat.
            self.quit(&chat);
            return;
        }
        self.drain_held(&chat, transport.as_ref(), lease.as_mut())
            .await;
        if let Some(lease) = lease.as_mut() {
            lease.release().await;
            if matches!(self.store.open_entries(&chat, 1).await, Ok(e) if !e.is_empty()) {
                self.wake_chat(&chat);
            }
        }
    }

    async fn drain_held(
        &self,
        chat: &ChatRef,
        transport: &dyn Transport,
        mut lease: Option<&mut Lease>,
    ) {
        let mut shutdown = self.shutdown.clone();
        let mut next = self.store.take_next(chat, now_millis()).await;
        loop {
            if shutdown.is_fired() {
                break;
            }
            let step = match next {
                Ok(None) => {
                    if self.finished(chat) {
                        return;
                    }
                    next = self.store.take_next(chat, now_millis()).await;
                    continue;
                }
                Ok(Some(found)) => self.step(transport, found).await,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery: cannot read the outbox");
                    Step::Later(Duration::from_secs(1))
                }
            };
            match step {
                Step::Send(entry) => {
                    // Nothing goes out once another instance may have the chat.
                    if !keep(lease.as_deref_mut()).await {
                        break;
                    }
                    let Some(outcome) = self.deliver(transport, (*entry).clone()).await else {
                        break; // shutting down
                    };
                    next = self.settle(&entry, outcome).await;
                }
                Step::Later(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.wait() => break,
                    }
                    next = self.store.take_next(chat, now_millis()).await;
                }
            }
        }
        self.quit(chat);
    }

    /// Decides about the chat's head entry: send it now, or wait.
    async fn step(&self, transport: &dyn Transport, found: NextEntry) -> Step {
        let NextEntry { mut entry, claimed } = found;
        if claimed {
            return Step::Send(Box::new(entry));
        }
        if entry.state == OutboxState::Attempted {
            if let Some(wait) = self.in_doubt_wait(&entry, now_millis()) {
                return Step::Later(wait);
            }
            if entry.lane == Lane::Bulk {
                return self.give_up_in_doubt(&entry).await;
            }
        }
        // A bulk entry is claimed only once its slot has come (held through
        // the claim, so the sends keep the window's spacing), and goes out
        // at once.
        let permit = if entry.lane == Lane::Bulk {
            Some(transport.bulk_slot().await)
        } else {
            None
        };
        let now = now_millis();
        let claimed = self.store.claim_entry(entry.id, entry.attempts, now).await;
        drop(permit);
        match claimed {
            Ok(true) => {
                entry.attempts += 1;
                entry.state = OutboxState::Attempted;
                entry.updated_at = now;
                Step::Send(Box::new(entry))
            }
            // Another worker (another instance) has it, or a proof of
            // arrival just settled it: look again shortly.
            Ok(false) => Step::Later(Duration::from_millis(200)),
            Err(e) => {
                tracing::warn!(error = %e, "delivery: cannot claim an entry");
                Step::Later(Duration::from_secs(1))
            }
        }
    }

    /// Sends a claimed entry, retrying transient failures in place (the
    /// chat waits: its order must hold). `None` when shutting down.
    async fn deliver(&self, transport: &dyn Transport, mut entry: OutboxEntry) -> Option<Settled> {
        let mut shutdown = self.shutdown.clone();
        loop {
            match self.perform(transport, &entry).await {
                Ok(message) => return Some(Settled::Delivered(message)),
                Err(TransportError::Permanent(reason)) => {
                    tracing::warn!(chat = %entry.to, entry = entry.id, %reason, "delivery: the platform refused a message for good");
                    return Some(Settled::Failed(reason));
                }
                Err(TransportError::Transient {
                    reason,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| self.backoff(entry.attempts));
                    tracing::debug!(chat = %entry.to, entry = entry.id, %reason, wait_ms = wait.as_millis() as u64, "delivery: will try again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.wait() => return None,
                    }
                    // Count the next attempt (and keep the entry ours).
                    match self
                        .store
                        .claim_entry(entry.id, entry.attempts, now_millis())
                        .await
                    {
                        Ok(true) => entry.attempts += 1,
                        Ok(false) => return None,
                        Err(e) => tracing::warn!(error = %e, "delivery: cannot count an attempt"),
                    }
                }
            }
        }
    }

    /// A bulk send (a subscriber notice, an announcement) that a crash left
    /// in doubt is not sent again: nobody gets a notice twice. An
    /// announcement whose post was lost this way is posted again by its
    /// next edit.
    async fn give_up_in_doubt(&self, entry: &OutboxEntry) -> Step {
        tracing::warn!(chat = %entry.to, entry = entry.id, "delivery: a bulk message was in flight during a crash; not sending it twice");
        match self
            .store
            .entry_failed(entry.id, IN_DOUBT_BULK, now_millis())
            .await
        {
            Ok(()) => Step::Later(Duration::ZERO),
            Err(e) => {
                tracing::warn!(error = %e, "delivery: cannot record an outcome");
                Step::Later(Duration::from_secs(1))
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
            // An edit's message id is already known under its key.
            Outbound::Edit {
                key,
                text,
                buttons,
                repost,
            } => {
                let edited = match self
                    .store
                    .keyed_message(to, key)
                    .await
                    .map_err(|e| TransportError::transient(e.to_string()))?
                {
                    Some(message) => transport
                        .edit(to, entry.lane, &message, text, buttons)
                        .await
                        .map(|()| None),
                    None => Err(TransportError::Permanent(format!(
                        "no message was sent under {key:?}"
                    ))),
                };
                match edited {
                    Err(TransportError::Permanent(reason)) if *repost => {
                        tracing::warn!(chat = %to, entry = entry.id, %reason, "delivery: the message can no longer be edited; posting it again");
                        transport
                            .send(to, entry.lane, text, buttons)
                            .await
                            .map(Some)
                    }
                    other => other,
                }
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

    /// Records the outcome, tells whoever listens, and takes the chat's
    /// next entry (one store operation).
    async fn settle(
        &self,
        entry: &OutboxEntry,
        outcome: Settled,
    ) -> Result<Option<NextEntry>, StoreError> {
        let next = self
            .store
            .settle_and_take_next(entry.id, outcome.clone(), &entry.to, now_millis())
            .await;
        if let Err(e) = &next {
            // The platform has it; at worst it is sent again after a crash.
            tracing::warn!(error = %e, "delivery: cannot record an outcome");
        }
        if entry.lane == Lane::Bulk
            && let Settled::Failed(_) = &outcome
        {
            // A person who blocked the bot hears nothing more from it.
            if let Err(e) = self.store.drop_subscriptions(&entry.to).await {
                tracing::warn!(error = %e, "delivery: cannot drop subscriptions");
            }
        }
        let _ = self.outcomes.send(Outcome {
            chat: entry.to.clone(),
            event: entry.event.clone(),
            entry: entry.id,
            result: match outcome {
                Settled::Delivered(message) => Ok(message),
                Settled::Failed(reason) => Err(reason),
            },
        });
        next
    }
}
