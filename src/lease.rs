//! Leases: one instance at a time for work that several instances share.
//!
//! A lease is a row in the store ([`LeaseStore`]) naming its holder and
//! when it runs out. Its holder renews it while it works; when the holder
//! dies the lease runs out and another instance takes the work over. Used
//! by:
//!
//! - the periodic jobs ([`run_periodically`]): the purge runs on one
//!   instance at a time, on whichever holds `job:<name>`;
//! - delivery: one instance drains a chat's outbox at a time
//!   (`outbox:<chat>`), which keeps the chat's order across instances;
//! - the status watcher (`status-watcher`, with its own tick).
//!
//! Times in the store are wall-clock milliseconds; when to renew is decided
//! on tokio's clock, so tests can pause time.

use crate::domain::now_millis;
use crate::engine::ports::{LeaseStore, StoreError};
use crate::shutdown::Shutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A name for this instance in leases, unique per process start:
/// `<host>-<pid>-<random>`.
pub fn holder_name() -> String {
    format!(
        "{}-{}-{:08x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "recoverbot".into())
}

/// One named lease as one holder sees it.
pub struct Lease {
    store: Arc<dyn LeaseStore>,
    name: String,
    holder: Arc<str>,
    ttl: Duration,
    /// When this holder last took or renewed it (tokio's clock).
    renewed: Option<Instant>,
}

impl Lease {
    pub fn new(
        store: Arc<dyn LeaseStore>,
        name: impl Into<String>,
        holder: Arc<str>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            name: name.into(),
            holder,
            ttl,
            renewed: None,
        }
    }

    /// True while this holder holds the lease. Asks the store only when a
    /// third of the lease's time has passed since it was last renewed, so
    /// calling it before every piece of work costs nothing most times.
    pub async fn hold(&mut self) -> Result<bool, StoreError> {
        if let Some(at) = self.renewed
            && at.elapsed() < self.ttl / 3
        {
            return Ok(true);
        }
        let now = now_millis();
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let started = Instant::now();
        let held = self
            .store
            .try_lease(&self.name, &self.holder, now.saturating_add(ttl), now)
            .await?;
        self.renewed = held.then_some(started);
        Ok(held)
    }

    /// Gives the lease up, so nobody waits for it to run out.
    pub async fn release(&mut self) {
        if self.renewed.take().is_some()
            && let Err(e) = self.store.release_lease(&self.name, &self.holder).await
        {
            tracing::warn!(error = %e, lease = %self.name, "cannot release a lease");
        }
    }
}

/// Runs `job` every `every` on whichever instance holds the lease
/// `job:<name>`, until `shutdown`. Every instance tries for the lease every
/// `every / 4` (at most a minute), so when the holder dies another takes
/// over within a lease time (`every / 2`, at most 5 min); a new holder
/// runs the job at once.
pub async fn run_periodically<F, Fut>(
    store: Arc<dyn LeaseStore>,
    holder: Arc<str>,
    name: &str,
    every: Duration,
    mut shutdown: Shutdown,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let tick = (every / 4).min(Duration::from_secs(60));
    let ttl = (every / 2).clamp(tick * 2, Duration::from_secs(300));
    let mut lease = Lease::new(store, format!("job:{name}"), holder, ttl);
    let mut next_run: Option<Instant> = None;
    loop {
        match lease.hold().await {
            Ok(true) => {
                if next_run.is_none_or(|at| Instant::now() >= at) {
                    job().await;
                    next_run = Some(Instant::now() + every);
                }
            }
            Ok(false) => next_run = None,
            Err(e) => {
                tracing::warn!(error = %e, job = name, "cannot take the job's lease");
                next_run = None;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shutdown.wait() => break,
        }
    }
    lease.release().await;
}
