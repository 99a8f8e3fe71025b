//! E-mail addresses as users type them, normalised for comparison.

use std::fmt;

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
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.');
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

    /// The mailbox behind the address, for per-address limits: lowercased,
    /// without a `+tag`, and for Gmail without dots (Gmail ignores both), so
    /// `Jane.Doe+x@gmail.com` and `janedoe@googlemail.com` share one limit.
    pub fn mailbox_key(&self) -> String {
        let lower = self.normalized();
        let (local, domain) = lower.rsplit_once('@').unwrap_or((&lower, ""));
        let local = local.split('+').next().unwrap_or(local);
        match domain {
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
