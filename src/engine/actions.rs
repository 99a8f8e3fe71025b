//! The port through which flows act on the world: [`AccountActions`]. The
//! account API client implements it; the engine only knows the action names
//! and outcomes of [`crate::flow::catalog`].

use crate::domain::{AccountId, ConversationKey, EventId};
use crate::flow::catalog::{ActionName, UPSTREAM_UNAVAILABLE};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// One action call. `inputs` may hold an e-mail address or a code, so
/// `Debug` shows only their names.
pub struct ActionRequest {
    pub action: ActionName,
    pub inputs: BTreeMap<String, String>,
    pub conversation: ConversationKey,
    /// The account this conversation verified (for account actions).
    pub account: Option<AccountId>,
    /// Identifies this call across retries, redeliveries and replays: the
    /// same turn of the same event always gives the same scope.
    pub idempotency_scope: String,
    pub event: Option<EventId>,
}

impl std::fmt::Debug for ActionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRequest")
            .field("action", &self.action)
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}

/// What an action returned: one of its catalog outcomes and the variables
/// it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub outcome: String,
    pub vars: BTreeMap<String, String>,
    /// Set by a successful `confirm_verification`.
    pub verified_account: Option<AccountId>,
}

impl ActionResult {
    pub fn outcome(outcome: &str) -> Self {
        Self {
            outcome: outcome.to_string(),
            vars: BTreeMap::new(),
            verified_account: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    pub fn unavailable() -> Self {
        Self::outcome(UPSTREAM_UNAVAILABLE)
    }
}

#[async_trait]
pub trait AccountActions: Send + Sync {
    /// Performs the action. Never fails: trouble is an outcome
    /// (`upstream_unavailable`, `invalid`, ...).
    async fn perform(&self, request: ActionRequest) -> ActionResult;
}

/// Actions for when no account service is configured: every call is
/// `upstream_unavailable`, so flows take their fallback branches.
pub struct NoAccountService;

#[async_trait]
impl AccountActions for NoAccountService {
    async fn perform(&self, _request: ActionRequest) -> ActionResult {
        ActionResult::unavailable()
    }
}
