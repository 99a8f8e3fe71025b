//! Redaction against a corpus of what people really paste: every secret in
//! `tests/data/redaction_secrets.tsv` must go, and the ordinary messages of
//! `tests/data/redaction_ordinary.txt` must stay (a false positive deletes
//! the user's message and loses what they said).

use recoverbot::engine::redact::redact;

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_corpus_keeps_no_secret_and_flags_almost_no_ordinary_message() {
    let secrets = data("redaction_secrets.tsv");
    let (mut total, mut kept) = (0usize, Vec::new());
    for line in secrets.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.split('\t');
        let (kind, message, secret) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        total += 1;
        let r = redact(message);
        if r.text.contains(secret) || !r.has_secret() {
            kept.push(format!("[{kind}] {message:?} -> {:?}", r.text));
        }
    }
    let ordinary = data("redaction_ordinary.txt");
    let (mut plain, mut flagged) = (0usize, Vec::new());
    for line in ordinary.lines().filter(|l| !l.is_empty()) {
        plain += 1;
        let r = redact(line);
        if r.has_secret() {
            flagged.push(format!("{line:?} -> {:?}", r.text));
        }
    }
    let recall = 1.0 - kept.len() as f64 / total as f64;
    let false_positives = flagged.len() as f64 / plain as f64;
    eprintln!(
        "redaction: recall {:.1}% ({} of {total} secrets kept), false positives {:.1}% ({} of {plain})",
        recall * 100.0,
        kept.len(),
        false_positives * 100.0,
        flagged.len()
    );
    assert!(total >= 300 && plain >= 300);
    assert!(
        recall >= 0.99 && false_positives <= 0.02,
        "kept: {kept:#?}\nflagged: {flagged:#?}"
    );
}
