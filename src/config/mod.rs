//! Typed settings.
//!
//! `Settings` is read from `config.toml` (or the file given with `--config`)
//! and then overridden from the environment: `RECOVERBOT__SECTION__KEY`
//! replaces `section.key`. Every section has serde defaults, so an empty file
//! (or no file at all) gives a working local setup: SQLite under `data/`, the
//! default flows, and the in-process account service simulator.
//!
//! Secrets are [`SecretString`]: their `Debug` shows `[REDACTED]` and the
//! masked printer in [`Settings::to_masked_toml`] writes `"********"`.

mod load;

pub use load::{ConfigError, load};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;

/// The whole effective configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub platform: PlatformSettings,
    pub engine: EngineSettings,
    pub flows: FlowsSettings,
    pub understanding: UnderstandingSettings,
    pub account_api: AccountApiSettings,
    pub rate_limits: RateLimitSettings,
    pub status: StatusSettings,
    pub http: HttpSettings,
    pub telegram: TelegramSettings,
    pub discord: DiscordSettings,
    pub simulator: SimulatorSettings,
}

/// `[http]`: `serve`'s listener for operators and webhooks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where it listens; loopback by default. Empty: no listener.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// A tracing filter such as `info` or `recoverbot=debug,sqlx=warn`.
    /// `RUST_LOG`, when set, wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (created on first use) or `postgres://USER@HOST/DB`.
    #[serde(serialize_with = "mask_url_password")]
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a writer waits for a locked SQLite file before giving up.
    pub busy_timeout_ms: u64,
    /// How long to keep trying to reach the database before giving up.
    pub connect_timeout_secs: u64,
    /// Apply pending migrations when the bot starts.
    pub migrate_on_start: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &masked_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/recoverbot.db".into(),
            max_connections: 8,
            busy_timeout_ms: 5_000,
            connect_timeout_secs: 10,
            migrate_on_start: true,
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (created on first use), or `None` for `sqlite::memory:`.
    Sqlite {
        path: Option<PathBuf>,
    },
    Postgres,
}

impl DatabaseSettings {
    /// Parses `url`. The error never repeats the URL (it may hold a password).
    pub fn parsed_url(&self) -> Result<DatabaseUrl, String> {
        let url = self.url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.split('?').next().unwrap_or_default();
            if rest == ":memory:" || rest == "//:memory:" {
                return Ok(DatabaseUrl::Sqlite { path: None });
            }
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(
                    "a sqlite URL needs a file path, as in sqlite://data/recoverbot.db".into(),
                );
            }
            return Ok(DatabaseUrl::Sqlite {
                path: Some(PathBuf::from(path)),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return match url::Url::parse(url) {
                Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(DatabaseUrl::Postgres)
                }
                Ok(_) => Err("a postgres URL needs a host, as in postgres://user@host/db".into()),
                Err(e) => Err(format!("not a valid postgres URL ({e})")),
            };
        }
        Err("unsupported database URL: use sqlite://PATH or postgres://USER@HOST/DB".into())
    }
}

/// Facts about the platform whose users the bot helps; flows show them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformSettings {
    pub name: String,
    pub login_url: String,
    pub reset_url: String,
    pub status_page_url: String,
    pub support_hours: String,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            name: "Example Platform".into(),
            login_url: "https://example.com/login".into(),
            reset_url: "https://example.com/forgot-password".into(),
            status_page_url: "https://status.example.com".into(),
            support_hours: "Monday to Friday, 9:00-18:00 UTC".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// The directory of flow files; unset, the default flows compiled into
    /// the binary are used.
    pub flows_dir: Option<PathBuf>,
    /// A conversation untouched this long starts afresh.
    pub idle_timeout_secs: u64,
    /// Processed inbound event ids are kept this long to drop redeliveries.
    pub dedupe_retention_hours: u64,
    /// Transcript entries older than this are deleted.
    pub transcript_retention_days: u64,
    /// A longer message is answered "too long" and only this much of it is
    /// stored (redacted).
    pub max_message_chars: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            flows_dir: None,
            idle_timeout_secs: 30 * 60,
            dedupe_retention_hours: 72,
            transcript_retention_days: 90,
            max_message_chars: 4000,
        }
    }
}

/// Limits on reading flow files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsSettings {
    /// A larger flow file is refused (as is anything that is not a regular
    /// file).
    pub max_file_bytes: u64,
}

impl Default for FlowsSettings {
    fn default() -> Self {
        Self {
            max_file_bytes: crate::flow::load::DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// `[understanding]`: how sure the intent classifier must be to route free
/// text. The type lives with the router that reads it.
pub use crate::flow::router::UnderstandingSettings;

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountApiSettings {
    /// The account service. Unset: `chat` runs the simulator in-process;
    /// `serve` refuses to start without it unless `use_simulator` is true.
    #[serde(serialize_with = "mask_optional_url")]
    pub base_url: Option<String>,
    /// Bearer token for the account service.
    #[serde(serialize_with = "mask_secret")]
    pub token: Option<SecretString>,
    /// Let `serve` run the in-process simulator (for demos only).
    pub use_simulator: bool,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long the open breaker refuses calls before letting probes through.
    pub breaker_open_secs: u64,
    /// Probe calls allowed while half-open.
    pub breaker_half_open_probes: u32,
    /// The longest a user waits for an answer when the service is slow.
    pub answer_deadline_ms: u64,
}

impl std::fmt::Debug for AccountApiSettings {
    // The base URL may carry credentials; the token is a SecretString.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountApiSettings")
            .field("base_url", &self.base_url.as_deref().map(masked_url))
            .field("token", &self.token)
            .field("use_simulator", &self.use_simulator)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("answer_deadline_ms", &self.answer_deadline_ms)
            .finish_non_exhaustive()
    }
}

impl Default for AccountApiSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            token: None,
            use_simulator: false,
            connect_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            max_attempts: 3,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            breaker_failure_threshold: 5,
            breaker_open_secs: 30,
            breaker_half_open_probes: 2,
            answer_deadline_ms: 2_500,
        }
    }
}

/// Limits kept in the database, so they hold across restarts and instances.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Reset mails per (normalised) e-mail address per window.
    pub resets_per_email: u32,
    /// Reset mails one chat user may ask for per window.
    pub resets_per_user: u32,
    pub reset_window_secs: u64,
    /// Verification codes one conversation may try per window.
    pub verification_attempts_per_conversation: u32,
    /// Codes tried for one address (e-mail codes) or one account (2FA
    /// checks) per window, across all conversations.
    pub verification_attempts_per_account: u32,
    pub verification_window_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            resets_per_email: 3,
            resets_per_user: 5,
            reset_window_secs: 3_600,
            verification_attempts_per_conversation: 10,
            verification_attempts_per_account: 20,
            verification_window_secs: 3_600,
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// A Statuspage v2 base URL (`<url>/api/v2/summary.json`). Unset: the
    /// account simulator's status page is used when the simulator runs.
    pub url: Option<String>,
    /// Component names whose incidents make login troubleshooting pointless.
    pub login_components: Vec<String>,
    /// How often the watcher reads the page (with ±10% jitter). A second
    /// instance takes the watch over within twice this after the first dies.
    pub poll_secs: u64,
    /// The secret path segment of the Statuspage webhook,
    /// `/status/webhook/<webhook_secret>` on `http.listen`. Unset: no webhook.
    #[serde(serialize_with = "mask_secret")]
    pub webhook_secret: Option<SecretString>,
    /// A "tell me when it's fixed" subscription lapses after this many days.
    pub subscription_days: u64,
    /// Where incidents are announced (`[[status.announce]]`).
    pub announce: Vec<AnnounceTarget>,
}

/// One `[[status.announce]]` target: a Telegram chat or channel, or a
/// Discord channel, and which incidents it hears about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceTarget {
    /// `telegram` or `discord`.
    pub channel: crate::domain::ChannelKind,
    /// A Telegram chat or channel id (`-100...`), or a Discord channel id.
    pub chat_id: String,
    /// Only incidents touching one of these components (case-insensitive);
    /// empty: every incident.
    #[serde(default)]
    pub components: Vec<String>,
    /// The least impact announced: `none`, `minor` (the default), `major`
    /// or `critical`.
    #[serde(default = "default_min_impact")]
    pub min_impact: Impact,
}

fn default_min_impact() -> Impact {
    Impact::Minor
}

/// An incident's impact, as Statuspage grades it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

impl Impact {
    /// Statuspage's word; anything unknown (`maintenance`) counts as none.
    pub fn parse(s: &str) -> Self {
        match s {
            "minor" => Self::Minor,
            "major" => Self::Major,
            "critical" => Self::Critical,
            _ => Self::None,
        }
    }
}

impl std::fmt::Debug for StatusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSettings")
            .field("url", &self.url.as_deref().map(masked_url))
            .field("login_components", &self.login_components)
            .field("poll_secs", &self.poll_secs)
            .field("webhook_secret", &self.webhook_secret)
            .field("subscription_days", &self.subscription_days)
            .field("announce", &self.announce)
            .finish()
    }
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            url: None,
            login_components: vec![
                "Login".into(),
                "Authentication".into(),
                "Email delivery".into(),
            ],
            poll_secs: 30,
            webhook_secret: None,
            subscription_days: 7,
            announce: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSettings {
    pub enabled: bool,
    #[serde(serialize_with = "mask_secret")]
    pub token: Option<SecretString>,
    pub api_url: String,
    /// `polling` or `webhook`.
    pub mode: TelegramMode,
    /// How long one `getUpdates` long poll waits for updates (polling mode).
    pub poll_timeout_secs: u64,
    /// Where the webhook server listens.
    pub webhook_listen: String,
    /// The public HTTPS URL Telegram posts updates to.
    pub webhook_url: Option<String>,
    /// Checked against `X-Telegram-Bot-Api-Secret-Token` on every request.
    #[serde(serialize_with = "mask_secret")]
    pub webhook_secret: Option<SecretString>,
    /// A bot-wide cap on replies, messages per second; 0 = none (replies
    /// are paced per chat and by Telegram's 429s).
    pub max_messages_per_second: u32,
    /// The bot-wide cap on bulk sends (announcements, subscriber notices).
    pub bulk_messages_per_second: u32,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            token: None,
            api_url: "https://api.telegram.org".into(),
            mode: TelegramMode::Polling,
            poll_timeout_secs: 25,
            webhook_listen: "127.0.0.1:8443".into(),
            webhook_url: None,
            webhook_secret: None,
            max_messages_per_second: 0,
            bulk_messages_per_second: 25,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSettings {
    pub enabled: bool,
    #[serde(serialize_with = "mask_secret")]
    pub token: Option<SecretString>,
    pub api_url: String,
    /// Guilds to register slash commands in; empty registers them globally.
    pub guild_ids: Vec<String>,
    /// Serve Discord's HTTP interactions endpoint as well as the gateway.
    pub interactions_endpoint: bool,
    pub interactions_listen: String,
    /// The application's public key (hex), from the developer portal.
    pub public_key: Option<String>,
    /// A bot-wide cap on reply requests per second; 0 = none (Discord's
    /// per-route buckets and 429s pace replies).
    pub max_requests_per_second: u32,
    /// The bot-wide cap on bulk sends (announcements, subscriber notices).
    pub bulk_requests_per_second: u32,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            token: None,
            api_url: "https://discord.com".into(),
            guild_ids: Vec::new(),
            interactions_endpoint: false,
            interactions_listen: "127.0.0.1:8080".into(),
            public_key: None,
            max_requests_per_second: 0,
            bulk_requests_per_second: 40,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Bearer token the simulator expects (and `chat` uses in-process).
    #[serde(serialize_with = "mask_secret")]
    pub token: Option<SecretString>,
    /// Token for the `/_sim/*` admin endpoints.
    #[serde(serialize_with = "mask_secret")]
    pub admin_token: Option<SecretString>,
    /// A TOML file with `[[accounts]]`, used when `accounts` is empty.
    pub accounts_file: Option<PathBuf>,
    /// Demo accounts; with neither these nor a file, built-in ones are used.
    pub accounts: Vec<SimAccountSettings>,
    /// Seconds before a queued mail counts as sent, and before sent becomes delivered.
    pub delivery_step_secs: u64,
    /// Reset and verification mails per address per hour before 429.
    pub mails_per_address_per_hour: u32,
}

/// What a simulated mailbox does with mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxBehaviour {
    #[default]
    Delivers,
    Bounces,
    Defers,
}

/// One demo account of the simulator.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimAccountSettings {
    pub email: String,
    pub account_id: String,
    /// `app` and/or `sms`; empty means two-factor is off.
    #[serde(default)]
    pub two_factor: Vec<String>,
    /// Base32 TOTP secret for the authenticator app.
    #[serde(default)]
    pub totp_secret: Option<String>,
    #[serde(default)]
    pub backup_codes_left: u32,
    /// Locked for this many minutes after the simulator starts.
    #[serde(default)]
    pub locked_minutes: u32,
    #[serde(default)]
    pub failed_attempts_24h: u32,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default = "yes")]
    pub email_verified: bool,
    #[serde(default)]
    pub mailbox: MailboxBehaviour,
}

fn yes() -> bool {
    true
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            token: None,
            admin_token: None,
            accounts_file: None,
            accounts: Vec::new(),
            delivery_step_secs: 2,
            mails_per_address_per_hour: 5,
        }
    }
}

const MASK: &str = "********";

fn mask_secret<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) if !secret.expose_secret().is_empty() => s.serialize_str(MASK),
        _ => s.serialize_str(""),
    }
}

fn mask_url_password<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&masked_url(value))
}

fn mask_optional_url<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&masked_url(v)),
        None => s.serialize_none(),
    }
}

/// The URL with any password (in the authority or a `password`, `token`
/// or `key` query parameter) replaced by `********`, for display.
pub fn masked_url(value: &str) -> String {
    let Ok(mut url) = url::Url::parse(value) else {
        return value.to_string();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    }
    let secret_param = |k: &str| {
        let k = k.to_ascii_lowercase();
        [
            "password",
            "passwd",
            "token",
            "secret",
            "key",
            "sslpassword",
        ]
        .iter()
        .any(|p| k.contains(p))
    };
    if url.query_pairs().any(|(k, _)| secret_param(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl Settings {
    /// The effective configuration as TOML with every secret masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let mut settings = Settings::default();
        settings.telegram.token = Some(SecretString::from("tg-very-secret"));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("tg-very-secret"));
        assert!(!settings.to_masked_toml().contains("tg-very-secret"));
    }

    #[test]
    fn database_passwords_are_masked_for_display() {
        assert_eq!(
            masked_url("postgres://bot:hunter2@db/recoverbot"),
            "postgres://bot:********@db/recoverbot"
        );
        assert_eq!(masked_url("sqlite://data/x.db"), "sqlite://data/x.db");
        let shown = masked_url("postgres://db/recoverbot?user=bot&password=hunter2");
        assert!(
            !shown.contains("hunter2") && shown.contains("user=bot"),
            "{shown}"
        );
        let mut settings = Settings::default();
        settings.database.url = "postgres://bot:hunter2@db/x".into();
        settings.account_api.base_url = Some("https://u:hunter2@accounts.example".into());
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(!settings.to_masked_toml().contains("hunter2"));
    }
}
