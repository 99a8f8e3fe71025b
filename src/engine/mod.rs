//! The conversation engine: a platform-neutral state machine.
//!
//! [`Engine::handle`] takes one [`Inbound`] event and returns the
//! [`Outbound`] actions for the channel to render. It knows no platform, no
//! SQL and no HTTP: storage and the account service are ports
//! ([`ports`], [`actions`]) implemented elsewhere.
//!
//! A turn is atomic: the dedupe record, the new state (optimistic
//! concurrency) and the transcript commit in one transaction, so an event
//! delivered twice is answered once. Turns of one conversation run in order:
//! a per-conversation lock here, and across instances the store's
//! conversation lock ([`ports::ConversationStore::lock_conversation`], an
//! advisory lock on PostgreSQL), with the version check as the last guard;
//! different conversations run concurrently.

pub mod actions;
mod locks;
pub mod messages;
pub mod ports;
pub mod redact;
mod state;
pub mod status;
mod template;
mod text;
mod turn;

pub use actions::{AccountActions, ActionRequest, ActionResult, NoAccountService};
pub use messages::{Envelope, Inbound, Input, Lane, OutButton, Outbound, Reply};
pub use state::{EngineState, Verified};

use crate::config::{RateLimitSettings, Settings};
use crate::domain::{ChannelKind, ChatRef, EventId, Millis, now_millis};
use crate::flow::FlowSet;
use ports::{
    Direction, OutboxWaker, Store, StoreError, StoredConversation, TranscriptEntry, TurnCommit,
};
use state::Conversation;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
pub use turn::{EXPIRED_BUTTON, SUBSCRIBE_LABEL, TOO_LONG};
use turn::{Turn, TurnEnv};

/// Where the engine reads the time (a test can move it).
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        now_millis()
    }
}

/// The engine's settings, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub idle_timeout_ms: Millis,
    /// A slow action is abandoned (fallback answer) after this long.
    pub answer_deadline: Duration,
    pub limits: RateLimitSettings,
    /// `platform_name`, `login_url`, ... for templates.
    pub platform_vars: BTreeMap<String, String>,
    /// How sure the classifier must be to route free text.
    pub understanding: crate::config::UnderstandingSettings,
    /// Longer messages are answered "too long" and cut before storing.
    pub max_message_chars: usize,
    /// How long a "tell me when it's fixed" subscription lasts.
    pub subscription_ms: Millis,
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let p = &settings.platform;
        Self {
            idle_timeout_ms: i64::try_from(settings.engine.idle_timeout_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            answer_deadline: Duration::from_millis(settings.account_api.answer_deadline_ms),
            limits: settings.rate_limits.clone(),
            understanding: settings.understanding.clone(),
            max_message_chars: settings.engine.max_message_chars.max(1),
            subscription_ms: i64::try_from(settings.status.subscription_days.max(1))
                .unwrap_or(7)
                .saturating_mul(24 * 3_600_000),
            platform_vars: BTreeMap::from([
                ("platform_name".into(), p.name.clone()),
                ("login_url".into(), p.login_url.clone()),
                ("reset_url".into(), p.reset_url.clone()),
                ("status_page_url".into(), p.status_page_url.clone()),
                ("support_hours".into(), p.support_hours.clone()),
            ]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the conversation kept changing under this turn; try again")]
    Contended,
}

/// Conflicts a turn is redone after before giving up.
const MAX_CONFLICT_RETRIES: usize = 8;

pub struct Engine {
    flows: RwLock<Arc<FlowSet>>,
    store: Arc<dyn Store>,
    actions: Arc<dyn AccountActions>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    locks: locks::KeyedLocks,
    waker: OnceLock<Arc<dyn OutboxWaker>>,
    /// The platform's status as the watcher last saw it.
    status: Arc<status::StatusBoard>,
    /// Turns redone after a write conflict (none when the store's
    /// conversation lock works).
    redone: std::sync::atomic::AtomicU64,
}

impl Engine {
    pub fn new(
        flows: FlowSet,
        store: Arc<dyn Store>,
        actions: Arc<dyn AccountActions>,
        config: EngineConfig,
    ) -> Self {
        Self::with_clock(flows, store, actions, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        flows: FlowSet,
        store: Arc<dyn Store>,
        actions: Arc<dyn AccountActions>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            flows: RwLock::new(Arc::new(flows)),
            store,
            actions,
            clock,
            config,
            locks: locks::KeyedLocks::default(),
            waker: OnceLock::new(),
            status: status::StatusBoard::new(),
            redone: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many turns were redone after a write conflict since start.
    pub fn redone_turns(&self) -> u64 {
        self.redone.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The status board the engine reads (the status watcher keeps it
    /// current).
    pub fn status_board(&self) -> Arc<status::StatusBoard> {
        self.status.clone()
    }

    /// Who hears that a commit queued outgoing messages (delivery). Set
    /// once, at start-up.
    pub fn set_waker(&self, waker: Arc<dyn OutboxWaker>) {
        let _ = self.waker.set(waker);
    }

    fn wake(&self, envelopes: &[Envelope]) {
        if let Some(w) = self.waker.get() {
            let mut last: Option<&ChatRef> = None;
            for e in envelopes {
                if last != Some(&e.to) {
                    w.wake(&e.to);
                    last = Some(&e.to);
                }
            }
        }
    }

    pub fn flows(&self) -> Arc<FlowSet> {
        self.flows.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in new flows (after an edit); conversations carry on where
    /// their step still exists.
    pub fn replace_flows(&self, flows: FlowSet) {
        *self.flows.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(flows);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Handles one inbound event; see the module docs for the guarantees.
    #[tracing::instrument(skip_all, fields(channel = %inbound.key.channel, event = inbound.event_id.as_ref().map(|e| e.as_str())))]
    pub async fn handle(&self, inbound: Inbound) -> Result<Reply, EngineError> {
        let _turn = self.locks.lock(&inbound.key).await;
        let _shared = self.store.lock_conversation(&inbound.key).await?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (seen, stored) = self
                .store
                .load_for_turn(&inbound.key, inbound.event_id.as_ref())
                .await?;
            if seen.is_some() {
                return Ok(self.duplicate_reply(&inbound).await);
            }
            let now = self.clock.now_millis();
            let (reply, commit) = match stored {
                // A press with no conversation behind it (someone else's
                // keyboard, or one from before a purge) starts nothing.
                None if matches!(inbound.input, Input::Button(_)) => expired_press(&inbound, now),
                stored => self.run_turn(&inbound, stored, now).await,
            };
            let envelopes = commit.outbox.clone();
            match self.store.commit_turn(commit).await {
                Ok(_) => {
                    self.wake(&envelopes);
                    return Ok(reply);
                }
                Err(StoreError::DuplicateEvent) => {
                    // A concurrent delivery of the same event won; it replies.
                    return Ok(self.duplicate_reply(&inbound).await);
                }
                Err(StoreError::Conflict(_)) => {
                    tracing::debug!("conversation changed by another writer; redoing the turn");
                    self.redone
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended)
    }

    /// Runs one turn on the stored conversation (or a fresh one) and says
    /// what to commit.
    async fn run_turn(
        &self,
        inbound: &Inbound,
        stored: Option<StoredConversation>,
        now: Millis,
    ) -> (Reply, TurnCommit) {
        let flows = self.flows();
        let (mut conv, is_new) = match stored {
            Some(s) => (decode(s, &flows), false),
            None => (fresh(&flows, now), true),
        };
        if let Some(locale) = &inbound.locale {
            conv.state.locale = Some(locale.clone());
        }
        let env = TurnEnv {
            flows: &flows,
            actions: self.actions.as_ref(),
            limits: self.store.as_ref(),
            config: &self.config,
            status: &self.status,
            now,
            key: &inbound.key,
            event: inbound.event_id.as_ref(),
            message_id: inbound.message_id.as_ref(),
        };
        let out = Turn::new(env)
            .run(&mut conv, is_new, inbound.input.clone())
            .await;
        let reply = render_reply(&out, &conv);
        let chat = inbound.key.chat_ref();
        let seen_message = match (&inbound.input, &inbound.message_id) {
            (Input::Button(_), Some(m)) => Some((chat.clone(), m.clone())),
            _ => None,
        };
        if !out.commit {
            // Nothing changes, but the event is recorded: a redelivery of a
            // stale press does not repeat its notice.
            let mut commit = TurnCommit::outbox_only(
                inbound.key.channel,
                inbound.event_id.clone(),
                now,
                Vec::new(),
            );
            commit.seen_message = seen_message;
            return (reply, commit);
        }
        let mut transcript = Vec::new();
        if let Some(text) = &out.transcript_in {
            transcript.push(TranscriptEntry {
                direction: Direction::In,
                text: text.clone(),
                at: now,
            });
        }
        // Every message of the reply (an incident line may precede the
        // step's own message).
        for text in reply.actions.iter().filter_map(|a| match a {
            Outbound::Message { text, .. } => Some(text),
            _ => None,
        }) {
            transcript.push(TranscriptEntry {
                direction: Direction::Out,
                text: text.clone(),
                at: now,
            });
        }
        conv.updated_at = now;
        let commit = TurnCommit {
            event: inbound.event_id.clone(),
            channel: inbound.key.channel,
            at: now,
            conversation: Some(encode(&inbound.key, &conv)),
            transcript,
            audit: out.audit,
            escalations: out.escalations,
            feedback: out.feedback,
            outbox: envelopes_of(&chat, &reply.actions),
            rate_hits: out.rate_hits,
            seen_message,
            subscriptions: out.subscriptions,
        };
        (reply, commit)
    }

    async fn duplicate_reply(&self, inbound: &Inbound) -> Reply {
        let (flow, step) = match self.store.load_conversation(&inbound.key).await {
            Ok(Some(c)) => (c.flow, c.step),
            _ => (String::new(), String::new()),
        };
        Reply {
            actions: Vec::new(),
            flow,
            step,
            duplicate: true,
        }
    }

    /// Queues messages that no conversation's turn produced (a group
    /// answer, a notice), recorded with `event` so a redelivery queues
    /// nothing. False when the event was processed before.
    pub async fn post(
        &self,
        channel: ChannelKind,
        event: Option<EventId>,
        envelopes: Vec<Envelope>,
    ) -> Result<bool, EngineError> {
        let commit =
            TurnCommit::outbox_only(channel, event, self.clock.now_millis(), envelopes.clone());
        match self.store.commit_turn(commit).await {
            Ok(_) => {
                self.wake(&envelopes);
                Ok(true)
            }
            Err(StoreError::DuplicateEvent) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a conversation stands, for tools and tests.
    pub async fn position(
        &self,
        key: &crate::domain::ConversationKey,
    ) -> Result<Option<(String, String)>, EngineError> {
        Ok(self
            .store
            .load_conversation(key)
            .await?
            .map(|c| (c.flow, c.step)))
    }
}

fn fresh(flows: &FlowSet, now: Millis) -> Conversation {
    let main = flows.main();
    Conversation {
        flow: main.flow,
        step: main.step,
        vars: BTreeMap::new(),
        state: EngineState::default(),
        flow_version: flows.version.clone(),
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

/// Stored data the engine cannot read starts afresh (never a panic); the
/// version is kept so the rewrite still passes the concurrency check.
fn decode(s: StoredConversation, flows: &FlowSet) -> Conversation {
    let vars = serde_json::from_str(&s.variables);
    let state = serde_json::from_str(&s.state);
    match (vars, state) {
        (Ok(vars), Ok(state)) => Conversation {
            flow: s.flow,
            step: s.step,
            vars,
            state,
            flow_version: s.flow_version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            version: s.version,
        },
        _ => {
            tracing::warn!("unreadable conversation state; starting afresh");
            let mut c = fresh(flows, s.updated_at);
            c.version = s.version;
            c.flow_version = String::new();
            c.flow = s.flow;
            c.step = s.step;
            c
        }
    }
}

fn encode(key: &crate::domain::ConversationKey, c: &Conversation) -> StoredConversation {
    StoredConversation {
        key: key.clone(),
        flow: c.flow.clone(),
        step: c.step.clone(),
        variables: serde_json::to_string(&c.vars).unwrap_or_else(|_| "{}".into()),
        state: serde_json::to_string(&c.state).unwrap_or_else(|_| "{}".into()),
        flow_version: c.flow_version.clone(),
        created_at: c.created_at,
        updated_at: c.updated_at,
        version: c.version,
    }
}

/// A press with no conversation behind it: "expired", recorded, nothing
/// else.
fn expired_press(inbound: &Inbound, now: Millis) -> (Reply, TurnCommit) {
    let reply = Reply {
        actions: vec![Outbound::Notice {
            text: EXPIRED_BUTTON.into(),
        }],
        ..Reply::default()
    };
    let commit = TurnCommit::outbox_only(
        inbound.key.channel,
        inbound.event_id.clone(),
        now,
        Vec::new(),
    );
    (reply, commit)
}

/// The reply's actions as envelopes to `chat`. A notice is the channel's
/// fast acknowledgement (a callback answer, an ephemeral reply): it is not
/// queued.
fn envelopes_of(chat: &ChatRef, actions: &[Outbound]) -> Vec<Envelope> {
    actions
        .iter()
        .filter(|a| !matches!(a, Outbound::Notice { .. }))
        .map(|a| Envelope::reply(chat.clone(), a.clone()))
        .collect()
}

fn render_reply(out: &turn::TurnOutput, conv: &Conversation) -> Reply {
    let mut actions = out.pre.clone();
    if let Some(notice) = &out.notice {
        actions.push(Outbound::Notice {
            text: notice.clone(),
        });
    }
    if !out.texts.is_empty() || !out.buttons.is_empty() {
        actions.push(Outbound::message(
            out.texts.join("\n\n"),
            out.buttons.clone(),
        ));
    }
    Reply {
        actions,
        flow: conv.flow.clone(),
        step: conv.step.clone(),
        duplicate: false,
    }
}
