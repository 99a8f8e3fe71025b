//! Reading the settings: file, then `RECOVERBOT__*` environment overrides,
//! then validation. Every failure is one line that names the file, key or
//! variable at fault, and never echoes a value (it might be a secret).

use super::Settings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Value;

const ENV_PREFIX: &str = "RECOVERBOT__";

/// Why the configuration cannot be used. `Display` is a single line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("{source_name}: unknown key `{key}`")]
    UnknownKey { source_name: String, key: String },
    #[error("{source_name}: key `{key}` has the wrong type: {reason}")]
    WrongType {
        source_name: String,
        key: String,
        reason: String,
    },
    #[error("{source_name}: key `{key}`: {reason}")]
    Invalid {
        source_name: String,
        key: String,
        reason: String,
    },
}

/// Where a key's value came from, so an error can point at it.
struct Origins {
    file: String,
    env: BTreeMap<String, String>,
}

impl Origins {
    fn of(&self, key: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| key == k.as_str() || key.starts_with(&format!("{k}.")))
            .map(|(_, var)| var.clone())
            .unwrap_or_else(|| self.file.clone())
    }
}

/// Loads settings from `path` (or `config.toml` when `None`; a missing
/// default file means "all defaults") and from the given environment.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let (file_name, mut root) = read_file(path)?;
    let defaults = Value::try_from(Settings::default()).expect("defaults serialise");
    let mut origins = Origins {
        file: file_name,
        env: BTreeMap::new(),
    };

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::UnknownKey {
                source_name: name.clone(),
                key: segments.join("."),
            });
        }
        let key = segments.join(".");
        let value = typed_env_value(&defaults, &segments, &raw).map_err(|reason| {
            ConfigError::WrongType {
                source_name: name.clone(),
                key: key.clone(),
                reason,
            }
        })?;
        insert_path(&mut root, &segments, value).map_err(|_| ConfigError::WrongType {
            source_name: name.clone(),
            key: key.clone(),
            reason: "its parent is not a section".into(),
        })?;
        origins.env.insert(key, name);
    }

    let settings: Settings = serde_path_to_error::deserialize(root).map_err(|err| {
        let path = err.path().to_string();
        let message = first_line(&err.inner().to_string());
        if let Some(field) = unknown_field(&message) {
            let key = if path == "." || path.is_empty() {
                field
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path
            } else {
                format!("{path}.{field}")
            };
            ConfigError::UnknownKey {
                source_name: origins.of(&key),
                key,
            }
        } else {
            ConfigError::WrongType {
                source_name: origins.of(&path),
                key: path,
                reason: without_values(&message),
            }
        }
    })?;

    if let Err(reason) = settings.database.parsed_url() {
        return Err(ConfigError::Invalid {
            source_name: origins.of("database.url"),
            key: "database.url".into(),
            reason,
        });
    }
    Ok(settings)
}

fn read_file(path: Option<&Path>) -> Result<(String, Value), ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("config.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((path.display().to_string(), Value::Table(Default::default())));
        }
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path,
                reason: e.kind().to_string(),
            });
        }
    };
    let value: Value = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        reason: match e.span() {
            Some(span) => format!(
                "line {}: {}",
                text[..span.start].matches('\n').count() + 1,
                one_line(e.message())
            ),
            None => one_line(e.message()),
        },
        path: path.clone(),
    })?;
    Ok((path.display().to_string(), value))
}

/// Interprets an environment string by the type the key has in the defaults,
/// so `RECOVERBOT__DATABASE__MAX_CONNECTIONS=4` is a number while a numeric
/// token stays a string.
fn typed_env_value(defaults: &Value, segments: &[String], raw: &str) -> Result<Value, String> {
    let mut node = Some(defaults);
    for seg in segments {
        node = node.and_then(|n| n.get(seg));
    }
    match node {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| "expected an integer".into()),
        Some(Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| "expected a number".into()),
        Some(Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        // A JSON array (`RECOVERBOT__STATUS__ANNOUNCE='[{"channel": ...}]'`)
        // for lists of tables; otherwise comma-separated strings.
        Some(Value::Array(_)) if raw.trim_start().starts_with('[') => {
            serde_json::from_str::<Value>(raw).map_err(|_| "expected a JSON array".into())
        }
        Some(Value::Array(_)) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Some(Value::Table(_)) => Err("this is a section; set one of its keys".into()),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn insert_path(root: &mut Value, segments: &[String], value: Value) -> Result<(), ()> {
    let (last, parents) = segments.split_last().ok_or(())?;
    let mut table = root.as_table_mut().ok_or(())?;
    for seg in parents {
        table = table
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Default::default()))
            .as_table_mut()
            .ok_or(())?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde says `invalid type: string "hunter2", expected u32`; keep the
/// shape of the complaint but drop the value.
fn without_values(message: &str) -> String {
    let expected = message
        .split_once("expected ")
        .map(|(_, e)| e.to_string())
        .unwrap_or_else(|| "a different type".into());
    let found = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split([' ', ',']).next())
        .unwrap_or("something else");
    format!("expected {expected}, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_numeric_token_from_the_environment_stays_a_string() {
        let s = load(
            Some(Path::new("/dev/null")),
            env(&[("RECOVERBOT__TELEGRAM__TOKEN", "123456")]),
        )
        .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(s.telegram.token.unwrap().expose_secret(), "123456");
    }

    #[test]
    fn list_values_from_the_environment_are_comma_separated() {
        let s = load(
            Some(Path::new("/dev/null")),
            env(&[("RECOVERBOT__DISCORD__GUILD_IDS", "1, 2,3")]),
        )
        .unwrap();
        assert_eq!(s.discord.guild_ids, vec!["1", "2", "3"]);
    }

    #[test]
    fn type_errors_never_echo_the_value() {
        let err = without_values("invalid type: string \"hunter2\", expected u32");
        assert_eq!(err, "expected u32, found string");
    }
}
