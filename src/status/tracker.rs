//! What the watcher remembers of the status page, and how a new look at it
//! (a summary, the incident list, a webhook) changes that memory. Pure: no
//! I/O, so every rule here is tested directly.

use crate::account_api::statuspage::{Incident, Summary};
use crate::domain::Millis;
use crate::engine::status::{IncidentNow, StatusNow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Resolved incidents are forgotten this long after their resolution
/// (a replayed webhook older than that would be news again).
const FORGET_RESOLVED_MS: Millis = 14 * 24 * 3_600_000;

/// The watcher's memory, stored as JSON in the `status_page` row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The page's summary line ("All Systems Operational").
    #[serde(default)]
    pub description: String,
    /// Component name → status (`operational`, `major_outage`, ...).
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// By incident id: the open ones and the recently resolved ones.
    #[serde(default)]
    pub incidents: BTreeMap<String, TrackedIncident>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedIncident {
    pub id: String,
    pub name: String,
    pub status: String,
    pub impact: String,
    #[serde(default)]
    pub shortlink: String,
    #[serde(default)]
    pub components: Vec<String>,
    /// The newest update: its id, text and time.
    #[serde(default)]
    pub update_id: String,
    #[serde(default)]
    pub update_body: String,
    #[serde(default)]
    pub update_at: String,
    /// When it was seen resolved.
    #[serde(default)]
    pub resolved_at: Option<Millis>,
    /// The announcement targets it was posted to (`telegram:-100...`).
    #[serde(default)]
    pub announced: BTreeSet<String>,
}

impl TrackedIncident {
    pub fn is_resolved(&self) -> bool {
        self.resolved_at.is_some()
    }
}

/// What a look at the page changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An incident not seen before, still open.
    Opened(String),
    /// A new update, status, impact or component list.
    Updated(String),
    /// Resolved (or gone from the page).
    Resolved(String),
}

impl Change {
    pub fn incident(&self) -> &str {
        match self {
            Self::Opened(id) | Self::Updated(id) | Self::Resolved(id) => id,
        }
    }
}

fn is_resolved_status(status: &str) -> bool {
    matches!(status, "resolved" | "postmortem" | "completed")
}

/// The components an incident touches: its own list and those its updates
/// name, in order, without repeats.
fn components_of(i: &Incident) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let named = i.components.iter().map(|c| c.name.clone()).chain(
        i.incident_updates
            .iter()
            .flat_map(|u| u.affected_components.iter().flatten())
            .map(|a| a.name.clone()),
    );
    for name in named {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

impl Tracked {
    pub fn from_json(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "status: the stored state is unreadable; starting afresh");
            Self::default()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Takes in one incident as the page shows it now.
    pub fn observe_incident(&mut self, i: &Incident, now: Millis) -> Option<Change> {
        let latest = i
            .incident_updates
            .iter()
            .max_by(|a, b| a.display_at.cmp(&b.display_at).then(a.id.cmp(&b.id)));
        let resolved = is_resolved_status(&i.status);
        let seen = TrackedIncident {
            id: i.id.clone(),
            name: i.name.clone(),
            status: i.status.clone(),
            impact: i.impact.clone(),
            shortlink: i.shortlink.clone(),
            components: components_of(i),
            update_id: latest.map(|u| u.id.clone()).unwrap_or_default(),
            update_body: latest.map(|u| u.body.clone()).unwrap_or_default(),
            update_at: latest.map(|u| u.display_at.clone()).unwrap_or_default(),
            resolved_at: resolved.then_some(now),
            announced: BTreeSet::new(),
        };
        match self.incidents.get_mut(&i.id) {
            // Never seen open: nothing to announce.
            None if resolved => None,
            None => {
                self.incidents.insert(i.id.clone(), seen);
                Some(Change::Opened(i.id.clone()))
            }
            // Already over: a replay or a late duplicate changes nothing.
            Some(known) if known.is_resolved() => None,
            Some(known) => {
                let announced = std::mem::take(&mut known.announced);
                let changed = known.update_id != seen.update_id
                    || known.status != seen.status
                    || known.impact != seen.impact
                    || known.components != seen.components
                    || known.name != seen.name;
                *known = TrackedIncident { announced, ..seen };
                if resolved {
                    Some(Change::Resolved(i.id.clone()))
                } else {
                    changed.then(|| Change::Updated(i.id.clone()))
                }
            }
        }
    }

    /// Takes in a whole summary. Open incidents the summary no longer lists
    /// are returned for a closer look (`incidents.json`): see
    /// [`Tracked::vanished`].
    pub fn observe_summary(&mut self, summary: &Summary, now: Millis) -> Vec<Change> {
        self.description = summary.status.description.clone();
        self.components = summary
            .components
            .iter()
            .filter(|c| c.group != Some(true))
            .map(|c| (c.name.clone(), c.status.clone()))
            .collect();
        summary
            .incidents
            .iter()
            .filter_map(|i| self.observe_incident(i, now))
            .collect()
    }

    /// Open incidents that `summary` does not list any more.
    pub fn vanished(&self, summary: &Summary) -> Vec<String> {
        self.incidents
            .values()
            .filter(|t| !t.is_resolved() && !summary.incidents.iter().any(|i| i.id == t.id))
            .map(|t| t.id.clone())
            .collect()
    }

    /// An incident gone from the page without a word: resolved.
    pub fn close_silently(&mut self, id: &str, now: Millis) -> Option<Change> {
        let known = self.incidents.get_mut(id).filter(|t| !t.is_resolved())?;
        known.status = "resolved".into();
        known.update_body = "This incident has been resolved.".into();
        known.resolved_at = Some(now);
        Some(Change::Resolved(id.to_string()))
    }

    /// Drops resolved incidents old enough to forget.
    pub fn forget_old(&mut self, now: Millis) {
        self.incidents
            .retain(|_, t| t.resolved_at.is_none_or(|at| now - at < FORGET_RESOLVED_MS));
    }

    /// What users are told, judged against the login-related components.
    pub fn now(&self, login_components: &[String]) -> StatusNow {
        let is_login = |name: &str| {
            login_components
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
        };
        let open: Vec<&TrackedIncident> = {
            let mut open: Vec<&TrackedIncident> = self
                .incidents
                .values()
                .filter(|t| !t.is_resolved())
                .collect();
            open.sort_by(|a, b| a.update_at.cmp(&b.update_at).reverse());
            open
        };
        let login_incident = open
            .iter()
            .find(|t| t.components.iter().any(|c| is_login(c)));
        let degraded_login = self
            .components
            .iter()
            .any(|(name, status)| is_login(name) && status != "operational");
        let chosen = login_incident.or(open.first());
        StatusNow {
            description: if self.description.is_empty() {
                "All Systems Operational".into()
            } else {
                self.description.clone()
            },
            login_affected: login_incident.is_some() || degraded_login,
            incident: chosen.map(|t| IncidentNow {
                id: t.id.clone(),
                name: t.name.clone(),
                status: t.status.clone(),
                impact: t.impact.clone(),
                latest_update: t.update_body.clone(),
                components: t.components.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account_api::statuspage::IncidentUpdate;

    fn incident(status: &str, updates: &[(&str, &str)]) -> Incident {
        Incident {
            id: "inc".into(),
            name: "Login failures".into(),
            status: status.into(),
            created_at: String::new(),
            updated_at: String::new(),
            monitoring_at: None,
            resolved_at: None,
            impact: "major".into(),
            shortlink: String::new(),
            started_at: None,
            page_id: String::new(),
            incident_updates: updates
                .iter()
                .map(|(id, at)| IncidentUpdate {
                    id: id.to_string(),
                    status: status.into(),
                    body: format!("update {id}"),
                    incident_id: "inc".into(),
                    created_at: at.to_string(),
                    updated_at: at.to_string(),
                    display_at: at.to_string(),
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                })
                .collect(),
            components: Vec::new(),
            scheduled_for: None,
            scheduled_until: None,
        }
    }

    #[test]
    fn an_incident_opens_updates_resolves_and_a_replay_changes_nothing() {
        let mut t = Tracked::default();
        let open = incident("investigating", &[("u1", "2026-12-01T10:00:00Z")]);
        assert_eq!(
            t.observe_incident(&open, 1),
            Some(Change::Opened("inc".into()))
        );
        assert_eq!(t.observe_incident(&open, 2), None, "same update again");
        let later = incident(
            "identified",
            &[
                ("u1", "2026-12-01T10:00:00Z"),
                ("u2", "2026-12-01T10:30:00Z"),
            ],
        );
        assert_eq!(
            t.observe_incident(&later, 3),
            Some(Change::Updated("inc".into()))
        );
        assert_eq!(t.incidents["inc"].update_body, "update u2");
        let fixed = incident("resolved", &[("u3", "2026-12-01T11:00:00Z")]);
        assert_eq!(
            t.observe_incident(&fixed, 4),
            Some(Change::Resolved("inc".into()))
        );
        assert_eq!(t.observe_incident(&fixed, 5), None, "a replayed resolution");
        assert_eq!(t.observe_incident(&open, 6), None, "a stale replay");
    }

    #[test]
    fn an_incident_first_seen_resolved_is_not_news() {
        let mut t = Tracked::default();
        assert_eq!(t.observe_incident(&incident("resolved", &[]), 1), None);
        assert!(t.incidents.is_empty());
    }

    #[test]
    fn the_login_incident_is_what_users_hear_about() {
        let mut t = Tracked::default();
        let mut other = incident("investigating", &[]);
        other.id = "pay".into();
        other.name = "Slow payouts".into();
        other.components = vec![];
        t.observe_incident(&other, 1);
        t.incidents.get_mut("pay").unwrap().components = vec!["Payments".into()];
        let login = ["Login".to_string()];
        let now = t.now(&login);
        assert_eq!(now.condition(), "other_incident");
        t.components.insert("Login".into(), "major_outage".into());
        assert_eq!(t.now(&login).condition(), "login_incident");
    }
}
