//! The Atlassian Statuspage v2 format (`/api/v2/summary.json`), with its
//! real field names and status values, and a small reader for it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

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

/// What the bot needs to know from a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub description: String,
    /// An unresolved incident, or a degraded component, touches login.
    pub login_affected: bool,
    pub incident: Option<IncidentBrief>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentBrief {
    pub name: String,
    pub latest_update: String,
    pub components: Vec<String>,
}

impl Summary {
    /// Reads the summary against the components that matter for logging in.
    pub fn report(&self, login_components: &[String]) -> StatusReport {
        let is_login = |name: &str| {
            login_components
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
        };
        let open: Vec<&Incident> = self
            .incidents
            .iter()
            .filter(|i| !matches!(i.status.as_str(), "resolved" | "postmortem"))
            .collect();
        let components_of = |i: &Incident| -> Vec<String> {
            let mut names: Vec<String> = i.components.iter().map(|c| c.name.clone()).collect();
            for u in &i.incident_updates {
                for a in u.affected_components.iter().flatten() {
                    if !names.contains(&a.name) {
                        names.push(a.name.clone());
                    }
                }
            }
            names
        };
        let login_incident = open
            .iter()
            .find(|i| components_of(i).iter().any(|c| is_login(c)));
        let degraded_login = self
            .components
            .iter()
            .any(|c| is_login(&c.name) && c.status != "operational");
        let chosen = login_incident.or(open.first());
        StatusReport {
            description: self.status.description.clone(),
            login_affected: login_incident.is_some() || degraded_login,
            incident: chosen.map(|i| IncidentBrief {
                name: i.name.clone(),
                latest_update: i
                    .incident_updates
                    .iter()
                    .max_by(|a, b| a.display_at.cmp(&b.display_at))
                    .map(|u| u.body.clone())
                    .unwrap_or_default(),
                components: components_of(i),
            }),
        }
    }
}

/// Reads a Statuspage site.
#[derive(Debug, Clone)]
pub struct StatusReader {
    http: reqwest::Client,
    summary_url: url::Url,
}

impl StatusReader {
    /// `base` is the site (`https://status.example.com`); the summary is
    /// read from `<base>/api/v2/summary.json`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        let mut url =
            url::Url::parse(base).map_err(|_| "status.url is not a valid URL".to_string())?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let summary_url = url
            .join("api/v2/summary.json")
            .map_err(|_| "status.url is not a valid URL".to_string())?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Self { http, summary_url })
    }

    #[tracing::instrument(skip_all, fields(endpoint = "GET /api/v2/summary.json"))]
    pub async fn summary(&self) -> Result<Summary, String> {
        let response = self
            .http
            .get(self.summary_url.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    "could not reach the status page".to_string()
                }
            })?;
        if !response.status().is_success() {
            return Err(format!(
                "status page answered HTTP {}",
                response.status().as_u16()
            ));
        }
        response
            .json::<Summary>()
            .await
            .map_err(|_| "the status page is not in Statuspage v2 format".to_string())
    }
}
