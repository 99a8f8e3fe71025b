//! The Atlassian Statuspage v2 format (`/api/v2/summary.json`), with its
//! real field names and status values (the status watcher reads it).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub page: Page,
    pub status: PageStatus,
    pub components: Vec<Component>,
    pub incidents: Vec<Incident>,
    pub scheduled_maintenances: Vec<Incident>,
}

/// `/api/v2/incidents.json`: the page's incidents, resolved ones too,
/// newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incidents {
    pub page: Page,
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Page {
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageStatus {
    /// none, minor, major, critical (or maintenance).
    pub indicator: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Component {
    pub id: String,
    pub name: String,
    /// operational, degraded_performance, partial_outage, major_outage,
    /// under_maintenance.
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub showcase: Option<bool>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub page_id: Option<String>,
    #[serde(default)]
    pub group: Option<bool>,
    #[serde(default)]
    pub only_show_if_degraded: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incident {
    pub id: String,
    pub name: String,
    /// investigating, identified, monitoring, resolved, postmortem (or, for
    /// maintenances, scheduled, in_progress, verifying, completed).
    pub status: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub monitoring_at: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<String>,
    /// none, minor, major, critical, maintenance.
    pub impact: String,
    #[serde(default)]
    pub shortlink: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub page_id: String,
    #[serde(default)]
    pub incident_updates: Vec<IncidentUpdate>,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentUpdate {
    pub id: String,
    pub status: String,
    pub body: String,
    #[serde(default)]
    pub incident_id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub display_at: String,
    #[serde(default)]
    pub affected_components: Option<Vec<AffectedComponent>>,
    #[serde(default)]
    pub deliver_notifications: bool,
    #[serde(default)]
    pub custom_tweet: Option<String>,
    #[serde(default)]
    pub tweet_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AffectedComponent {
    pub code: String,
    pub name: String,
    pub old_status: String,
    pub new_status: String,
}
