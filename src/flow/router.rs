//! Where free text goes: the one routing decision the engine and
//! `recoverbot flows eval` share.
//!
//! In order:
//! 1. a global `[[intent]]` regex ("menu", "talk to a human") routes at once:
//!    those are exact phrases, not guesses;
//! 2. the regex `triggers` of a flow that has no examples: the classifier
//!    cannot know it, so its author's exact patterns decide;
//! 3. the [classifier](super::classifier): a confident answer routes, two or
//!    three close candidates become "Did you mean …?", a weak one is unsure,
//!    and a message most like the menu's examples (small talk, questions
//!    about something else) is unsure too;
//! 4. when the classifier is unsure, the other flows' `triggers` still route
//!    (exact patterns written by the flow's author);
//! 5. otherwise [`Route::Unsure`]: the caller shows the menu.

use super::model::{FlowSet, Target};
use serde::{Deserialize, Serialize};

/// How sure the intent classifier must be before it routes free text
/// (`[understanding]` in `config.toml`, `docs/understanding.md`; the defaults
/// were chosen on the evaluation set in `tests/data/intents_eval.tsv`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnderstandingSettings {
    /// At or above this probability the message is routed directly.
    pub route_confidence: f64,
    /// From this probability up (and below `route_confidence`) the bot asks
    /// "Did you mean …?"; below it, the menu.
    pub suggest_confidence: f64,
    /// A candidate is offered when its probability is at least this share
    /// of the best one's.
    pub suggest_ratio: f64,
    /// At most this many "Did you mean" buttons (besides "Something else").
    pub max_suggestions: usize,
    /// A message less similar than this to every topic's examples (cosine,
    /// 0 to 1) is not routed at all: it is about something else.
    pub min_similarity: f64,
}

impl Default for UnderstandingSettings {
    fn default() -> Self {
        Self {
            route_confidence: 0.7,
            suggest_confidence: 0.2,
            suggest_ratio: 0.3,
            max_suggestions: 3,
            min_similarity: 0.2,
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Go there.
    Direct { target: Target, how: RouteBy },
    /// Ask "Did you mean …?" with these, most likely first.
    Ask(Vec<Target>),
    /// No idea: the menu.
    Unsure,
}

/// Why a [`Route::Direct`] was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBy {
    Intent,
    Classifier,
    Trigger,
}

impl FlowSet {
    /// Routes a message (its original text: routing reads what the user
    /// wrote, storage only ever sees the redacted copy).
    pub fn route(&self, text: &str, settings: &UnderstandingSettings) -> Route {
        let normalized = super::normalize(text);
        if let Some(intent) = self.match_intent(&normalized) {
            return Route::Direct {
                target: intent.goto.clone(),
                how: RouteBy::Intent,
            };
        }
        if let Some(flow) = self.match_trigger_where(&normalized, |f| !self.has_examples(f)) {
            return Route::Direct {
                target: self.start_of(&flow.id).expect("flow exists"),
                how: RouteBy::Trigger,
            };
        }
        if let Some(route) = self.classify(text, settings) {
            return route;
        }
        match self.match_trigger(&normalized) {
            Some(flow) => Route::Direct {
                target: self.start_of(&flow.id).expect("flow exists"),
                how: RouteBy::Trigger,
            },
            None => Route::Unsure,
        }
    }

    /// The classifier's part of [`route`](Self::route): `None` when it is
    /// unsure (or there is no classifier).
    pub fn classify(&self, text: &str, settings: &UnderstandingSettings) -> Option<Route> {
        let model = self.classifier.as_deref()?;
        let scored = model.classify(text);
        let top = scored.first()?;
        // Settings are f64 (they print as written); scores are f32.
        let at_least = |score: f32, bar: f64| f64::from(score) >= bar;
        if !at_least(top.similarity, settings.min_similarity) {
            return None;
        }
        let menu = self.main();
        if *top.target == menu {
            return Some(Route::Unsure);
        }
        if at_least(top.probability, settings.route_confidence) {
            return Some(Route::Direct {
                target: top.target.clone(),
                how: RouteBy::Classifier,
            });
        }
        if !at_least(top.probability, settings.suggest_confidence) {
            return None;
        }
        let floor = f64::from(top.probability) * settings.suggest_ratio;
        let candidates: Vec<Target> = scored
            .iter()
            .take(settings.max_suggestions.max(1))
            .filter(|s| {
                at_least(s.probability, floor) && at_least(s.similarity, settings.min_similarity)
            })
            .filter(|s| *s.target != menu)
            .map(|s| s.target.clone())
            .collect();
        // One plausible answer that is not a confident one is still asked
        // about: "Did you mean X?" with one button and the menu.
        Some(Route::Ask(candidates))
    }

    /// The label of an entry point on a "Did you mean" button: the step's
    /// `title`, or the flow's title for a flow's start.
    pub fn entry_title(&self, target: &Target) -> String {
        let flow = self.flow(&target.flow);
        flow.and_then(|f| f.steps.get(&target.step))
            .and_then(|s| s.title.clone())
            .or_else(|| flow.map(|f| f.title.clone()))
            .unwrap_or_else(|| target.to_string())
    }
}
