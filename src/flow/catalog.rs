//! The vocabulary of the flow language that is not in the flow files: the
//! actions a step may run (with the outcomes each returns and the variables
//! it sets), the capture validators, and the variables that come from the
//! configuration. The checker uses it to reject unknown names; the engine
//! uses it to call actions.

use std::fmt;

/// An action a flow step can run. The account API client implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionName {
    RequestPasswordReset,
    ResetDeliveryStatus,
    StartVerification,
    ConfirmVerification,
    LoginStatus,
    DiagnoseTwoFactor,
    PlatformStatus,
    SubscribeStatus,
    UnsubscribeStatus,
}

/// What the flow language knows about one action.
#[derive(Debug)]
pub struct ActionSpec {
    pub name: ActionName,
    pub id: &'static str,
    /// Variables the action reads (captured earlier in the conversation).
    pub inputs: &'static [&'static str],
    /// Every outcome it can return; a step must route each one.
    pub outcomes: &'static [&'static str],
    /// Variables it sets for later messages.
    pub outputs: &'static [&'static str],
    /// Only after the conversation confirmed an e-mail code (30 minutes).
    pub needs_verified_account: bool,
    pub summary: &'static str,
}

/// The outcome every action may return when the account service cannot
/// answer in time.
pub const UPSTREAM_UNAVAILABLE: &str = "upstream_unavailable";
/// Returned without calling the service when a limit is reached.
pub const RATE_LIMITED: &str = "rate_limited";
/// Returned for account actions before an e-mail code was confirmed.
pub const NOT_VERIFIED: &str = "not_verified";

pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: ActionName::RequestPasswordReset,
        id: "request_password_reset",
        inputs: &["email"],
        outcomes: &["ok", "invalid", RATE_LIMITED, UPSTREAM_UNAVAILABLE],
        outputs: &["reset_id", "email_masked", "retry_after_minutes"],
        needs_verified_account: false,
        summary: "Asks the account service to mail a reset link (same answer for unknown addresses).",
    },
    ActionSpec {
        name: ActionName::ResetDeliveryStatus,
        id: "reset_delivery_status",
        inputs: &["reset_id"],
        outcomes: &[
            "queued",
            "sent",
            "delivered",
            "deferred",
            "bounced",
            "not_found",
            UPSTREAM_UNAVAILABLE,
        ],
        outputs: &[
            "delivery_status",
            "sent_at",
            "delivered_at",
            "recipient_domain",
        ],
        needs_verified_account: false,
        summary: "Reports what happened to the last reset mail.",
    },
    ActionSpec {
        name: ActionName::StartVerification,
        id: "start_verification",
        inputs: &["email"],
        outcomes: &["ok", "invalid", RATE_LIMITED, UPSTREAM_UNAVAILABLE],
        outputs: &["verification_id", "email_masked", "retry_after_minutes"],
        needs_verified_account: false,
        summary: "Mails a 6-digit code to link this chat to an account.",
    },
    ActionSpec {
        name: ActionName::ConfirmVerification,
        id: "confirm_verification",
        inputs: &["verification_id", "code"],
        outcomes: &[
            "ok",
            "wrong_code",
            "expired",
            RATE_LIMITED,
            UPSTREAM_UNAVAILABLE,
        ],
        outputs: &["attempts_left", "retry_after_minutes"],
        needs_verified_account: false,
        summary: "Checks the mailed code; on success the chat may ask about that account for 30 minutes.",
    },
    ActionSpec {
        name: ActionName::LoginStatus,
        id: "login_status",
        inputs: &[],
        outcomes: &[
            "ok",
            "locked",
            "suspended",
            "email_unverified",
            NOT_VERIFIED,
            UPSTREAM_UNAVAILABLE,
        ],
        outputs: &[
            "locked_until",
            "failed_attempts",
            "two_factor_methods",
            "backup_codes_left",
            "recent_logins",
        ],
        needs_verified_account: true,
        summary: "Why logins fail: lock, suspension, 2FA methods, recent logins.",
    },
    ActionSpec {
        name: ActionName::DiagnoseTwoFactor,
        id: "diagnose_two_factor",
        inputs: &["code"],
        outcomes: &[
            "in_sync",
            "clock_drift",
            "no_match",
            NOT_VERIFIED,
            RATE_LIMITED,
            UPSTREAM_UNAVAILABLE,
        ],
        outputs: &["drift_description", "retry_after_minutes"],
        needs_verified_account: true,
        summary: "Finds how far the phone clock is off from a spent authenticator code.",
    },
    ActionSpec {
        name: ActionName::PlatformStatus,
        id: "platform_status",
        inputs: &[],
        outcomes: &[
            "operational",
            "login_incident",
            "other_incident",
            UPSTREAM_UNAVAILABLE,
        ],
        outputs: &[
            "status_description",
            "incident_name",
            "incident_update",
            "affected_components",
        ],
        needs_verified_account: false,
        summary: "Reads the platform's status, as the watcher last saw it.",
    },
    ActionSpec {
        name: ActionName::SubscribeStatus,
        id: "subscribe_status",
        inputs: &[],
        outcomes: &["ok", "no_incident"],
        outputs: &["incident_name"],
        needs_verified_account: false,
        summary: "\"Tell me when it's fixed\": subscribes the chat to the current incident.",
    },
    ActionSpec {
        name: ActionName::UnsubscribeStatus,
        id: "unsubscribe_status",
        inputs: &[],
        outcomes: &["ok", "none"],
        outputs: &[],
        needs_verified_account: false,
        summary: "Cancels the chat's status subscriptions (`/stop`).",
    },
];

impl ActionName {
    pub fn parse(id: &str) -> Option<Self> {
        ACTIONS.iter().find(|a| a.id == id).map(|a| a.name)
    }

    pub fn spec(self) -> &'static ActionSpec {
        ACTIONS
            .iter()
            .find(|a| a.name == self)
            .expect("every action has a spec")
    }

    pub fn id(self) -> &'static str {
        self.spec().id
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// How captured free text is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// An e-mail address. Held for the turn only; `<var>_masked` is kept.
    Email,
    /// Six digits (spaces and dashes allowed). Held for the turn only.
    Code6,
    /// yes / no and their common variants; stored as `yes` or `no`.
    YesNo,
    /// One of the step's `choices` (case-insensitive).
    Choice,
    /// Any short text (redacted before it is stored).
    Text,
}

impl Validator {
    pub const ALL: &'static [&'static str] = &["email", "code6", "yes_no", "choice", "text"];

    /// Whether the captured value is too sensitive to keep past the turn.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Email | Self::Code6)
    }
}

/// The conditions a step's `status = { ... }` branch may test.
pub const STATUS_CONDITIONS: &[&str] =
    &["operational", "login_incident", "other_incident", "unknown"];

/// Variables every message may use, filled from `[platform]`.
pub const CONFIG_VARIABLES: &[&str] = &[
    "platform_name",
    "login_url",
    "reset_url",
    "status_page_url",
    "support_hours",
];

/// Variables the engine itself sets.
pub const ENGINE_VARIABLES: &[&str] = &["topic_title", "escalation_id"];
