//! [`ApiActions`]: the engine's [`AccountActions`] port on the account API
//! client. (The status actions are the engine's own: it answers them from
//! its status board.) Turns API answers into flow outcomes and
//! user-friendly variables ("delivered at 14:02 UTC", "about 90 seconds
//! behind").

use super::client::{AccountClient, ApiError};
use crate::domain::{AccountId, Email, OneTimeCode};
use crate::engine::{AccountActions, ActionRequest, ActionResult};
use crate::flow::catalog::{ActionName, NOT_VERIFIED, RATE_LIMITED};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub struct ApiActions {
    client: Arc<AccountClient>,
}

impl ApiActions {
    pub fn new(client: Arc<AccountClient>) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Arc<AccountClient> {
        &self.client
    }
}

fn rate_limited(retry_after_secs: u64) -> ActionResult {
    ActionResult::outcome(RATE_LIMITED).with(
        "retry_after_minutes",
        retry_after_secs.div_ceil(60).max(1).to_string(),
    )
}

/// Common mapping of failures every action shares.
fn failure(e: &ApiError) -> ActionResult {
    match e {
        ApiError::RateLimited { retry_after_secs } => rate_limited(*retry_after_secs),
        other => {
            tracing::warn!(error = %other, "account action failed");
            ActionResult::unavailable()
        }
    }
}

/// `14:02 UTC` (with the date when it is not today).
pub fn friendly_time(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            if t.date_naive() == Utc::now().date_naive() {
                t.format("%H:%M UTC").to_string()
            } else {
                t.format("%-d %b %H:%M UTC").to_string()
            }
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// "about 90 seconds behind" for a code that matched `steps` x 30 s away.
pub fn drift_description(steps: i32) -> String {
    let secs = steps.unsigned_abs() * 30;
    let amount = if secs >= 120 {
        format!("about {} minutes", (secs as f64 / 60.0).round() as u32)
    } else {
        format!("about {secs} seconds")
    };
    // A code valid for an earlier time means the phone's clock is behind.
    let direction = if steps < 0 { "behind" } else { "ahead" };
    format!("{amount} {direction}")
}

#[async_trait]
impl AccountActions for ApiActions {
    #[tracing::instrument(skip_all, fields(action = %request.action))]
    async fn perform(&self, request: ActionRequest) -> ActionResult {
        let input = |name: &str| request.inputs.get(name).map(String::as_str);
        let scope = request.idempotency_scope.as_str();
        match request.action {
            ActionName::RequestPasswordReset => {
                let Some(email) = input("email").and_then(|e| Email::parse(e).ok()) else {
                    return ActionResult::outcome("invalid");
                };
                match self.client.request_password_reset(&email, scope).await {
                    Ok(accepted) => ActionResult::outcome("ok")
                        .with("reset_id", accepted.reset_id)
                        .with("email_masked", email.masked()),
                    Err(ApiError::Rejected { status: 422, .. }) => ActionResult::outcome("invalid"),
                    Err(e) => failure(&e),
                }
            }
            ActionName::ResetDeliveryStatus => {
                let Some(reset_id) = input("reset_id") else {
                    return ActionResult::outcome("not_found");
                };
                match self.client.reset_status(reset_id).await {
                    Ok(s) => {
                        let outcome = match s.status.as_str() {
                            "queued" | "sent" | "delivered" | "deferred" | "bounced" => {
                                s.status.clone()
                            }
                            _ => "queued".to_string(),
                        };
                        let mut r = ActionResult::outcome(&outcome)
                            .with("delivery_status", s.status)
                            .with("recipient_domain", s.recipient_domain);
                        if let Some(t) = s.sent_at {
                            r = r.with("sent_at", friendly_time(&t));
                        }
                        if let Some(t) = s.delivered_at {
                            r = r.with("delivered_at", friendly_time(&t));
                        }
                        r
                    }
                    Err(ApiError::NotFound) => ActionResult::outcome("not_found"),
                    Err(e) => match failure(&e) {
                        r if r.outcome == RATE_LIMITED => ActionResult::unavailable(),
                        r => r,
                    },
                }
            }
            ActionName::StartVerification => {
                let Some(email) = input("email").and_then(|e| Email::parse(e).ok()) else {
                    return ActionResult::outcome("invalid");
                };
                match self.client.start_verification(&email, scope).await {
                    Ok(v) => ActionResult::outcome("ok")
                        .with("verification_id", v.verification_id)
                        .with("email_masked", email.masked()),
                    Err(ApiError::Rejected { status: 422, .. }) => ActionResult::outcome("invalid"),
                    Err(e) => failure(&e),
                }
            }
            ActionName::ConfirmVerification => {
                let Some(id) = input("verification_id") else {
                    return ActionResult::outcome("expired");
                };
                let Some(code) = input("code").and_then(OneTimeCode::parse) else {
                    return ActionResult::outcome("wrong_code");
                };
                match self.client.confirm_verification(id, &code, scope).await {
                    Ok(v) if v.verified => match v.account_id.as_deref().and_then(AccountId::parse)
                    {
                        Some(account) => ActionResult {
                            verified_account: Some(account),
                            ..ActionResult::outcome("ok")
                        },
                        None => ActionResult::unavailable(),
                    },
                    Ok(v) => ActionResult::outcome("wrong_code")
                        .with("attempts_left", v.attempts_left.unwrap_or(0).to_string()),
                    Err(ApiError::Rejected { status: 410, .. }) | Err(ApiError::NotFound) => {
                        ActionResult::outcome("expired")
                    }
                    Err(e) => failure(&e),
                }
            }
            ActionName::LoginStatus => {
                let Some(account) = request.account.as_ref() else {
                    return ActionResult::outcome(NOT_VERIFIED);
                };
                match self.client.login_status(account).await {
                    Ok(s) => login_status_result(&s),
                    Err(ApiError::Rejected { status: 403, .. }) | Err(ApiError::NotFound) => {
                        ActionResult::outcome(NOT_VERIFIED)
                    }
                    Err(e) => match failure(&e) {
                        r if r.outcome == RATE_LIMITED => ActionResult::unavailable(),
                        r => r,
                    },
                }
            }
            ActionName::DiagnoseTwoFactor => {
                let Some(account) = request.account.as_ref() else {
                    return ActionResult::outcome(NOT_VERIFIED);
                };
                let Some(code) = input("code").and_then(OneTimeCode::parse) else {
                    return ActionResult::outcome("no_match");
                };
                match self.client.diagnose_two_factor(account, &code, scope).await {
                    Ok(d) => match (d.matches, d.drift_steps) {
                        (true, Some(0)) | (true, None) => ActionResult::outcome("in_sync"),
                        (true, Some(steps)) => ActionResult::outcome("clock_drift")
                            .with("drift_description", drift_description(steps)),
                        (false, _) => ActionResult::outcome("no_match"),
                    },
                    Err(ApiError::Rejected { status: 403, .. }) => {
                        ActionResult::outcome(NOT_VERIFIED)
                    }
                    Err(e) => failure(&e),
                }
            }
            // The engine answers these from its status board.
            ActionName::PlatformStatus
            | ActionName::SubscribeStatus
            | ActionName::UnsubscribeStatus => ActionResult::unavailable(),
        }
    }
}

fn login_status_result(s: &super::wire::LoginStatus) -> ActionResult {
    let methods: Vec<&str> = s
        .two_factor
        .methods
        .iter()
        .map(|m| match m.as_str() {
            "app" => "authenticator app",
            "sms" => "SMS",
            other => other,
        })
        .collect();
    let logins: Vec<String> = s
        .recent_logins
        .iter()
        .take(5)
        .map(|l| {
            format!(
                "- {}: {}, {} ({}), {}",
                friendly_time(&l.at),
                l.city,
                l.country,
                l.device,
                if l.success { "successful" } else { "failed" }
            )
        })
        .collect();
    let locked = s.locked_until.as_deref().and_then(|t| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .filter(|t| t.with_timezone(&Utc) > Utc::now())
            .map(|_| friendly_time(t))
    });
    let outcome = if s.suspended {
        "suspended"
    } else if locked.is_some() {
        "locked"
    } else if !s.email_verified {
        "email_unverified"
    } else {
        "ok"
    };
    ActionResult::outcome(outcome)
        .with(
            "locked_until",
            locked.unwrap_or_else(|| "not locked".into()),
        )
        .with("failed_attempts", s.failed_attempts_24h.to_string())
        .with(
            "two_factor_methods",
            if s.two_factor.enabled && !methods.is_empty() {
                methods.join(" and ")
            } else {
                "none (two-factor authentication is off)".into()
            },
        )
        .with(
            "backup_codes_left",
            s.two_factor.backup_codes_left.to_string(),
        )
        .with(
            "recent_logins",
            if logins.is_empty() {
                "- none recorded".into()
            } else {
                logins.join("\n")
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_described_in_plain_words() {
        assert_eq!(drift_description(-3), "about 90 seconds behind");
        assert_eq!(drift_description(2), "about 60 seconds ahead");
        assert_eq!(drift_description(-10), "about 5 minutes behind");
    }
}
