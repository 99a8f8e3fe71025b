//! `recoverbot flows eval`: how well free text reaches the right help, on a
//! labelled file of phrasings, through the same [router](super::router) the
//! engine uses. Also the warnings `flows check` gives about the examples.

use super::check::Diagnostic;
use super::model::{CLARIFY_STEP, FlowSet, MAIN_FLOW, Target};
use super::router::{Route, UnderstandingSettings};
use std::collections::BTreeMap;
use std::fmt;

/// One labelled phrasing.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub line: usize,
    /// `None`: the menu is the right answer (written `menu`).
    pub expected: Option<Target>,
    pub text: String,
}

/// Parses `expected_entry<TAB>phrasing` lines (blank lines and `#` comments
/// are skipped). An entry is `flow`, `flow:step`, or `menu`.
pub fn parse_tsv(set: &FlowSet, text: &str) -> Result<Vec<Labelled>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((entry, phrasing)) = line.split_once('\t') else {
            return Err(format!("line {n}: expected `entry<TAB>phrasing`"));
        };
        let entry = entry.trim();
        let expected = if entry == "menu" {
            None
        } else {
            Some(
                set.entry(entry)
                    .ok_or_else(|| format!("line {n}: no entry point {entry:?} in the flows"))?,
            )
        };
        out.push(Labelled {
            line: n,
            expected,
            text: phrasing.trim().to_string(),
        });
    }
    Ok(out)
}

/// The flows' own examples as a labelled set (accuracy on the training
/// set, to compare with a held-out set).
pub fn training_set(set: &FlowSet) -> Vec<Labelled> {
    set.entry_examples()
        .into_iter()
        .flat_map(|(target, examples)| {
            examples.iter().map(move |text| Labelled {
                line: 0,
                expected: Some(target.clone()),
                text: text.clone(),
            })
        })
        .collect()
}

/// What happened to one phrasing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Routed straight to the right place.
    Right,
    /// "Did you mean", the right answer first.
    AskedRightFirst,
    /// "Did you mean", the right answer among the others.
    AskedRightAmong,
    /// "Did you mean" without the right answer.
    AskedWrong,
    /// The menu (right when the expected entry is `menu`).
    Menu,
    /// Routed straight to a wrong place: the worst case.
    Wrong,
}

/// The evaluation of a labelled set.
#[derive(Debug, Default)]
pub struct Report {
    pub total: usize,
    pub counts: BTreeMap<Outcome, usize>,
    /// (expected, got) → how often, for everything not routed right.
    pub confusion: BTreeMap<(String, String), usize>,
    /// Every phrasing not routed right: (line, expected, got, text).
    pub misses: Vec<(usize, String, String, String)>,
}

impl Report {
    fn count(&self, outcome: Outcome) -> usize {
        self.counts.get(&outcome).copied().unwrap_or(0)
    }

    fn share(&self, n: usize) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            n as f64 / self.total as f64
        }
    }

    /// Routed to the right entry: directly, or first in "Did you mean" (and
    /// the menu where the menu is expected).
    pub fn accuracy(&self) -> f64 {
        self.share(self.count(Outcome::Right) + self.count(Outcome::AskedRightFirst))
    }

    /// Routed straight to the right entry.
    pub fn direct(&self) -> f64 {
        self.share(self.count(Outcome::Right))
    }

    /// Asked, with the right answer among the buttons.
    pub fn asked_with_right(&self) -> f64 {
        self.share(self.count(Outcome::AskedRightFirst) + self.count(Outcome::AskedRightAmong))
    }

    /// Sent to the menu when a topic was expected.
    pub fn menu(&self) -> f64 {
        self.share(self.count(Outcome::Menu))
    }

    /// Routed to a wrong entry without asking.
    pub fn wrong(&self) -> f64 {
        self.share(self.count(Outcome::Wrong))
    }
}

/// Routes every phrasing and tallies the outcomes.
pub fn evaluate(set: &FlowSet, settings: &UnderstandingSettings, lines: &[Labelled]) -> Report {
    let mut report = Report::default();
    for l in lines {
        let route = set.route(&l.text, settings);
        let (outcome, got) = judge(l.expected.as_ref(), &route);
        report.total += 1;
        *report.counts.entry(outcome.clone()).or_default() += 1;
        if !matches!(outcome, Outcome::Right | Outcome::AskedRightFirst) {
            let expected = l.expected.as_ref().map_or("menu".into(), Target::to_string);
            *report
                .confusion
                .entry((expected.clone(), got.clone()))
                .or_default() += 1;
            report.misses.push((l.line, expected, got, l.text.clone()));
        }
    }
    report
}

fn judge(expected: Option<&Target>, route: &Route) -> (Outcome, String) {
    let is_menu = |t: &Target| t.flow == MAIN_FLOW && (t.step == "menu" || t.step == CLARIFY_STEP);
    // The menu's own examples (small talk) are meant to get the menu.
    let expected = expected.filter(|t| !is_menu(t));
    match route {
        Route::Direct { target, how } => {
            let got = format!("{target} ({how:?})").to_lowercase();
            let right = match expected {
                Some(e) => e == target,
                None => is_menu(target),
            };
            (
                if right {
                    Outcome::Right
                } else {
                    Outcome::Wrong
                },
                got,
            )
        }
        Route::Ask(candidates) => {
            let got = format!(
                "did you mean: {}",
                candidates
                    .iter()
                    .map(Target::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let outcome = match expected {
                Some(e) if candidates.first() == Some(e) => Outcome::AskedRightFirst,
                Some(e) if candidates.contains(e) => Outcome::AskedRightAmong,
                _ => Outcome::AskedWrong,
            };
            (outcome, got)
        }
        Route::Unsure => {
            let outcome = if expected.is_none() {
                Outcome::Right
            } else {
                Outcome::Menu
            };
            (outcome, "menu".into())
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        writeln!(f, "phrasings: {}", self.total)?;
        writeln!(
            f,
            "accuracy (right entry, directly or first in \"did you mean\"): {}",
            pct(self.accuracy())
        )?;
        writeln!(
            f,
            "  routed directly to the right entry: {}",
            pct(self.direct())
        )?;
        writeln!(
            f,
            "  \"did you mean\" with the right answer among the buttons: {}",
            pct(self.asked_with_right())
        )?;
        writeln!(f, "  sent to the menu: {}", pct(self.menu()))?;
        writeln!(
            f,
            "  routed to a wrong entry without asking: {}",
            pct(self.wrong())
        )?;
        if !self.confusion.is_empty() {
            writeln!(f, "\nconfusions (expected -> got: count):")?;
            let mut pairs: Vec<_> = self.confusion.iter().collect();
            pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for ((expected, got), n) in pairs {
                writeln!(f, "  {expected} -> {got}: {n}")?;
            }
            writeln!(f, "\nmisses:")?;
            for (line, expected, got, text) in &self.misses {
                writeln!(f, "  line {line}: expected {expected}, got {got}: {text:?}")?;
            }
        }
        Ok(())
    }
}

/// Entry points with fewer examples than this get a warning.
pub const MIN_EXAMPLES: usize = 10;
/// Two entry points are too alike when at least this share of one's
/// examples has its nearest neighbour among the other's.
pub const TOO_ALIKE: f32 = 0.3;

/// Warnings about the examples (they do not stop the bot): too few for an
/// entry point, and pairs of entry points too alike to tell apart.
pub fn example_warnings(set: &FlowSet) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let entries = set.entry_examples();
    for (target, examples) in &entries {
        if examples.len() < MIN_EXAMPLES {
            out.push(warning(
                set,
                target,
                format!(
                    "entry point {target} has {} example(s); give it at least {MIN_EXAMPLES}",
                    examples.len()
                ),
            ));
        }
    }
    let Some(model) = set.classifier.as_deref() else {
        return out;
    };
    let labels = model.labels();
    for (a, b, share) in model.neighbour_confusion() {
        if share >= TOO_ALIKE {
            out.push(warning(
                set,
                &labels[a],
                format!(
                    "the examples of {} and {} are too alike to tell apart ({:.0}% of the first's examples are closest to one of the second's); make them more distinct",
                    labels[a],
                    labels[b],
                    share * 100.0
                ),
            ));
        }
    }
    out
}

fn warning(set: &FlowSet, target: &Target, message: String) -> Diagnostic {
    let file = set
        .flow(&target.flow)
        .map(|f| f.file.clone())
        .unwrap_or_default();
    Diagnostic {
        file,
        step: Some(target.step.clone()),
        message,
        hint: None,
    }
}
