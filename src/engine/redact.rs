//! Secret hygiene: finds text that looks like a password, a one-time code, a
//! backup code, an API token or a card number, and replaces it before
//! anything is stored or logged. E-mail addresses are masked too (personal
//! data, not a secret: no warning for those). Measured against the corpus in
//! `tests/data/redaction_*` (see `docs/benchmarks.md`).
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
    Card,
}

impl SecretKind {
    fn placeholder(self) -> &'static str {
        match self {
            Self::Password => "[redacted password]",
            Self::OneTimeCode => "[redacted code]",
            Self::BackupCode => "[redacted backup code]",
            Self::ApiToken => "[redacted token]",
            Self::Card => "[redacted card number]",
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
    "hacked",
    "stolen",
    "compromised",
    "leaked",
    "stored",
    "shared",
    "exposed",
    "given",
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
/// Two groups of four digits: the usual backup-code print.
static FOUR_FOUR: LazyLock<Regex> = LazyLock::new(|| re(r"^\d{4}[ -]\d{4}$"));
/// What joins a keyword to its value: "is", ":", "=".
static CONNECTOR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(\b(is|was|are|ist|war|es|est|è|é|hai|là|iz|lautet)\b|是|は|[:=→]|->|=>|\s-\s)")
});

/// Digits with single spaces, dashes or dots between them.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"\d(?:[ .\-]{0,3}\d)*"));
/// Letter-and-digit groups of 4-5 joined by "-" or " " (backup codes).
static GROUPED_CODE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b[A-Za-z0-9]{2,5}(?:-[A-Za-z0-9]{2,5}){1,3}\b|\b[A-Za-z0-9]{2,5}(?: [A-Za-z0-9]{2,5}){1,3}\b",
    )
});
/// The message talks about a code, so code-shaped text is one.
static CODE_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(backup|bakup|recovery|emergency|one[- ]time|2fa|otp|verification|security|login|sms|auth\w*)\s*(code|codes|key|keys)\b|\b(code|codes)\b",
    )
});
static SHORT_CODE_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(\bcodes?|\botp|\b2fa|\bpin|\bcvv2?|\bcvc|\bcid|\bshows|\bgot|\bsent)\b[^0-9]{0,25}$")
});
static BACKUP_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(backup|bakup|recovery|emergency)\b.{0,40}$"));
/// Numbers that are references, not secrets.
static ID_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(order|ticket|invoice|inv|case|contract|id|ref|reference|number|no|nr|phone|tel|mobile|call|whatsapp|version|build|error|err|since|on|at)\b[^a-z0-9]{0,4}(#|no\.?|nr\.?|number)?\s*$",
    )
});
static CVV_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(cvv2?|cvc|cid|pin)\b[^0-9]{0,15}$"));
/// An IBAN (country, check digits, then groups).
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"));
/// Any word of a password keyword, to know the message talks about one.
static PASSWORD_TALK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(pass ?w(?:or|ro|o|r)?(?:d|t)s?|pwd|pw|passwort|senha|contraseña|lösenord|parol|hasło)\b|mot de passe|密码|пароль",
    )
});
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"^\d{3}-\d{2}-\d{4}$"));
/// A phrase that introduces a secret, in several languages; group 2 is the
/// connector ("is", ":", "=") when there is one.
static INTRO: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(pass ?w(?:or|ro|o|r)?(?:d|t)s?|passowrd|pasword|pass word|pswd|pwd|pw|pass|passcode|passphrase|mdp|kennwort|lösenord|losenord|parol|salasana|wachtwoord|puk|mot de passe|contraseña|contrasena|senha|hasło|haslo|şifrem?|sifrem?|kata sandi|mật khẩu|пароль|密码|密碼|パスワード|비밀번호",
        r"|backup codes?|bakup codes?|recovery codes?|emergency codes?|security (?:question )?answer|secret answer|security word|answer to [^.]{0,40}?|maiden name|first pet|antwort|recovery phrase|seed phrase|passport number|tax id|ssn|pin(?: code)?|cvv2?|cvc|cid)",
        r"(?:\s+(?:i (?:used|use|set|have|typed)|you (?:gave|sent)|of [\w ]{0,20}?|on [\w ]{0,20}?|for [\w ]{0,20}?|của tôi|saya|it|its|(?:ist|war|es|est|è|é|hai|là|is|was|are|lautet|would be|should be)\b|=|:|-|->|→|=>)?)*",
        r"(\s*(?:(?:is|was|are|ist|war|es|est|è|é|hai|là|lautet)\b|是|は|=|:|-|->|→|=>)\s*|\s+)",
    ))
});
/// Any `local@domain.tld`, Unicode included (the same breadth `Email::parse`
/// accepts), so no address escapes masking.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"([^\s@<>()\[\],;:"'`]+)@([^\s@<>()\[\],;:"'`]+\.[^\s@<>()\[\],;:"'`.]+)"#)
});
static URL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bhttps?://\S+"));

/// Redacts secrets and masks e-mail addresses.
///
/// Every detector marks byte spans of the original text; overlapping spans
/// merge, and each is replaced once. Context and shape work together: a
/// phrase that introduces a secret ("password is", "pwd", "mot de passe :",
/// "backup code") takes the value up to the end of its clause, and shapes
/// (codes in any grouping, tokens, Luhn-valid card numbers, high-entropy
/// words) are caught without one.
pub fn redact(text: &str) -> Redacted {
    let emails: Vec<(usize, usize)> = EMAIL
        .find_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    let in_email = |a: usize, b: usize| emails.iter().any(|&(s, e)| a < e && s < b);
    let mut spans: Vec<(usize, usize, SecretKind)> = Vec::new();
    let add = |a: usize, b: usize, kind: SecretKind, spans: &mut Vec<_>| {
        if a < b {
            spans.push((a, b, kind));
        }
    };
    // 1. Introduced values.
    for m in INTRO.captures_iter(text) {
        let whole = m.get(0).expect("match");
        let kind = intro_kind(m.get(1).map_or("", |g| g.as_str()));
        let (a, b) = clause_after(text, whole.end());
        let value = &text[a..b];
        let first = value
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        let keyword_end = m.get(1).map_or(whole.start(), |g| g.end());
        let connected = CONNECTOR.is_match(&text[keyword_end..whole.end()]);
        let quoted = text[whole.end()..a].contains(['"', '\'', '“', '‘', '«']);
        if value.trim().is_empty() || (!quoted && describes_it(value, &first)) {
            // "my password is wrong": unless a value follows a colon later
            // in the clause ("is my name + birthday: Sara0312").
            if let Some(colon) = value.find(": ") {
                let (a, b) = clause_after(text, a + colon + 1);
                add(a, b, kind, &mut spans);
            }
            continue;
        }
        // Without "is" or ":" the next word must look like a secret:
        // "pwd hunter2" is one, "password reset" is not.
        if !connected
            && !value
                .split_whitespace()
                .next()
                .is_some_and(has_digit_or_symbol)
        {
            // "has a space in it: green tea 42": the value after a colon.
            if let Some(colon) = value.find(": ") {
                let (a, b) = clause_after(text, a + colon + 1);
                add(a, b, kind, &mut spans);
            }
            continue;
        }
        add(a, b, kind, &mut spans);
    }
    // An address followed by ":" or "/" and a value: a login pasted whole.
    for &(_, e) in &emails {
        let rest = &text[e..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = trimmed.strip_prefix([':', '/', '|'])
            && !after.trim().is_empty()
        {
            let a = e + (rest.len() - after.len());
            let (a, b) = clause_after(text, a);
            add(a, b, SecretKind::Password, &mut spans);
        }
    }
    // 2. Shapes.
    for m in API_TOKEN.find_iter(text) {
        add(m.start(), m.end(), SecretKind::ApiToken, &mut spans);
    }
    for m in LONG_RANDOM.find_iter(text) {
        let w = m.as_str();
        if w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(|c| c.is_ascii_alphabetic()) {
            add(m.start(), m.end(), SecretKind::ApiToken, &mut spans);
        }
    }
    for m in DIGIT_RUN.find_iter(text) {
        if in_email(m.start(), m.end()) {
            continue;
        }
        // Digits inside a word ("0x800704cf") are part of it, unless they
        // make a card number ("visa4111111111111111").
        let glued = text[..m.start()]
            .chars()
            .last()
            .is_some_and(char::is_alphanumeric)
            || text[m.end()..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric);
        match digits_kind(text, m.start(), m.as_str()) {
            Some(SecretKind::Card) => add(m.start(), m.end(), SecretKind::Card, &mut spans),
            Some(kind) if !glued => add(m.start(), m.end(), kind, &mut spans),
            _ => {}
        }
    }
    for m in IBAN.find_iter(text) {
        add(m.start(), m.end(), SecretKind::Card, &mut spans);
    }
    let code_context = CODE_CONTEXT.is_match(text);
    let password_talk = PASSWORD_TALK.is_match(text);
    for m in GROUPED_CODE.find_iter(text) {
        let s = m.as_str();
        let groups: Vec<&str> = s.split([' ', '-']).filter(|g| !g.is_empty()).collect();
        let has_digit = |g: &&str| g.chars().any(|c| c.is_ascii_digit());
        let has_letter = |g: &&str| g.chars().any(|c| c.is_ascii_alphabetic());
        let dashed = s.contains('-') && !s.contains(' ');
        let all_digits = groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()));
        let shouting = groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_uppercase()));
        let alone = text.trim() == s;
        let code = !all_digits
            && !preceded_by_id(text, m.start())
            && ((dashed
                && groups.iter().any(has_digit)
                && (groups.len() >= 3 || groups.iter().all(|g| g.len() >= 4 && has_digit(g))))
                || (groups
                    .iter()
                    .all(|g| g.len() >= 4 && has_digit(g) && has_letter(g)))
                || (shouting && groups.len() >= 2 && (dashed || alone))
                || (code_context && dashed && groups.iter().all(|g| g.len() >= 4)));
        if code {
            add(m.start(), m.end(), SecretKind::BackupCode, &mut spans);
        }
    }
    // 3. Words: high entropy, or password rules' mixed classes.
    let mut offset = 0;
    for word in text.split_inclusive(char::is_whitespace) {
        let start = offset;
        offset += word.len();
        let w = word.trim_end();
        let core = w.trim_matches(|c: char| {
            matches!(
                c,
                '.' | ',' | '!' | '?' | '"' | '\'' | '(' | ')' | ':' | ';'
            )
        });
        let at = start + w.find(core).unwrap_or(0);
        if core.is_empty() || in_email(at, at + core.len()) || URL.is_match(core) {
            continue;
        }
        // "Summer2024!": the "!" may be part of the password.
        let loud = w.trim_matches(|c: char| {
            matches!(c, '.' | ',' | '?' | '"' | '\'' | '(' | ')' | ':' | ';')
        });
        if loud.len() > core.len() && looks_like_password(loud) {
            let at = start + w.find(loud).unwrap_or(0);
            add(at, at + loud.len(), SecretKind::Password, &mut spans);
            continue;
        }
        let id = preceded_by_id(text, at);
        let mixed = core.chars().count() >= 6
            && core.chars().any(|c| c.is_ascii_digit())
            && core.chars().any(char::is_alphabetic)
            && !core.starts_with(['$', '€', '£'])
            && !core.to_lowercase().contains("password");
        if looks_like_password(core)
            || (!id && looks_random(core))
            || (password_talk && mixed)
            || APPLE_STYLE.is_match(core)
        {
            add(at, at + core.len(), SecretKind::Password, &mut spans);
        }
    }
    render(text, &emails, spans)
}

/// Builds the output: secret spans become placeholders, addresses are
/// masked.
fn render(
    text: &str,
    emails: &[(usize, usize)],
    mut spans: Vec<(usize, usize, SecretKind)>,
) -> Redacted {
    spans.sort_by_key(|&(a, b, _)| (a, std::cmp::Reverse(b)));
    let mut merged: Vec<(usize, usize, SecretKind)> = Vec::new();
    for (a, b, k) in spans {
        match merged.last_mut() {
            Some(last) if a < last.1 => {
                last.1 = last.1.max(b);
                last.2 = last.2.min(k);
            }
            _ => merged.push((a, b, k)),
        }
    }
    let mut found: Vec<SecretKind> = merged.iter().map(|s| s.2).collect();
    found.sort();
    found.dedup();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut events: Vec<(usize, usize, Option<SecretKind>)> = merged
        .iter()
        .map(|&(a, b, k)| (a, b, Some(k)))
        .chain(
            emails
                .iter()
                .filter(|&&(a, b)| !merged.iter().any(|&(s, e, _)| a < e && s < b))
                .map(|&(a, b)| (a, b, None)),
        )
        .collect();
    events.sort_by_key(|e| e.0);
    for (a, b, kind) in events {
        if a < at {
            continue;
        }
        out.push_str(&text[at..a]);
        match kind {
            Some(k) => out.push_str(k.placeholder()),
            None => out.push_str(&mask_email(&text[a..b])),
        }
        at = b;
    }
    out.push_str(&text[at..]);
    Redacted { text: out, found }
}

fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => address.to_string(),
    }
}

/// From `from`, the value of an introduced secret: up to the end of the
/// clause (".", ",", ";", "!", "?" followed by a space or the end, or a
/// joining word such as "and" or "but").
fn clause_after(text: &str, from: usize) -> (usize, usize) {
    let rest = &text[from..];
    let lead = rest.len()
        - rest
            .trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '“' | '‘' | '«')
            })
            .len();
    let a = from + lead;
    let value = &text[a..];
    let mut end = value.len();
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let at_break = next.is_none_or(char::is_whitespace);
        if matches!(
            c,
            ',' | ';' | '!' | '?' | '.' | '"' | '\'' | '”' | '’' | '»'
        ) && at_break
            && i > 0
        {
            end = i;
            break;
        }
        if c.is_whitespace() {
            let tail = &value[i..].trim_start();
            let word = tail
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
                .to_lowercase();
            if CLAUSE_WORDS.contains(&word.as_str()) {
                end = i;
                break;
            }
        }
    }
    (a, a + value[..end].trim_end().len())
}

/// Words that end an introduced value ("my password is X and it fails").
const CLAUSE_WORDS: &[&str] = &[
    "and",
    "but",
    "pls",
    "please",
    "plz",
    "for",
    "without",
    "why",
    "it",
    "its",
    "is",
    "i",
    "im",
    "still",
    "ama",
    "aber",
    "mais",
    "pero",
    "then",
    "so",
    "because",
    "since",
    "on",
    "in",
    "which",
    "that",
    "but",
    "what",
    "can",
    "does",
    "doesnt",
    "not",
    "which",
    "为什么",
    "now",
    "yet",
];

/// Whether an introduced value describes the password instead of being one
/// ("wrong", "not working", "the same as before"). A passphrase that starts
/// with such a word ("correct horse battery staple") is three or more words
/// with no little words among them.
fn describes_it(value: &str, first: &str) -> bool {
    if !NOT_A_PASSWORD.contains(&first) {
        return false;
    }
    let words: Vec<String> = value
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    words.len() < 3
        || words[1..]
            .iter()
            .any(|w| LITTLE_WORDS.contains(&w.as_str()))
}

const LITTLE_WORDS: &[&str] = &[
    "the", "a", "an", "same", "as", "not", "too", "very", "still", "being", "my", "your", "it",
    "that", "this", "in", "on", "at", "to", "of", "for", "with", "from", "by", "is", "was", "be",
    "and", "or", "but", "saved", "working", "accepted", "anymore",
];

/// Whether the text before `at` names a reference ("order #", "invoice",
/// "ID"): what follows is not a secret.
fn preceded_by_id(text: &str, at: usize) -> bool {
    ID_CONTEXT.is_match(just_before(text, at))
}

/// The (at most) 40 characters of `text` before `at`: the context a
/// number or a word is judged in.
fn just_before(text: &str, at: usize) -> &str {
    let before = &text[..at];
    let from = before.char_indices().rev().nth(39).map_or(0, |(i, _)| i);
    &before[from..]
}

/// Apple's generated passwords: `hopVe2-kiqfyn-gubxeg`.
static APPLE_STYLE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[A-Za-z0-9]{6}-[A-Za-z0-9]{6}-[A-Za-z0-9]{6}$"));

fn has_digit_or_symbol(word: &str) -> bool {
    word.chars().any(|c| {
        c.is_ascii_digit() || (!c.is_alphanumeric() && !matches!(c, '.' | ',' | '?' | '!' | '\''))
    })
}

static DISCORD_TAG: LazyLock<Regex> = LazyLock::new(|| re(r"^[\w.]+#\d{4}$"));

/// Random-looking: letters and digits alternating often (`gq7zpl3mwx`,
/// `4hd83kq9p2`), unlike product names (`iPhone14Pro`: two changes).
fn looks_random(word: &str) -> bool {
    let len = word.chars().count();
    if !(8..=64).contains(&len)
        || !word.chars().all(|c| c.is_ascii_alphanumeric())
        || word.to_lowercase().starts_with("0x")
    {
        return false;
    }
    let classes: Vec<bool> = word.chars().map(|c| c.is_ascii_digit()).collect();
    let changes = classes.windows(2).filter(|w| w[0] != w[1]).count();
    let digits = classes.iter().filter(|d| **d).count();
    changes >= 3 && digits >= 2 && digits < len
}

/// What a run of digits (with spaces, dashes or dots between) is: a card
/// number (13-19 digits, Luhn), a one-time code (6 digits in any grouping),
/// a short code after "code"/"cvv"/"pin", a backup code after "backup", an
/// ID number (`078-05-1120`), or nothing (phones, orders, dates, prices).
fn digits_kind(text: &str, start: usize, run: &str) -> Option<SecretKind> {
    let digits: String = run.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    let before = &text[..start];
    let prev = before.trim_end().chars().last();
    if prev == Some('+') || matches!(prev, Some('#' | '$' | '€' | '£')) {
        return None; // a phone number, an order number, a price
    }
    let context = |re: &Regex| re.is_match(just_before(text, start));
    let card = |d: &str| (13..=19).contains(&d.len()) && luhn(d);
    if card(&digits) || run.split(' ').any(card) {
        return Some(SecretKind::Card);
    }
    if context(&ID_CONTEXT) {
        return None;
    }
    if FOUR_FOUR.is_match(run) {
        return Some(SecretKind::BackupCode);
    }
    if SSN.is_match(run) {
        return Some(SecretKind::Password);
    }
    let grouped = run.contains([' ', '-']);
    if n == 6 && (grouped || run.chars().all(|c| c.is_ascii_digit())) && !run.contains('.') {
        return Some(SecretKind::OneTimeCode);
    }
    if (4..=8).contains(&n) && context(&SHORT_CODE_CONTEXT) {
        return Some(SecretKind::OneTimeCode);
    }
    if (3..=4).contains(&n) && context(&CVV_CONTEXT) {
        return Some(SecretKind::Card);
    }
    if (4..=12).contains(&n) && context(&BACKUP_CONTEXT) {
        return Some(SecretKind::BackupCode);
    }
    None
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn intro_kind(keyword: &str) -> SecretKind {
    let k = keyword.to_lowercase();
    if k.contains("backup") || k.contains("recovery code") || k.contains("emergency") {
        SecretKind::BackupCode
    } else {
        SecretKind::Password
    }
}

fn looks_like_password(word: &str) -> bool {
    let w = word.trim_matches(|c: char| matches!(c, '.' | ',' | '?' | '"' | '\'' | '(' | ')'));
    let len = w.chars().count();
    if !(8..=64).contains(&len)
        || EMAIL.is_match(w)
        || URL.is_match(w)
        || w.contains("redacted")
        || w.starts_with(['$', '€', '£', '#', '@'])
        || DISCORD_TAG.is_match(w)
    {
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
    let capitals = w.chars().filter(|c| c.is_uppercase()).count();
    (special && digit && letter) || (capitals >= 3 && lower && digit && len >= 12)
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
