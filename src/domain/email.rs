//! E-mail addresses as users type them, normalised for comparison.

use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// A syntactically plausible address, trimmed and with a lowercase domain.
///
/// `Debug` shows the masked form: addresses are personal data and must not
/// end up in logs by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("that does not look like an e-mail address")]
    Malformed,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim().trim_matches(|c| c == '<' || c == '>');
        if s.len() > 254
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err(EmailError::Malformed);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        // The dot-atom form only (letters, digits and RFC 5322's atom
        // symbols): a quoted or commented local part ("a b"@x, a(c)@x) or a
        // scheme (mailto:a@x) is refused rather than sent on altered.
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(c));
        let domain_ok = domain_ok && idna::domain_to_ascii(domain).is_ok();
        if !(domain_ok && local_ok) {
            return Err(EmailError::Malformed);
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address lowercased.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }

    /// The mailbox behind the address, for per-address limits. The local
    /// part is NFKC-normalised and lowercased, the domain mapped with IDNA
    /// (UTS-46: full-width letters, case, Unicode to punycode); then a
    /// `+tag` is dropped, and for Gmail the dots (Gmail ignores both). So
    /// `Jane.Doe+x@gmail.com` and `janedoe@googlemail.com` share one limit,
    /// and so do `alice@ｅxample.com` and `alice@example.com`, or
    /// `bob@bücher.de` and `bob@xn--bcher-kva.de`.
    pub fn mailbox_key(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let local: String = local.nfkc().collect::<String>().to_lowercase();
        let domain = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_lowercase());
        let local = local.split('+').next().unwrap_or(&local);
        match domain.as_str() {
            "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
            _ => format!("{local}@{domain}"),
        }
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// `j***@example.com`: enough for the user to recognise their address.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or(("", ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

/// Characters that change how text looks without being seen: format
/// characters such as zero-width spaces and joiners, bidirectional controls
/// (a right-to-left override can make `moc.elpmaxe@bob` read as an
/// innocent address), and tags.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_addresses_parse_and_the_domain_is_lowercased() {
        let e = Email::parse("  Jane.Doe+x@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe+x@example.com");
        assert_eq!(e.normalized(), "jane.doe+x@example.com");
        assert_eq!(e.masked(), "J***@example.com");
    }

    #[test]
    fn aliases_of_one_mailbox_share_a_key() {
        let key = |s: &str| Email::parse(s).unwrap().mailbox_key();
        assert_eq!(
            key("Jane.Doe+promo@Gmail.com"),
            key("janedoe@googlemail.com")
        );
        assert_eq!(key("bob+x@example.com"), "bob@example.com");
        assert_ne!(key("jane.doe@example.com"), key("janedoe@example.com"));
    }

    #[test]
    fn unicode_forms_of_one_mailbox_share_a_key() {
        let key = |s: &str| Email::parse(s).unwrap().mailbox_key();
        assert_eq!(key("alice@\u{ff45}xample.com"), "alice@example.com");
        assert_eq!(key("\u{ff41}lice@example.com"), "alice@example.com");
        assert_eq!(key("ALICE@EXAMPLE.COM"), "alice@example.com");
        assert_eq!(key("bob@bücher.de"), key("bob@xn--bcher-kva.de"));
        assert_eq!(key("bob@BÜCHER.de"), "bob@xn--bcher-kva.de");
        assert_eq!(key("a.b+x@\u{ff47}mail.com"), "ab@gmail.com");
    }

    #[test]
    fn what_is_accepted_is_what_the_user_typed() {
        let e = Email::parse("o'brien+tag@example.com").unwrap();
        assert_eq!(e.as_str(), "o'brien+tag@example.com");
        assert!(Email::parse("jürgen@bücher.de").is_ok());
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@x.com",
            "jane@x",
            "ja ne@x.com",
            "jane@x..com",
            "a@b@c.com",
            "mailto:alice@example.com",
            "alice(comment)@example.com",
            "\"a b\"@example.com",
            "b\"@example.com",
            "a..b@example.com",
            "alice\u{202E}@example.com",
            "moc.elpmaxe\u{202E}@bob.com",
            "al\u{200B}ice@example.com",
            "alice@exa\u{200D}mple.com",
            "alice@example.com\u{2066}",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Malformed), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_whole_address() {
        let e = Email::parse("someone@example.org").unwrap();
        assert!(!format!("{e:?}").contains("someone"));
    }
}
