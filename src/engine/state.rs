//! A conversation's state as plain serialisable data (one record per
//! conversation in the store).

use crate::domain::{AccountId, Millis};
use crate::flow::Target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Engine bookkeeping, stored as JSON in the `state` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineState {
    /// Binds the buttons of the current step; renewed on every new step.
    pub nonce: String,
    /// Wrong answers to the current capture.
    pub retries: u32,
    /// Unrecognised messages in a row.
    pub misses: u32,
    /// The secret warning was given once.
    pub warned_secret: bool,
    /// The flow reached an ending step.
    pub ended: bool,
    /// The last topic flow (not menu/feedback/human) the user entered.
    pub topic: Option<String>,
    pub verified: Option<Verified>,
    pub locale: Option<String>,
    pub turns: u64,
    /// The candidates of a "Did you mean …?" question, shown before the
    /// step's own buttons; cleared on the next step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Target>,
}

/// A confirmed e-mail code: account questions are allowed until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub account: AccountId,
    pub until: Millis,
}

/// The conversation as the engine works on it during a turn.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub flow: String,
    pub step: String,
    /// Captured values, action outputs, counters: never a secret.
    pub vars: BTreeMap<String, String>,
    pub state: EngineState,
    pub flow_version: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Store version the turn started from (0 = new).
    pub version: i64,
}
