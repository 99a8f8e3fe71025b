//! Property tests: random sequences of texts, button payloads (valid,
//! forged, stale), duplicate events and engine restarts over the same
//! database. The engine never panics, never loses or repeats a turn, and the
//! stored state always points at an existing step.
//!
//! The account actions here are a deterministic stand-in that cycles through
//! every outcome of every action, so the walk reaches the flows' error
//! branches too (the simulator, tested elsewhere, mostly answers `ok`).

use crate::support::bot::flows_dir;
use async_trait::async_trait;
use proptest::prelude::*;
use recoverbot::domain::{AccountId, ChannelKind, ConversationKey, EventId, MessageRef};
use recoverbot::engine::ports::{Direction, Store};
use recoverbot::engine::{
    AccountActions, ActionRequest, ActionResult, Engine, EngineConfig, Inbound, Input, Outbound,
};
use recoverbot::flow::FlowSet;
use recoverbot::store::MemoryStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct CyclingActions(AtomicUsize);

#[async_trait]
impl AccountActions for CyclingActions {
    async fn perform(&self, request: ActionRequest) -> ActionResult {
        let spec = request.action.spec();
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let outcome = spec.outcomes[n % spec.outcomes.len()];
        let mut result = ActionResult::outcome(outcome);
        for var in spec.outputs {
            result = result.with(var, format!("value-of-{var}"));
        }
        if outcome == "ok" && spec.id == "confirm_verification" {
            result.verified_account = AccountId::parse("acc_prop");
        }
        result
    }
}

#[derive(Debug, Clone)]
enum Op {
    Text(String),
    /// Press the n-th button of the latest reply (if any).
    Press(usize),
    /// A payload the engine never issued.
    Forged(String),
    /// A payload from an earlier reply.
    Stale(usize),
    /// Deliver the previous event again.
    Duplicate,
    /// Throw the engine away and build a new one over the same store.
    Restart,
}

fn texts() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("I forgot my password".to_string()),
        Just("menu".to_string()),
        Just("talk to a human".to_string()),
        Just("is it down?".to_string()),
        Just("2fa".to_string()),
        Just("alice@example.com".to_string()),
        Just("123456".to_string()),
        Just("yes".to_string()),
        Just("1".to_string()),
        Just("my password is Tr0ub4dor&3xyz".to_string()),
        Just("".to_string()),
        "[a-z ]{0,30}",
        any::<String>(),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => texts().prop_map(Op::Text),
            5 => (0usize..10).prop_map(Op::Press),
            1 => "[ -~]{0,80}".prop_map(Op::Forged),
            1 => (0usize..20).prop_map(Op::Stale),
            1 => Just(Op::Duplicate),
            1 => Just(Op::Restart),
        ],
        1..40,
    )
}

/// Loaded once: parsing and compiling the flows is not what is under test.
fn default_flows() -> &'static FlowSet {
    static FLOWS: std::sync::OnceLock<FlowSet> = std::sync::OnceLock::new();
    FLOWS.get_or_init(|| recoverbot::flow::load_dir(&flows_dir()).unwrap())
}

fn engine(flows: &FlowSet, store: Arc<dyn Store>) -> Engine {
    Engine::new(
        flows.clone(),
        store,
        Arc::new(CyclingActions(AtomicUsize::new(0))),
        EngineConfig::from_settings(&recoverbot::config::Settings::default()),
    )
}

async fn run_ops(
    flows: &FlowSet,
    store: Arc<dyn Store>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let key = ConversationKey::new(ChannelKind::Telegram, "prop-chat", "prop-user");
    let mut engine = engine(flows, store.clone());
    let mut seen_payloads: Vec<String> = Vec::new();
    let mut latest: Vec<String> = Vec::new();
    let mut last_event: Option<(EventId, Input, bool)> = None;
    let mut committed: i64 = 0;
    for (i, op) in ops.into_iter().enumerate() {
        let event = EventId::new(format!("e{i}"));
        let input = match op {
            Op::Restart => {
                engine = engine_for_restart(flows, store.clone());
                continue;
            }
            Op::Duplicate => match &last_event {
                Some((e, input, was_committed)) => {
                    let before = store
                        .load_conversation(&key)
                        .await
                        .unwrap()
                        .map(|c| c.version);
                    let reply = engine
                        .handle(Inbound {
                            key: key.clone(),
                            event_id: Some(e.clone()),
                            message_id: None,
                            locale: None,
                            input: input.clone(),
                        })
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    // An expired press was never committed: its redelivery is
                    // just as harmless, but not a "duplicate".
                    prop_assert!(
                        reply.duplicate || !*was_committed,
                        "a redelivery is recognised"
                    );
                    let after = store
                        .load_conversation(&key)
                        .await
                        .unwrap()
                        .map(|c| c.version);
                    prop_assert_eq!(before, after, "a redelivery changes nothing");
                    continue;
                }
                None => continue,
            },
            Op::Text(t) => Input::Text(t),
            Op::Press(n) => match latest.get(n % latest.len().max(1)) {
                Some(p) => Input::Button(p.clone()),
                None => Input::Text("menu".into()),
            },
            Op::Forged(p) => Input::Button(p),
            Op::Stale(n) => match seen_payloads.get(n % seen_payloads.len().max(1)) {
                Some(p) => Input::Button(p.clone()),
                None => Input::Button("rb1:stale:0".into()),
            },
        };
        let before = store
            .load_conversation(&key)
            .await
            .unwrap()
            .map_or(0, |c| c.version);
        let reply = engine
            .handle(Inbound {
                key: key.clone(),
                event_id: Some(event.clone()),
                message_id: Some(MessageRef::new(format!("m{i}"))),
                locale: None,
                input: input.clone(),
            })
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let stored = store.load_conversation(&key).await.unwrap();
        let after = stored.as_ref().map_or(0, |c| c.version);
        let expired = reply
            .actions
            .iter()
            .any(|a| matches!(a, Outbound::Notice { .. }))
            && after == before;
        if expired {
            prop_assert_eq!(after, before, "an expired button changes nothing");
            last_event = Some((event.clone(), input.clone(), false));
        } else {
            last_event = Some((event.clone(), input.clone(), true));
            prop_assert_eq!(
                after,
                before + 1,
                "every accepted turn is stored exactly once"
            );
            committed += 1;
        }
        let Some(stored) = stored else {
            // A press with no conversation behind it starts none.
            prop_assert!(
                expired && before == 0,
                "only a stale press leaves no conversation"
            );
            continue;
        };
        let step = recoverbot::flow::Target {
            flow: stored.flow.clone(),
            step: stored.step.clone(),
        };
        prop_assert!(
            flows.step(&step).is_some(),
            "stored state points at a real step: {}",
            step
        );
        prop_assert_eq!(
            (reply.flow.as_str(), reply.step.as_str()),
            (stored.flow.as_str(), stored.step.as_str())
        );
        for b in reply.buttons() {
            prop_assert!(b.payload.len() <= 64);
        }
        if !reply.buttons().is_empty() {
            latest = reply.buttons().iter().map(|b| b.payload.clone()).collect();
            seen_payloads.extend(latest.iter().cloned());
        }
    }
    let transcript = store.transcript(&key, 10_000).await.unwrap();
    let inbound = transcript
        .iter()
        .filter(|e| e.direction == Direction::In)
        .count() as i64;
    prop_assert_eq!(
        inbound,
        committed,
        "no turn lost or repeated in the transcript"
    );
    prop_assert!(transcript.iter().all(|e| !e.text.contains("Tr0ub4dor")));
    Ok(())
}

fn engine_for_restart(flows: &FlowSet, store: Arc<dyn Store>) -> Engine {
    engine(flows, store)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_conversations_keep_every_invariant_in_memory(ops in ops()) {
        let flows = default_flows();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_ops(flows, Arc::new(MemoryStore::new()), ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_conversations_keep_every_invariant_on_sqlite(ops in ops()) {
        let flows = default_flows();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = crate::support::db::SqliteDb::new();
            let store = db.open().await;
            let result = run_ops(flows, store.clone(), ops).await;
            store.close().await;
            result
        })?;
    }
}
