//! Reading flow files from a directory.

use super::check::{Diagnostic, check_and_compile};
use super::model::{FlowFile, FlowSet};
use std::path::{Path, PathBuf};

/// Parses one flow file's text. The error is a one-line message with the
/// line number.
pub fn parse_flow_file(text: &str) -> Result<FlowFile, String> {
    toml::from_str(text).map_err(|e| {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        match e.span() {
            Some(span) => format!(
                "line {}: {message}",
                text[..span.start.min(text.len())].matches('\n').count() + 1
            ),
            None => message,
        }
    })
}

/// The largest flow file read by default (`flows.max_file_bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads, checks and compiles every `*.toml` in `dir`, with the default
/// file size limit.
pub fn load_dir(dir: &Path) -> Result<FlowSet, Vec<Diagnostic>> {
    load_dir_with(dir, DEFAULT_MAX_FILE_BYTES)
}

/// Reads one flow file: a regular file (not a FIFO, a device or a
/// directory, even behind a symlink) of at most `max_bytes`.
fn read_flow_file(path: &Path, max_bytes: u64) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {}", e.kind()))?;
    if !meta.is_file() {
        return Err("not a regular file: refused".into());
    }
    if meta.len() > max_bytes {
        return Err(format!(
            "{} bytes, over flows.max_file_bytes ({max_bytes}): refused",
            meta.len()
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {}", e.kind()))?;
    let mut text = String::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {}", e.kind()))?;
    if text.len() as u64 > max_bytes {
        return Err(format!("over flows.max_file_bytes ({max_bytes}): refused"));
    }
    Ok(text)
}

/// [`load_dir`] with a limit on each file's size.
pub fn load_dir_with(dir: &Path, max_file_bytes: u64) -> Result<FlowSet, Vec<Diagnostic>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(vec![Diagnostic {
                file: dir.to_path_buf(),
                step: None,
                message: format!("cannot read the flows directory: {}", e.kind()),
                hint: Some("set engine.flows_dir or pass the directory".into()),
            }]);
        }
    };
    paths.sort();
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let mut hasher = Fnv64::default();
    for path in paths {
        let text = match read_flow_file(&path, max_file_bytes) {
            Ok(t) => t,
            Err(message) => {
                diags.push(Diagnostic {
                    file: path,
                    step: None,
                    message,
                    hint: None,
                });
                continue;
            }
        };
        hasher.write(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.write(text.as_bytes());
        match parse_flow_file(&text) {
            Ok(file) => files.push((path, file)),
            Err(message) => diags.push(Diagnostic {
                file: path,
                step: None,
                message,
                hint: Some("see docs/flows.md for the file format".into()),
            }),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    check_and_compile(&files, format!("{:016x}", hasher.0))
}

/// FNV-1a: a stable fingerprint of the flow files (not for security).
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Parses and checks one file's text on its own (for the fuzzer and tools).
pub fn check_text(name: &str, text: &str) -> Result<FlowSet, Vec<Diagnostic>> {
    let file = parse_flow_file(text).map_err(|message| {
        vec![Diagnostic {
            file: PathBuf::from(name),
            step: None,
            message,
            hint: None,
        }]
    })?;
    let mut hasher = Fnv64::default();
    hasher.write(text.as_bytes());
    check_and_compile(&[(PathBuf::from(name), file)], format!("{:016x}", hasher.0))
}
