//! Where configuration values come from: the command line, the
//! environment and the config file, each turned into a `config` crate
//! source that remembers, per value, where it was set.
//!
//! Nothing here judges a value beyond its shape (text or list); `values.rs`
//! does that once the layers are merged. Defaults are not a source: a key no layer sets keeps its
//! `Settings::default()` value.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use clap::Parser;
use config::{FileFormat, Format, Map, Source, Value, ValueKind};
use serde::Deserialize;

use super::ConfigError;

/// Command-line flags; each overrides the environment and the file.
///
/// Values are plain strings so that a bad one is reported by the same
/// validation, in the same words, as a bad one from the environment or the
/// file. Environment names are given in the help by hand: clap's `env`
/// attribute would read the real process environment, which `load_from`
/// promises not to do.
#[derive(Debug, Parser)]
#[command(
    name = "chimney",
    version,
    about = "Caching GitHub API proxy and origin server for the project dashboard"
)]
pub(super) struct Flags {
    /// Listen address, IP:PORT [env: CHIMNEY_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "IP:PORT")]
    addr: Option<String>,
    /// Static dashboard directory [env: CHIMNEY_DOCS] [default: ./docs]
    #[arg(long, value_name = "DIR")]
    docs: Option<String>,
    /// GitHub repository, owner/name [env: CHIMNEY_REPO] [default:
    /// atvirokodosprendimai/wgmesh]
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// GitHub organisation; enables org mode [env: GITHUB_ORG]
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// Dragonfly/Redis URL; empty for in-memory only [env: CHIMNEY_REDIS]
    /// [default: redis://127.0.0.1:6379]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// GitHub API base URL [env: CHIMNEY_GITHUB_API_URL] [default:
    /// https://api.github.com]
    #[arg(long, value_name = "URL")]
    github_api_url: Option<String>,
    /// Config file (TOML) [default: ./chimney.toml when present]
    #[arg(long, value_name = "PATH")]
    pub(super) config: Option<PathBuf>,
}

impl Flags {
    /// The flags as the highest layer, each value tagged with its flag.
    pub(super) fn layer(&self) -> Layer {
        let mut layer = Layer::default();
        let flags = [
            ("addr", "--addr", &self.addr),
            ("docs", "--docs", &self.docs),
            ("repo", "--repo", &self.repo),
            ("org", "--org", &self.org),
            ("redis", "--redis", &self.redis),
            ("github_api_url", "--github-api-url", &self.github_api_url),
        ];
        for (key, flag, value) in flags {
            if let Some(value) = value {
                layer.set(key, flag, value.clone().into());
            }
        }
        layer
    }
}

/// Parses the command line; the first item is the program name.
pub(super) fn parse_flags(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Flags, ConfigError> {
    Flags::try_parse_from(args).map_err(ConfigError::Args)
}

/// Environment variables that set a layered key (one the file may set
/// too), with that key. Lists are comma-separated.
const ENV_KEYS: &[(&str, &str, Shape)] = &[
    ("CHIMNEY_ADDR", "addr", Shape::Scalar),
    ("CHIMNEY_DOCS", "docs", Shape::Scalar),
    ("CHIMNEY_REPO", "repo", Shape::Scalar),
    ("GITHUB_ORG", "org", Shape::Scalar),
    ("GITHUB_REPOS_EXCLUDE", "repos_exclude", Shape::List),
    ("CHIMNEY_REDIS", "redis", Shape::Scalar),
    ("CHIMNEY_GITHUB_API_URL", "github_api_url", Shape::Scalar),
    (
        "CHIMNEY_MEMORY_CAPACITY_BYTES",
        "memory_capacity_bytes",
        Shape::Scalar,
    ),
    (
        "CHIMNEY_UPSTREAM_CONCURRENCY",
        "upstream_concurrency",
        Shape::Scalar,
    ),
    ("CHIMNEY_MAX_CONNECTIONS", "max_connections", Shape::Scalar),
    ("CHIMNEY_CORS_ORIGINS", "cors_origins", Shape::List),
    (
        "CHIMNEY_SUMMARY_WORKFLOW",
        "summary_workflow",
        Shape::Scalar,
    ),
];

// Environment variables read directly, never from the file: the secrets,
// the switch that widens what a leaked invalidation token can do, and the
// standard OpenTelemetry variables.
pub(super) const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub(super) const DEPLOY_TOKEN: &str = "DEPLOY_TOKEN";
pub(super) const INVALIDATE_TOKEN: &str = "INVALIDATE_TOKEN";
pub(super) const INVALIDATE_ALL_ALLOWED: &str = "INVALIDATE_ALL_ALLOWED";
pub(super) const OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub(super) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub(super) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub(super) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

/// The environment-only variables, for reading the process environment.
const ENV_ONLY: &[&str] = &[
    GITHUB_TOKEN,
    DEPLOY_TOKEN,
    INVALIDATE_TOKEN,
    INVALIDATE_ALL_ALLOWED,
    OTEL_ENDPOINT,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SDK_DISABLED,
];

#[derive(Debug, Clone, Copy)]
enum Shape {
    Scalar,
    List,
}

/// Reads exactly the variables chimney knows from the process
/// environment. Unrelated variables are never looked at, so a stray
/// `CHIMNEY_*` variable (a test harness's, say) cannot stop start-up.
pub(super) fn process_env() -> Result<HashMap<String, String>, ConfigError> {
    let names = ENV_KEYS
        .iter()
        .map(|(name, _, _)| *name)
        .chain(ENV_ONLY.iter().copied());
    let mut env = HashMap::new();
    for name in names {
        if let Some(value) = std::env::var_os(name) {
            // The value is not shown: it may be a token.
            let value = value
                .into_string()
                .map_err(|_| ConfigError::NotUnicode { name })?;
            env.insert(name.to_owned(), value);
        }
    }
    Ok(env)
}

/// The environment as a layer above the file, each value tagged with the
/// variable it came from.
pub(super) fn env_layer(env: &HashMap<String, String>) -> Layer {
    let mut layer = Layer::default();
    for &(name, key, shape) in ENV_KEYS {
        let Some(value) = env.get(name) else {
            continue;
        };
        let kind = match shape {
            Shape::Scalar => ValueKind::from(value.clone()),
            Shape::List => {
                let items: Vec<Value> = split_list(value)
                    .map(|item| Value::new(Some(&name.to_owned()), item.to_owned()))
                    .collect();
                ValueKind::from(items)
            }
        };
        layer.set(key, name, kind);
    }
    layer
}

/// Items of a comma list, trimmed, empty items dropped.
pub(super) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Reads `--config PATH`, or else `default_path` when that exists, as a
/// layer whose values are tagged `config file {path}`.
///
/// A missing `--config` file is an error (the operator asked for it); a
/// missing default file is not (running without one is normal).
pub(super) fn read_config_file(
    explicit: Option<&Path>,
    default_path: &Path,
) -> Result<Option<Layer>, ConfigError> {
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
    check_file_schema(path, &origin, &table)?;
    Ok(Some(Layer(table)))
}

/// Checks the file on its own against the file's schema (`RawSettings`),
/// so that an unknown key or a value of the wrong shape (a string where a
/// list belongs) is reported against the file, before the layers merge.
///
/// A token key gets its own message: it is the likeliest mistake, and the
/// answer (use the environment) is not obvious from a list of valid keys.
fn check_file_schema(
    path: &Path,
    origin: &str,
    table: &Map<String, Value>,
) -> Result<(), ConfigError> {
    if let Some(key) = table
        .keys()
        .find(|key| key.ends_with("_token") || key.as_str() == "token")
    {
        return Err(file_error(
            path,
            format!(
                "unknown key `{key}`: secrets are read from the environment only ({})",
                key.to_uppercase()
            ),
        ));
    }
    Value::new(None, table.clone())
        .try_deserialize::<RawSettings>()
        .map(drop)
        .map_err(|e| {
            // The message names the file already; serde says "field" where
            // a config file has keys.
            let reason = e.to_string();
            let reason = reason
                .strip_suffix(&format!(" in {origin}"))
                .unwrap_or(&reason);
            let reason = match reason.strip_prefix("unknown field") {
                Some(rest) => format!("unknown key{rest}"),
                None => reason.to_owned(),
            };
            file_error(path, reason)
        })
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

/// One layer of configuration, as the `config` crate merges them.
#[derive(Debug, Clone, Default)]
pub(super) struct Layer(Map<String, Value>);

impl Layer {
    fn set(&mut self, key: &str, origin: &str, kind: ValueKind) {
        self.0
            .insert(key.to_owned(), Value::new(Some(&origin.to_owned()), kind));
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// The layered keys, as the file spells them and as the merged layers
/// hold them: scalars as text (the file may write a number), lists as
/// lists. `values.rs` turns each into its real type.
///
/// `deny_unknown_fields` is what makes an unknown key in the file, a token
/// included, stop start-up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) addr: Option<String>,
    pub(super) docs: Option<String>,
    pub(super) repo: Option<String>,
    pub(super) org: Option<String>,
    pub(super) repos_exclude: Option<Vec<String>>,
    pub(super) redis: Option<String>,
    pub(super) github_api_url: Option<String>,
    pub(super) memory_capacity_bytes: Option<String>,
    pub(super) upstream_concurrency: Option<String>,
    pub(super) max_connections: Option<String>,
    pub(super) cors_origins: Option<Vec<String>>,
    pub(super) summary_workflow: Option<String>,
    pub(super) ttl: Option<Vec<RawTtlRule>>,
}

/// One `[[ttl]]` table of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTtlRule {
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) duration: String,
}

/// Where each merged key was set, for error messages: `CHIMNEY_REPO`,
/// `--repo` or `config file ./chimney.toml`.
#[derive(Debug)]
pub(super) struct Origins(Map<String, Value>);

impl Origins {
    /// Remembers the origins of a merged configuration.
    pub(super) fn of(merged: &config::Config) -> Self {
        match &merged.cache.kind {
            ValueKind::Table(table) => Self(table.clone()),
            _ => Self(Map::new()),
        }
    }

    /// Where `key` was set.
    pub(super) fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .and_then(Value::origin)
            .unwrap_or("configuration")
            .to_owned()
    }
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
