//! The intent classifier: which entry point a free-text message is about.
//!
//! Trained when the flows load from the `examples` written in them (no model
//! is downloaded). The features are the field's usual baseline for small
//! assistants, which copes with typos by construction:
//!
//! - character n-grams of 3 to 5 characters inside each word (padded with a
//!   space at both ends, like scikit-learn's `char_wb`), so "pasword" still
//!   shares most of its n-grams with "password";
//! - word unigrams and bigrams.
//!
//! Each group is TF-IDF weighted (sublinear term frequency) and L2-normalised,
//! then the two are joined. A multinomial logistic regression (softmax, L2,
//! AdaGrad, a fixed number of epochs and a fixed shuffle seed, so training is
//! deterministic) gives a probability per entry point. Beside it, the cosine
//! to the nearest example of each likely entry point says whether the
//! message looks like any of the examples at all: a confident softmax on a
//! message that shares little with the examples ("what are your fees") is
//! not a reason to route.
//!
//! Classifying needs one normalised copy of the text and one feature vector;
//! features are hashes of byte slices of that copy, looked up in a map keyed
//! by the hash.

use super::model::Target;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

/// The classifier for a set of flows, trained from their `examples`, or
/// `None` when they have none. A set already trained in this process (same
/// `version`) is reused: tests and reloads load the same flows many times.
pub(crate) fn trained_for(
    labels: &[(Target, &[String])],
    version: &str,
) -> Option<Arc<Classifier>> {
    static TRAINED: Mutex<Vec<(String, Arc<Classifier>)>> = Mutex::new(Vec::new());
    if let Some((_, model)) = TRAINED
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|(v, _)| v == version)
    {
        return Some(model.clone());
    }
    if labels.is_empty() {
        return None;
    }
    let examples: Vec<Example<'_>> = labels
        .iter()
        .flat_map(|(label, texts)| texts.iter().map(move |text| Example { label, text }))
        .collect();
    let model = Arc::new(Classifier::train(&examples, TrainOptions::default()));
    let mut cache = TRAINED.lock().expect("not poisoned");
    if cache.len() >= 4 {
        cache.remove(0);
    }
    cache.push((version.to_string(), model.clone()));
    Some(model)
}

/// One labelled example: the entry point and a phrasing.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub label: &'a Target,
    pub text: &'a str,
}

/// Training settings; the defaults are what the evaluation set was tuned on.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// Weight of the word group against the character group (1 = equal).
    pub word_weight: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 40,
            learning_rate: 0.5,
            l2: 1e-5,
            word_weight: 0.8,
        }
    }
}

/// The trained model.
pub struct Classifier {
    labels: Vec<Target>,
    /// Feature hash → feature index.
    vocab: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    idf: Vec<f32>,
    /// `weights[f * classes + c]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// The training vectors, by class (for the nearest-example similarity).
    by_class: Vec<Vec<Sparse>>,
    word_weight: f32,
    examples: usize,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("entry_points", &self.labels.len())
            .field("examples", &self.examples)
            .field("features", &self.idf.len())
            .finish()
    }
}

/// One candidate entry point for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored<'a> {
    pub target: &'a Target,
    /// Softmax probability.
    pub probability: f32,
    /// Cosine to the entry point's nearest example; computed for the
    /// [`SIMILARITY_FOR`] most likely entry points with a probability of at
    /// least [`SIMILARITY_MIN_PROBABILITY`] only (0 for the rest).
    pub similarity: f32,
}

/// How many of the most likely entry points get a similarity ...
pub const SIMILARITY_FOR: usize = 3;
/// ... if at least this likely (the most likely one always does): a less
/// likely one is never offered, so its similarity is not worth computing.
pub const SIMILARITY_MIN_PROBABILITY: f32 = 0.05;

/// A sparse vector: (feature index, value), sorted by index.
pub(crate) type Sparse = Vec<(u32, f32)>;

impl Classifier {
    /// Trains on `examples`; labels are the distinct targets in order of
    /// first appearance. Deterministic.
    pub fn train(examples: &[Example<'_>], options: TrainOptions) -> Self {
        let mut labels: Vec<Target> = Vec::new();
        let mut label_of = Vec::with_capacity(examples.len());
        for e in examples {
            let idx = labels.iter().position(|l| l == e.label).unwrap_or_else(|| {
                labels.push(e.label.clone());
                labels.len() - 1
            });
            label_of.push(idx);
        }
        // Vocabulary and document frequencies.
        let mut vocab: HashMap<u64, u32, BuildHasherDefault<PassThrough>> = HashMap::default();
        let mut df: Vec<u32> = Vec::new();
        let mut raw: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(examples.len());
        for e in examples {
            let text = features_text(e.text);
            let (mut chars, mut words) = (Vec::new(), Vec::new());
            for_each_feature(&text, |group, hash| {
                let next = u32::try_from(vocab.len()).expect("fewer than 2^32 features");
                let idx = *vocab.entry(hash).or_insert(next);
                if idx as usize == df.len() {
                    df.push(0);
                }
                match group {
                    Group::Char => chars.push(idx),
                    Group::Word => words.push(idx),
                }
            });
            for list in [&mut chars, &mut words] {
                let mut distinct = list.clone();
                distinct.sort_unstable();
                distinct.dedup();
                for &f in &distinct {
                    df[f as usize] += 1;
                }
            }
            raw.push((chars, words));
        }
        let n = examples.len() as f32;
        let idf: Vec<f32> = df
            .iter()
            .map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
            .collect();
        let vectors: Vec<Sparse> = raw
            .into_iter()
            .map(|(c, w)| weigh(c, w, &idf, options.word_weight))
            .collect();
        let classes = labels.len();
        let features = idf.len();
        let (weights, bias) = fit(&vectors, &label_of, classes, features, options);
        let mut by_class = vec![Vec::new(); classes];
        for (x, &c) in vectors.into_iter().zip(&label_of) {
            by_class[c].push(x);
        }
        Self {
            labels,
            vocab,
            idf,
            weights,
            bias,
            by_class,
            word_weight: options.word_weight,
            examples: examples.len(),
        }
    }

    /// The entry points it knows, in class order.
    pub fn labels(&self) -> &[Target] {
        &self.labels
    }

    /// How many examples it was trained on.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// Bytes held by the model's tables (an estimate of its memory).
    pub fn memory_bytes(&self) -> usize {
        let floats = self.idf.len() + self.weights.len() + self.bias.len();
        let examples: usize = self
            .by_class
            .iter()
            .flatten()
            .map(|x| x.len() * 8 + 24)
            .sum();
        floats * 4 + examples + self.vocab.capacity() * (8 + 4 + 8)
    }

    /// The message as a TF-IDF vector over the known features.
    pub(crate) fn vectorize(&self, text: &str) -> Sparse {
        let text = features_text(text);
        let (mut chars, mut words) = (Vec::with_capacity(64), Vec::with_capacity(16));
        for_each_feature(&text, |group, hash| {
            if let Some(&idx) = self.vocab.get(&hash) {
                match group {
                    Group::Char => chars.push(idx),
                    Group::Word => words.push(idx),
                }
            }
        });
        weigh(chars, words, &self.idf, self.word_weight)
    }

    /// Every entry point with its probability and similarity, most likely
    /// first. Empty when the message shares no feature with any example.
    pub fn classify(&self, text: &str) -> Vec<Scored<'_>> {
        let x = self.vectorize(text);
        if x.is_empty() {
            return Vec::new();
        }
        let classes = self.labels.len();
        let mut scores = self.bias.clone();
        for &(f, v) in &x {
            let row = &self.weights[f as usize * classes..][..classes];
            for (score, w) in scores.iter_mut().zip(row) {
                *score += w * v;
            }
        }
        softmax(&mut scores);
        let mut out: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.into_iter()
            .enumerate()
            .map(|(rank, (c, probability))| Scored {
                target: &self.labels[c],
                probability,
                similarity: if rank == 0
                    || (rank < SIMILARITY_FOR && probability >= SIMILARITY_MIN_PROBABILITY)
                {
                    self.by_class[c]
                        .iter()
                        .map(|e| dot(&x, e))
                        .fold(0.0, f32::max)
                } else {
                    0.0
                },
            })
            .collect()
    }

    /// For every pair of entry points (a, b) with a ≠ b: the share of a's
    /// examples whose nearest other example belongs to b. A high share means
    /// the two are hard to tell apart. Quadratic in the examples: for
    /// `flows check`, not for loading.
    pub fn neighbour_confusion(&self) -> Vec<(usize, usize, f32)> {
        let all: Vec<(usize, &Sparse)> = self
            .by_class
            .iter()
            .enumerate()
            .flat_map(|(c, xs)| xs.iter().map(move |x| (c, x)))
            .collect();
        let classes = self.labels.len();
        let mut counts = vec![0usize; classes * classes];
        for (i, (a, x)) in all.iter().enumerate() {
            let nearest = all
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (b, y))| (dot(x, y), *b))
                .max_by(|p, q| p.0.total_cmp(&q.0));
            if let Some((_, b)) = nearest {
                counts[a * classes + b] += 1;
            }
        }
        let mut out = Vec::new();
        for a in 0..classes {
            let n = self.by_class[a].len().max(1) as f32;
            for b in (0..classes).filter(|&b| b != a) {
                let k = counts[a * classes + b];
                if k > 0 {
                    out.push((a, b, k as f32 / n));
                }
            }
        }
        out
    }
}

/// Lowercase letters and digits, words separated by single spaces, with a
/// space at both ends; apostrophes vanish ("can't" = "cant"), every other
/// character that is not a letter or digit separates words, and words with
/// an `@` (addresses) are left out.
fn features_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    // An address is a value, not a word about the problem ("my email is
    // bob@example.com" is not about bob or example.com).
    let words = text.split_whitespace().filter(|w| !w.contains('@'));
    for ch in words.flat_map(|w| w.chars().chain(std::iter::once(' '))) {
        if matches!(ch, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{00b4}') {
            continue;
        }
        if ch.is_alphanumeric() {
            for lower in ch.to_lowercase() {
                out.push(lower);
            }
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

#[derive(Clone, Copy)]
enum Group {
    Char,
    Word,
}

const CHAR_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const WORD_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;
const BIGRAM_SEED: u64 = 0x1656_67b1_9e37_79f9;

/// Character n-grams are taken from the first this many characters of a
/// word (with its padding); longer "words" are pasted junk, not language.
const MAX_NGRAM_CHARS: usize = 40;

/// Calls `f` for every feature of `text` (as made by [`features_text`]).
fn for_each_feature(text: &str, mut f: impl FnMut(Group, u64)) {
    let bytes = text.as_bytes();
    let mut prev_word: Option<(usize, usize)> = None;
    let mut start = 1;
    while start < bytes.len() {
        let Some(len) = text[start..].find(' ') else {
            break;
        };
        let end = start + len;
        if len == 0 {
            start += 1;
            continue;
        }
        f(Group::Word, hash(WORD_SEED, &bytes[start..end]));
        if let Some((ps, _)) = prev_word {
            f(Group::Word, hash(BIGRAM_SEED, &bytes[ps..end]));
        }
        prev_word = Some((start, end));
        // Character n-grams over " word " (the padding spaces are the
        // neighbours in `text`).
        let padded = &text[start - 1..=end];
        let mut bounds = [0usize; MAX_NGRAM_CHARS + 1];
        let mut chars = 0;
        for (i, _) in padded.char_indices().take(MAX_NGRAM_CHARS) {
            bounds[chars] = i;
            chars += 1;
        }
        bounds[chars] = padded
            .char_indices()
            .nth(chars)
            .map_or(padded.len(), |(i, _)| i);
        for n in 3..=5 {
            if chars < n {
                break;
            }
            for i in 0..=chars - n {
                f(
                    Group::Char,
                    hash(CHAR_SEED, &padded.as_bytes()[bounds[i]..bounds[i + n]]),
                );
            }
        }
        start = end + 1;
    }
}

/// FNV-1a with a seed, finished with a splitmix64 mix so the map can use the
/// value as its own hash.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The map's hasher for keys that are already well-mixed hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// TF-IDF with sublinear tf, each group L2-normalised, the word group scaled
/// by `word_weight`, the whole normalised again.
fn weigh(chars: Vec<u32>, words: Vec<u32>, idf: &[f32], word_weight: f32) -> Sparse {
    let mut out: Sparse = Vec::with_capacity(chars.len() + words.len());
    for (mut list, weight) in [(chars, 1.0f32), (words, word_weight)] {
        if list.is_empty() {
            continue;
        }
        list.sort_unstable();
        let from = out.len();
        let mut i = 0;
        while i < list.len() {
            let f = list[i];
            let mut tf = 0u32;
            while i < list.len() && list[i] == f {
                tf += 1;
                i += 1;
            }
            out.push((f, (1.0 + (tf as f32).ln()) * idf[f as usize]));
        }
        let norm = out[from..].iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        for (_, v) in &mut out[from..] {
            *v *= weight / norm;
        }
    }
    let norm = out.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut out {
            *v /= norm;
        }
    }
    // Char and word indices come from one vocabulary and never collide (the
    // seeds differ), so sorting keeps one entry per feature.
    out.sort_unstable_by_key(|(f, _)| *f);
    out
}

/// The dot product of two sparse vectors (both sorted by index).
fn dot(a: &Sparse, b: &Sparse) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// A class whose gradient for an example is smaller than this is not updated.
const SKIP_GRADIENT: f32 = 1e-4;

/// Softmax regression with AdaGrad; weight decay on the rows a step touches.
fn fit(
    vectors: &[Sparse],
    label_of: &[usize],
    classes: usize,
    features: usize,
    options: TrainOptions,
) -> (Vec<f32>, Vec<f32>) {
    let mut weights = vec![0.0f32; features * classes];
    let mut bias = vec![0.0f32; classes];
    let mut g2w = vec![1e-8f32; features * classes];
    let mut g2b = vec![1e-8f32; classes];
    let mut order: Vec<usize> = (0..vectors.len()).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut scores = vec![0.0f32; classes];
    let mut active = Vec::with_capacity(classes);
    for _ in 0..options.epochs {
        // Fisher-Yates with xorshift: deterministic.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let x = &vectors[i];
            scores.copy_from_slice(&bias);
            for &(f, v) in x {
                let row = f as usize * classes;
                for c in 0..classes {
                    scores[c] += weights[row + c] * v;
                }
            }
            softmax(&mut scores);
            scores[label_of[i]] -= 1.0; // now the gradient of the loss
            // Classes the example barely moves are skipped: after the first
            // epochs that is nearly all of them, which makes training fast.
            active.clear();
            active.extend((0..classes).filter(|&c| scores[c].abs() > SKIP_GRADIENT));
            for &c in &active {
                let g = scores[c];
                g2b[c] += g * g;
                bias[c] -= options.learning_rate * g / g2b[c].sqrt();
            }
            for &(f, v) in x {
                let row = f as usize * classes;
                for &c in &active {
                    let k = row + c;
                    let g = scores[c] * v + options.l2 * weights[k];
                    g2w[k] += g * g;
                    weights[k] -= options.learning_rate * g / g2w[k].sqrt();
                }
            }
        }
    }
    (weights, bias)
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(flow: &str, step: &str) -> Target {
        Target {
            flow: flow.into(),
            step: step.into(),
        }
    }

    #[test]
    fn the_feature_text_drops_apostrophes_and_punctuation_and_keeps_unicode_letters() {
        assert_eq!(
            features_text("Can't LOG-in!! Ünïcode 😀"),
            " cant log in ünïcode "
        );
        assert_eq!(features_text("   "), " ");
        assert_eq!(features_text("mail: bob@example.com ok"), " mail ok ");
    }

    #[test]
    fn a_misspelt_word_shares_most_of_its_character_ngrams() {
        let examples = [
            (t("a", "s"), "i forgot my password"),
            (t("a", "s"), "reset my password please"),
            (t("b", "s"), "is the site down"),
            (t("b", "s"), "server outage right now"),
        ];
        let ex: Vec<Example<'_>> = examples
            .iter()
            .map(|(l, s)| Example { label: l, text: s })
            .collect();
        let model = Classifier::train(&ex, TrainOptions::default());
        let top = &model.classify("forgott my pasword")[0];
        assert_eq!(top.target, &t("a", "s"));
        assert!(top.probability > 0.5, "{top:?}");
        let top = &model.classify("is teh site dwon??")[0];
        assert_eq!(top.target, &t("b", "s"));
        assert!(model.classify("😀😀").is_empty());
    }
}
