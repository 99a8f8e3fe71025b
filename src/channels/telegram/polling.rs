//! Long polling with an exact offset.
//!
//! Telegram forgets an update once `getUpdates` is called with an offset
//! above its id. So a batch is processed first (each update's turn, its
//! replies included, committed through the engine; sending them is
//! delivery's job, off this path), and only then does the next call move
//! the offset past it. An update that
//! fails (a store error, Telegram unreachable) stops the offset at that
//! update: it and everything after it come again and are deduplicated by the
//! engine. After a restart, the first call has no offset and Telegram hands
//! out every update not yet confirmed.
//!
//! Updates of different chats in one batch run concurrently; one chat's
//! updates run in order.

use super::api::CallError;
use super::handler::Handler;
use crate::shutdown::Shutdown;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::{Update, UpdateKind};

/// Chats processed at the same time within one batch: enough to fill the
/// store's group commits.
const CONCURRENT_CHATS: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(
    handler: Arc<Handler>,
    poll_timeout_secs: u32,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let api = &handler.api;
    // The offset of the next call; `None` asks for every unconfirmed update.
    let mut offset: Option<i32> = None;
    // The offset Telegram has last been told.
    let mut confirmed: Option<i32> = None;
    // Failed polls, and failed batches, in a row.
    let mut failures: u32 = 0;
    let mut batch_failures: u32 = 0;
    tracing::info!("Telegram: polling for updates");
    loop {
        if shutdown.is_fired() {
            break;
        }
        let polled = tokio::select! {
            r = api.get_updates(offset, poll_timeout_secs, 100) => r,
            () = shutdown.wait() => break,
        };
        let updates = match polled {
            Ok(u) => {
                confirmed = offset;
                failures = 0;
                u
            }
            Err(CallError::Stopped) => break,
            Err(CallError::BadToken) => anyhow::bail!("{}", CallError::BadToken),
            Err(e) => {
                failures += 1;
                if let CallError::Conflict(reason) = &e {
                    tracing::error!(error = %e, "Telegram: cannot poll (another instance running, or a webhook set?)");
                    if reason.contains("webhook") {
                        let _ = api.delete_webhook().await;
                    }
                } else {
                    tracing::warn!(error = %e, "Telegram: getUpdates failed");
                }
                if !pause(backoff(failures), &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        if updates.is_empty() {
            continue;
        }
        handler.watch_callbacks(&updates);
        match process_batch(&handler, updates, &shutdown).await {
            Ok(next) => {
                offset = Some(next);
                batch_failures = 0;
            }
            Err(stopped_at) => {
                offset = Some(stopped_at);
                if shutdown.is_fired() {
                    break;
                }
                batch_failures += 1;
                if !pause(backoff(batch_failures), &mut shutdown).await {
                    break;
                }
            }
        }
    }
    // Confirm what was processed, so a restart does not see it again.
    if let Some(o) = offset
        && offset != confirmed
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), api.confirm_offset(o)).await;
    }
    tracing::info!("Telegram: polling stopped");
    Ok(())
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

/// Processes a batch. `Ok(next offset)` when every update is done;
/// `Err(offset)` naming the first update that must come again.
async fn process_batch(
    handler: &Arc<Handler>,
    updates: Vec<Update>,
    shutdown: &Shutdown,
) -> Result<i32, i32> {
    let next = updates.last().map(|u| u.id.as_offset()).unwrap_or(0);
    // Group by chat, keeping each chat's order.
    let mut by_chat: Vec<(Option<i64>, Vec<Update>)> = Vec::new();
    for u in updates {
        let chat = chat_of(&u);
        match by_chat
            .iter_mut()
            .find(|(c, _)| chat.is_some() && *c == chat)
        {
            Some((_, list)) => list.push(u),
            None => by_chat.push((chat, vec![u])),
        }
    }
    let failed: Vec<u32> = futures::stream::iter(by_chat)
        .map(|(_, list)| {
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            async move {
                for u in &list {
                    if shutdown.is_fired() {
                        return Some(u.id.0);
                    }
                    if let Err(retry) = handler.process(u).await {
                        tracing::warn!(update_id = u.id.0, reason = %retry.0, "Telegram: update will be retried");
                        return Some(u.id.0);
                    }
                }
                None
            }
        })
        .buffer_unordered(CONCURRENT_CHATS)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    match failed.iter().min() {
        None => Ok(next),
        Some(first) => Err(i32::try_from(*first).unwrap_or(i32::MAX)),
    }
}

fn chat_of(u: &Update) -> Option<i64> {
    match &u.kind {
        UpdateKind::Message(m) => Some(m.chat.id.0),
        UpdateKind::CallbackQuery(q) => q.message.as_ref().map(|m| m.chat().id.0),
        _ => None,
    }
}
