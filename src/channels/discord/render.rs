//! How the engine's output looks on Discord, as serenity builders: text cut
//! into messages of at most 2000 characters, buttons as message components
//! (the engine's opaque payload as `custom_id`) on the last of them, and
//! `allowed_mentions` empty on every message, so that nothing the bot sends
//! (which may quote what a user typed) can ping @everyone, a role or a user.

use crate::engine::OutButton;
use serenity::builder::{
    CreateActionRow, CreateAllowedMentions, CreateButton, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateMessage, EditInteractionResponse,
};
use serenity::model::application::ButtonStyle;

/// Discord's limit on a message's content, in Unicode code points.
pub const MAX_CONTENT_CHARS: usize = 2000;
const MAX_BUTTONS_PER_ROW: usize = 5;
const MAX_ROWS: usize = 5;
const MAX_LABEL_CHARS: usize = 80;
const MAX_CUSTOM_ID_CHARS: usize = 100;

/// Mentions nobody: `{"parse": [], "users": [], "roles": []}`.
pub fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// An interaction answer as JSON. serenity writes `"data": null` for the
/// answers without data (PONG, type 6); Discord's spec has no `data` there,
/// so it is left out.
pub fn response_json(response: &CreateInteractionResponse) -> serde_json::Value {
    let mut v = serde_json::to_value(response).unwrap_or_default();
    if let Some(map) = v.as_object_mut()
        && map.get("data").is_some_and(serde_json::Value::is_null)
    {
        map.remove("data");
    }
    v
}

/// One Discord message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content: String,
    pub buttons: Vec<OutButton>,
    /// Shown only to the user (interaction answers only).
    pub ephemeral: bool,
}

impl Part {
    fn rows(&self) -> Option<Vec<CreateActionRow>> {
        (!self.buttons.is_empty()).then(|| rows(&self.buttons))
    }

    fn content(&self) -> Option<String> {
        (!self.content.is_empty()).then(|| self.content.clone())
    }

    pub fn to_message(&self) -> CreateMessage {
        let mut m = CreateMessage::new().allowed_mentions(no_pings());
        if let Some(c) = self.content() {
            m = m.content(c);
        }
        if let Some(rows) = self.rows() {
            m = m.components(rows);
        }
        m
    }

    pub fn to_response(&self) -> CreateInteractionResponseMessage {
        let mut m = CreateInteractionResponseMessage::new().allowed_mentions(no_pings());
        if self.ephemeral {
            m = m.ephemeral(true);
        }
        if let Some(c) = self.content() {
            m = m.content(c);
        }
        if let Some(rows) = self.rows() {
            m = m.components(rows);
        }
        m
    }

    /// Replaces a deferred answer's "thinking..." with this part.
    pub fn to_edit_original(&self) -> EditInteractionResponse {
        EditInteractionResponse::new()
            .allowed_mentions(no_pings())
            .content(self.content.clone())
            .components(self.rows().unwrap_or_default())
    }
}

/// A text (and buttons) as messages: the text cut at 2000 characters, the
/// buttons on the last message.
pub fn parts(text: &str, buttons: &[OutButton], ephemeral: bool) -> Vec<Part> {
    let mut chunks = split(text, MAX_CONTENT_CHARS);
    if chunks.is_empty() && !buttons.is_empty() {
        chunks.push(String::new());
    }
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, content)| Part {
            content,
            buttons: if i + 1 == n {
                buttons.to_vec()
            } else {
                Vec::new()
            },
            ephemeral,
        })
        .collect()
}

/// Cuts `text` into pieces of at most `max` characters, at a paragraph
/// break, else a line break, else a space, else anywhere.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let limit = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..limit];
        let good = |i: &usize| *i >= limit / 2;
        let cut = window
            .rfind("\n\n")
            .filter(good)
            .or_else(|| window.rfind('\n').filter(good))
            .or_else(|| window.rfind(' ').filter(good))
            .unwrap_or(limit);
        out.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Buttons as action rows: five per row, five rows at most (Discord's
/// limits; more are dropped with a warning, which the flow checker should
/// already prevent), labels cut to 80 characters.
pub fn rows(buttons: &[OutButton]) -> Vec<CreateActionRow> {
    let max = MAX_BUTTONS_PER_ROW * MAX_ROWS;
    if buttons.len() > max {
        tracing::warn!(
            buttons = buttons.len(),
            "more buttons than Discord shows; dropping the rest"
        );
    }
    buttons
        .iter()
        .filter(|b| b.payload.chars().count() <= MAX_CUSTOM_ID_CHARS)
        .take(max)
        .enumerate()
        .map(|(i, b)| match b.link_url() {
            Some(url) => CreateButton::new_link(url).label(truncate(&b.label, MAX_LABEL_CHARS)),
            None => CreateButton::new(b.payload.clone())
                .label(truncate(&b.label, MAX_LABEL_CHARS))
                .style(if i == 0 {
                    ButtonStyle::Primary
                } else {
                    ButtonStyle::Secondary
                }),
        })
        .collect::<Vec<_>>()
        .chunks(MAX_BUTTONS_PER_ROW)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn button(i: usize) -> OutButton {
        OutButton {
            label: format!("Option {i}"),
            payload: format!("rb1:nonce:{i}"),
        }
    }

    #[test]
    fn long_text_is_cut_at_paragraphs_under_the_limit_and_buttons_go_last() {
        let para = "word ".repeat(150); // 750 chars
        let text = [para.trim(), para.trim(), para.trim(), para.trim()].join("\n\n");
        let ps = parts(&text, &[button(0)], false);
        assert!(ps.len() >= 2);
        for p in &ps {
            assert!(p.content.chars().count() <= MAX_CONTENT_CHARS);
        }
        assert!(ps[..ps.len() - 1].iter().all(|p| p.buttons.is_empty()));
        assert_eq!(ps.last().unwrap().buttons.len(), 1);
        let rejoined: String = ps
            .iter()
            .map(|p| p.content.clone())
            .collect::<Vec<_>>()
            .join("\n\n");
        assert_eq!(rejoined, text);
    }

    #[test]
    fn text_without_breaks_is_cut_anywhere_on_a_char_boundary() {
        let text = "é".repeat(4500);
        let pieces = split(&text, MAX_CONTENT_CHARS);
        assert_eq!(
            pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
    }

    #[test]
    fn buttons_make_rows_of_five_and_labels_fit() {
        let mut buttons: Vec<_> = (0..7).map(button).collect();
        buttons[6].label = "x".repeat(100);
        let rows = rows(&buttons);
        let v = serde_json::to_value(&rows).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["type"], 1);
        assert_eq!(v[0]["components"].as_array().unwrap().len(), 5);
        assert_eq!(v[0]["components"][0]["type"], 2);
        assert_eq!(v[0]["components"][0]["custom_id"], "rb1:nonce:0");
        assert_eq!(v[0]["components"][0]["style"], 1);
        let long = v[1]["components"][1]["label"].as_str().unwrap();
        assert_eq!(long.chars().count(), 80);
    }

    #[test]
    fn every_message_mentions_nobody() {
        let p = &parts("@everyone <@&1> hello", &[button(0)], false)[0];
        let empty = json!({"parse": [], "users": [], "roles": []});
        for v in [
            serde_json::to_value(p.to_message()).unwrap(),
            serde_json::to_value(p.to_response()).unwrap(),
            serde_json::to_value(p.to_edit_original()).unwrap(),
        ] {
            assert_eq!(v["allowed_mentions"], empty, "{v}");
            assert_eq!(v["content"], "@everyone <@&1> hello");
        }
    }

    #[test]
    fn answers_without_data_have_no_data_key() {
        assert_eq!(
            response_json(&CreateInteractionResponse::Acknowledge),
            json!({"type": 6})
        );
        assert_eq!(
            response_json(&CreateInteractionResponse::Pong),
            json!({"type": 1})
        );
        let update = CreateInteractionResponse::UpdateMessage(
            CreateInteractionResponseMessage::new().components(Vec::new()),
        );
        assert_eq!(response_json(&update)["data"]["components"], json!([]));
    }

    #[test]
    fn ephemeral_parts_carry_the_ephemeral_flag_and_links_are_link_buttons() {
        let p = &parts("That button has expired.", &[], true)[0];
        let v: Value = serde_json::to_value(p.to_response()).unwrap();
        assert_eq!(v["flags"], 64);
        let link = OutButton::link("Open", "https://example.com/x");
        let v = serde_json::to_value(rows(&[link])).unwrap();
        assert_eq!(v[0]["components"][0]["style"], 5);
        assert_eq!(v[0]["components"][0]["url"], "https://example.com/x");
    }
}
