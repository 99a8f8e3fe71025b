//! Secret hygiene: finds text that looks like a password, a one-time code, a
//! backup code or an API token, and replaces it before anything is stored or
//! logged. E-mail addresses are masked too (personal data, not a secret: no
//! warning for those).
//!
//! It errs on the side of redacting: a harmless word lost from a transcript
//! costs nothing, a password kept in one is a breach.

use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    Password,
    OneTimeCode,
    BackupCode,
    ApiToken,
}

impl SecretKind {
    fn placeholder(self) -> &'static str {
        match self {
            Self::Password => "[redacted password]",
            Self::OneTimeCode => "[redacted code]",
            Self::BackupCode => "[redacted backup code]",
            Self::ApiToken => "[redacted token]",
        }
    }
}

/// Text with secrets replaced, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    pub found: Vec<SecretKind>,
}

impl Redacted {
    pub fn has_secret(&self) -> bool {
        !self.found.is_empty()
    }

    /// Whether anything other than a one-time code was found.
    pub fn has_secret_besides_codes(&self) -> bool {
        self.found.iter().any(|k| *k != SecretKind::OneTimeCode)
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static pattern")
}

/// "password is X", "pw: X", "my pin = X" (the value is group 2).
static PASSWORD_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(pass ?words?|passwd|pwd|pw|pass|passcode|passphrase|pin|pass ?w(?:or|ro|o)r?d|pasword)\b(?:\s+(?:is|was|are|=|:|-|would be|should be)\s*|\s*[:=]\s*)["'“]?([^\s"'”]+)"#,
    )
});
/// Words that follow "password is" without being one.
const NOT_A_PASSWORD: &[&str] = &[
    "not",
    "wrong",
    "incorrect",
    "invalid",
    "correct",
    "right",
    "rejected",
    "expired",
    "too",
    "the",
    "a",
    "an",
    "my",
    "still",
    "being",
    "definitely",
    "fine",
    "ok",
    "okay",
    "working",
    "broken",
    "same",
    "new",
    "old",
    "reset",
    "changed",
    "forgotten",
    "lost",
    "unknown",
    "empty",
    "long",
    "short",
    "strong",
    "weak",
    "saved",
    "case",
    "sensitive",
    "accepted",
    "never",
    "always",
    "no",
    "yes",
    "it",
    "that",
    "this",
    "there",
    "here",
    "just",
    "also",
    "really",
    "so",
    "very",
    "gone",
    "missing",
    "required",
    "locked",
    "blocked",
    "bad",
    "good",
];

static API_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{20,}\b",
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}\b",
        r"|\bAKIA[0-9A-Z]{16}\b",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
        r"|\b\d{8,10}:[A-Za-z0-9_-]{30,}\b",
        r"|\b(?:Bearer|bearer|token|Token)\s+[A-Za-z0-9._~+/=-]{16,}",
    ))
});
/// Long random-looking strings: letters and digits mixed, 24+ characters.
static LONG_RANDOM: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Za-z0-9_-]{24,}\b"));
static BACKUP_CODE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:[a-z0-9]{4,5}[- ][a-z0-9]{4,5}(?:[- ][a-z0-9]{4,5})?|\d{8,10})\b")
});
/// Six digits, optionally split 3-3: the shape of every one-time code we ask
/// for. Shorter or longer numbers are times, years, order numbers.
static ONE_TIME_CODE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:\d{6}|\d{3}[ -]\d{3})\b"));
/// Any `local@domain.tld`, Unicode included (the same breadth `Email::parse`
/// accepts), so no address escapes masking.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"([^\s@<>()\[\],;:"'`]+)@([^\s@<>()\[\],;:"'`]+\.[^\s@<>()\[\],;:"'`.]+)"#)
});
static URL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bhttps?://\S+"));

/// Redacts secrets and masks e-mail addresses.
pub fn redact(text: &str) -> Redacted {
    let mut found = Vec::new();
    // Addresses first, so digits inside one ("12345678@qq.com") are not
    // taken for a code.
    let mut out = EMAIL
        .replace_all(text, |c: &regex::Captures<'_>| {
            let first: String = c[1].chars().take(1).collect();
            format!("{first}***@{}", &c[2])
        })
        .into_owned();

    // Phrases first: they say outright that a password follows.
    out = PASSWORD_PHRASE
        .replace_all(&out, |c: &regex::Captures<'_>| {
            let value = c.get(2).map_or("", |m| m.as_str());
            let bare = value
                .trim_end_matches(['.', ',', '!', '?', ';'])
                .to_lowercase();
            if bare.is_empty() || NOT_A_PASSWORD.contains(&bare.as_str()) {
                c[0].to_string()
            } else {
                found.push(SecretKind::Password);
                let whole = &c[0];
                let keep = &whole[..whole.len() - value.len()];
                format!("{keep}{}", SecretKind::Password.placeholder())
            }
        })
        .into_owned();

    let mut replace =
        |out: &mut String, pattern: &Regex, kind: SecretKind, keep: &dyn Fn(&str) -> bool| {
            let mut hit = false;
            let replaced = pattern
                .replace_all(out, |c: &regex::Captures<'_>| {
                    if keep(&c[0]) {
                        c[0].to_string()
                    } else {
                        hit = true;
                        kind.placeholder().to_string()
                    }
                })
                .into_owned();
            if hit {
                found.push(kind);
            }
            *out = replaced;
        };
    let in_placeholder = |s: &str| s.contains("redacted");
    replace(&mut out, &API_TOKEN, SecretKind::ApiToken, &|_| false);
    replace(&mut out, &LONG_RANDOM, SecretKind::ApiToken, &|s| {
        !(s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(|c| c.is_ascii_alphabetic()))
    });
    replace(&mut out, &BACKUP_CODE, SecretKind::BackupCode, &|s| {
        // Needs a digit ("this that" is not a code); groups split by a space
        // all need one ("since 2023 help" is not a code either).
        let has_digit = |g: &str| g.chars().any(|c| c.is_ascii_digit());
        !has_digit(s) || in_placeholder(s) || (s.contains(' ') && !s.split(' ').all(has_digit))
    });
    replace(&mut out, &ONE_TIME_CODE, SecretKind::OneTimeCode, &|s| {
        // Four-digit years are not codes.
        s.len() == 4 && (s.starts_with("19") || s.starts_with("20"))
    });

    // Standalone tokens that look like passwords (mixed character classes).
    let mut password_token = false;
    let words: Vec<String> = out
        .split(' ')
        .map(|w| {
            if looks_like_password(w) {
                password_token = true;
                SecretKind::Password.placeholder().to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    if password_token {
        found.push(SecretKind::Password);
        out = words.join(" ");
    }

    found.sort();
    found.dedup();
    Redacted { text: out, found }
}

fn looks_like_password(word: &str) -> bool {
    let w =
        word.trim_matches(|c: char| matches!(c, '.' | ',' | '!' | '?' | '"' | '\'' | '(' | ')'));
    let len = w.chars().count();
    if !(8..=64).contains(&len) || w.contains('@') || URL.is_match(w) || w.contains("redacted") {
        return false;
    }
    let lower = w.chars().any(|c| c.is_lowercase());
    let upper = w.chars().any(|c| c.is_uppercase());
    let letter = lower || upper;
    let digit = w.chars().any(|c| c.is_ascii_digit());
    // Hyphens, dots and underscores join ordinary words ("COVID-19",
    // "v2.1.0"); other symbols are what password rules ask for.
    let special = w
        .chars()
        .any(|c| !c.is_alphanumeric() && !matches!(c, '-' | '.' | '_' | '\''));
    (special && digit && letter) || (upper && lower && digit && len >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stated_password_is_redacted() {
        let r = redact("my password is Tr0ub4dor&3xyz");
        assert_eq!(r.text, "my password is [redacted password]");
        assert_eq!(r.found, [SecretKind::Password]);
        let r = redact("pw: hunter2");
        assert!(!r.text.contains("hunter2"), "{}", r.text);
    }

    #[test]
    fn complaints_about_a_password_are_not_redacted() {
        for text in [
            "my password is wrong",
            "password is not working",
            "I forgot my password",
            "my password was rejected!",
            "can't log in since 2023",
        ] {
            let r = redact(text);
            assert!(!r.has_secret(), "{text} -> {r:?}");
            assert_eq!(r.text, text);
        }
    }

    #[test]
    fn a_lone_password_like_word_is_redacted() {
        let r = redact("Tr0ub4dor&3xyz");
        assert_eq!(r.text, "[redacted password]");
    }

    #[test]
    fn codes_backup_codes_and_tokens_are_redacted() {
        assert_eq!(
            redact("the code is 123 456").found,
            [SecretKind::OneTimeCode]
        );
        assert!(!redact("code 654321 fails").text.contains("654321"));
        assert_eq!(redact("backup: abcd-1234").found, [SecretKind::BackupCode]);
        let r = redact("token sk_live_51Habcdefghijklmnop");
        assert_eq!(r.found, [SecretKind::ApiToken]);
        assert!(!r.text.contains("sk_live"));
        let r = redact("here 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_ bot");
        assert!(!r.text.contains("AAHdq"), "{}", r.text);
    }

    #[test]
    fn email_addresses_are_masked_without_counting_as_secrets() {
        let r = redact("I use jane.doe@example.com");
        assert_eq!(r.text, "I use j***@example.com");
        assert!(!r.has_secret());
        let r = redact("mine is 12345678@qq.com, or josé@münchen.de");
        assert_eq!(r.text, "mine is 1***@qq.com, or j***@münchen.de");
        assert!(!r.has_secret(), "{r:?}");
    }

    #[test]
    fn everyday_numbers_and_words_are_not_secrets() {
        for text in [
            "meet at 1530",
            "error 5001 on the page",
            "my iPhone13 shows an error",
            "COVID-19 closed the office",
            "version v2.10.3 of the app",
            "order 1234567 never arrived",
        ] {
            let r = redact(text);
            assert!(!r.has_secret(), "{text} -> {r:?}");
            assert_eq!(r.text, text);
        }
    }

    #[test]
    fn strong_looking_passwords_are_still_caught() {
        for pw in ["Tr0ub4dor&3xyz", "Summer2024!", "CorrectHorse99Battery"] {
            let r = redact(&format!("it is {pw} ok"));
            assert!(r.found.contains(&SecretKind::Password), "{pw}: {r:?}");
        }
    }
}
