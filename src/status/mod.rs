//! Status announcements: the status page watched, incidents announced in
//! channels (posted once, edited in place, resolved), subscribers told
//! when it is fixed, and the engine's [`StatusBoard`] kept current.
//!
//! - [`tracker`]: what is remembered of the page, and what a new look
//!   changes (pure).
//! - [`announce`]: changes as messages: posts, edits, follow-ups and
//!   subscriber notices (pure).
//! - [`watcher`]: the polling loop under a lease, so one instance watches.
//! - [`webhook`]: Statuspage webhooks on the operator listener.
//!
//! Every pass commits the new memory, its posts and its notices in one
//! transaction, guarded by the memory's version, so neither a restart nor a
//! second instance announces a change twice. Delivery sends them on the
//! bulk lane.

pub mod announce;
pub mod tracker;
pub mod watcher;
pub mod webhook;

use crate::config::{AnnounceTarget, Settings};
use crate::domain::now_millis;
use crate::engine::ports::{OutboxWaker, StatusCommit, Store, StoreError};
use crate::engine::status::StatusBoard;
use std::sync::Arc;
use std::time::Duration;
use tracker::{Change, Tracked};

/// Where the page's JSON is read.
#[derive(Debug, Clone)]
pub struct PageUrls {
    pub summary: url::Url,
    pub incidents: url::Url,
}

impl PageUrls {
    /// `base` is the page (`https://status.example.com`).
    pub fn new(base: &str) -> Result<Self, String> {
        let mut url =
            url::Url::parse(base).map_err(|_| "status.url is not a valid URL".to_string())?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let join = |p: &str| {
            url.join(p)
                .map_err(|_| "status.url is not a valid URL".to_string())
        };
        Ok(Self {
            summary: join("api/v2/summary.json")?,
            incidents: join("api/v2/incidents.json")?,
        })
    }
}

/// The watcher's settings.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// `None`: no page to watch (webhooks may still come).
    pub urls: Option<PageUrls>,
    pub poll: Duration,
    pub targets: Vec<AnnounceTarget>,
    pub login_components: Vec<String>,
    /// This instance's name in the lease.
    pub holder: String,
}

impl StatusConfig {
    /// From the settings; `page` is the status page's base URL (configured,
    /// or the simulator's).
    pub fn from_settings(settings: &Settings, page: Option<&str>) -> Result<Self, String> {
        let s = &settings.status;
        Ok(Self {
            urls: page.map(PageUrls::new).transpose()?,
            poll: Duration::from_secs(s.poll_secs.max(1)),
            targets: s.announce.clone(),
            login_components: s.login_components.clone(),
            holder: crate::lease::holder_name(),
        })
    }
}

/// The watcher and what it feeds. Cheap to share.
pub struct Status {
    store: Arc<dyn Store>,
    board: Arc<StatusBoard>,
    waker: Arc<dyn OutboxWaker>,
    http: reqwest::Client,
    config: StatusConfig,
}

impl Status {
    pub fn new(
        store: Arc<dyn Store>,
        board: Arc<StatusBoard>,
        waker: Arc<dyn OutboxWaker>,
        config: StatusConfig,
    ) -> Result<Arc<Self>, String> {
        let timeout = (config.poll / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Arc::new(Self {
            store,
            board,
            waker,
            http,
            config,
        }))
    }

    /// Reads the stored memory into the board.
    pub async fn refresh_board(&self) {
        match self.store.status_record().await {
            Ok(Some(r)) => self
                .board
                .set(Tracked::from_json(&r.state).now(&self.config.login_components)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "status: cannot read the stored status"),
        }
    }

    /// Applies `observe` to the stored memory and commits the result with
    /// its posts and notices; redone when another instance committed first.
    /// `validators` are the page's new `ETag` and `Last-Modified` (a poll).
    pub async fn apply(
        &self,
        validators: Option<(Option<String>, Option<String>)>,
        observe: impl Fn(&mut Tracked) -> Vec<Change>,
    ) -> Result<Vec<Change>, StoreError> {
        for _ in 0..8 {
            let stored = self.store.status_record().await?;
            let before = stored
                .as_ref()
                .map_or_else(Tracked::default, |r| Tracked::from_json(&r.state));
            let mut tracked = before.clone();
            let changes = observe(&mut tracked);
            let (outbox, notify) = announce::messages(&mut tracked, &changes, &self.config.targets);
            tracked.forget_old(now_millis());
            let (etag, last_modified) = match (&validators, &stored) {
                (Some(v), _) => v.clone(),
                (None, Some(r)) => (r.etag.clone(), r.last_modified.clone()),
                (None, None) => (None, None),
            };
            let same_validators = stored
                .as_ref()
                .is_some_and(|r| r.etag == etag && r.last_modified == last_modified);
            if tracked == before && same_validators {
                return Ok(changes);
            }
            let commit = StatusCommit {
                expected_version: stored.as_ref().map_or(0, |r| r.version),
                state: tracked.to_json(),
                etag,
                last_modified,
                at: now_millis(),
                outbox,
                notify,
            };
            if let Some(committed) = self.store.commit_status(commit).await? {
                for change in &changes {
                    tracing::info!(
                        incident = change.incident(),
                        ?change,
                        "status: incident changed"
                    );
                }
                if committed.notified > 0 {
                    tracing::info!(
                        subscribers = committed.notified,
                        "status: telling subscribers it is fixed"
                    );
                }
                for chat in &committed.chats {
                    self.waker.wake(chat);
                }
                self.board.set(tracked.now(&self.config.login_components));
                return Ok(changes);
            }
        }
        Err(StoreError::Backend(
            "the status kept changing under this pass".into(),
        ))
    }
}
