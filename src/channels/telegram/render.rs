//! Engine output in Telegram's terms: HTML escaping, splitting long texts at
//! Telegram's 4096-character limit, inline keyboards, deep links.
//!
//! Every text the bot sends goes out with `parse_mode = HTML` and passes
//! through [`escape_html`] first, so no text (a flow's, a template value, or
//! anything a user typed) can open a tag or inject a link.

use crate::engine::OutButton;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Telegram's limit for one message text, in UTF-16 code units.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// What a message needs when the engine gave buttons but no text.
pub const BUTTONS_ONLY_TEXT: &str = "Please choose:";

/// Escapes `&`, `<` and `>`: all that Telegram's HTML mode needs in text.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The length of `text` once escaped, in UTF-16 code units (what Telegram
/// counts; never less than the number of characters).
fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '&' => 5,
            '<' | '>' => 4,
            _ => c.len_utf16(),
        })
        .sum()
}

/// Splits plain `text` into chunks whose escaped form fits in `limit`
/// UTF-16 units: at line ends where possible, else between words, else
/// between characters. Blank chunks are dropped (Telegram refuses them).
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(8);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    let push = |chunks: &mut Vec<String>, current: &mut String, len: &mut usize| {
        let trimmed = current.trim_end();
        if !trimmed.trim().is_empty() {
            chunks.push(trimmed.to_string());
        }
        current.clear();
        *len = 0;
    };
    for line in text.split_inclusive('\n') {
        let len = escaped_len(line);
        if current_len + len <= limit {
            current.push_str(line);
            current_len += len;
            continue;
        }
        push(&mut chunks, &mut current, &mut current_len);
        if len <= limit {
            current.push_str(line);
            current_len = len;
            continue;
        }
        // One line longer than a message: break it between words.
        for word in line.split_inclusive(' ') {
            let wlen = escaped_len(word);
            if current_len + wlen <= limit {
                current.push_str(word);
                current_len += wlen;
                continue;
            }
            push(&mut chunks, &mut current, &mut current_len);
            if wlen <= limit {
                current.push_str(word);
                current_len = wlen;
                continue;
            }
            // One word longer than a message: break it anywhere.
            for c in word.chars() {
                let clen = escaped_len(c.encode_utf8(&mut [0; 4]));
                if current_len + clen > limit {
                    push(&mut chunks, &mut current, &mut current_len);
                }
                current.push(c);
                current_len += clen;
            }
        }
    }
    push(&mut chunks, &mut current, &mut current_len);
    chunks
}

/// The engine's buttons as an inline keyboard, one button per row.
pub fn keyboard(buttons: &[OutButton]) -> Option<InlineKeyboardMarkup> {
    if buttons.is_empty() {
        return None;
    }
    Some(InlineKeyboardMarkup::new(buttons.iter().map(|b| {
        match b.link_url().and_then(|u| reqwest::Url::parse(u).ok()) {
            Some(url) => [InlineKeyboardButton::url(b.label.clone(), url)],
            None => [InlineKeyboardButton::callback(
                b.label.clone(),
                b.payload.clone(),
            )],
        }
    })))
}

/// `https://t.me/<bot>?start=<payload>`: opens a private chat with the bot,
/// which then receives `/start <payload>`.
pub fn deep_link(bot_username: &str, payload: &str) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse("https://t.me/").ok()?;
    url.set_path(bot_username);
    if !payload.is_empty() {
        url.query_pairs_mut().append_pair("start", payload);
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_and_links() {
        assert_eq!(
            escape_html(r#"<a href="https://evil">x</a> & <b>"#),
            r#"&lt;a href="https://evil"&gt;x&lt;/a&gt; &amp; &lt;b&gt;"#
        );
        assert_eq!(escape_html("plain"), "plain");
    }

    #[test]
    fn short_text_stays_whole() {
        assert_eq!(split_text("one\ntwo", 4096), ["one\ntwo"]);
        assert!(split_text("  \n ", 4096).is_empty());
    }

    #[test]
    fn long_text_splits_on_line_boundaries_within_the_limit() {
        let line = "x".repeat(99);
        let text = (0..101)
            .map(|_| line.clone())
            .collect::<Vec<_>>()
            .join("\n");
        let chunks = split_text(&text, 4096);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        for c in &chunks {
            assert!(escaped_len(c) <= 4096);
            assert!(c.split('\n').all(|l| l == line), "whole lines only");
        }
        assert_eq!(chunks.join("\n"), text);
    }

    #[test]
    fn escaping_counts_towards_the_limit() {
        let text = "&".repeat(2000);
        for c in split_text(&text, 4096) {
            assert!(escape_html(&c).encode_utf16().count() <= 4096);
        }
    }

    #[test]
    fn an_endless_line_and_word_are_still_split() {
        let words = "word ".repeat(2000);
        for c in split_text(&words, 4096) {
            assert!(escaped_len(&c) <= 4096);
        }
        let blob = "é🙂".repeat(3000);
        let chunks = split_text(&blob, 4096);
        assert!(chunks.iter().all(|c| c.encode_utf16().count() <= 4096));
        assert_eq!(chunks.concat(), blob);
    }

    #[test]
    fn deep_links_are_well_formed() {
        assert_eq!(
            deep_link("recover_bot", "reset").unwrap().as_str(),
            "https://t.me/recover_bot?start=reset"
        );
        assert_eq!(
            deep_link("recover_bot", "").unwrap().as_str(),
            "https://t.me/recover_bot"
        );
    }

    #[test]
    fn keyboards_have_one_button_per_row() {
        let kb = keyboard(&[
            OutButton {
                label: "A".into(),
                payload: "rb1:n:0".into(),
            },
            OutButton {
                label: "B".into(),
                payload: "rb1:n:1".into(),
            },
        ])
        .unwrap();
        assert_eq!(kb.inline_keyboard.len(), 2);
        assert!(keyboard(&[]).is_none());
    }
}
