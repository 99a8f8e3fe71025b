//! What the engine knows of the platform's status, without any I/O: a
//! [`StatusBoard`] that the status watcher keeps current from the store
//! (at most `status.poll_secs` old), read by every turn.
//!
//! The engine uses it three ways:
//! - the status actions (`platform_status`, `subscribe_status`,
//!   `unsubscribe_status`) answer from it;
//! - a step's `status = { login_incident = "..." }` condition branches on it;
//! - a flow marked `status_notice = true` (the login-help topics) opens
//!   with one line about a login incident and a "tell me when it's fixed"
//!   button while one is on.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// An incident as users are told about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNow {
    pub id: String,
    pub name: String,
    /// `investigating`, `identified`, `monitoring`.
    pub status: String,
    /// `none`, `minor`, `major`, `critical`.
    pub impact: String,
    pub latest_update: String,
    pub components: Vec<String>,
}

/// The status as of the watcher's last look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusNow {
    /// The page's own summary ("All Systems Operational").
    pub description: String,
    /// A login-related component is degraded or down, or an open incident
    /// touches one.
    pub login_affected: bool,
    /// The incident to tell users about: the login one first.
    pub incident: Option<IncidentNow>,
}

impl StatusNow {
    /// Which of [`STATUS_CONDITIONS`](crate::flow::catalog::STATUS_CONDITIONS) holds (`unknown` is the board's
    /// answer before the watcher's first look).
    pub fn condition(&self) -> &'static str {
        match (&self.incident, self.login_affected) {
            (_, true) => "login_incident",
            (Some(_), false) => "other_incident",
            (None, false) => "operational",
        }
    }
}

/// The shared, current [`StatusNow`]; `None` until the watcher's first look.
#[derive(Debug, Default)]
pub struct StatusBoard {
    now: RwLock<Option<Arc<StatusNow>>>,
}

impl StatusBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self) -> Option<Arc<StatusNow>> {
        self.now.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, status: StatusNow) {
        let mut now = self.now.write().unwrap_or_else(|p| p.into_inner());
        if now.as_deref() != Some(&status) {
            *now = Some(Arc::new(status));
        }
    }

    /// The condition a step's `status` branch tests.
    pub fn condition(&self) -> &'static str {
        self.get().map_or("unknown", |s| s.condition())
    }

    /// The open login incident, if any.
    pub fn login_incident(&self) -> Option<IncidentNow> {
        self.get()
            .filter(|s| s.login_affected)
            .and_then(|s| s.incident.clone())
    }
}
