//! The flow language: the serde types of `flows/*.toml` as written by
//! support staff, and the compiled [`FlowSet`] the engine runs.
//!
//! A file holds one flow: a `[flow]` header, its `[[step]]`s (the first is
//! where the flow starts) and optionally global `[[intent]]`s. One file (by
//! convention `main.toml`) also holds the `[commands]` table. See
//! `docs/flows.md` for the reference.

use super::catalog::{ActionName, Validator};
use crate::domain::ChannelKind;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One flow file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    pub flow: FlowHeader,
    #[serde(default, rename = "step")]
    pub steps: Vec<StepDef>,
    #[serde(default, rename = "intent")]
    pub intents: Vec<IntentDef>,
    /// The commands users type (`/help`), by name; in one file only.
    #[serde(default)]
    pub commands: Option<CommandTable>,
}

/// The `[commands]` table, in the order written (the order platforms show
/// the commands in).
#[derive(Debug, Clone, Default)]
pub struct CommandTable(pub Vec<(String, CommandDef)>);

impl<'de> Deserialize<'de> for CommandTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = CommandTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of commands: [commands.<name>]")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<CommandTable, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, CommandDef>()? {
                    entries.push(entry);
                }
                Ok(CommandTable(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// One command (`[commands.help]`): where it leads and how platforms list it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandDef {
    /// The entry point: `flow` (its first step) or `flow:step`.
    pub goto: String,
    /// Shown in Telegram's command menu and Discord's slash command list.
    pub description: String,
    /// Starts afresh (clears the conversation, like `/start`); an argument
    /// names a topic (`/recover password_reset`).
    #[serde(default)]
    pub fresh: bool,
    /// Where the command is offered and accepted (`telegram`, `discord`,
    /// `console`); everywhere when absent.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Other names that work too but are not listed (`/menu` for `/help`).
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowHeader {
    pub id: String,
    /// Shown in menus and in "did this solve it?" records.
    pub title: String,
    /// Regexes (case-insensitive) that route free text into this flow.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// Higher-priority flows are tried first when several triggers match.
    #[serde(default)]
    pub priority: i32,
    /// Utility flows (menu, feedback, human) are not "topics" for feedback.
    #[serde(default)]
    pub utility: bool,
    /// Phrasings that should land on the flow's first step: the intent
    /// classifier is trained on them (see `docs/understanding.md`).
    #[serde(default)]
    pub examples: Vec<String>,
    /// While a login incident is on, entering the flow opens with one line
    /// about it and a "tell me when it's fixed" button (login-help topics).
    #[serde(default)]
    pub status_notice: bool,
}

/// A phrase that works at every step ("menu", "talk to a human").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentDef {
    pub id: String,
    pub patterns: Vec<String>,
    pub goto: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: String,
    /// How the step is offered in "Did you mean …?" buttons; required when
    /// the step has `examples`.
    #[serde(default)]
    pub title: Option<String>,
    /// Phrasings that should land directly on this step (an entry point
    /// deeper than the flow's start).
    #[serde(default)]
    pub examples: Vec<String>,
    /// The message, with `{variable}` templates.
    #[serde(default)]
    pub say: Option<String>,
    #[serde(default)]
    pub buttons: Vec<ButtonDef>,
    #[serde(default)]
    pub capture: Option<CaptureDef>,
    #[serde(default)]
    pub action: Option<ActionDef>,
    /// Where to continue (after the message, or after a capture).
    #[serde(default)]
    pub next: Option<String>,
    /// Counts visits; past `max` the step goes to `exceeded` instead.
    #[serde(default)]
    pub count: Option<CounterDef>,
    /// Variables to set on entering the step.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// When the message that led here already held a value (`email`), go
    /// on to this target, whose question the value then answers.
    #[serde(default)]
    pub slots: BTreeMap<String, String>,
    /// Branches on the platform's status when the step is entered:
    /// `{ login_incident = "target" }` goes there instead while a login
    /// incident is on (conditions: `operational`, `login_incident`,
    /// `other_incident`, `unknown`); otherwise the step runs as usual.
    #[serde(default)]
    pub status: BTreeMap<String, String>,
    /// Records an escalation request with this reason on entering the step.
    #[serde(default)]
    pub escalate: Option<String>,
    /// The conversation ends here; the next message starts afresh.
    #[serde(default)]
    pub end: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonDef {
    pub label: String,
    pub goto: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Stores the answer to "did this solve it?" (`solved`, `not_solved`).
    #[serde(default)]
    pub feedback: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureDef {
    pub var: String,
    /// One of [`Validator::ALL`]; checked by the flow checker.
    pub validator: String,
    /// Wrong answers allowed before `on_fail`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    pub on_fail: String,
    /// Said after a wrong answer, before the question is repeated.
    #[serde(default)]
    pub invalid: Option<String>,
    /// For the `choice` validator.
    #[serde(default)]
    pub choices: Vec<String>,
    /// Route by the captured value (`yes`/`no`, a choice); else `next`.
    #[serde(default)]
    pub branches: BTreeMap<String, String>,
}

fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    pub name: String,
    /// Outcome -> target. `default` catches outcomes not listed.
    pub on: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterDef {
    pub name: String,
    pub max: u32,
    pub exceeded: String,
}

// ---- compiled form -------------------------------------------------------

/// A resolved jump target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub struct Target {
    pub flow: String,
    pub step: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.flow, self.step)
    }
}

#[derive(Debug, Clone)]
pub struct Button {
    pub label: String,
    pub goto: Target,
    pub set: BTreeMap<String, String>,
    pub feedback: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub var: String,
    pub validator: Validator,
    pub retries: u32,
    pub on_fail: Target,
    pub invalid: Option<String>,
    pub choices: Vec<String>,
    pub branches: BTreeMap<String, Target>,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: ActionName,
    pub on: BTreeMap<String, Target>,
}

impl Action {
    pub fn target_for(&self, outcome: &str) -> Option<&Target> {
        self.on.get(outcome).or_else(|| self.on.get("default"))
    }
}

#[derive(Debug, Clone)]
pub struct Counter {
    pub name: String,
    pub max: u32,
    pub exceeded: Target,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    /// Its label on a "Did you mean" button (entry points only).
    pub title: Option<String>,
    /// Phrasings that land here (the classifier's training data).
    pub examples: Vec<String>,
    pub say: Option<String>,
    pub buttons: Vec<Button>,
    pub capture: Option<Capture>,
    pub action: Option<Action>,
    pub next: Option<Target>,
    pub count: Option<Counter>,
    pub set: BTreeMap<String, String>,
    /// Slot name (`email`) → where to go when the routed message held one.
    pub slots: BTreeMap<String, Target>,
    /// Status condition → where to go instead.
    pub status: BTreeMap<String, Target>,
    pub escalate: Option<String>,
    pub end: bool,
}

impl Step {
    /// Whether the conversation stops here to wait for the user.
    pub fn waits(&self) -> bool {
        self.action.is_none() && (!self.buttons.is_empty() || self.capture.is_some())
    }
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub title: String,
    pub file: PathBuf,
    pub triggers: Vec<Regex>,
    pub priority: i32,
    pub utility: bool,
    /// Phrasings that land on `start`.
    pub examples: Vec<String>,
    /// Opens with the login incident's line while one is on.
    pub status_notice: bool,
    pub start: String,
    pub steps: BTreeMap<String, Step>,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub patterns: Vec<Regex>,
    pub goto: Target,
}

/// A command, compiled: the engine goes to `goto` when a user sends it.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub goto: Target,
    pub description: String,
    pub fresh: bool,
    /// Empty: every channel.
    pub channels: Vec<ChannelKind>,
    pub aliases: Vec<String>,
}

impl Command {
    /// Whether the command is offered and accepted on `channel`.
    pub fn on(&self, channel: ChannelKind) -> bool {
        self.channels.is_empty() || self.channels.contains(&channel)
    }
}

/// All flows, compiled and checked: what the engine runs.
#[derive(Debug, Clone)]
pub struct FlowSet {
    pub flows: BTreeMap<String, Flow>,
    pub intents: Vec<Intent>,
    /// The `[commands]` table, in the order written.
    pub commands: Vec<Command>,
    /// Flows in trigger order (priority, then id).
    pub trigger_order: Vec<String>,
    /// Changes whenever any flow file changes.
    pub version: String,
    /// Trained from the flows' `examples`; `None` when there are none.
    pub classifier: Option<std::sync::Arc<super::classifier::Classifier>>,
}

/// The flow every fresh conversation starts in.
pub const MAIN_FLOW: &str = "main";
/// The step of the main flow that unrecognised text goes to.
pub const CLARIFY_STEP: &str = "clarify";
/// The step of the main flow that asks "Did you mean …?"; the candidates
/// come before its own buttons.
pub const DID_YOU_MEAN_STEP: &str = "did_you_mean";
/// The longest command name Telegram and Discord accept.
pub const MAX_COMMAND_CHARS: usize = 32;
/// The longest command description Discord accepts (Telegram: 256).
pub const MAX_COMMAND_DESCRIPTION_CHARS: usize = 100;

/// Whether `name` is a command name every platform accepts: 1-32 of
/// lowercase a-z, 0-9 and `_` (Telegram's rule, stricter than Discord's).
pub fn valid_command_name(name: &str) -> bool {
    (1..=MAX_COMMAND_CHARS).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl FlowSet {
    /// Parses an entry point as written in an evaluation file: `flow` (its
    /// first step) or `flow:step`; `None` when there is no such step.
    pub fn entry(&self, written: &str) -> Option<Target> {
        match written.split_once(':') {
            None => self.start_of(written),
            Some((flow, "")) => self.start_of(flow),
            Some((flow, step)) => {
                let target = Target {
                    flow: flow.into(),
                    step: step.into(),
                };
                self.step(&target).map(|_| target)
            }
        }
    }

    /// Every entry point with examples, with them: the classifier's
    /// training set, in a stable order.
    pub fn entry_examples(&self) -> Vec<(Target, &[String])> {
        let mut out = Vec::new();
        for flow in self.flows.values() {
            if !flow.examples.is_empty() {
                out.push((self.start_of(&flow.id).expect("flow"), &flow.examples[..]));
            }
            for step in flow.steps.values() {
                if !step.examples.is_empty() {
                    let target = Target {
                        flow: flow.id.clone(),
                        step: step.id.clone(),
                    };
                    out.push((target, &step.examples[..]));
                }
            }
        }
        out
    }

    pub fn step(&self, target: &Target) -> Option<&Step> {
        self.flows.get(&target.flow)?.steps.get(&target.step)
    }

    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.get(id)
    }

    pub fn start_of(&self, flow: &str) -> Option<Target> {
        self.flows.get(flow).map(|f| Target {
            flow: f.id.clone(),
            step: f.start.clone(),
        })
    }

    pub fn main(&self) -> Target {
        self.start_of(MAIN_FLOW)
            .expect("a checked flow set has a main flow")
    }

    /// The first global intent whose pattern matches normalised text.
    pub fn match_intent(&self, normalized: &str) -> Option<&Intent> {
        self.intents
            .iter()
            .find(|i| i.patterns.iter().any(|p| p.is_match(normalized)))
    }

    /// The commands offered on `channel`, in the order written.
    pub fn commands_on(&self, channel: ChannelKind) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(move |c| c.on(channel))
    }

    /// The command `name` (or one of its aliases) as accepted on `channel`.
    pub fn command(&self, channel: ChannelKind, name: &str) -> Option<&Command> {
        let mut on = self.commands_on(channel);
        on.find(|c| c.name == name || c.aliases.iter().any(|a| a == name))
    }

    /// The highest-priority flow whose trigger matches normalised text.
    pub fn match_trigger(&self, normalized: &str) -> Option<&Flow> {
        self.match_trigger_where(normalized, |_| true)
    }

    /// [`match_trigger`](Self::match_trigger) among the flows `keep` keeps.
    pub fn match_trigger_where(
        &self,
        normalized: &str,
        keep: impl Fn(&Flow) -> bool,
    ) -> Option<&Flow> {
        self.trigger_order
            .iter()
            .filter_map(|id| self.flows.get(id))
            .filter(|f| keep(f))
            .find(|f| f.triggers.iter().any(|t| t.is_match(normalized)))
    }

    /// Whether the flow or any of its steps has examples (the classifier
    /// knows it).
    pub fn has_examples(&self, flow: &Flow) -> bool {
        !flow.examples.is_empty() || flow.steps.values().any(|s| !s.examples.is_empty())
    }
}

/// Lowercases, straightens quotes and collapses whitespace, so triggers see
/// "Can’t  LOG in" as "can't log in".
pub fn normalize(text: &str) -> String {
    let lowered = text
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '`', '\u{00b4}'], "'");
    lowered.split_whitespace().collect::<Vec<_>>().join(" ")
}
