//! The simulator's world: demo accounts, reset mails and their delivery,
//! verification codes, incidents, faults. Plain data behind one mutex; the
//! HTTP layer in `mod.rs` only translates.

use crate::account_api::wire::*;
use crate::config::{MailboxBehaviour, SimAccountSettings, SimulatorSettings};
use crate::domain::Email;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use totp_rs::{Algorithm, Secret, TOTP};

pub const VERIFICATION_TTL_MINUTES: i64 = 10;
pub const VERIFICATION_ATTEMPTS: u32 = 5;
pub const VERIFIED_ACCESS_MINUTES: i64 = 30;
pub const DRIFT_WINDOW_STEPS: i32 = 10;
/// Mails kept for `/_sim/outbox`.
const MAX_OUTBOX: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Account {
    pub settings: SimAccountSettings,
    pub locked_until: Option<DateTime<Utc>>,
    pub recent_logins: Vec<RecentLogin>,
}

/// A mail the simulator "sent", for `/_sim/outbox` and the console.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimMail {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// reset, reset_no_account, verification, verification_no_account
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone)]
struct Reset {
    domain: String,
    mailbox: MailboxBehaviour,
    created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Verification {
    account_id: Option<String>,
    code: String,
    expires: DateTime<Utc>,
    attempts_left: u32,
}

/// Injected trouble, set through `/_sim/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/v1` request.
    pub latency_ms: u64,
    /// Share of `/v1` requests answered 503 (0.0 to 1.0).
    pub error_rate: f64,
    /// The next N `/v1` requests get 500.
    pub fail_next: u32,
    /// The next N `/v1` requests get 429.
    pub rate_limit_next: u32,
    /// `Retry-After` on injected 429s.
    pub retry_after_secs: u64,
}

/// An incident as the admin endpoints manage it.
#[derive(Debug, Clone)]
pub struct SimIncident {
    pub id: String,
    pub name: String,
    pub status: String,
    pub impact: String,
    pub components: Vec<String>,
    pub created: DateTime<Utc>,
    pub resolved: Option<DateTime<Utc>>,
    pub updates: Vec<(String, String, DateTime<Utc>)>,
}

pub struct World {
    pub accounts: Vec<Account>,
    resets: HashMap<String, Reset>,
    verifications: HashMap<String, Verification>,
    confirmed: HashMap<String, DateTime<Utc>>,
    spent_codes: HashSet<(String, String)>,
    mail_times: HashMap<String, Vec<DateTime<Utc>>>,
    pub idempotent: HashMap<String, (u16, String, DateTime<Utc>)>,
    pub outbox: Vec<SimMail>,
    pub incidents: Vec<SimIncident>,
    pub faults: Faults,
    pub requests: HashMap<String, u64>,
    /// Added to the wall clock (`/_sim/clock`), to test expiry.
    pub clock_offset: ChronoDuration,
    delivery_step: ChronoDuration,
    mails_per_hour: u32,
    pub public_url: String,
    /// Every mail is also announced here (the console prints them).
    pub mail_tx: Option<tokio::sync::broadcast::Sender<SimMail>>,
}

pub fn random_id(prefix: &str, len: usize) -> String {
    let s: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{s}")
}

/// The built-in demo accounts.
pub fn demo_accounts() -> Vec<SimAccountSettings> {
    let account = |email: &str, id: &str| SimAccountSettings {
        email: email.into(),
        account_id: id.into(),
        two_factor: vec!["app".into()],
        totp_secret: Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()),
        backup_codes_left: 8,
        locked_minutes: 0,
        failed_attempts_24h: 0,
        suspended: false,
        email_verified: true,
        mailbox: MailboxBehaviour::Delivers,
    };
    vec![
        account("alice@example.com", "acc_alice"),
        SimAccountSettings {
            locked_minutes: 30,
            failed_attempts_24h: 7,
            ..account("bob@example.com", "acc_bob")
        },
        SimAccountSettings {
            two_factor: vec!["sms".into()],
            totp_secret: None,
            backup_codes_left: 0,
            ..account("carol@example.com", "acc_carol")
        },
        SimAccountSettings {
            mailbox: MailboxBehaviour::Bounces,
            ..account("dave@example.com", "acc_dave")
        },
        SimAccountSettings {
            suspended: true,
            ..account("erin@example.com", "acc_erin")
        },
    ]
}

/// Where the simulator's accounts come from: inline, a file, or built in.
pub fn load_accounts(settings: &SimulatorSettings) -> Result<Vec<SimAccountSettings>, String> {
    if !settings.accounts.is_empty() {
        return Ok(settings.accounts.clone());
    }
    if let Some(path) = &settings.accounts_file {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            accounts: Vec<SimAccountSettings>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read simulator.accounts_file {}: {}",
                path.display(),
                e.kind()
            )
        })?;
        let file: File = toml::from_str(&text).map_err(|e| {
            format!(
                "simulator.accounts_file {}: {}",
                path.display(),
                e.message().lines().next().unwrap_or_default()
            )
        })?;
        return Ok(file.accounts);
    }
    Ok(demo_accounts())
}

pub enum ConfirmOutcome {
    Result(VerificationResult),
    Expired,
    NotFound,
}

pub enum DiagnoseOutcome {
    Result(Diagnosis),
    NotVerified,
    NotFound,
}

impl World {
    pub fn new(
        settings: &SimulatorSettings,
        accounts: Vec<SimAccountSettings>,
        public_url: String,
    ) -> Self {
        let now = Utc::now();
        let accounts = accounts
            .into_iter()
            .map(|settings| {
                let locked_until = (settings.locked_minutes > 0)
                    .then(|| now + ChronoDuration::minutes(i64::from(settings.locked_minutes)));
                let recent_logins = vec![
                    RecentLogin {
                        at: rfc3339(now - ChronoDuration::hours(3)),
                        country: "Germany".into(),
                        city: "Berlin".into(),
                        device: "Chrome on Windows".into(),
                        success: settings.failed_attempts_24h == 0,
                    },
                    RecentLogin {
                        at: rfc3339(now - ChronoDuration::days(2)),
                        country: "Germany".into(),
                        city: "Berlin".into(),
                        device: "Safari on iPhone".into(),
                        success: true,
                    },
                ];
                Account {
                    settings,
                    locked_until,
                    recent_logins,
                }
            })
            .collect();
        Self {
            accounts,
            resets: HashMap::new(),
            verifications: HashMap::new(),
            confirmed: HashMap::new(),
            spent_codes: HashSet::new(),
            mail_times: HashMap::new(),
            idempotent: HashMap::new(),
            outbox: Vec::new(),
            incidents: Vec::new(),
            faults: Faults::default(),
            requests: HashMap::new(),
            clock_offset: ChronoDuration::zero(),
            delivery_step: ChronoDuration::seconds(
                i64::try_from(settings.delivery_step_secs).unwrap_or(2),
            ),
            mails_per_hour: settings.mails_per_address_per_hour.max(1),
            public_url,
            mail_tx: None,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    fn account_by_email(&self, email: &Email) -> Option<&Account> {
        self.accounts.iter().find(|a| {
            Email::parse(&a.settings.email).is_ok_and(|e| e.normalized() == email.normalized())
        })
    }

    /// What the mailbox behind an address does with mail. It belongs to the
    /// mailbox, not to the account: an address with no account can bounce
    /// too (by convention, a local part starting with `bounce` or `defer`),
    /// so "bounced" says nothing about whether an account exists.
    fn mailbox_behaviour(&self, email: &Email) -> MailboxBehaviour {
        if let Some(a) = self.account_by_email(email) {
            return a.settings.mailbox;
        }
        let local = email.as_str().to_lowercase();
        if local.starts_with("bounce") {
            MailboxBehaviour::Bounces
        } else if local.starts_with("defer") {
            MailboxBehaviour::Defers
        } else {
            MailboxBehaviour::Delivers
        }
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.settings.account_id == id)
    }

    /// Counts a mail to `email`; `Err(retry_after_secs)` past the limit.
    fn note_mail(&mut self, email: &Email) -> Result<(), u64> {
        let now = self.now();
        let hour_ago = now - ChronoDuration::hours(1);
        let times = self.mail_times.entry(email.normalized()).or_default();
        times.retain(|t| *t > hour_ago);
        if times.len() >= self.mails_per_hour as usize {
            let oldest = times.iter().min().copied().unwrap_or(now);
            let wait = (oldest + ChronoDuration::hours(1) - now)
                .num_seconds()
                .max(1);
            return Err(u64::try_from(wait).unwrap_or(1));
        }
        times.push(now);
        Ok(())
    }

    fn send_mail(
        &mut self,
        to: &Email,
        kind: &str,
        subject: &str,
        body: String,
        link: Option<String>,
        code: Option<String>,
    ) {
        let mail = SimMail {
            id: random_id("mail_", 10),
            to: to.as_str().into(),
            subject: subject.into(),
            body,
            kind: kind.into(),
            link,
            code,
            at: rfc3339(self.now()),
        };
        if let Some(tx) = &self.mail_tx {
            let _ = tx.send(mail.clone());
        }
        // A demo can run for days: keep the newest mails only.
        if self.outbox.len() >= MAX_OUTBOX {
            self.outbox.drain(..MAX_OUTBOX / 2);
        }
        self.outbox.push(mail);
    }

    /// The same work, whether or not an account has the address: no
    /// enumeration through answers, statuses or timing.
    pub fn request_reset(&mut self, email: &Email) -> Result<ResetAccepted, u64> {
        self.note_mail(email)?;
        let id = random_id("rst_", 16);
        let known = self.account_by_email(email).is_some().then_some(());
        let mailbox = self.mailbox_behaviour(email);
        self.resets.insert(
            id.clone(),
            Reset {
                domain: email.domain().to_string(),
                mailbox,
                created: self.now(),
            },
        );
        if known.is_some() {
            let link = format!("{}/reset/{}", self.public_url, random_id("tok_", 24));
            self.send_mail(
                email,
                "reset",
                "Reset your password",
                format!("Someone asked to reset the password of your account. Open this link within 30 minutes to choose a new one: {link}\nIf it wasn't you, ignore this mail."),
                Some(link),
                None,
            );
        } else {
            self.send_mail(
                email,
                "reset_no_account",
                "Password reset request",
                "Someone asked to reset a password for this address, but no account uses it. If you have an account, you may have signed up with another address or with Google or Apple. If it wasn't you, ignore this mail.".into(),
                None,
                None,
            );
        }
        Ok(ResetAccepted {
            reset_id: id,
            status: "queued".into(),
        })
    }

    pub fn reset_status(&self, id: &str) -> Option<ResetStatus> {
        let r = self.resets.get(id)?;
        let now = self.now();
        let sent_at = r.created + self.delivery_step;
        let final_at = sent_at + self.delivery_step;
        let (status, sent, delivered) = if now < sent_at {
            ("queued", None, None)
        } else if now < final_at {
            ("sent", Some(sent_at), None)
        } else {
            match r.mailbox {
                MailboxBehaviour::Delivers => ("delivered", Some(sent_at), Some(final_at)),
                MailboxBehaviour::Bounces => ("bounced", Some(sent_at), None),
                MailboxBehaviour::Defers => ("deferred", Some(sent_at), None),
            }
        };
        Some(ResetStatus {
            reset_id: id.to_string(),
            status: status.into(),
            sent_at: sent.map(rfc3339),
            delivered_at: delivered.map(rfc3339),
            recipient_domain: r.domain.clone(),
        })
    }

    pub fn start_verification(&mut self, email: &Email) -> Result<VerificationStarted, u64> {
        self.note_mail(email)?;
        let id = random_id("ver_", 16);
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        let expires = self.now() + ChronoDuration::minutes(VERIFICATION_TTL_MINUTES);
        let account_id = self
            .account_by_email(email)
            .map(|a| a.settings.account_id.clone());
        if account_id.is_some() {
            self.send_mail(
                email,
                "verification",
                "Your verification code",
                format!("Your code is {code}. It expires in 10 minutes. Type it only into the support chat you started; nobody from support will ask you for it by phone."),
                None,
                Some(code.clone()),
            );
        }
        self.verifications.insert(
            id.clone(),
            Verification {
                account_id,
                code,
                expires,
                attempts_left: VERIFICATION_ATTEMPTS,
            },
        );
        Ok(VerificationStarted {
            verification_id: id,
            expires_at: rfc3339(expires),
        })
    }

    pub fn confirm(&mut self, id: &str, code: &str) -> ConfirmOutcome {
        let now = self.now();
        let Some(v) = self.verifications.get_mut(id) else {
            return ConfirmOutcome::NotFound;
        };
        if now >= v.expires || v.attempts_left == 0 {
            return ConfirmOutcome::Expired;
        }
        if let Some(account) = v.account_id.clone().filter(|_| v.code == code) {
            v.attempts_left = 0; // a code works once
            self.confirmed.insert(account.clone(), now);
            return ConfirmOutcome::Result(VerificationResult {
                verified: true,
                account_id: Some(account),
                attempts_left: None,
            });
        }
        v.attempts_left -= 1;
        ConfirmOutcome::Result(VerificationResult {
            verified: false,
            account_id: None,
            attempts_left: Some(v.attempts_left),
        })
    }

    /// Account endpoints only answer within 30 minutes of a confirmation.
    pub fn recently_confirmed(&self, account_id: &str) -> bool {
        self.confirmed
            .get(account_id)
            .is_some_and(|t| self.now() - *t < ChronoDuration::minutes(VERIFIED_ACCESS_MINUTES))
    }

    pub fn login_status(&self, account_id: &str) -> Option<LoginStatus> {
        let a = self.account(account_id)?;
        let now = self.now();
        Some(LoginStatus {
            account_id: account_id.into(),
            email_verified: a.settings.email_verified,
            suspended: a.settings.suspended,
            locked_until: a.locked_until.filter(|t| *t > now).map(rfc3339),
            failed_attempts_24h: a.settings.failed_attempts_24h,
            two_factor: TwoFactor {
                enabled: !a.settings.two_factor.is_empty(),
                methods: a.settings.two_factor.clone(),
                backup_codes_left: a.settings.backup_codes_left,
            },
            recent_logins: a.recent_logins.clone(),
        })
    }

    fn totp(secret: &str) -> Option<TOTP> {
        let bytes = Secret::Encoded(secret.to_string()).to_bytes().ok()?;
        TOTP::new(Algorithm::SHA1, 6, 0, 30, bytes).ok()
    }

    /// The code an authenticator whose clock is `drift_steps` x 30 s off
    /// would show now (for demos and tests).
    pub fn authenticator_code(&self, account_id: &str, drift_steps: i32) -> Option<String> {
        let a = self.account(account_id)?;
        let totp = Self::totp(a.settings.totp_secret.as_deref()?)?;
        let t = self.now().timestamp() + i64::from(drift_steps) * 30;
        Some(totp.generate(u64::try_from(t).ok()?))
    }

    pub fn diagnose(&mut self, account_id: &str, code: &str) -> DiagnoseOutcome {
        if !self.recently_confirmed(account_id) {
            return DiagnoseOutcome::NotVerified;
        }
        let Some(a) = self.account(account_id) else {
            return DiagnoseOutcome::NotFound;
        };
        let spent = (account_id.to_string(), code.to_string());
        let secret = a
            .settings
            .totp_secret
            .clone()
            .filter(|_| a.settings.two_factor.iter().any(|m| m == "app"));
        let found = match (
            secret.as_deref().and_then(Self::totp),
            self.spent_codes.contains(&spent),
        ) {
            (Some(totp), false) => {
                let now = self.now().timestamp();
                (-DRIFT_WINDOW_STEPS..=DRIFT_WINDOW_STEPS)
                    .map(|d| (d, now + i64::from(d) * 30))
                    .find(|(_, t)| u64::try_from(*t).is_ok_and(|t| totp.generate(t) == code))
                    .map(|(d, _)| d)
            }
            _ => None,
        };
        // The code is spent: it can never be used to log in afterwards.
        self.spent_codes.insert(spent);
        DiagnoseOutcome::Result(Diagnosis {
            matches: found.is_some(),
            drift_steps: found,
        })
    }

    pub fn unlock(&mut self, account_id: &str) -> Option<Unlocked> {
        let a = self
            .accounts
            .iter_mut()
            .find(|a| a.settings.account_id == account_id)?;
        a.locked_until = None;
        Some(Unlocked { locked_until: None })
    }

    pub fn reset_two_factor(&mut self, account_id: &str) -> Option<TwoFactorReset> {
        let a = self
            .accounts
            .iter_mut()
            .find(|a| a.settings.account_id == account_id)?;
        a.settings.two_factor.clear();
        a.settings.backup_codes_left = 0;
        Some(TwoFactorReset { enabled: false })
    }
}
