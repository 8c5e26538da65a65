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
    /// Most connections open at once; more wait in the kernel's backlog
    /// (`CHIMNEY_MAX_CONNECTIONS`).
    pub max_connections: usize,
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
    /// How long an authorised admin request's body may take to arrive.
    /// Not user-facing: 10 s; tests shorten it.
    pub admin_body_timeout: Duration,
    /// How long a connection may take to send complete request headers,
    /// from opening or from its previous response, before it is closed.
    /// Not user-facing: 10 s by the contract; tests shorten it.
    pub header_read_timeout: Duration,
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
            max_connections: 10_000,
            cors_origins: vec!["*".to_owned()],
            summary_workflow: "goose-build.yml".to_owned(),
            ttl: TtlPolicy::default(),
            otel: OtelSettings::default(),
            upstream_timeout: Duration::from_secs(10),
            redis_timeout: Duration::from_millis(200),
            admin_body_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
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
        if let Some(text) = &raw.max_connections {
            self.max_connections =
                Field::layered("max_connections", text, origins).with(values::concurrency)?;
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
mod tests {
    use std::fs;

    use secrecy::ExposeSecret;

    use super::*;

    /// Loads with `args` (program name implied), `env`, and `file` as the
    /// default `./chimney.toml` when given, in a fresh directory.
    fn load(
        args: &[&str],
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let default_path = dir.path().join("chimney.toml");
        if let Some(text) = file {
            fs::write(&default_path, text).expect("write config file");
        }
        let args = std::iter::once("chimney").chain(args.iter().copied());
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_with(args, &env, &default_path)
    }

    fn error(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> String {
        let message = load(args, env, file)
            .expect_err("configuration should be refused")
            .to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        message
    }

    #[test]
    fn nothing_configured_gives_the_contract_defaults() {
        let s = load(&[], &[], None).unwrap();
        assert_eq!(s.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.docs, PathBuf::from("./docs"));
        assert_eq!(s.repo.to_string(), "atvirokodosprendimai/wgmesh");
        assert_eq!(s.org, None);
        assert!(s.repos_exclude.is_empty());
        assert_eq!(s.redis.unwrap().as_str(), "redis://127.0.0.1:6379");
        assert_eq!(s.github_api_url.as_str(), "https://api.github.com/");
        assert!(
            s.github_token.is_none() && s.deploy_token.is_none() && s.invalidate_token.is_none()
        );
        assert!(!s.invalidate_all_allowed);
        assert_eq!(s.memory_capacity_bytes, 64 * 1024 * 1024);
        assert_eq!(s.upstream_concurrency, 32);
        assert_eq!(s.cors_origins, ["*"]);
        assert_eq!(s.summary_workflow, "goose-build.yml");
        assert_eq!(s.ttl, TtlPolicy::default());
        assert_eq!(s.otel, OtelSettings::default());
        assert_eq!(s.upstream_timeout, Duration::from_secs(10));
        assert_eq!(s.redis_timeout, Duration::from_millis(200));
    }

    #[test]
    fn the_file_overrides_defaults_the_environment_overrides_the_file_and_flags_override_both() {
        let file = Some("addr = \"127.0.0.1:1001\"\nrepo = \"file/repo\"\ndocs = \"/srv/file\"\n");
        let env = [
            ("CHIMNEY_ADDR", "127.0.0.1:1002"),
            ("CHIMNEY_REPO", "env/repo"),
        ];
        let flags = ["--addr", "127.0.0.1:1003", "--repo", "flag/repo"];

        let s = load(&[], &[], file).unwrap();
        assert_eq!(s.addr.port(), 1001);
        assert_eq!(s.repo.to_string(), "file/repo");

        let s = load(&[], &env, file).unwrap();
        assert_eq!(s.addr.port(), 1002);
        assert_eq!(s.repo.to_string(), "env/repo");
        assert_eq!(s.docs, PathBuf::from("/srv/file"));

        let s = load(&flags, &env, file).unwrap();
        assert_eq!(s.addr.port(), 1003);
        assert_eq!(s.repo.to_string(), "flag/repo");
        assert_eq!(s.docs, PathBuf::from("/srv/file"));
    }

    #[test]
    fn every_flag_sets_its_setting() {
        let s = load(
            &[
                "--docs=/srv/docs",
                "--org",
                "atvirokodosprendimai",
                "--redis",
                "rediss://cache:6380/1",
                "--github-api-url",
                "http://127.0.0.1:9999/api",
            ],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(s.docs, PathBuf::from("/srv/docs"));
        assert_eq!(s.org.as_deref(), Some("atvirokodosprendimai"));
        assert_eq!(s.redis.unwrap().as_str(), "rediss://cache:6380/1");
        assert_eq!(s.github_api_url.as_str(), "http://127.0.0.1:9999/api");
    }

    #[test]
    fn an_explicit_config_file_replaces_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = dir.path().join("other.toml");
        fs::write(&explicit, "repo = \"explicit/repo\"\n").unwrap();
        let s = load(
            &["--config", explicit.to_str().unwrap()],
            &[],
            Some("repo = \"default/repo\"\n"),
        )
        .unwrap();
        assert_eq!(s.repo.to_string(), "explicit/repo");
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let message = error(&["--config", "/nonexistent/chimney.toml"], &[], None);
        assert_eq!(
            message,
            "config file /nonexistent/chimney.toml (--config) does not exist"
        );
    }

    #[test]
    fn empty_redis_means_in_memory_only_from_env_or_flag() {
        let file = Some("redis = \"redis://file:6379\"\n");
        assert_eq!(
            load(&[], &[("CHIMNEY_REDIS", "")], file).unwrap().redis,
            None
        );
        assert_eq!(load(&["--redis", ""], &[], file).unwrap().redis, None);
        assert_eq!(load(&[], &[], Some("redis = \"\"\n")).unwrap().redis, None);
        let s = load(
            &["--redis", "redis://flag:6379"],
            &[("CHIMNEY_REDIS", "")],
            file,
        )
        .unwrap();
        assert_eq!(s.redis.unwrap().as_str(), "redis://flag:6379");
    }

    #[test]
    fn github_token_is_trimmed_and_blank_means_unauthenticated() {
        let s = load(&[], &[("GITHUB_TOKEN", "  ghp_abc\n")], None).unwrap();
        assert_eq!(s.github_token.unwrap().expose_secret(), "ghp_abc");
        assert!(
            load(&[], &[("GITHUB_TOKEN", " \n")], None)
                .unwrap()
                .github_token
                .is_none()
        );
        assert!(
            load(&[], &[("GITHUB_TOKEN", "")], None)
                .unwrap()
                .github_token
                .is_none()
        );
    }

    #[test]
    fn admin_tokens_come_from_the_environment_and_blank_means_none() {
        let s = load(
            &[],
            &[
                ("DEPLOY_TOKEN", "deploy-1"),
                ("INVALIDATE_TOKEN", "inval-1\n"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.deploy_token.unwrap().expose_secret(), "deploy-1");
        assert_eq!(s.invalidate_token.unwrap().expose_secret(), "inval-1");
        let s = load(
            &[],
            &[("DEPLOY_TOKEN", ""), ("INVALIDATE_TOKEN", "  ")],
            None,
        )
        .unwrap();
        assert!(s.deploy_token.is_none() && s.invalidate_token.is_none());
    }

    #[test]
    fn invalidate_all_allowed_accepts_true_false_one_and_zero() {
        let allowed = |v| {
            load(&[], &[("INVALIDATE_ALL_ALLOWED", v)], None)
                .unwrap()
                .invalidate_all_allowed
        };
        assert!(allowed("true"));
        assert!(allowed("1"));
        assert!(!allowed("false"));
        assert!(!allowed("0"));
        assert!(!allowed(""));
    }

    #[test]
    fn otel_settings_come_from_the_standard_variables() {
        let s = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SERVICE_NAME", "chimney-blue"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,slot=blue",
                ),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.otel.endpoint.as_str(), "http://collector:4318/");
        assert_eq!(s.otel.service_name, "chimney-blue");
        assert_eq!(
            s.otel.resource_attributes,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("slot".to_owned(), "blue".to_owned())
            ]
        );
        assert!(s.otel.disabled);
        let blank = load(
            &[],
            &[
                ("OTEL_SERVICE_NAME", ""),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ],
            None,
        )
        .unwrap();
        assert_eq!(blank.otel, OtelSettings::default());
    }

    #[test]
    fn unrelated_environment_variables_are_ignored() {
        let s = load(
            &[],
            &[
                ("CHIMNEY_TEST_DRAGONFLY_URL", "redis://127.0.0.1:7777"),
                ("CHIMNEY_SOMETHING_ELSE", "whatever"),
                ("PATH", "/usr/bin"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.redis.unwrap().as_str(), "redis://127.0.0.1:6379");
    }

    #[test]
    fn a_token_key_in_the_file_is_refused_naming_the_key() {
        let message = error(&[], &[], Some("deploy_token = \"x\"\n"));
        assert!(message.contains("config file"), "{message}");
        assert!(message.contains("`deploy_token`"), "{message}");
        assert!(message.contains("DEPLOY_TOKEN"), "{message}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_naming_the_key() {
        let message = error(&[], &[], Some("repo = \"a/b\"\ncolour = \"blue\"\n"));
        assert!(message.contains("unknown key `colour`"), "{message}");
        let message = error(
            &[],
            &[],
            Some("[[ttl]]\npath = \"/x\"\nduration = \"1s\"\nttl = \"2s\"\n"),
        );
        assert!(message.contains("unknown key `ttl`"), "{message}");
        let message = error(&[], &[], Some("invalidate_all_allowed = true\n"));
        assert!(
            message.contains("unknown key `invalidate_all_allowed`"),
            "{message}"
        );
    }

    #[test]
    fn a_malformed_file_is_one_line_naming_the_file() {
        let message = error(&[], &[], Some("repo = \n"));
        assert!(message.starts_with("config file "), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn a_repo_without_exactly_one_slash_is_refused_with_one_clear_line() {
        assert_eq!(
            error(&[], &[("CHIMNEY_REPO", "wgmesh")], None),
            "invalid value for repo (CHIMNEY_REPO): \"wgmesh\" (expected owner/name with exactly one '/' and only letters, digits, '-', '_' or '.')"
        );
        assert!(
            error(&["--repo", "a/b/c"], &[], None)
                .starts_with("invalid value for repo (--repo): \"a/b/c\"")
        );
        let from_file = error(&[], &[], Some("repo = \"wgmesh\"\n"));
        assert!(
            from_file.starts_with("invalid value for repo (config file "),
            "{from_file}"
        );
    }

    #[test]
    fn each_invalid_value_is_refused_naming_its_key_and_value() {
        let cases = [
            ("CHIMNEY_ADDR", "localhost", "addr"),
            ("CHIMNEY_ADDR", "0.0.0.0:99999", "addr"),
            ("CHIMNEY_DOCS", "", "docs"),
            ("GITHUB_ORG", "evil/../org", "org"),
            ("CHIMNEY_GITHUB_API_URL", "not a url", "github_api_url"),
            (
                "CHIMNEY_GITHUB_API_URL",
                "ftp://api.github.com",
                "github_api_url",
            ),
            ("CHIMNEY_REDIS", "http://127.0.0.1:6379", "redis"),
            ("CHIMNEY_REDIS", "127.0.0.1:6379", "redis"),
            (
                "CHIMNEY_MEMORY_CAPACITY_BYTES",
                "0",
                "memory_capacity_bytes",
            ),
            (
                "CHIMNEY_MEMORY_CAPACITY_BYTES",
                "64MiB",
                "memory_capacity_bytes",
            ),
            ("CHIMNEY_UPSTREAM_CONCURRENCY", "0", "upstream_concurrency"),
            ("CHIMNEY_UPSTREAM_CONCURRENCY", "-1", "upstream_concurrency"),
            (
                "CHIMNEY_CORS_ORIGINS",
                "https://table.beerpub.dev/",
                "cors_origins",
            ),
            ("CHIMNEY_SUMMARY_WORKFLOW", "a/b.yml", "summary_workflow"),
            (
                "INVALIDATE_ALL_ALLOWED",
                "yes please",
                "invalidate_all_allowed",
            ),
            ("OTEL_SDK_DISABLED", "perhaps", "otel.disabled"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "otel.endpoint",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "a=1,broken",
                "otel.resource_attributes",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "=1", "otel.resource_attributes"),
        ];
        for (name, value, key) in cases {
            let message = error(&[], &[(name, value)], None);
            let offending = value.rsplit(',').next().unwrap_or(value);
            assert!(
                message.starts_with(&format!(
                    "invalid value for {key} ({name}): {offending:?} (expected"
                )),
                "{name}={value}: {message}"
            );
        }
    }

    #[test]
    fn zero_values_in_the_file_are_refused_naming_the_file() {
        let message = error(&[], &[], Some("memory_capacity_bytes = 0\n"));
        assert!(
            message.starts_with("invalid value for memory_capacity_bytes (config file "),
            "{message}"
        );
        let message = error(&[], &[], Some("upstream_concurrency = 0\n"));
        assert!(
            message.starts_with("invalid value for upstream_concurrency (config file "),
            "{message}"
        );
    }

    #[test]
    fn a_bad_ttl_duration_is_refused_naming_the_rule() {
        let file = "[[ttl]]\npath = \"/pulls\"\nduration = \"5m\"\n\n[[ttl]]\npath = \"/issues\"\nduration = \"soon\"\n";
        let message = error(&[], &[], Some(file));
        assert!(
            message.starts_with("invalid value for ttl[1].duration (config file "),
            "{message}"
        );
        assert!(message.contains("\"soon\""), "{message}");
    }

    #[test]
    fn ttl_rules_are_kept_in_file_order() {
        let file = r#"
            [[ttl]]
            path = "/pulls"
            query = "state=closed"
            duration = "10m"

            [[ttl]]
            path = "/pulls"
            duration = "45s"

            [[ttl]]
            path = "/releases"
            duration = "1h"
        "#;
        let s = load(&[], &[], Some(file)).unwrap();
        let rule = |path: &str, query: Option<&str>, secs| TtlRule {
            path: path.to_owned(),
            query: query.map(str::to_owned),
            ttl: Duration::from_secs(secs),
        };
        assert_eq!(
            s.ttl.rules(),
            [
                rule("/pulls", Some("state=closed"), 600),
                rule("/pulls", None, 45),
                rule("/releases", None, 3600),
            ]
        );
    }

    #[test]
    fn an_empty_ttl_list_keeps_the_default_policy() {
        assert_eq!(
            load(&[], &[], Some("ttl = []\n")).unwrap().ttl,
            TtlPolicy::default()
        );
    }

    #[test]
    fn lists_come_from_the_file_or_a_comma_list_in_the_environment() {
        let file = Some(
            "repos_exclude = [\"a\", \"owner/b\"]\ncors_origins = [\"https://table.beerpub.dev\"]\n",
        );
        let s = load(&[], &[], file).unwrap();
        assert_eq!(s.repos_exclude, ["a", "owner/b"]);
        assert_eq!(s.cors_origins, ["https://table.beerpub.dev"]);

        let env = [
            ("GITHUB_REPOS_EXCLUDE", " c, d ,"),
            (
                "CHIMNEY_CORS_ORIGINS",
                "https://a.dev,http://localhost:3000",
            ),
        ];
        let s = load(&[], &env, file).unwrap();
        assert_eq!(s.repos_exclude, ["c", "d"]);
        assert_eq!(s.cors_origins, ["https://a.dev", "http://localhost:3000"]);
    }

    #[test]
    fn a_list_key_given_a_string_in_the_file_is_refused() {
        let message = error(&[], &[], Some("cors_origins = \"*\"\n"));
        assert!(message.starts_with("config file "), "{message}");
        assert!(message.contains("cors_origins"), "{message}");
    }

    #[test]
    fn numbers_may_be_written_as_toml_integers_or_strings() {
        let s = load(
            &[],
            &[],
            Some("memory_capacity_bytes = 1024\nupstream_concurrency = \"4\"\n"),
        )
        .unwrap();
        assert_eq!(s.memory_capacity_bytes, 1024);
        assert_eq!(s.upstream_concurrency, 4);
    }

    #[test]
    fn empty_org_means_single_repo_mode() {
        assert_eq!(load(&[], &[("GITHUB_ORG", "")], None).unwrap().org, None);
        assert_eq!(
            load(&["--org", "acme"], &[("GITHUB_ORG", "other")], None)
                .unwrap()
                .org
                .as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn a_token_value_never_appears_in_an_error() {
        const SECRET: &str = "tok-9f8e7d6c";
        let tokens = [
            ("GITHUB_TOKEN", SECRET),
            ("DEPLOY_TOKEN", SECRET),
            ("INVALIDATE_TOKEN", SECRET),
        ];
        let broken_env = [
            ("CHIMNEY_REPO", "wgmesh"),
            ("CHIMNEY_ADDR", "nowhere"),
            ("CHIMNEY_REDIS", "http://x"),
            ("INVALIDATE_ALL_ALLOWED", "maybe"),
            ("OTEL_RESOURCE_ATTRIBUTES", "broken"),
        ];
        for broken in broken_env {
            let mut env = tokens.to_vec();
            env.push(broken);
            assert!(!error(&[], &env, None).contains(SECRET));
        }
        for file in [
            format!("github_token = \"{SECRET}\"\n"),
            format!("invalidate_token = \"{SECRET}\"\n"),
            format!("[secrets]\ntoken = \"{SECRET}\"\n"),
            format!("github_token = \"{SECRET}\n"),
        ] {
            let message = error(&[], &tokens, Some(&file));
            assert!(!message.contains(SECRET), "{message}");
        }
        let message = error(
            &[],
            &[("CHIMNEY_REDIS", &format!("http://:{SECRET}@cache:6379"))],
            None,
        );
        assert!(!message.contains(SECRET), "{message}");
        assert!(message.contains("http://***@cache:6379"), "{message}");
    }

    #[test]
    fn command_line_mistakes_are_one_line() {
        let message = error(&["--adr", "x"], &[], None);
        assert!(
            message.starts_with("invalid command line: unexpected argument '--adr'"),
            "{message}"
        );
    }

    #[test]
    fn help_is_reported_as_a_request_not_a_failure() {
        match load(&["--help"], &[], None) {
            Err(ConfigError::Args(e)) => assert!(!e.use_stderr()),
            other => panic!("expected a help request, got {other:?}"),
        }
    }

    #[test]
    fn the_example_config_file_loads_and_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("chimney.example.toml");
        let s = load(&["--config", example.to_str().unwrap()], &[], None).unwrap();
        let d = Settings::default();
        assert_eq!(s.addr, d.addr);
        assert_eq!(s.docs, d.docs);
        assert_eq!(s.repo, d.repo);
        assert_eq!(s.org, d.org);
        assert_eq!(s.repos_exclude, d.repos_exclude);
        assert_eq!(s.redis, d.redis);
        assert_eq!(s.github_api_url, d.github_api_url);
        assert_eq!(s.memory_capacity_bytes, d.memory_capacity_bytes);
        assert_eq!(s.upstream_concurrency, d.upstream_concurrency);
        assert_eq!(s.max_connections, d.max_connections);
        assert_eq!(s.cors_origins, d.cors_origins);
        assert_eq!(s.summary_workflow, d.summary_workflow);
        assert_eq!(s.ttl, d.ttl);
    }

    #[test]
    fn max_connections_comes_from_the_file_or_the_environment_and_is_above_zero() {
        assert_eq!(load(&[], &[], None).unwrap().max_connections, 10_000);
        let s = load(&[], &[], Some("max_connections = 2\n")).unwrap();
        assert_eq!(s.max_connections, 2);
        let s = load(
            &[],
            &[("CHIMNEY_MAX_CONNECTIONS", "500")],
            Some("max_connections = 2\n"),
        )
        .unwrap();
        assert_eq!(s.max_connections, 500);
        for bad in ["0", "-1", "many"] {
            let message = error(&[], &[("CHIMNEY_MAX_CONNECTIONS", bad)], None);
            assert!(
                message.starts_with("invalid value for max_connections (CHIMNEY_MAX_CONNECTIONS)"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_commented_ttl_example_is_valid_and_is_the_default_policy() {
        let example = include_str!("../../../chimney.example.toml");
        let ttl_section = &example[example.find("# [[ttl]]").unwrap()..];
        let uncommented: String = ttl_section
            .lines()
            .map(|line| line.trim_start_matches('#').trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let s = load(&[], &[], Some(&uncommented)).unwrap();
        assert_eq!(s.ttl, TtlPolicy::default());
    }
}
