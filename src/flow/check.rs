//! The flow checker: everything `recoverbot flows check` reports, and the
//! compilation of clean files into a [`FlowSet`].
//!
//! Each problem is a [`Diagnostic`] naming the file, the step (when there is
//! one) and a hint. The same check runs at start-up; the bot refuses to start
//! on errors, so the engine can trust every target, action and variable.

use super::catalog::{
    ACTIONS, ActionName, CONFIG_VARIABLES, ENGINE_VARIABLES, STATUS_CONDITIONS, Validator,
};
use super::model::*;
use crate::domain::ChannelKind;
use regex::{Regex, RegexBuilder};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// One problem in the flow files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub step: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(step) = &self.step {
            write!(f, ": step '{step}'")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

const MAX_BUTTONS: usize = 25;
const MAX_LABEL_CHARS: usize = 80;

/// The compiled size all the flows' regexes (triggers and intents) may take
/// together: many individually small patterns must not add up to a bot that
/// runs out of memory.
pub const MAX_TOTAL_REGEX_BYTES: usize = 32 * 1024 * 1024;

/// The memory a pattern takes once compiled, as the engine compiles it.
fn compiled_size(pattern: &str) -> usize {
    use regex_automata::meta;
    use regex_automata::util::syntax;
    meta::Regex::builder()
        .syntax(syntax::Config::new().case_insensitive(true))
        .configure(meta::Config::new().nfa_size_limit(Some(1 << 20)))
        .build(pattern)
        .map_or(0, |r| r.memory_usage())
}

/// Compiles a case-insensitive pattern, with a size limit so a pathological
/// pattern cannot make the bot slow.
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

struct Checker<'a> {
    files: &'a [(PathBuf, FlowFile)],
    diags: Vec<Diagnostic>,
    /// flow id -> (file, step ids in order)
    flows: BTreeMap<String, (PathBuf, Vec<String>)>,
    /// flow id -> its step ids, for lookups in constant time.
    step_sets: HashMap<String, HashSet<String>>,
}

/// Checks parsed flow files and compiles them. `version` identifies the
/// file contents (conversations remember it).
pub fn check_and_compile(
    files: &[(PathBuf, FlowFile)],
    version: String,
) -> Result<FlowSet, Vec<Diagnostic>> {
    let mut checker = Checker {
        files,
        diags: Vec::new(),
        flows: BTreeMap::new(),
        step_sets: HashMap::new(),
    };
    checker.index();
    checker.check_steps();
    checker.check_examples();
    checker.check_intents();
    checker.check_regex_total();
    checker.check_commands();
    checker.check_variables();
    checker.check_reachability();
    checker.check_loops();
    if !checker.diags.is_empty() {
        return Err(checker.diags);
    }
    Ok(compile(files, version))
}

impl Checker<'_> {
    fn error(&mut self, file: &Path, step: Option<&str>, message: String, hint: Option<String>) {
        self.diags.push(Diagnostic {
            file: file.to_path_buf(),
            step: step.map(str::to_string),
            message,
            hint,
        });
    }

    fn index(&mut self) {
        let mut seen_flows: HashMap<String, PathBuf> = HashMap::new();
        for (path, file) in self.files {
            let id = &file.flow.id;
            if !valid_id(id) {
                self.error(
                    path,
                    None,
                    format!("flow id '{id}' is not a valid id"),
                    Some("use lowercase letters, digits and _".into()),
                );
            }
            if let Some(first) = seen_flows.get(id) {
                let first = first.display().to_string();
                self.error(
                    path,
                    None,
                    format!("duplicate flow id '{id}'"),
                    Some(format!("already defined in {first}")),
                );
                continue;
            }
            seen_flows.insert(id.clone(), path.clone());
            if file.steps.is_empty() {
                self.error(
                    path,
                    None,
                    format!("flow '{id}' has no steps"),
                    Some(
                        "add at least one [[step]]; the first one is where the flow starts".into(),
                    ),
                );
            }
            let mut ids = Vec::new();
            let mut seen = HashSet::new();
            for step in &file.steps {
                if !valid_id(&step.id) {
                    self.error(
                        path,
                        Some(&step.id),
                        "step id is not a valid id".into(),
                        Some("use lowercase letters, digits and _".into()),
                    );
                }
                if !seen.insert(step.id.clone()) {
                    self.error(
                        path,
                        Some(&step.id),
                        "duplicate step id".into(),
                        Some("step ids must be unique within a flow".into()),
                    );
                }
                ids.push(step.id.clone());
            }
            for trigger in &file.flow.triggers {
                if let Err(e) = compile_pattern(trigger) {
                    self.error(
                        path,
                        None,
                        format!("invalid trigger regex {trigger:?}"),
                        Some(one_line(&e.to_string())),
                    );
                }
            }
            self.step_sets.insert(id.clone(), seen);
            self.flows.insert(id.clone(), (path.clone(), ids));
        }
        if !self.flows.contains_key(MAIN_FLOW) && !self.files.is_empty() {
            let file = self.files[0].0.clone();
            self.error(
                &file,
                None,
                "there is no flow with id 'main'".into(),
                Some("every conversation starts in the 'main' flow (the menu)".into()),
            );
        }
        if let Some((path, steps)) = self.flows.get(MAIN_FLOW)
            && !steps.iter().any(|s| s == CLARIFY_STEP)
        {
            let path = path.clone();
            self.error(&path, None, format!("the main flow has no '{CLARIFY_STEP}' step"), Some("the engine sends text it cannot place there; give it buttons that lead somewhere useful".into()));
        }
        if self.files.is_empty() {
            self.error(
                Path::new("flows"),
                None,
                "no flow files found".into(),
                Some("add flows/*.toml".into()),
            );
        }
    }

    /// Resolves a target written in `flow` to a [`Target`].
    fn resolve(&self, flow: &str, raw: &str) -> Result<Target, String> {
        let (flow_id, step_id) = match raw.split_once(':') {
            Some((f, s)) => (f, s),
            None => (flow, raw),
        };
        let Some((_, steps)) = self.flows.get(flow_id) else {
            return Err(
                match nearest(flow_id, self.flows.keys().map(String::as_str)) {
                    Some(n) => format!("no flow '{flow_id}'; did you mean '{n}'?"),
                    None => format!("no flow '{flow_id}'"),
                },
            );
        };
        if step_id.is_empty() {
            return steps
                .first()
                .map(|s| Target {
                    flow: flow_id.into(),
                    step: s.clone(),
                })
                .ok_or_else(|| format!("flow '{flow_id}' has no steps"));
        }
        if self
            .step_sets
            .get(flow_id)
            .is_some_and(|set| set.contains(step_id))
        {
            Ok(Target {
                flow: flow_id.into(),
                step: step_id.into(),
            })
        } else {
            Err(match nearest(step_id, steps.iter().map(String::as_str)) {
                Some(n) => format!("flow '{flow_id}' has no step '{step_id}'; did you mean '{n}'?"),
                None => format!("flow '{flow_id}' has no step '{step_id}'"),
            })
        }
    }

    fn check_target(&mut self, path: &Path, flow: &str, step: &str, what: &str, raw: &str) {
        if let Err(hint) = self.resolve(flow, raw) {
            self.error(
                path,
                Some(step),
                format!("unknown target '{raw}' in {what}"),
                Some(format!(
                    "{hint}; write 'step', 'flow:step' or 'flow:' for a flow's start"
                )),
            );
        }
    }

    /// Example phrasings: entry points with examples are offered by title in
    /// "Did you mean"; one phrasing cannot mean two entry points.
    fn check_examples(&mut self) {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (path, file) in self.files {
            let flow = file.flow.id.as_str();
            let entries = std::iter::once((None, &file.flow.examples))
                .chain(file.steps.iter().map(|s| (Some(s), &s.examples)));
            for step in &file.steps {
                for (slot, target) in &step.slots {
                    if slot != "email" {
                        self.error(
                            path,
                            Some(&step.id),
                            format!("unknown slot '{slot}'"),
                            Some("slots: email".into()),
                        );
                    }
                    self.check_target(path, flow, &step.id, &format!("slot '{slot}'"), target);
                }
                for (condition, target) in &step.status {
                    if !STATUS_CONDITIONS.contains(&condition.as_str()) {
                        self.error(
                            path,
                            Some(&step.id),
                            format!("unknown status condition '{condition}'"),
                            Some(format!("status: {}", STATUS_CONDITIONS.join(", "))),
                        );
                    }
                    let what = format!("status '{condition}'");
                    self.check_target(path, flow, &step.id, &what, target);
                }
            }
            for (step, examples) in entries {
                if examples.is_empty() {
                    continue;
                }
                let sid = step.map(|s| s.id.as_str());
                let first = file.steps.first().map_or("", |s| s.id.as_str());
                let entry = format!("{flow}:{}", sid.unwrap_or(first));
                if let Some(step) = step {
                    let title = step.title.as_deref().map(str::trim).unwrap_or("");
                    if title.is_empty() || title.chars().count() > MAX_LABEL_CHARS {
                        self.error(
                            path,
                            sid,
                            "a step with examples needs a title of 1 to 80 characters".into(),
                            Some("the title labels its \"Did you mean\" button".into()),
                        );
                    }
                }
                for text in examples {
                    let key = normalize(text);
                    if key.is_empty() {
                        self.error(path, sid, "an example is empty".into(), None);
                        continue;
                    }
                    match seen.get(&key) {
                        Some(other) if *other != entry => self.error(
                            path,
                            sid,
                            format!("example {text:?} is also an example of {other}"),
                            Some("one phrasing cannot lead to two places".into()),
                        ),
                        _ => {
                            seen.insert(key, entry.clone());
                        }
                    }
                }
            }
        }
    }

    fn check_steps(&mut self) {
        for (path, file) in self.files {
            let flow = file.flow.id.as_str();
            for step in &file.steps {
                let sid = step.id.as_str();
                for (i, b) in step.buttons.iter().enumerate() {
                    self.check_target(path, flow, sid, &format!("button '{}'", b.label), &b.goto);
                    if b.label.trim().is_empty() || b.label.chars().count() > MAX_LABEL_CHARS {
                        self.error(
                            path,
                            Some(sid),
                            format!("button {} has an empty or too long label", i + 1),
                            Some(format!(
                                "labels are 1 to {MAX_LABEL_CHARS} characters (Discord's limit)"
                            )),
                        );
                    }
                    if step.buttons[..i]
                        .iter()
                        .any(|o| o.label.eq_ignore_ascii_case(&b.label))
                    {
                        self.error(
                            path,
                            Some(sid),
                            format!("duplicate button label '{}'", b.label),
                            Some("users pick buttons by label; make them distinct".into()),
                        );
                    }
                    if let Some(fb) = &b.feedback
                        && fb != "solved"
                        && fb != "not_solved"
                    {
                        self.error(
                            path,
                            Some(sid),
                            format!("button '{}' records unknown feedback '{fb}'", b.label),
                            Some("use 'solved' or 'not_solved'".into()),
                        );
                    }
                }
                if step.buttons.len() > MAX_BUTTONS {
                    self.error(
                        path,
                        Some(sid),
                        format!("{} buttons are too many", step.buttons.len()),
                        Some(format!("at most {MAX_BUTTONS} fit in a Discord message")),
                    );
                }
                if let Some(next) = &step.next {
                    self.check_target(path, flow, sid, "next", next);
                }
                if let Some(c) = &step.count {
                    self.check_target(path, flow, sid, "count.exceeded", &c.exceeded);
                    if c.max == 0 {
                        self.error(
                            path,
                            Some(sid),
                            "count.max is 0, so the step can never be shown".into(),
                            Some("use 1 or more".into()),
                        );
                    }
                }
                if let Some(capture) = &step.capture {
                    self.check_capture(path, flow, step, capture);
                }
                if let Some(action) = &step.action {
                    self.check_action(path, flow, step, action);
                }
                let waits =
                    step.action.is_none() && (!step.buttons.is_empty() || step.capture.is_some());
                if !waits && step.action.is_none() && step.next.is_none() && !step.end {
                    self.error(
                        path,
                        Some(sid),
                        "step has no way out".into(),
                        Some("add buttons, a capture, an action, `next`, or `end = true`".into()),
                    );
                }
                if step.end
                    && (step.next.is_some() || step.action.is_some() || step.capture.is_some())
                {
                    self.error(
                        path,
                        Some(sid),
                        "an ending step cannot also continue".into(),
                        Some("remove `end` or the next/action/capture".into()),
                    );
                }
                if step.say.as_deref().is_none_or(|s| s.trim().is_empty())
                    && step.action.is_none()
                    && step.next.is_none()
                {
                    self.error(
                        path,
                        Some(sid),
                        "step says nothing".into(),
                        Some("a step that waits for the user needs a `say` message".into()),
                    );
                }
                if let Some(say) = &step.say
                    && let Some(sentence) = asks_for_password(say)
                {
                    self.error(
                        path,
                        Some(sid),
                        format!("the prompt asks for a password: {sentence:?}"),
                        Some("never ask users for their password, not even to check it".into()),
                    );
                }
            }
        }
    }

    fn check_capture(&mut self, path: &Path, flow: &str, step: &StepDef, capture: &CaptureDef) {
        let sid = step.id.as_str();
        if step.action.is_some() {
            self.error(
                path,
                Some(sid),
                "a step cannot both capture text and run an action".into(),
                Some("capture here and run the action in the `next` step".into()),
            );
        }
        self.check_target(path, flow, sid, "capture.on_fail", &capture.on_fail);
        for (value, target) in &capture.branches {
            self.check_target(
                path,
                flow,
                sid,
                &format!("capture.branches.{value}"),
                target,
            );
        }
        if !valid_id(&capture.var) {
            self.error(
                path,
                Some(sid),
                format!("capture variable '{}' is not a valid name", capture.var),
                Some("use lowercase letters, digits and _".into()),
            );
        }
        if capture.var.contains("password") || capture.var.contains("passcode") {
            self.error(
                path,
                Some(sid),
                format!("capture variable '{}' would hold a password", capture.var),
                Some("never ask users for their password".into()),
            );
        }
        let validator = parse_validator(&capture.validator);
        match validator {
            None => self.error(
                path,
                Some(sid),
                format!("unknown validator '{}'", capture.validator),
                Some(format!("use one of: {}", Validator::ALL.join(", "))),
            ),
            Some(Validator::Choice) if capture.choices.is_empty() => {
                self.error(
                    path,
                    Some(sid),
                    "the choice validator needs `choices`".into(),
                    Some("list the accepted answers in capture.choices".into()),
                );
            }
            Some(Validator::YesNo) => {
                for key in capture.branches.keys() {
                    if key != "yes" && key != "no" {
                        self.error(
                            path,
                            Some(sid),
                            format!("yes_no branch '{key}' can never match"),
                            Some("yes_no captures 'yes' or 'no'".into()),
                        );
                    }
                }
            }
            _ => {}
        }
        let branches_cover = match validator {
            Some(Validator::YesNo) => ["yes", "no"]
                .iter()
                .all(|k| capture.branches.contains_key(*k)),
            Some(Validator::Choice) => capture
                .choices
                .iter()
                .all(|c| capture.branches.contains_key(&c.to_lowercase())),
            _ => false,
        };
        if step.next.is_none() && !branches_cover {
            self.error(
                path,
                Some(sid),
                "capture has nowhere to go after a valid answer".into(),
                Some("add `next`, or branches for every possible value".into()),
            );
        }
        if step.say.is_none() {
            self.error(
                path,
                Some(sid),
                "capture without a question".into(),
                Some("add `say` with the question".into()),
            );
        }
    }

    fn check_action(&mut self, path: &Path, flow: &str, step: &StepDef, action: &ActionDef) {
        let sid = step.id.as_str();
        let Some(name) = ActionName::parse(&action.name) else {
            let known: Vec<_> = ACTIONS.iter().map(|a| a.id).collect();
            let hint = match nearest(&action.name, known.iter().copied()) {
                Some(n) => format!("did you mean '{n}'? known actions: {}", known.join(", ")),
                None => format!("known actions: {}", known.join(", ")),
            };
            self.error(
                path,
                Some(sid),
                format!("unknown action '{}'", action.name),
                Some(hint),
            );
            return;
        };
        if !step.buttons.is_empty() {
            self.error(
                path,
                Some(sid),
                "a step cannot both run an action and show buttons".into(),
                Some("show the buttons in the step the outcome leads to".into()),
            );
        }
        let spec = name.spec();
        for (outcome, target) in &action.on {
            if outcome != "default" && !spec.outcomes.contains(&outcome.as_str()) {
                self.error(
                    path,
                    Some(sid),
                    format!("action '{}' has no outcome '{outcome}'", spec.id),
                    Some(format!("its outcomes are: {}", spec.outcomes.join(", "))),
                );
            }
            self.check_target(
                path,
                flow,
                sid,
                &format!("action outcome '{outcome}'"),
                target,
            );
        }
        if !action.on.contains_key("default") {
            let missing: Vec<_> = spec
                .outcomes
                .iter()
                .filter(|o| !action.on.contains_key(**o))
                .copied()
                .collect();
            if !missing.is_empty() {
                self.error(
                    path,
                    Some(sid),
                    format!(
                        "action '{}' does not route outcome(s): {}",
                        spec.id,
                        missing.join(", ")
                    ),
                    Some("add them to `on`, or add `default`".into()),
                );
            }
        }
    }

    /// The triggers' and intents' compiled sizes, added up, stay under
    /// [`MAX_TOTAL_REGEX_BYTES`].
    fn check_regex_total(&mut self) {
        let mut total = 0usize;
        for (path, file) in self.files {
            let patterns = file
                .flow
                .triggers
                .iter()
                .chain(file.intents.iter().flat_map(|i| &i.patterns));
            for p in patterns {
                total += compiled_size(p);
                if total > MAX_TOTAL_REGEX_BYTES {
                    self.error(
                        path,
                        None,
                        format!(
                            "the flows' regexes take more than {} MiB once compiled",
                            MAX_TOTAL_REGEX_BYTES / (1024 * 1024)
                        ),
                        Some("use fewer or simpler triggers; examples route free text without regexes".into()),
                    );
                    return;
                }
            }
        }
    }

    fn check_intents(&mut self) {
        let mut seen = HashSet::new();
        for (path, file) in self.files {
            for intent in &file.intents {
                if !seen.insert(intent.id.clone()) {
                    self.error(
                        path,
                        None,
                        format!("duplicate intent id '{}'", intent.id),
                        None,
                    );
                }
                for p in &intent.patterns {
                    if let Err(e) = compile_pattern(p) {
                        self.error(
                            path,
                            None,
                            format!("invalid regex {p:?} in intent '{}'", intent.id),
                            Some(one_line(&e.to_string())),
                        );
                    }
                }
                if let Err(hint) = self.resolve(&file.flow.id, &intent.goto) {
                    self.error(
                        path,
                        None,
                        format!("unknown target '{}' in intent '{}'", intent.goto, intent.id),
                        Some(hint),
                    );
                }
            }
        }
    }

    fn check_commands(&mut self) {
        let mut table_in: Option<&Path> = None;
        // name or alias -> the command that has it
        let mut names: HashMap<&str, &str> = HashMap::new();
        for (path, file) in self.files {
            let Some(table) = &file.commands else {
                continue;
            };
            if let Some(first) = table_in {
                self.error(
                    path,
                    None,
                    "a second [commands] table".into(),
                    Some(format!(
                        "keep every command in one table; there is one in {}",
                        first.display()
                    )),
                );
                continue;
            }
            table_in = Some(path);
            for (name, def) in &table.0 {
                let shown = format!("command '/{name}'");
                for n in std::iter::once(name).chain(&def.aliases) {
                    if !valid_command_name(n) {
                        let what = if n == name {
                            "the name".to_string()
                        } else {
                            format!("alias '{n}'")
                        };
                        self.error(
                            path,
                            None,
                            format!("{shown}: {what} is not a valid command name"),
                            Some(format!("Telegram accepts 1 to {MAX_COMMAND_CHARS} characters: lowercase letters a-z, digits and _")),
                        );
                    }
                    if let Some(other) = names.insert(n, name) {
                        self.error(
                            path,
                            None,
                            format!("{shown}: the name '{n}' is taken"),
                            Some(format!("'/{other}' already uses it; give each command and alias its own name")),
                        );
                    }
                }
                if let Err(hint) = self.resolve("", &command_target(&def.goto)) {
                    self.error(
                        path,
                        None,
                        format!("{shown}: unknown target '{}'", def.goto),
                        Some(format!(
                            "{hint}; write 'flow' for a flow's start or 'flow:step'"
                        )),
                    );
                }
                let chars = def.description.trim().chars().count();
                if chars == 0 || chars > MAX_COMMAND_DESCRIPTION_CHARS {
                    self.error(
                        path,
                        None,
                        format!("{shown}: the description is empty or too long"),
                        Some(format!(
                            "1 to {MAX_COMMAND_DESCRIPTION_CHARS} characters (Discord's limit)"
                        )),
                    );
                }
                let channels = def.channels.as_deref().unwrap_or_default();
                for c in channels {
                    if ChannelKind::parse(c).is_none() {
                        self.error(
                            path,
                            None,
                            format!("{shown}: unknown channel '{c}'"),
                            Some("use telegram, discord or console".into()),
                        );
                    }
                }
                if def.channels.as_ref().is_some_and(Vec::is_empty) {
                    self.error(
                        path,
                        None,
                        format!("{shown}: `channels` is empty, so it is offered nowhere"),
                        Some("list telegram, discord or console, or leave `channels` out for all of them".into()),
                    );
                }
            }
        }
    }

    fn check_variables(&mut self) {
        let mut known: BTreeSet<String> = CONFIG_VARIABLES
            .iter()
            .chain(ENGINE_VARIABLES)
            .map(|s| s.to_string())
            .collect();
        let mut transient = BTreeSet::new();
        let mut captured = BTreeSet::new();
        for (_, file) in self.files {
            for step in &file.steps {
                if let Some(c) = &step.capture {
                    captured.insert(c.var.clone());
                    if parse_validator(&c.validator).is_some_and(Validator::is_transient) {
                        transient.insert(c.var.clone());
                        known.insert(format!("{}_masked", c.var));
                    } else {
                        known.insert(c.var.clone());
                    }
                }
                if let Some(a) = &step.action
                    && let Some(name) = ActionName::parse(&a.name)
                {
                    known.extend(name.spec().outputs.iter().map(|s| s.to_string()));
                }
                if let Some(c) = &step.count {
                    known.insert(c.name.clone());
                }
                known.extend(step.set.keys().cloned());
                for b in &step.buttons {
                    known.extend(b.set.keys().cloned());
                }
            }
        }
        let produced: BTreeSet<String> = captured
            .iter()
            .cloned()
            .chain(known.iter().cloned())
            .collect();
        for (path, file) in self.files {
            for step in &file.steps {
                let texts = step
                    .say
                    .iter()
                    .chain(step.capture.as_ref().and_then(|c| c.invalid.as_ref()));
                for text in texts {
                    match template_variables(text) {
                        Err(e) => self.error(
                            path,
                            Some(&step.id),
                            e,
                            Some(
                                "write {name} for a variable and {{ or }} for a literal brace"
                                    .into(),
                            ),
                        ),
                        Ok(vars) => {
                            for v in vars {
                                if transient.contains(&v) {
                                    self.error(
                                        path,
                                        Some(&step.id),
                                        format!(
                                            "'{{{v}}}' would show a secret or an address in full"
                                        ),
                                        Some(format!("use {{{v}_masked}}")),
                                    );
                                } else if !known.contains(&v) {
                                    let hint = nearest(&v, known.iter().map(String::as_str))
                                        .map(|n| format!("did you mean '{{{n}}}'?"));
                                    self.error(
                                        path,
                                        Some(&step.id),
                                        format!("unknown variable '{{{v}}}'"),
                                        hint,
                                    );
                                }
                            }
                        }
                    }
                }
                if let Some(a) = &step.action
                    && let Some(name) = ActionName::parse(&a.name)
                {
                    for input in name.spec().inputs {
                        if !produced.contains(*input) {
                            self.error(path, Some(&step.id), format!("action '{}' needs variable '{input}', which no step captures or sets", name.id()), Some(format!("capture '{input}' in an earlier step")));
                        }
                    }
                }
            }
        }
    }

    fn edges_of(&self, flow: &str, step: &StepDef) -> Vec<String> {
        let mut raw: Vec<&String> = step.buttons.iter().map(|b| &b.goto).collect();
        raw.extend(step.next.iter());
        if let Some(c) = &step.count {
            raw.push(&c.exceeded);
        }
        if let Some(c) = &step.capture {
            raw.push(&c.on_fail);
            raw.extend(c.branches.values());
        }
        if let Some(a) = &step.action {
            raw.extend(a.on.values());
        }
        raw.extend(step.slots.values());
        raw.extend(step.status.values());
        raw.into_iter()
            .filter_map(|r| self.resolve(flow, r).ok())
            .map(|t| t.to_string())
            .collect()
    }

    fn check_reachability(&mut self) {
        if !self.diags.is_empty() {
            return; // targets must resolve first
        }
        // Steps are numbered in file order; the graph holds numbers, so a
        // flow of 100,000 steps is walked without a string per visit.
        let mut number: HashMap<String, usize> = HashMap::new();
        for (_, file) in self.files {
            for step in &file.steps {
                let n = number.len();
                number
                    .entry(format!("{}:{}", file.flow.id, step.id))
                    .or_insert(n);
            }
        }
        let mut graph: Vec<Vec<usize>> = vec![Vec::new(); number.len()];
        let mut roots: Vec<String> = Vec::new();
        let mut n = 0;
        for (_, file) in self.files {
            let flow = &file.flow.id;
            for step in &file.steps {
                graph[n] = self
                    .edges_of(flow, step)
                    .iter()
                    .filter_map(|e| number.get(e).copied())
                    .collect();
                n += 1;
            }
            if let Some(first) = file.steps.first()
                && (flow == MAIN_FLOW
                    || !file.flow.triggers.is_empty()
                    || !file.flow.examples.is_empty())
            {
                roots.push(format!("{flow}:{}", first.id));
            }
            // The classifier routes to any step with examples.
            for step in file.steps.iter().filter(|s| !s.examples.is_empty()) {
                roots.push(format!("{flow}:{}", step.id));
            }
            for intent in &file.intents {
                if let Ok(t) = self.resolve(flow, &intent.goto) {
                    roots.push(t.to_string());
                }
            }
            for (_, def) in file.commands.iter().flat_map(|t| &t.0) {
                if let Ok(t) = self.resolve("", &command_target(&def.goto)) {
                    roots.push(t.to_string());
                }
            }
        }
        // The engine itself sends unrecognised text to the menu's clarify
        // step, and unsure guesses to its "did you mean" step.
        roots.push(format!("{MAIN_FLOW}:{CLARIFY_STEP}"));
        roots.push(format!("{MAIN_FLOW}:{DID_YOU_MEAN_STEP}"));
        let mut seen = vec![false; graph.len()];
        let mut queue: VecDeque<usize> = roots
            .iter()
            .filter_map(|r| number.get(r).copied())
            .collect();
        for &r in &queue {
            seen[r] = true;
        }
        while let Some(node) = queue.pop_front() {
            for &next in &graph[node] {
                if !seen[next] {
                    seen[next] = true;
                    queue.push_back(next);
                }
            }
        }
        let mut n = 0;
        for (path, file) in self.files {
            for step in &file.steps {
                if !seen[n] {
                    self.error(
                        path,
                        Some(&step.id),
                        "step is unreachable".into(),
                        Some(
                            "nothing leads here: no button, next, outcome, intent, command or trigger"
                                .into(),
                        ),
                    );
                }
                n += 1;
            }
        }
    }

    /// Finds cycles of steps that never wait for the user: the engine would
    /// spin on them.
    fn check_loops(&mut self) {
        if !self.diags.is_empty() {
            return;
        }
        let mut auto: HashMap<String, Vec<String>> = HashMap::new();
        let mut where_: HashMap<String, PathBuf> = HashMap::new();
        for (path, file) in self.files {
            for step in &file.steps {
                let waits =
                    step.action.is_none() && (!step.buttons.is_empty() || step.capture.is_some());
                if !waits && !step.end {
                    let key = format!("{}:{}", file.flow.id, step.id);
                    auto.insert(key.clone(), self.edges_of(&file.flow.id, step));
                    where_.insert(key, path.clone());
                }
            }
        }
        let mut state: HashMap<String, u8> = HashMap::new(); // 1 visiting, 2 done
        let mut reported = HashSet::new();
        let keys: Vec<String> = auto.keys().cloned().collect();
        for start in keys {
            let mut stack = vec![(start.clone(), 0usize)];
            if state.contains_key(&start) {
                continue;
            }
            state.insert(start.clone(), 1);
            while let Some((node, idx)) = stack.pop() {
                let edges = auto.get(&node).cloned().unwrap_or_default();
                if idx < edges.len() {
                    stack.push((node.clone(), idx + 1));
                    let next = &edges[idx];
                    if !auto.contains_key(next) {
                        continue;
                    }
                    match state.get(next) {
                        Some(1) => {
                            if reported.insert(next.clone()) {
                                let (_, step) = next.split_once(':').unwrap_or_default();
                                let path = where_[next].clone();
                                self.error(&path, Some(step), "steps loop without ever waiting for the user".into(), Some("break the loop with a step that shows buttons or asks a question".into()));
                            }
                        }
                        Some(_) => {}
                        None => {
                            state.insert(next.clone(), 1);
                            stack.push((next.clone(), 0));
                        }
                    }
                } else {
                    state.insert(node, 2);
                }
            }
        }
    }
}

/// A command's `goto` as a target: a bare name is a flow (its start).
fn command_target(raw: &str) -> String {
    if raw.contains(':') {
        raw.to_string()
    } else {
        format!("{raw}:")
    }
}

pub(crate) fn parse_validator(name: &str) -> Option<Validator> {
    match name {
        "email" => Some(Validator::Email),
        "code6" => Some(Validator::Code6),
        "yes_no" => Some(Validator::YesNo),
        "choice" => Some(Validator::Choice),
        "text" => Some(Validator::Text),
        _ => None,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `{name}` variables of a template, or why it is malformed.
pub(crate) fn template_variables(text: &str) -> Result<Vec<String>, String> {
    let mut vars = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
            }
            '{' => {
                let rest = &text[i + 1..];
                let end = rest
                    .find('}')
                    .ok_or_else(|| "unclosed '{' in message".to_string())?;
                let name = &rest[..end];
                if !valid_id(name) {
                    return Err(format!("'{{{name}}}' is not a variable name"));
                }
                vars.push(name.to_string());
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
            }
            '}' => return Err("unmatched '}' in message".into()),
            _ => {}
        }
    }
    Ok(vars)
}

static PASSWORD_WORD: LazyLock<Regex> = LazyLock::new(|| {
    compile_pattern(r"\b(pass ?words?|passcodes?|passphrases?|pwd|pin)\b").unwrap()
});
static NEGATION: LazyLock<Regex> = LazyLock::new(|| {
    compile_pattern(r"\b(never|don'?t|do not|not|no one|nobody|won'?t|will not|without|no need)\b")
        .unwrap()
});
static ASKS: LazyLock<Regex> = LazyLock::new(|| {
    compile_pattern(concat!(
        r"\b(send|tell|give|share|paste|provide|show)\b.{0,40}\b(me|us|here|bot|this chat)\b",
        r"|\b(type|enter|write|reply|post|put)\b.{0,40}\b(here|below|in this chat|in the chat|to me|to us)\b",
        r"|\bwhat('?s| is| was)\b.{0,20}\byour\b",
        r"|\b(may|can|could) (i|we) (have|get|see|know)\b",
        r"|\bi need your\b",
    ))
    .unwrap()
});

/// The first sentence of `text` that asks the user for a password, if any.
pub fn asks_for_password(text: &str) -> Option<String> {
    let normalized = normalize(text);
    normalized
        .split_inclusive(['.', '!', '?', '\n', ';'])
        .map(str::trim)
        .find(|s| PASSWORD_WORD.is_match(s) && !NEGATION.is_match(s) && ASKS.is_match(s))
        .map(str::to_string)
}

/// At most this many names are looked at for a typo suggestion, so a file
/// full of unknown targets is still checked in linear time.
const SUGGESTION_CANDIDATES: usize = 500;

/// The closest name by edit distance, if it is close enough to be a typo.
/// Only the first [`SUGGESTION_CANDIDATES`] names are looked at, and only
/// those of about the same length are compared.
fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .take(SUGGESTION_CANDIDATES)
        .filter(|c| c.len().abs_diff(name.len()) <= 2.max(c.len() / 4))
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn compile(files: &[(PathBuf, FlowFile)], version: String) -> FlowSet {
    let index: BTreeMap<String, Vec<String>> = files
        .iter()
        .map(|(_, f)| {
            (
                f.flow.id.clone(),
                f.steps.iter().map(|s| s.id.clone()).collect(),
            )
        })
        .collect();
    let resolve = |flow: &str, raw: &str| -> Target {
        let (f, s) = raw.split_once(':').unwrap_or((flow, raw));
        let step = if s.is_empty() {
            index[f][0].clone()
        } else {
            s.to_string()
        };
        Target {
            flow: f.to_string(),
            step,
        }
    };
    let mut flows = BTreeMap::new();
    let mut intents = Vec::new();
    for (path, file) in files {
        let fid = file.flow.id.as_str();
        let steps = file
            .steps
            .iter()
            .map(|s| {
                let step = Step {
                    id: s.id.clone(),
                    title: s.title.as_ref().map(|t| t.trim().to_string()),
                    examples: s.examples.clone(),
                    say: s.say.clone(),
                    buttons: s
                        .buttons
                        .iter()
                        .map(|b| Button {
                            label: b.label.clone(),
                            goto: resolve(fid, &b.goto),
                            set: b.set.clone(),
                            feedback: b.feedback.clone(),
                        })
                        .collect(),
                    capture: s.capture.as_ref().map(|c| Capture {
                        var: c.var.clone(),
                        validator: parse_validator(&c.validator).expect("checked"),
                        retries: c.retries,
                        on_fail: resolve(fid, &c.on_fail),
                        invalid: c.invalid.clone(),
                        choices: c.choices.iter().map(|c| c.to_lowercase()).collect(),
                        branches: c
                            .branches
                            .iter()
                            .map(|(k, v)| (k.to_lowercase(), resolve(fid, v)))
                            .collect(),
                    }),
                    action: s.action.as_ref().map(|a| Action {
                        name: ActionName::parse(&a.name).expect("checked"),
                        on: a
                            .on
                            .iter()
                            .map(|(k, v)| (k.clone(), resolve(fid, v)))
                            .collect(),
                    }),
                    next: s.next.as_ref().map(|n| resolve(fid, n)),
                    count: s.count.as_ref().map(|c| Counter {
                        name: c.name.clone(),
                        max: c.max,
                        exceeded: resolve(fid, &c.exceeded),
                    }),
                    set: s.set.clone(),
                    slots: s
                        .slots
                        .iter()
                        .map(|(k, v)| (k.clone(), resolve(fid, v)))
                        .collect(),
                    status: s
                        .status
                        .iter()
                        .map(|(k, v)| (k.clone(), resolve(fid, v)))
                        .collect(),
                    escalate: s.escalate.clone(),
                    end: s.end,
                };
                (s.id.clone(), step)
            })
            .collect();
        flows.insert(
            fid.to_string(),
            Flow {
                id: fid.to_string(),
                title: file.flow.title.clone(),
                file: path.clone(),
                triggers: file
                    .flow
                    .triggers
                    .iter()
                    .map(|t| compile_pattern(t).expect("checked"))
                    .collect(),
                priority: file.flow.priority,
                utility: file.flow.utility,
                examples: file.flow.examples.clone(),
                status_notice: file.flow.status_notice,
                start: file.steps[0].id.clone(),
                steps,
            },
        );
        for i in &file.intents {
            intents.push(Intent {
                id: i.id.clone(),
                patterns: i
                    .patterns
                    .iter()
                    .map(|p| compile_pattern(p).expect("checked"))
                    .collect(),
                goto: resolve(fid, &i.goto),
            });
        }
    }
    let commands = files
        .iter()
        .filter_map(|(_, f)| f.commands.as_ref())
        .flat_map(|t| &t.0)
        .map(|(name, def)| Command {
            name: name.clone(),
            goto: resolve("", &command_target(&def.goto)),
            description: def.description.trim().to_string(),
            fresh: def.fresh,
            channels: def
                .channels
                .iter()
                .flatten()
                .map(|c| ChannelKind::parse(c).expect("checked"))
                .collect(),
            aliases: def.aliases.clone(),
        })
        .collect();
    let mut trigger_order: Vec<(i32, String)> = flows
        .values()
        .filter(|f| !f.triggers.is_empty())
        .map(|f| (-f.priority, f.id.clone()))
        .collect();
    trigger_order.sort();
    let mut set = FlowSet {
        flows,
        intents,
        commands,
        trigger_order: trigger_order.into_iter().map(|(_, id)| id).collect(),
        version,
        classifier: None,
    };
    set.classifier = super::classifier::trained_for(&set.entry_examples(), &set.version);
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_list_their_variables_and_allow_escaped_braces() {
        assert_eq!(
            template_variables("Hi {platform_name}, {{literal}} {x_1}").unwrap(),
            ["platform_name", "x_1"]
        );
        assert!(template_variables("{unclosed").is_err());
        assert!(template_variables("{Bad Name}").is_err());
        assert!(template_variables("stray }").is_err());
    }

    #[test]
    fn prompts_that_ask_for_a_password_are_caught_and_warnings_are_not() {
        for bad in [
            "Please send me your password.",
            "What is your password?",
            "Type your current password here and I'll check it.",
            "Could I have your passcode?",
        ] {
            assert!(asks_for_password(bad).is_some(), "{bad}");
        }
        for good in [
            "Never share your password, not even with us.",
            "Choose a strong new password: at least 12 characters.",
            "We will never ask for your password.",
            "Type the site address yourself.",
            "Did the password manager fill in an old password?",
            "Is your password manager filling in an old password?",
        ] {
            assert_eq!(asks_for_password(good), None, "{good}");
        }
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        assert_eq!(
            nearest("chek_spam", ["check_spam", "start"].into_iter()),
            Some("check_spam".into())
        );
        assert_eq!(nearest("zzz", ["check_spam"].into_iter()), None);
    }
}
#[cfg(test)]
mod sizes {
    #[test]
    fn many_small_regexes_cannot_add_up_past_the_total_cap() {
        let one = super::compiled_size(r"[a-z]{1,500}0");
        assert!(one > 100_000, "{one}");
        let needed = super::MAX_TOTAL_REGEX_BYTES / one + 2;
        let patterns: Vec<String> = (0..needed)
            .map(|i| format!("'[a-z]{{1,500}}{i}'"))
            .collect();
        let text = format!(
            "[flow]\nid = \"main\"\ntitle = \"M\"\nutility = true\n\n[[step]]\nid = \"menu\"\nsay = \"Hi\"\nbuttons = [{{ label = \"Menu\", goto = \"menu\" }}]\n\n[[step]]\nid = \"clarify\"\nsay = \"Which?\"\nbuttons = [{{ label = \"Menu\", goto = \"menu\" }}]\n\n[[intent]]\nid = \"many\"\npatterns = [{}]\ngoto = \"main:menu\"\n",
            patterns.join(", ")
        );
        let diags = crate::flow::check_text("main.toml", &text).expect_err("over the cap");
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("take more than 32 MiB")),
            "{diags:?}"
        );
    }
}
