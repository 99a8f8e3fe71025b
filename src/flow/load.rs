//! Reading flow files: from a directory (`engine.flows_dir`), or the
//! default set compiled into the binary.

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
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        match read_flow_file(&path, max_file_bytes) {
            Ok(text) => sources.push((path, text)),
            Err(message) => diags.push(Diagnostic {
                file: path,
                step: None,
                message,
                hint: None,
            }),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    load_sources(&sources)
}

/// The default flows (`flows/*.toml` in the source tree), compiled into
/// the binary so it runs anywhere; `engine.flows_dir` replaces them.
pub const BUILTIN_FLOWS: &[(&str, &str)] = &[
    (
        "after_login.toml",
        include_str!("../../flows/after_login.toml"),
    ),
    ("browser.toml", include_str!("../../flows/browser.toml")),
    ("feedback.toml", include_str!("../../flows/feedback.toml")),
    ("human.toml", include_str!("../../flows/human.toml")),
    ("main.toml", include_str!("../../flows/main.toml")),
    (
        "password_reset.toml",
        include_str!("../../flows/password_reset.toml"),
    ),
    ("security.toml", include_str!("../../flows/security.toml")),
    ("signup.toml", include_str!("../../flows/signup.toml")),
    ("status.toml", include_str!("../../flows/status.toml")),
    (
        "two_factor.toml",
        include_str!("../../flows/two_factor.toml"),
    ),
    (
        "two_factor_setup.toml",
        include_str!("../../flows/two_factor_setup.toml"),
    ),
    (
        "wrong_password.toml",
        include_str!("../../flows/wrong_password.toml"),
    ),
];

/// Where built-in flows say they come from in diagnostics.
pub const BUILTIN_NAME: &str = "<built-in flows>";

/// Checks and compiles the built-in flows.
pub fn load_builtin() -> Result<FlowSet, Vec<Diagnostic>> {
    let sources: Vec<(PathBuf, String)> = BUILTIN_FLOWS
        .iter()
        .map(|(name, text)| (Path::new(BUILTIN_NAME).join(name), (*text).to_string()))
        .collect();
    load_sources(&sources)
}

/// The flows in `dir`, or the built-in ones when no directory is set.
pub fn load_configured(
    dir: Option<&Path>,
    max_file_bytes: u64,
) -> Result<FlowSet, Vec<Diagnostic>> {
    match dir {
        Some(dir) => load_dir_with(dir, max_file_bytes),
        None => load_builtin(),
    }
}

/// Parses, fingerprints, checks and compiles flow file texts, sorted by
/// name. The fingerprint covers file names and texts, so the built-in set
/// and a copy of it on disk have the same flow version.
fn load_sources(sources: &[(PathBuf, String)]) -> Result<FlowSet, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let mut hasher = Fnv64::default();
    for (path, text) in sources {
        hasher.write(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.write(text.as_bytes());
        match parse_flow_file(text) {
            Ok(file) => files.push((path.clone(), file)),
            Err(message) => diags.push(Diagnostic {
                file: path.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_flows_are_every_file_of_the_flows_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = BUILTIN_FLOWS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(built_in, on_disk, "add the new flow file to BUILTIN_FLOWS");
    }

    #[test]
    fn the_built_in_flows_have_the_version_of_the_same_files_on_disk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let from_disk = load_dir(&dir).unwrap();
        let built_in = load_builtin().unwrap();
        assert_eq!(built_in.version, from_disk.version);
        assert_eq!(built_in.flows.len(), from_disk.flows.len());
    }
}
