//! Turning changes into messages: the channel posts (posted once, edited in
//! place as the incident moves, a follow-up on resolution) and the notice
//! each subscriber gets when it is fixed.

use super::tracker::{Change, Tracked, TrackedIncident};
use crate::config::{AnnounceTarget, Impact};
use crate::domain::ChatRef;
use crate::engine::{Envelope, Lane, Outbound};

/// The logical key of an incident's post in each target chat.
pub fn post_key(incident: &str) -> String {
    format!("status:{incident}")
}

fn target_id(t: &AnnounceTarget) -> String {
    format!("{}:{}", t.channel, t.chat_id)
}

/// Whether `target` wants to hear about `incident` as it stands.
pub fn wants(target: &AnnounceTarget, incident: &TrackedIncident) -> bool {
    Impact::parse(&incident.impact) >= target.min_impact
        && (target.components.is_empty()
            || incident.components.iter().any(|c| {
                target
                    .components
                    .iter()
                    .any(|f| f.trim().eq_ignore_ascii_case(c))
            }))
}

fn headline(i: &TrackedIncident) -> String {
    if i.is_resolved() {
        return format!("✅ Resolved: {}", i.name);
    }
    let mark = match Impact::parse(&i.impact) {
        Impact::Critical => "🔴",
        Impact::Major => "🟠",
        Impact::Minor => "🟡",
        Impact::None => "🔵",
    };
    format!("{mark} {}", i.name)
}

fn words(s: &str) -> String {
    let s = s.replace('_', " ");
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `12:04 UTC` from an RFC 3339 time, or nothing.
fn clock(at: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).format("%H:%M UTC").to_string())
}

/// The text of an incident's post.
pub fn post_text(i: &TrackedIncident) -> String {
    let mut lines = vec![headline(i)];
    let impact = if i.is_resolved() {
        "Resolved".to_string()
    } else {
        format!("{} impact · {}", words(&i.impact), words(&i.status))
    };
    lines.push(impact);
    if !i.components.is_empty() {
        lines.push(format!("Affected: {}", i.components.join(", ")));
    }
    if !i.update_body.is_empty() {
        let when = clock(&i.update_at)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        lines.push(String::new());
        lines.push(format!("Latest update{when}: {}", i.update_body));
    }
    if i.shortlink.starts_with("https://") || i.shortlink.starts_with("http://") {
        lines.push(String::new());
        lines.push(i.shortlink.clone());
    }
    lines.join("\n")
}

/// The short follow-up under a resolved post.
pub fn follow_up_text(i: &TrackedIncident) -> String {
    format!(
        "✅ {} is resolved. Logging in should work normally again; if it still does not, message me and I'll help.",
        i.name
    )
}

/// The personal notice to a subscriber.
pub fn subscriber_text(i: &TrackedIncident) -> String {
    let mut text = format!("✅ Fixed: {}.", i.name);
    if !i.update_body.is_empty() {
        text.push(' ');
        text.push_str(&i.update_body);
    }
    text.push_str(
        "\n\nYou asked me to tell you: you should be able to log in again now. If it still doesn't work, just write to me.",
    );
    text
}

/// The messages for `changes`, per target; marks the targets each incident
/// was posted to in `tracked`. Subscriber notices: one per resolved
/// incident (see [`subscriber_text`]).
pub fn messages(
    tracked: &mut Tracked,
    changes: &[Change],
    targets: &[AnnounceTarget],
) -> (Vec<Envelope>, Vec<(String, Outbound)>) {
    let mut outbox = Vec::new();
    let mut notify = Vec::new();
    for change in changes {
        let Some(incident) = tracked.incidents.get_mut(change.incident()) else {
            continue;
        };
        let key = post_key(&incident.id);
        let text = post_text(incident);
        for target in targets {
            let id = target_id(target);
            let to = ChatRef::new(target.channel, target.chat_id.clone());
            let posted = incident.announced.contains(&id);
            let bulk = |op| Envelope {
                to: to.clone(),
                op,
                lane: Lane::Bulk,
            };
            match change {
                Change::Resolved(_) if posted => {
                    outbox.push(bulk(Outbound::Edit {
                        key: key.clone(),
                        text: text.clone(),
                        buttons: Vec::new(),
                        repost: true,
                    }));
                    outbox.push(bulk(Outbound::message(
                        follow_up_text(incident),
                        Vec::new(),
                    )));
                }
                Change::Resolved(_) => {}
                _ if posted => outbox.push(bulk(Outbound::Edit {
                    key: key.clone(),
                    text: text.clone(),
                    buttons: Vec::new(),
                    repost: true,
                })),
                _ if wants(target, incident) => {
                    incident.announced.insert(id);
                    outbox.push(bulk(Outbound::Message {
                        text: text.clone(),
                        buttons: Vec::new(),
                        key: Some(key.clone()),
                    }));
                }
                _ => {}
            }
        }
        if let Change::Resolved(id) = change {
            notify.push((
                id.clone(),
                Outbound::message(subscriber_text(incident), Vec::new()),
            ));
        }
    }
    (outbox, notify)
}
