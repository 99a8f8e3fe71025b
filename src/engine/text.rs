//! Reading what users type: matching a button by its label or number, and
//! the capture validators.

use crate::domain::{Email, OneTimeCode};
use crate::flow::catalog::Validator;
use crate::flow::model::{Button, Capture};
use crate::flow::normalize;
use sha2::{Digest, Sha256};

const MAX_TEXT_CAPTURE: usize = 500;

fn words(s: &str) -> Vec<String> {
    normalize(s)
        .split(|c: char| c.is_whitespace() || c == '/' || c == ',')
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The button the user meant by typing its number, its label, or the first
/// words of its label ("no" for "No, still stuck"), if exactly one fits.
pub fn match_button<'b>(buttons: &'b [Button], normalized: &str) -> Option<&'b Button> {
    if buttons.is_empty() {
        return None;
    }
    let typed = normalized.trim().trim_end_matches(['.', '!', ')']);
    if let Ok(n) = typed.parse::<usize>() {
        return n.checked_sub(1).and_then(|i| buttons.get(i));
    }
    let typed_words = words(typed);
    if typed_words.is_empty() {
        return None;
    }
    if let Some(b) = buttons.iter().find(|b| words(&b.label) == typed_words) {
        return Some(b);
    }
    let mut prefixed = buttons.iter().filter(|b| {
        let label = words(&b.label);
        label.len() > typed_words.len() && label[..typed_words.len()] == typed_words[..]
    });
    match (prefixed.next(), prefixed.next()) {
        (Some(b), None) => Some(b),
        _ => None,
    }
}

const YES: &[&str] = &[
    "yes",
    "y",
    "yeah",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "correct",
    "right",
    "true",
    "of course",
    "si",
    "ja",
    "oui",
];
const NO: &[&str] = &[
    "no",
    "n",
    "nope",
    "nah",
    "not really",
    "false",
    "wrong",
    "incorrect",
    "nein",
    "non",
];

/// The captured value if `raw` is a valid answer. `redacted` is what may be
/// stored for free text.
pub fn validate(capture: &Capture, raw: &str, redacted: &str) -> Option<String> {
    let trimmed = raw.trim();
    match capture.validator {
        // Accept the address inside a sentence ("it's jane@x.com").
        Validator::Email => find_email(trimmed).map(|e| e.as_str().to_string()),
        Validator::Code6 => OneTimeCode::parse(trimmed).map(|c| c.expose().to_string()),
        Validator::YesNo => {
            let n = normalize(trimmed);
            let n = n.trim_end_matches(['.', '!']);
            if YES.contains(&n) {
                Some("yes".into())
            } else if NO.contains(&n) {
                Some("no".into())
            } else {
                None
            }
        }
        Validator::Choice => {
            let n = normalize(trimmed);
            if let Ok(i) = n.parse::<usize>() {
                return i
                    .checked_sub(1)
                    .and_then(|i| capture.choices.get(i))
                    .cloned();
            }
            capture.choices.iter().find(|c| **c == n).cloned()
        }
        Validator::Text => {
            let t = redacted.trim();
            (!t.is_empty() && t.chars().count() <= MAX_TEXT_CAPTURE).then(|| t.to_string())
        }
    }
}

/// What to say after a wrong answer when the flow does not say.
/// The first word of `text` that parses as an e-mail address, punctuation
/// around it ignored.
pub fn find_email(text: &str) -> Option<Email> {
    text.split_whitespace()
        .filter(|w| w.contains('@'))
        .find_map(|w| {
            Email::parse(w.trim_matches(|c: char| {
                matches!(
                    c,
                    ',' | '.' | ';' | ':' | '!' | '?' | '"' | '\'' | '(' | ')'
                )
            }))
            .ok()
        })
}

pub fn default_invalid(capture: &Capture) -> String {
    match capture.validator {
        Validator::Email => {
            "That doesn't look like an e-mail address. Please type it like name@example.com.".into()
        }
        Validator::Code6 => "Please type the 6 digits of the code, like 123456.".into(),
        Validator::YesNo => "Please answer yes or no.".into(),
        Validator::Choice => format!("Please choose one of: {}.", capture.choices.join(", ")),
        Validator::Text => {
            format!("Please describe it in a few words (up to {MAX_TEXT_CAPTURE} characters).")
        }
    }
}

/// A one-way name for a rate-limit bucket, so addresses are not stored.
pub fn bucket_hash(value: &str) -> String {
    let digest = Sha256::digest(format!("recoverbot:rate-limit:{value}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Target;

    fn buttons(labels: &[&str]) -> Vec<Button> {
        labels
            .iter()
            .map(|l| Button {
                label: l.to_string(),
                goto: Target {
                    flow: "f".into(),
                    step: "s".into(),
                },
                set: Default::default(),
                feedback: None,
            })
            .collect()
    }

    #[test]
    fn buttons_match_by_number_label_or_unique_first_words() {
        let b = buttons(&["Yes, I'm in", "No, still stuck", "Nothing yet"]);
        assert_eq!(match_button(&b, "2").unwrap().label, "No, still stuck");
        assert_eq!(
            match_button(&b, "nothing yet").unwrap().label,
            "Nothing yet"
        );
        assert_eq!(match_button(&b, "no").unwrap().label, "No, still stuck");
        assert_eq!(match_button(&b, "yes").unwrap().label, "Yes, I'm in");
        assert!(match_button(&b, "4").is_none());
        assert!(match_button(&b, "maybe").is_none());
    }

    #[test]
    fn an_address_is_found_inside_a_sentence() {
        let found = |t: &str| find_email(t).map(|e| e.as_str().to_string());
        assert_eq!(
            found("I forgot my password, my email is bob@example.com.").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(
            found("mail: <a.b@example.org>").as_deref(),
            Some("a.b@example.org")
        );
        assert_eq!(found("my password is hunter2"), None);
        assert_eq!(found("@twitter handle"), None);
    }

    #[test]
    fn email_captures_find_the_address_in_a_sentence() {
        let c = Capture {
            var: "email".into(),
            validator: Validator::Email,
            retries: 2,
            on_fail: Target {
                flow: "f".into(),
                step: "s".into(),
            },
            invalid: None,
            choices: vec![],
            branches: Default::default(),
        };
        assert_eq!(
            validate(&c, "it's Jane@Example.com.", "").as_deref(),
            Some("Jane@example.com")
        );
        assert_eq!(validate(&c, "no idea", ""), None);
    }
}
