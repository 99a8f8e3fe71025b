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
    chrono::DateTime::parse_from_rfc3339(at).ok().map(|t| {
        t.with_timezone(&chrono::Utc)
            .format("%H:%M UTC")
            .to_string()
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChannelKind;

    fn target(components: &[&str], min_impact: Impact) -> AnnounceTarget {
        AnnounceTarget {
            channel: ChannelKind::Telegram,
            chat_id: "-100".into(),
            components: components.iter().map(|c| c.to_string()).collect(),
            min_impact,
        }
    }

    fn incident(impact: &str, components: &[&str]) -> TrackedIncident {
        TrackedIncident {
            id: "i1".into(),
            name: "Login failures".into(),
            status: "investigating".into(),
            impact: impact.into(),
            components: components.iter().map(|c| c.to_string()).collect(),
            update_body: "Looking into it.".into(),
            update_at: "2026-12-01T12:04:00Z".into(),
            ..TrackedIncident::default()
        }
    }

    #[test]
    fn the_component_filter_and_the_impact_threshold_hold_back_what_they_should() {
        let login = target(&["login"], Impact::Minor);
        assert!(wants(&login, &incident("major", &["Login", "API"])));
        assert!(!wants(&login, &incident("major", &["Payments"])));
        let major = target(&[], Impact::Major);
        assert!(!wants(&major, &incident("minor", &["Login"])));
        assert!(wants(&major, &incident("critical", &["Website"])));
        let default = target(&[], Impact::Minor);
        assert!(!wants(&default, &incident("none", &["Login"])));
    }

    #[test]
    fn an_incident_is_posted_once_edited_then_resolved_with_a_follow_up() {
        let mut tracked = Tracked::default();
        tracked
            .incidents
            .insert("i1".into(), incident("major", &["Login"]));
        let mut payments = target(&["Payments"], Impact::Minor);
        payments.chat_id = "-200".into();
        let targets = [target(&[], Impact::Minor), payments];
        let (posts, notify) = messages(&mut tracked, &[Change::Opened("i1".into())], &targets);
        assert_eq!(posts.len(), 1, "the Payments-only target hears nothing");
        assert!(notify.is_empty());
        let Outbound::Message { text, key, .. } = &posts[0].op else {
            panic!("a post")
        };
        assert_eq!(key.as_deref(), Some("status:i1"));
        assert!(
            text.contains("Login failures") && text.contains("12:04 UTC"),
            "{text}"
        );
        assert_eq!(posts[0].lane, Lane::Bulk);

        let (edits, _) = messages(&mut tracked, &[Change::Updated("i1".into())], &targets);
        assert!(matches!(
            &edits[..],
            [Envelope {
                op: Outbound::Edit { repost: true, .. },
                ..
            }]
        ));

        tracked.incidents.get_mut("i1").unwrap().resolved_at = Some(1);
        let (done, notify) = messages(&mut tracked, &[Change::Resolved("i1".into())], &targets);
        assert_eq!(done.len(), 2, "the edit and its follow-up");
        let Outbound::Edit { text, .. } = &done[0].op else {
            panic!("an edit")
        };
        assert!(text.starts_with("✅ Resolved"), "{text}");
        assert_eq!(notify.len(), 1, "one notice for the subscribers");
    }
}
