//! The simulator's status page: its incidents rendered in the Statuspage v2
//! summary format.

use super::state::{SimIncident, World};
use crate::account_api::statuspage::*;
use crate::account_api::wire::rfc3339;

pub const PAGE_ID: &str = "sim0page0id";
pub const COMPONENTS: &[&str] = &[
    "Login",
    "Authentication",
    "Email delivery",
    "Website",
    "API",
    "Payments",
];

fn component_id(name: &str) -> String {
    format!("cmp_{}", name.to_lowercase().replace(' ', "_"))
}

fn impact_rank(impact: &str) -> u8 {
    match impact {
        "critical" => 3,
        "major" => 2,
        "minor" => 1,
        _ => 0,
    }
}

fn component_status(impact: &str) -> &'static str {
    match impact {
        "critical" | "major" => "major_outage",
        "minor" => "partial_outage",
        "maintenance" => "under_maintenance",
        _ => "degraded_performance",
    }
}

fn is_open(i: &SimIncident) -> bool {
    !matches!(i.status.as_str(), "resolved" | "postmortem")
}

/// Every incident, open and resolved, newest first
/// (`/api/v2/incidents.json`).
pub fn incidents(world: &World) -> Incidents {
    Incidents {
        page: page(world),
        incidents: world
            .incidents
            .iter()
            .rev()
            .map(|i| incident(world, i))
            .collect(),
    }
}

/// When the page last changed: its newest incident update (stable between
/// changes, so the page's validators are too).
fn last_change(world: &World) -> String {
    world
        .incidents
        .iter()
        .filter_map(|i| i.updates.last().map(|u| u.2).or(Some(i.created)))
        .max()
        .map_or_else(|| "2026-01-01T00:00:00Z".to_string(), rfc3339)
}

fn component(name: &str, status: &str, updated_at: &str) -> Component {
    Component {
        id: component_id(name),
        name: name.to_string(),
        status: status.to_string(),
        created_at: Some("2026-01-01T00:00:00Z".into()),
        updated_at: Some(updated_at.to_string()),
        position: COMPONENTS
            .iter()
            .position(|c| *c == name)
            .map(|p| p as i64 + 1),
        description: None,
        showcase: Some(false),
        start_date: None,
        group_id: None,
        page_id: Some(PAGE_ID.into()),
        group: Some(false),
        only_show_if_degraded: Some(false),
    }
}

fn page(world: &World) -> Page {
    Page {
        id: PAGE_ID.into(),
        name: "Example Platform (simulated)".into(),
        url: world.public_url.clone(),
        time_zone: Some("Etc/UTC".into()),
        updated_at: last_change(world),
    }
}

fn incident(world: &World, i: &SimIncident) -> Incident {
    let affected: Vec<Component> = i
        .components
        .iter()
        .map(|c| component(c, component_status(&i.impact), &last_change(world)))
        .collect();
    Incident {
        id: i.id.clone(),
        name: i.name.clone(),
        status: i.status.clone(),
        created_at: rfc3339(i.created),
        updated_at: i
            .updates
            .last()
            .map_or_else(|| rfc3339(i.created), |u| rfc3339(u.2)),
        monitoring_at: None,
        resolved_at: i.resolved.map(rfc3339),
        impact: i.impact.clone(),
        shortlink: format!("{}/incidents/{}", world.public_url, i.id),
        started_at: Some(rfc3339(i.created)),
        page_id: PAGE_ID.into(),
        incident_updates: i
            .updates
            .iter()
            .enumerate()
            .rev()
            .map(|(n, (status, body, at))| IncidentUpdate {
                id: format!("{}_u{n}", i.id),
                status: status.clone(),
                body: body.clone(),
                incident_id: i.id.clone(),
                created_at: rfc3339(*at),
                updated_at: rfc3339(*at),
                display_at: rfc3339(*at),
                affected_components: Some(
                    i.components
                        .iter()
                        .map(|c| AffectedComponent {
                            code: component_id(c),
                            name: c.clone(),
                            old_status: "operational".into(),
                            new_status: component_status(&i.impact).into(),
                        })
                        .collect(),
                ),
                deliver_notifications: true,
                custom_tweet: None,
                tweet_id: None,
            })
            .collect(),
        components: affected,
        scheduled_for: None,
        scheduled_until: None,
    }
}

pub fn summary(world: &World) -> Summary {
    let changed = last_change(world);
    let open: Vec<&SimIncident> = world.incidents.iter().filter(|i| is_open(i)).collect();
    let components: Vec<Component> = COMPONENTS
        .iter()
        .map(|name| {
            let worst = open
                .iter()
                .filter(|i| i.components.iter().any(|c| c.eq_ignore_ascii_case(name)))
                .max_by_key(|i| impact_rank(&i.impact));
            component(
                name,
                worst.map_or("operational", |i| component_status(&i.impact)),
                &changed,
            )
        })
        .collect();
    let worst = open
        .iter()
        .map(|i| impact_rank(&i.impact))
        .max()
        .unwrap_or(0);
    let (indicator, description) = match worst {
        3 => ("critical", "Major System Outage"),
        2 => ("major", "Partial System Outage"),
        1 => ("minor", "Minor Service Outage"),
        _ if !open.is_empty() => ("minor", "Minor Service Outage"),
        _ => ("none", "All Systems Operational"),
    };
    let incidents = open.iter().map(|i| incident(world, i)).collect();
    Summary {
        page: page(world),
        status: PageStatus {
            indicator: indicator.into(),
            description: description.into(),
        },
        components,
        incidents,
        scheduled_maintenances: Vec::new(),
    }
}
