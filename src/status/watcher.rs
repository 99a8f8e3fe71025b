//! The watcher's loop: one instance at a time (a lease in the store) reads
//! the status page with conditional requests, backs off while it fails,
//! and commits what changed; every instance refreshes its
//! [`StatusBoard`](crate::engine::status::StatusBoard) from the store.

use super::Status;
use crate::account_api::statuspage::{Incidents, Summary};
use crate::domain::now_millis;
use crate::shutdown::Shutdown;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use std::sync::Arc;
use std::time::Duration;

/// The lease the watching instance holds.
pub const LEASE: &str = "status-watcher";

/// How a poll went.
#[derive(Debug)]
pub enum PollError {
    Unreachable(String),
    Http(u16),
    Format,
    Store(String),
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "the status page is unreachable ({e})"),
            Self::Http(code) => write!(f, "the status page answered HTTP {code}"),
            Self::Format => f.write_str("the status page is not in Statuspage v2 format"),
            Self::Store(e) => write!(f, "cannot store the status: {e}"),
        }
    }
}

impl Status {
    /// Watches until `shutdown`: every quarter poll interval, takes or
    /// renews the lease (held for 1.5 intervals, so another instance takes
    /// over within two intervals of the holder's death); the holder polls
    /// when due. Every instance refreshes its
    /// board on each tick.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let poll = self.config.poll;
        let mut failures = 0u32;
        let mut next_poll = tokio::time::Instant::now();
        let mut leading = false;
        loop {
            let now = now_millis();
            let ttl = i64::try_from((poll * 3 / 2).as_millis()).unwrap_or(i64::MAX);
            match self
                .store
                .try_lease(LEASE, &self.config.holder, now + ttl, now)
                .await
            {
                Ok(held) => {
                    if held && !leading {
                        tracing::info!("status: this instance watches the status page");
                        next_poll = tokio::time::Instant::now();
                    }
                    leading = held;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status: cannot take the watcher lease");
                    leading = false;
                }
            }
            if leading && tokio::time::Instant::now() >= next_poll {
                match self.poll_once().await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, failures, "status: poll failed; backing off");
                    }
                }
                next_poll = tokio::time::Instant::now() + jittered(poll * backoff(failures));
            }
            self.refresh_board().await;
            tokio::select! {
                () = tokio::time::sleep(jittered(poll / 4)) => {}
                () = shutdown.wait() => break,
            }
        }
        if leading {
            let _ = self.store.release_lease(LEASE, &self.config.holder).await;
        }
    }

    /// Reads the summary (conditionally) and, for incidents it no longer
    /// lists, the incident list; commits what changed.
    pub async fn poll_once(&self) -> Result<(), PollError> {
        let Some(urls) = &self.config.urls else {
            return Ok(());
        };
        let stored = self
            .store
            .status_record()
            .await
            .map_err(|e| PollError::Store(e.to_string()))?;
        let mut request = self.http.get(urls.summary.clone());
        if let Some(r) = &stored {
            if let Some(etag) = &r.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &r.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| PollError::Unreachable(e.without_url().to_string()))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        if !response.status().is_success() {
            return Err(PollError::Http(response.status().as_u16()));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let validators = (header(ETAG), header(LAST_MODIFIED));
        let summary: Summary = response.json().await.map_err(|_| PollError::Format)?;
        let vanished =
            super::tracker::Tracked::from_json(stored.as_ref().map_or("{}", |r| r.state.as_str()))
                .vanished(&summary);
        let closed = if vanished.is_empty() {
            None
        } else {
            self.incident_list(&urls.incidents).await.ok()
        };
        let now = now_millis();
        self.apply(Some(validators), |tracked| {
            let mut changes = tracked.observe_summary(&summary, now);
            for id in &vanished {
                let found = closed
                    .as_ref()
                    .and_then(|l| l.incidents.iter().find(|i| i.id == *id));
                let change = match found {
                    Some(i) => tracked.observe_incident(i, now),
                    None => tracked.close_silently(id, now),
                };
                changes.extend(change);
            }
            changes
        })
        .await
        .map(drop)
        .map_err(|e| PollError::Store(e.to_string()))
    }

    async fn incident_list(&self, url: &url::Url) -> Result<Incidents, PollError> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| PollError::Unreachable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(PollError::Http(response.status().as_u16()));
        }
        response.json().await.map_err(|_| PollError::Format)
    }
}

/// 1, 2, 4, 8 poll intervals between tries while the page fails.
fn backoff(failures: u32) -> u32 {
    1 << failures.min(3)
}

/// ±10%, so instances do not poll in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.9..1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_page_is_read_less_often_up_to_eight_intervals() {
        assert_eq!((0..6).map(backoff).collect::<Vec<_>>(), [1, 2, 4, 8, 8, 8]);
    }
}
