//! The environment and the config file as sources of values, read by the
//! names the declaration gives: no other variable is looked at and no
//! other file key is accepted.
//!
//! Nothing here judges a value beyond its shape (text, list or rules);
//! `values.rs` does that. Defaults are not a source: a setting no source
//! sets keeps its `Settings::default()` value.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use config::{FileFormat, Format, Map, Value};
use serde::Deserialize;

use super::ConfigError;
use super::declaration::SPECS;
use super::spec::{FileShape, Reach};

/// Reads exactly the variables the declaration names from the process
/// environment. Unrelated variables are never looked at, so a stray
/// `CHIMNEY_*` variable (a test harness's, say) cannot stop start-up.
pub(super) fn process_env() -> Result<HashMap<String, String>, ConfigError> {
    let mut env = HashMap::new();
    for spec in SPECS {
        let Some(name) = spec.env() else { continue };
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let value = match (value.into_string(), &spec.reach) {
            (Ok(value), _) => value,
            // Only whether it is set matters here; its reader judges it.
            (Err(value), Reach::Elsewhere { .. }) => value.to_string_lossy().into_owned(),
            // The value is not shown: it may be a token.
            (Err(_), _) => return Err(ConfigError::NotUnicode { name }),
        };
        env.insert(name.to_owned(), value);
    }
    Ok(env)
}

/// Items of a comma list, trimmed, empty items dropped.
pub(super) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// The config file's values, each already in its setting's shape.
#[derive(Debug)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    values: HashMap<&'static str, FileValue>,
}

/// A value from the file, in the shape its setting declares.
#[derive(Debug)]
pub(super) enum FileValue {
    Text(String),
    List(Vec<String>),
    Rules(Vec<RawTtlRule>),
}

/// One `[[ttl]]` table of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTtlRule {
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) duration: String,
}

impl ConfigFile {
    /// Takes the value the file gives `key`, if any.
    pub(super) fn take(&mut self, key: &str) -> Option<FileValue> {
        self.values.remove(key)
    }
}

/// Reads `--config PATH`, or else `default_path` when that exists.
///
/// A missing `--config` file is an error (the operator asked for it); a
/// missing default file is not (running without one is normal).
pub(super) fn read_config_file(
    explicit: Option<&Path>,
    default_path: &Path,
) -> Result<Option<ConfigFile>, ConfigError> {
    let path = explicit.unwrap_or(default_path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match explicit {
                Some(path) => Err(ConfigError::MissingFile {
                    path: path.to_owned(),
                }),
                None => Ok(None),
            };
        }
        Err(e) => return Err(file_error(path, e.to_string())),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let origin = format!("config file {}", path.display());
    let table = FileFormat::Toml
        .parse(Some(&origin), text)
        .map_err(|e| file_error(path, toml_error_summary(&e.to_string())))?;
    let values = shape_file(&table).map_err(|reason| file_error(path, reason))?;
    Ok(Some(ConfigFile {
        path: path.to_owned(),
        values,
    }))
}

/// Checks the file on its own against the declared file keys and shapes,
/// so that an unknown key or a value of the wrong shape (a string where a
/// list belongs) is reported against the file before any value is judged.
/// Keys are checked in sorted order, so the first one reported does not
/// depend on hashing.
fn shape_file(table: &Map<String, Value>) -> Result<HashMap<&'static str, FileValue>, String> {
    let mut keys: Vec<&String> = table.keys().collect();
    keys.sort();
    let mut values = HashMap::new();
    for key in keys {
        let (spec, shape) = SPECS
            .iter()
            .find(|spec| spec.key == key)
            .and_then(|spec| Some((spec, spec.file_shape()?)))
            .ok_or_else(|| unknown_key(key))?;
        let value = table[key].clone();
        let shaped = match shape {
            FileShape::Text => value
                .into_string()
                .map(FileValue::Text)
                .map_err(|_| format!("`{key}` must be a string or a number"))?,
            FileShape::List => value
                .into_array()
                .and_then(|items| items.into_iter().map(Value::into_string).collect())
                .map(FileValue::List)
                .map_err(|_| format!("`{key}` must be a list of strings, e.g. [\"a\", \"b\"]"))?,
            FileShape::Rules => {
                // Deserialized under its key, so that errors name the rule
                // (`ttl[1]`); serde says "field" where a file has keys.
                let wrapped = Value::new(None, Map::from_iter([(key.clone(), value)]));
                let mut tables = wrapped
                    .try_deserialize::<HashMap<String, Vec<RawTtlRule>>>()
                    .map_err(|e| e.to_string().replace("unknown field", "unknown key"))?;
                FileValue::Rules(tables.remove(key.as_str()).unwrap_or_default())
            }
        };
        values.insert(spec.key, shaped);
    }
    Ok(values)
}

/// Why `key` is not a file key. A setting read from the environment only
/// gets its variable named: a token in the file is the likeliest mistake,
/// and the answer (use the environment) is not obvious from a list of keys.
fn unknown_key(key: &str) -> String {
    match SPECS.iter().find(|spec| spec.key == key) {
        Some(spec) if spec.is_secret() => format!(
            "unknown key `{key}`: secrets are read from the environment only ({})",
            spec.env().unwrap_or_default()
        ),
        Some(spec) => format!(
            "unknown key `{key}`: it is read from the environment only ({})",
            spec.env().unwrap_or_default()
        ),
        None => {
            let known: Vec<&str> = SPECS
                .iter()
                .filter(|spec| spec.file_shape().is_some())
                .map(|spec| spec.key)
                .collect();
            format!("unknown key `{key}` (known keys: {})", known.join(", "))
        }
    }
}

fn file_error(path: &Path, reason: String) -> ConfigError {
    ConfigError::File {
        path: path.to_owned(),
        reason,
    }
}

/// Squeezes the TOML parser's multi-line report into one line, dropping
/// the source excerpt: start-up errors are one line, and the excerpt could
/// show a secret someone pasted into the file.
fn toml_error_summary(report: &str) -> String {
    let parts: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|'))
        .collect();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_are_squeezed_to_one_line_without_the_excerpt() {
        let report = "TOML parse error at line 1, column 16\n  |\n1 | github_token = \"ghp_secret\n  |                ^\ninvalid basic string\n";
        let line = toml_error_summary(report);
        assert_eq!(
            line,
            "TOML parse error at line 1, column 16: invalid basic string"
        );
    }

    #[test]
    fn comma_lists_are_trimmed_and_skip_empty_items() {
        let items: Vec<&str> = split_list(" a, b ,,c,").collect();
        assert_eq!(items, ["a", "b", "c"]);
        assert_eq!(split_list("").count(), 0);
    }
}
