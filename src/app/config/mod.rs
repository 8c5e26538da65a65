//! Settings: every knob of CONTRACT 1, loaded once at start-up.
//!
//! Precedence, lowest to highest: built-in defaults < config file
//! (`--config PATH`, else `./chimney.toml` when present) < environment <
//! command-line flags. The `config` crate merges the layers; `sources.rs`
//! builds them and `values.rs` judges each value. Settings never reach the
//! domain: start-up turns them into constructor arguments.

mod sources;
mod values;

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::domain::{RepoName, TtlPolicy, TtlRule};

use sources::{Origins, RawSettings, RawTtlRule};
use values::Expected;

/// The config file read when `--config` is not given, relative to the
/// current directory.
const DEFAULT_CONFIG_FILE: &str = "chimney.toml";

/// Everything chimney is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (`--addr`, `CHIMNEY_ADDR`).
    pub addr: SocketAddr,
    /// Static dashboard directory served at `/` (`--docs`, `CHIMNEY_DOCS`).
    pub docs: PathBuf,
    /// The repository proxied by `/api/github/...` (`--repo`, `CHIMNEY_REPO`).
    pub repo: RepoName,
    /// GitHub organisation; enables org mode (`--org`, `GITHUB_ORG`).
    pub org: Option<String>,
    /// Repositories skipped in org mode (`GITHUB_REPOS_EXCLUDE`).
    pub repos_exclude: Vec<String>,
    /// Dragonfly/Redis URL; `None` means in-memory only (`--redis`, `CHIMNEY_REDIS`).
    pub redis: Option<Url>,
    /// GitHub API base URL (`--github-api-url`, `CHIMNEY_GITHUB_API_URL`).
    pub github_api_url: Url,
    /// Token sent to GitHub (`GITHUB_TOKEN`, trimmed; blank means none).
    pub github_token: Option<SecretString>,
    /// Bearer token for deploy event ingestion (`DEPLOY_TOKEN`).
    pub deploy_token: Option<SecretString>,
    /// Bearer token for cache control (`INVALIDATE_TOKEN`).
    pub invalidate_token: Option<SecretString>,
    /// Whether `all: true` invalidation is permitted (`INVALIDATE_ALL_ALLOWED`).
    pub invalidate_all_allowed: bool,
    /// Byte budget of the memory tier (`CHIMNEY_MEMORY_CAPACITY_BYTES`).
    pub memory_capacity_bytes: u64,
    /// Maximum concurrent requests to GitHub (`CHIMNEY_UPSTREAM_CONCURRENCY`).
    pub upstream_concurrency: usize,
    /// Origins allowed on the admin endpoints (`CHIMNEY_CORS_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// Workflow file behind the pipeline summary (`CHIMNEY_SUMMARY_WORKFLOW`).
    pub summary_workflow: String,
    /// Ordered TTL rules (`[[ttl]]` in the file).
    pub ttl: TtlPolicy,
    /// OpenTelemetry export settings (the standard `OTEL_*` variables).
    pub otel: OtelSettings,
    /// Deadline for one GitHub request, body included. Not user-facing:
    /// fixed at 10 s by the contract; tests shorten it.
    pub upstream_timeout: Duration,
    /// Deadline for one Dragonfly command. Not user-facing: 200 ms by the
    /// contract; tests may change it.
    pub redis_timeout: Duration,
}

/// OpenTelemetry export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    /// OTLP/HTTP collector base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Url,
    /// `service.name` (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// Extra resource attributes, `k=v` pairs (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// Export switched off (`OTEL_SDK_DISABLED=true`).
    pub disabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            docs: PathBuf::from("./docs"),
            repo: RepoName::parse("atvirokodosprendimai/wgmesh").expect("default repo is valid"),
            org: None,
            repos_exclude: Vec::new(),
            redis: Some(Url::parse("redis://127.0.0.1:6379").expect("default redis URL is valid")),
            github_api_url: Url::parse("https://api.github.com").expect("default API URL is valid"),
            github_token: None,
            deploy_token: None,
            invalidate_token: None,
            invalidate_all_allowed: false,
            memory_capacity_bytes: 64 * 1024 * 1024,
            upstream_concurrency: 32,
            cors_origins: vec!["*".to_owned()],
            summary_workflow: "goose-build.yml".to_owned(),
            ttl: TtlPolicy::default(),
            otel: OtelSettings::default(),
            upstream_timeout: Duration::from_secs(10),
            redis_timeout: Duration::from_millis(200),
        }
    }
}

impl Default for OtelSettings {
    fn default() -> Self {
        Self {
            endpoint: Url::parse("http://localhost:4318").expect("default OTLP endpoint is valid"),
            service_name: "chimney".to_owned(),
            resource_attributes: Vec::new(),
            disabled: false,
        }
    }
}

/// Why the configuration was refused. Every variant displays as one line
/// naming the key (or file, or flag) at fault, so start-up can print it and
/// exit; no variant ever holds a token's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line could not be parsed (unknown flag, missing value),
    /// or asked for `--help`/`--version`, which `Settings::load` prints.
    #[error("invalid command line: {} (see --help)", first_line(.0))]
    Args(#[source] clap::Error),
    /// `--config` names a file that does not exist.
    #[error("config file {} (--config) does not exist", .path.display())]
    MissingFile {
        /// The path given to `--config`.
        path: PathBuf,
    },
    /// The config file could not be read or parsed, holds an unknown key
    /// (tokens included), or holds a value of the wrong shape.
    #[error("config file {}: {reason}", .path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, in one line.
        reason: String,
    },
    /// The merged layers could not be read as settings. The file is
    /// checked on its own first and the other layers are built from known
    /// names, so this is a safety net rather than a panic.
    #[error("invalid configuration: {0}")]
    Shape(String),
    /// A value is present but unusable.
    #[error("invalid value for {key} ({origin}): {value:?} ({expected})")]
    Invalid {
        /// The setting, as the file spells it (`repo`, `ttl[1].duration`).
        key: String,
        /// Where the value was set: a variable, a flag or the config file.
        origin: String,
        /// The offending value, with URL credentials masked.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An environment variable chimney reads is not valid Unicode; its
    /// value is not shown, since it may be a token.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        name: &'static str,
    },
}

/// The first line of clap's report, without its `error: ` prefix: the
/// usage block that follows is for a terminal, not a start-up log.
fn first_line(e: &clap::Error) -> String {
    let report = e.to_string();
    let line = report.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

impl Settings {
    /// Loads the settings from the real command line, the environment
    /// variables CONTRACT 1 names (no others), and the config file.
    ///
    /// `--help` and `--version` print their text and exit the process, as
    /// with any clap program.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that is unknown or
    /// invalid, or the config file that is missing or unreadable.
    pub fn load() -> Result<Self, ConfigError> {
        let env = sources::process_env()?;
        match Self::load_from(std::env::args_os(), &env) {
            Err(ConfigError::Args(e)) if !e.use_stderr() => e.exit(),
            loaded => loaded,
        }
    }

    /// Loads the settings from the given command line (program name first)
    /// and environment, never the process's own; `./chimney.toml` is still
    /// looked up in the current directory.
    ///
    /// # Errors
    ///
    /// As [`Settings::load`], plus [`ConfigError::Args`] for `--help` and
    /// `--version`.
    pub fn load_from(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        Self::load_with(args, env, Path::new(DEFAULT_CONFIG_FILE))
    }

    /// The whole load, with the default config file's path as a parameter
    /// so tests need not change the (process-wide) current directory.
    ///
    /// The layers, lowest to highest, and how each feeds a field:
    ///
    /// * defaults: `Settings::default()`; a key no layer sets keeps it.
    /// * file: TOML keys named after the fields, e.g. `repo = "o/n"` sets
    ///   `Settings.repo`, `[[ttl]]` tables set `Settings.ttl`.
    /// * environment: the field name upper-cased behind `CHIMNEY_`, e.g.
    ///   `CHIMNEY_REPO=o/n` sets `Settings.repo`; the org-mode pair keeps
    ///   the original's names (`GITHUB_ORG`, `GITHUB_REPOS_EXCLUDE`).
    /// * flags: `--repo o/n` sets `Settings.repo`.
    ///
    /// Secrets, `INVALIDATE_ALL_ALLOWED` and `OTEL_*` are read from the
    /// environment only and are applied after the merge.
    fn load_with(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: &HashMap<String, String>,
        default_config_path: &Path,
    ) -> Result<Self, ConfigError> {
        let flags = sources::parse_flags(args)?;
        let file = sources::read_config_file(flags.config.as_deref(), default_config_path)?;

        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        let merged = builder
            .add_source(sources::env_layer(env))
            .add_source(flags.layer())
            .build()
            .map_err(|e| ConfigError::Shape(e.to_string()))?;
        let origins = Origins::of(&merged);
        let raw: RawSettings = merged
            .try_deserialize()
            .map_err(|e| ConfigError::Shape(e.to_string()))?;

        let mut settings = Self::default();
        settings.apply_layered(raw, &origins)?;
        settings.apply_env_only(env)?;
        Ok(settings)
    }

    /// Overwrites the defaults with every layered key that was set.
    fn apply_layered(&mut self, raw: RawSettings, origins: &Origins) -> Result<(), ConfigError> {
        if let Some(text) = &raw.addr {
            self.addr = Field::layered("addr", text, origins).with(values::addr)?;
        }
        if let Some(text) = &raw.docs {
            self.docs = Field::layered("docs", text, origins).with(values::docs)?;
        }
        if let Some(text) = &raw.repo {
            self.repo = Field::layered("repo", text, origins).with(values::repo)?;
        }
        if let Some(text) = &raw.org {
            self.org = Field::layered("org", text, origins).with(values::org)?;
        }
        if let Some(items) = raw.repos_exclude {
            self.repos_exclude = items
                .iter()
                .map(|item| item.trim())
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(text) = &raw.redis {
            self.redis = Field::layered("redis", text, origins).with(values::redis)?;
        }
        if let Some(text) = &raw.github_api_url {
            self.github_api_url =
                Field::layered("github_api_url", text, origins).with(values::http_url)?;
        }
        if let Some(text) = &raw.memory_capacity_bytes {
            self.memory_capacity_bytes = Field::layered("memory_capacity_bytes", text, origins)
                .with(values::capacity_bytes)?;
        }
        if let Some(text) = &raw.upstream_concurrency {
            self.upstream_concurrency =
                Field::layered("upstream_concurrency", text, origins).with(values::concurrency)?;
        }
        if let Some(items) = &raw.cors_origins {
            self.cors_origins = items
                .iter()
                .map(|item| {
                    Field::layered("cors_origins", item.trim(), origins).with(values::cors_origin)
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(text) = &raw.summary_workflow {
            self.summary_workflow =
                Field::layered("summary_workflow", text, origins).with(values::workflow)?;
        }
        if let Some(rules) = raw.ttl.filter(|rules| !rules.is_empty()) {
            self.ttl = ttl_policy(rules, &origins.get("ttl"))?;
        }
        Ok(())
    }

    /// Applies the settings only the environment may give. A blank
    /// variable counts as unset, as the OpenTelemetry spec requires of its
    /// own and as is kindest to `VAR=${VAR}` in compose files.
    fn apply_env_only(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        use sources::{
            DEPLOY_TOKEN, GITHUB_TOKEN, INVALIDATE_ALL_ALLOWED, INVALIDATE_TOKEN, OTEL_ENDPOINT,
            OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, OTEL_SERVICE_NAME,
        };
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        self.github_token = values::secret(env.get(GITHUB_TOKEN));
        self.deploy_token = values::secret(env.get(DEPLOY_TOKEN));
        self.invalidate_token = values::secret(env.get(INVALIDATE_TOKEN));
        if let Some(text) = get(INVALIDATE_ALL_ALLOWED) {
            self.invalidate_all_allowed =
                Field::env("invalidate_all_allowed", INVALIDATE_ALL_ALLOWED, text)
                    .with(values::boolean)?;
        }
        if let Some(text) = get(OTEL_ENDPOINT) {
            self.otel.endpoint =
                Field::env("otel.endpoint", OTEL_ENDPOINT, text).with(values::http_url)?;
        }
        if let Some(text) = get(OTEL_SERVICE_NAME) {
            text.clone_into(&mut self.otel.service_name);
        }
        if let Some(text) = get(OTEL_RESOURCE_ATTRIBUTES) {
            self.otel.resource_attributes =
                values::resource_attributes(text).map_err(|(item, expected)| {
                    invalid(
                        "otel.resource_attributes",
                        OTEL_RESOURCE_ATTRIBUTES.to_owned(),
                        &item,
                        expected,
                    )
                })?;
        }
        if let Some(text) = get(OTEL_SDK_DISABLED) {
            self.otel.disabled =
                Field::env("otel.disabled", OTEL_SDK_DISABLED, text).with(values::boolean)?;
        }
        Ok(())
    }
}

/// The `[[ttl]]` rules of the file, in order.
fn ttl_policy(rules: Vec<RawTtlRule>, origin: &str) -> Result<TtlPolicy, ConfigError> {
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let ttl = values::duration(&rule.duration).map_err(|expected| {
                invalid(
                    &format!("ttl[{i}].duration"),
                    origin.to_owned(),
                    &rule.duration,
                    expected,
                )
            })?;
            Ok(TtlRule {
                path: rule.path,
                query: rule.query.filter(|q| !q.is_empty()),
                ttl,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(TtlPolicy::new(rules))
}

/// A value's text, with what is needed to name it when it is refused.
struct Field<'a> {
    key: &'a str,
    text: &'a str,
    origin: String,
}

impl<'a> Field<'a> {
    /// A layered key, named after the layer that set it.
    fn layered(key: &'a str, text: &'a str, origins: &Origins) -> Self {
        Self {
            key,
            text,
            origin: origins.get(key),
        }
    }

    /// An environment-only setting, named after its variable.
    fn env(key: &'a str, name: &str, text: &'a str) -> Self {
        Self {
            key,
            text,
            origin: name.to_owned(),
        }
    }

    /// Parses the text, or names key, origin and value.
    fn with<T>(self, parse: impl FnOnce(&str) -> Result<T, Expected>) -> Result<T, ConfigError> {
        parse(self.text).map_err(|expected| invalid(self.key, self.origin, self.text, expected))
    }
}

/// The error for a refused value.
fn invalid(key: &str, origin: String, text: &str, expected: Expected) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin,
        value: values::shown(text),
        expected: expected.to_owned(),
    }
}

#[cfg(test)]
mod tests;
