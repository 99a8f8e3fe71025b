//! [`AccountClient`]: the account API over HTTP (reqwest).
//!
//! - Bearer token on every request, kept in a `SecretString` and sent as a
//!   header marked sensitive; it never appears in errors, logs or `Debug`
//!   (errors describe what went wrong, never reqwest's own text).
//! - Side-effecting POSTs carry an `Idempotency-Key` that is stored before
//!   the first attempt: retries, redelivered events and replays after a
//!   crash all reuse it, and a recorded response is returned without calling
//!   again.
//! - Retries only timeouts, connection errors and 5xx, with capped
//!   exponential backoff and jitter; honours `Retry-After` on 429.
//! - A [`Breaker`] stops all calls while the service keeps failing.

use super::breaker::Breaker;
use super::wire::*;
use crate::config::AccountApiSettings;
use crate::domain::{AccountId, Email, OneTimeCode, now_millis};
use crate::engine::ports::IdempotencyStore;
use rand::Rng;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the account service refused our credentials (401)")]
    Unauthorized,
    #[error("the account service does not know that resource (404)")]
    NotFound,
    #[error("the account service rejected the request ({status}: {code})")]
    Rejected { status: u16, code: String },
    #[error("rate limited by the account service; retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the account service is failing; calls are paused (circuit open)")]
    CircuitOpen,
    #[error("the account service is unavailable: {0}")]
    Unavailable(String),
    #[error("the account service sent an unexpected response: {0}")]
    Protocol(String),
    #[error("cannot keep the idempotency record: {0}")]
    Store(String),
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Timeouts, retries and breaker settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
    pub breaker_probes: u32,
}

impl From<&AccountApiSettings> for ClientOptions {
    fn from(s: &AccountApiSettings) -> Self {
        Self {
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            request_timeout: Duration::from_millis(s.request_timeout_ms),
            max_attempts: s.max_attempts.max(1),
            backoff_base: Duration::from_millis(s.backoff_base_ms),
            backoff_max: Duration::from_millis(s.backoff_max_ms),
            breaker_threshold: s.breaker_failure_threshold,
            breaker_open_for: Duration::from_secs(s.breaker_open_secs),
            breaker_probes: s.breaker_half_open_probes,
        }
    }
}

pub struct AccountClient {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    idempotency: Arc<dyn IdempotencyStore>,
    breaker: Breaker,
    options: ClientOptions,
}

impl std::fmt::Debug for AccountClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountClient")
            .field("base", &self.base.as_str())
            .field("token", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("account_api.base_url is not a valid http(s) URL")]
    BadUrl,
    #[error("account_api.token contains characters a header cannot carry")]
    BadToken,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl AccountClient {
    pub fn new(
        base_url: &str,
        token: &SecretString,
        options: ClientOptions,
        idempotency: Arc<dyn IdempotencyStore>,
    ) -> Result<Self, ClientBuildError> {
        let mut base = Url::parse(base_url).map_err(|_| ClientBuildError::BadUrl)?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientBuildError::BadUrl);
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| ClientBuildError::BadToken)?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(concat!("recoverbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientBuildError::Http(e.without_url().to_string()))?;
        Ok(Self {
            http,
            base,
            auth,
            breaker: Breaker::new(
                options.breaker_threshold,
                options.breaker_open_for,
                options.breaker_probes,
            ),
            idempotency,
            options,
        })
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    #[tracing::instrument(skip_all, fields(endpoint = "POST /v1/password-resets"))]
    pub async fn request_password_reset(
        &self,
        email: &Email,
        scope: &str,
    ) -> Result<ResetAccepted, ApiError> {
        let body = serde_json::to_value(EmailBody {
            email: email.as_str().into(),
        })
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &["v1", "password-resets"],
            Some(body),
            Some(scope),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(endpoint = "GET /v1/password-resets/{id}"))]
    pub async fn reset_status(&self, reset_id: &str) -> Result<ResetStatus, ApiError> {
        check_id(reset_id)?;
        self.call(
            Method::GET,
            &["v1", "password-resets", reset_id],
            None,
            None,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(endpoint = "POST /v1/verifications"))]
    pub async fn start_verification(
        &self,
        email: &Email,
        scope: &str,
    ) -> Result<VerificationStarted, ApiError> {
        let body = serde_json::to_value(EmailBody {
            email: email.as_str().into(),
        })
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &["v1", "verifications"],
            Some(body),
            Some(scope),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(endpoint = "POST /v1/verifications/{id}/confirm"))]
    pub async fn confirm_verification(
        &self,
        verification_id: &str,
        code: &OneTimeCode,
        scope: &str,
    ) -> Result<VerificationResult, ApiError> {
        check_id(verification_id)?;
        let body = serde_json::json!({ "code": code.expose() });
        self.call(
            Method::POST,
            &["v1", "verifications", verification_id, "confirm"],
            Some(body),
            Some(scope),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(endpoint = "GET /v1/accounts/{id}/login-status"))]
    pub async fn login_status(&self, account: &AccountId) -> Result<LoginStatus, ApiError> {
        self.call(
            Method::GET,
            &["v1", "accounts", account.as_str(), "login-status"],
            None,
            None,
        )
        .await
    }

    #[tracing::instrument(
        skip_all,
        fields(endpoint = "POST /v1/accounts/{id}/two-factor/diagnose")
    )]
    pub async fn diagnose_two_factor(
        &self,
        account: &AccountId,
        code: &OneTimeCode,
        scope: &str,
    ) -> Result<Diagnosis, ApiError> {
        let body = serde_json::json!({ "code": code.expose() });
        self.call(
            Method::POST,
            &["v1", "accounts", account.as_str(), "two-factor", "diagnose"],
            Some(body),
            Some(scope),
        )
        .await
    }

    /// Staff: unlock an account. `staff_id` passed the bot's staff check.
    #[tracing::instrument(skip_all, fields(endpoint = "POST /v1/accounts/{id}/unlock"))]
    pub async fn unlock(
        &self,
        account: &AccountId,
        staff_id: &str,
        reason: &str,
        scope: &str,
    ) -> Result<Unlocked, ApiError> {
        self.staff_call(
            &["v1", "accounts", account.as_str(), "unlock"],
            staff_id,
            reason,
            scope,
        )
        .await
    }

    /// Staff: turn two-factor authentication off so the user can set it up again.
    #[tracing::instrument(skip_all, fields(endpoint = "POST /v1/accounts/{id}/two-factor/reset"))]
    pub async fn reset_two_factor(
        &self,
        account: &AccountId,
        staff_id: &str,
        reason: &str,
        scope: &str,
    ) -> Result<TwoFactorReset, ApiError> {
        self.staff_call(
            &["v1", "accounts", account.as_str(), "two-factor", "reset"],
            staff_id,
            reason,
            scope,
        )
        .await
    }

    async fn staff_call<T: DeserializeOwned>(
        &self,
        path: &[&str],
        staff_id: &str,
        reason: &str,
        scope: &str,
    ) -> Result<T, ApiError> {
        let staff = HeaderValue::from_str(staff_id)
            .map_err(|_| ApiError::Protocol("staff id is not a valid header value".into()))?;
        let body = serde_json::to_value(ReasonBody {
            reason: reason.into(),
        })
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
        self.call_with(Method::POST, path, Some(body), Some(scope), Some(staff))
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<serde_json::Value>,
        idempotency_scope: Option<&str>,
    ) -> Result<T, ApiError> {
        self.call_with(method, path, body, idempotency_scope, None)
            .await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<serde_json::Value>,
        idempotency_scope: Option<&str>,
        staff_id: Option<HeaderValue>,
    ) -> Result<T, ApiError> {
        let idempotency_key = match idempotency_scope {
            Some(scope) => {
                let record = self
                    .idempotency
                    .idempotency_record(scope, &uuid::Uuid::new_v4().to_string(), now_millis())
                    .await
                    .map_err(|e| ApiError::Store(e.to_string()))?;
                if let Some(response) = record.response {
                    tracing::debug!("replaying the recorded response of an earlier attempt");
                    return serde_json::from_str(&response).map_err(|e| {
                        ApiError::Protocol(format!(
                            "recorded response is not readable ({:?})",
                            e.classify()
                        ))
                    });
                }
                Some(record.key)
            }
            None => None,
        };
        let url = self.url(path);
        let mut last_problem = String::from("no attempt was made");
        for attempt in 1..=self.options.max_attempts {
            let Some(permit) = self.breaker.try_acquire() else {
                return Err(ApiError::CircuitOpen);
            };
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone());
            if let Some(key) = &idempotency_key {
                request = request.header("Idempotency-Key", key.as_str());
            }
            if let Some(staff) = &staff_id {
                request = request.header("X-Staff-Id", staff.clone());
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.breaker.failure(permit);
                    last_problem = describe(&e);
                    tracing::warn!(attempt, problem = %last_problem, "account API call failed");
                    self.pause_before_retry(attempt).await;
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.breaker.neutral(permit);
                let wait = retry_after(&response).unwrap_or(1);
                if attempt < self.options.max_attempts
                    && Duration::from_secs(wait) <= self.options.backoff_max
                {
                    tracing::info!(attempt, wait, "account API asked us to wait");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    continue;
                }
                return Err(ApiError::RateLimited {
                    retry_after_secs: wait,
                });
            }
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    self.breaker.failure(permit);
                    last_problem = describe(&e);
                    self.pause_before_retry(attempt).await;
                    continue;
                }
            };
            if status.is_server_error() {
                self.breaker.failure(permit);
                last_problem = format!("HTTP {}", status.as_u16());
                tracing::warn!(
                    attempt,
                    status = status.as_u16(),
                    "account API server error"
                );
                self.pause_before_retry(attempt).await;
                continue;
            }
            if status.is_success() {
                self.breaker.success(permit);
                let parsed: T = serde_json::from_str(&text).map_err(|e| {
                    // serde quotes the offending value; say where, not what.
                    ApiError::Protocol(format!(
                        "HTTP {}: unexpected JSON ({:?} at line {} column {})",
                        status.as_u16(),
                        e.classify(),
                        e.line(),
                        e.column()
                    ))
                })?;
                if let Some(scope) = idempotency_scope
                    && let Err(e) = self
                        .idempotency
                        .record_idempotent_response(scope, &text, now_millis())
                        .await
                {
                    // The key is stored, so a replay stays idempotent anyway.
                    tracing::warn!(error = %e, "could not record the response");
                }
                return Ok(parsed);
            }
            self.breaker.neutral(permit);
            return Err(match status {
                StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
                StatusCode::NOT_FOUND => ApiError::NotFound,
                _ => ApiError::Rejected {
                    status: status.as_u16(),
                    code: serde_json::from_str::<ErrorBody>(&text)
                        .map(|b| b.error.code)
                        .unwrap_or_else(|_| "unknown".into()),
                },
            });
        }
        Err(ApiError::Unavailable(last_problem))
    }

    async fn pause_before_retry(&self, attempt: u32) {
        if attempt >= self.options.max_attempts {
            return;
        }
        let base = self.options.backoff_base.as_millis() as u64;
        let cap = self.options.backoff_max.as_millis() as u64;
        let ceiling = base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(cap)
            .max(1);
        let jittered = rand::thread_rng().gen_range(ceiling / 2..=ceiling);
        tokio::time::sleep(Duration::from_millis(jittered)).await;
    }
}

/// Ids go into URL paths: only plain ids are allowed.
fn check_id(id: &str) -> Result<(), ApiError> {
    if AccountId::parse(id).is_some() {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What went wrong, in our words: reqwest's text includes the URL and is
/// not ours to vouch for.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "the response body was cut off or malformed".into()
    } else if e.is_request() {
        "the request could not be sent".into()
    } else {
        "transport error".into()
    }
}
