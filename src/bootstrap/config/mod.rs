//! Settings: every knob of CONTRACT 1, loaded once at start-up.
//!
//! Precedence, lowest to highest: built-in defaults < config file
//! (`--config PATH`, else `./chimney.toml` when present) < environment <
//! command-line flags. Each setting is declared once, in
//! `declaration.rs`; the command line (`cli.rs`), the environment and the
//! file (`sources.rs`) are read by the names declared there, and
//! `values.rs` judges each value. Settings never reach the domain:
//! start-up turns them into constructor arguments.

mod cli;
mod declaration;
mod layers;
mod provenance;
mod sources;
mod spec;
mod values;

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::{
    DEFAULT_NEGATIVE_TTL, DEFAULT_RATE_LIMIT_RESERVE_PCT, DEFAULT_STALE_WHILE_REVALIDATE,
    PathPolicy, RepoName, TtlPolicy,
};
use crate::service::proxy::{
    DEFAULT_FAILURE_BACKOFF, DEFAULT_UPSTREAM_QUEUE, DEFAULT_UPSTREAM_QUEUE_TIMEOUT,
};

pub use provenance::{Mode, Origin, Provenance, StartupReport};

use declaration::SPECS;
use layers::Layers;
use spec::{Layered, Reach, SettingSpec};
use values::Refusal;

/// The config file read when `--config` is not given, relative to the
/// current directory.
const DEFAULT_CONFIG_FILE: &str = "chimney.toml";

/// Everything chimney is configured with. How each field is set (its
/// names, default and meaning) is declared in `declaration.rs`.
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
    /// The secret webhook deliveries are signed with (`GITHUB_WEBHOOK_SECRET`).
    pub github_webhook_secret: Option<SecretString>,
    /// Byte budget of the memory tier (`CHIMNEY_MEMORY_CAPACITY_BYTES`).
    pub memory_capacity_bytes: u64,
    /// Maximum concurrent requests to GitHub (`CHIMNEY_UPSTREAM_CONCURRENCY`).
    pub upstream_concurrency: usize,
    /// Fetches that may wait for an outbound slot at once
    /// (`CHIMNEY_UPSTREAM_QUEUE`).
    pub upstream_queue: usize,
    /// How long a fetch may wait for an outbound slot
    /// (`CHIMNEY_UPSTREAM_QUEUE_TIMEOUT`).
    pub upstream_queue_timeout: Duration,
    /// How long past its TTL an entry is served at once while it is
    /// revalidated in the background (`CHIMNEY_STALE_WHILE_REVALIDATE`).
    pub stale_while_revalidate: Duration,
    /// Most connections open at once; more wait in the kernel's backlog
    /// (`CHIMNEY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Origins allowed on the admin endpoints (`CHIMNEY_CORS_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// Workflow file behind the pipeline summary (`CHIMNEY_SUMMARY_WORKFLOW`).
    pub summary_workflow: String,
    /// How long chimney keeps serving after SIGTERM, answering `/readyz`
    /// with 503 so a load balancer moves traffic away, before it closes the
    /// listener (`CHIMNEY_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
    /// Ordered TTL rules (`[[ttl]]` in the file).
    pub ttl: TtlPolicy,
    /// Path patterns the proxy serves (`CHIMNEY_PROXY_PATHS`, file
    /// `proxy_paths`); giving any replaces the default list.
    pub proxy_paths: PathPolicy,
    /// How long 404/410 answers are cached (`CHIMNEY_NEGATIVE_TTL`).
    pub negative_ttl: Duration,
    /// Percent of GitHub's rate limit kept for revalidating cached keys
    /// (`CHIMNEY_RATE_LIMIT_RESERVE`).
    pub rate_limit_reserve: u8,
    /// Allows sending `GITHUB_TOKEN` over plain `http://` to a host other
    /// than loopback (`CHIMNEY_ALLOW_INSECURE_GITHUB_URL`).
    pub allow_insecure_github_url: bool,
    /// OpenTelemetry export settings (the standard `OTEL_*` variables).
    pub otel: OtelSettings,
    /// Deadline for one GitHub request, body included. Not user-facing:
    /// fixed at 10 s by the contract; tests shorten it.
    pub upstream_timeout: Duration,
    /// Deadline for one Dragonfly command. Not user-facing: 200 ms by the
    /// contract; tests may change it.
    pub redis_timeout: Duration,
    /// Where each setting a source set came from, for the start-up report.
    pub provenance: Provenance,
    /// How long an authorised admin request's body may take to arrive.
    /// Not user-facing: 10 s; tests shorten it.
    pub admin_body_timeout: Duration,
    /// How long a connection may take to send complete request headers,
    /// from opening or from its previous response, before it is closed.
    /// Not user-facing: 10 s by the contract; tests shorten it.
    pub header_read_timeout: Duration,
    /// How often `/api/events` sends a heartbeat comment. Not user-facing:
    /// 15 s by the contract; tests shorten it.
    pub sse_heartbeat: Duration,
    /// How long a key whose fetch failed is served stale without asking
    /// GitHub again. Not user-facing: 5 s; tests that follow a failure
    /// with a recovery turn it off.
    pub failure_backoff: Duration,
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
            github_webhook_secret: None,
            memory_capacity_bytes: 64 * 1024 * 1024,
            upstream_concurrency: 32,
            upstream_queue: DEFAULT_UPSTREAM_QUEUE,
            upstream_queue_timeout: DEFAULT_UPSTREAM_QUEUE_TIMEOUT,
            stale_while_revalidate: DEFAULT_STALE_WHILE_REVALIDATE,
            max_connections: 10_000,
            cors_origins: vec!["*".to_owned()],
            summary_workflow: "goose-build.yml".to_owned(),
            shutdown_grace: Duration::ZERO,
            ttl: TtlPolicy::default(),
            proxy_paths: PathPolicy::default(),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            rate_limit_reserve: DEFAULT_RATE_LIMIT_RESERVE_PCT,
            allow_insecure_github_url: false,
            otel: OtelSettings::default(),
            upstream_timeout: Duration::from_secs(10),
            redis_timeout: Duration::from_millis(200),
            provenance: Provenance::default(),
            admin_body_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            sse_heartbeat: Duration::from_secs(15),
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
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
    /// A secret that cannot be used as given; its value is not shown.
    #[error("invalid value for {name} (not shown): {expected}")]
    Secret {
        /// The variable.
        name: &'static str,
        /// What would have been accepted.
        expected: &'static str,
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
    /// Each declared setting takes the value of the highest source that
    /// sets it, or keeps its default; the settings are judged in
    /// declaration order and the first refusal stops the load. The file is
    /// checked on its own first, so an unknown key is reported before any
    /// value.
    fn load_with(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: &HashMap<String, String>,
        default_config_path: &Path,
    ) -> Result<Self, ConfigError> {
        let flags = cli::parse_flags(args)?;
        let file = sources::read_config_file(flags.config.as_deref(), default_config_path)?;
        let mut layers = Layers { flags, env, file };
        let mut settings = Self::default();
        for spec in SPECS {
            settings.apply(spec, &mut layers)?;
        }
        settings.check_token()?;
        Ok(settings)
    }

    /// The checks that weigh the GitHub token against other settings: it
    /// must be usable as a header value, and it must not travel in clear.
    fn check_token(&self) -> Result<(), ConfigError> {
        if self
            .github_token
            .as_ref()
            .is_some_and(|token| !values::header_safe(token.expose_secret()))
        {
            return Err(ConfigError::Secret {
                name: "GITHUB_TOKEN",
                expected: "expected a token of visible ASCII characters, as GitHub issues them; it is sent in an HTTP header",
            });
        }
        if self.sends_token_in_clear() {
            return Err(invalid(
                "github_api_url",
                self.provenance.origin("github_api_url"),
                self.github_api_url.as_str(),
                "expected an https:// URL, or http:// to a loopback address, while GITHUB_TOKEN is set; CHIMNEY_ALLOW_INSECURE_GITHUB_URL=true allows it".into(),
            ));
        }
        Ok(())
    }

    /// Whether `GITHUB_TOKEN` would travel in clear to a host other than
    /// this machine without the explicit allow: a plain `http://` API URL
    /// is for local fakes and tests, not for a real token.
    pub fn sends_token_in_clear(&self) -> bool {
        self.github_token.is_some()
            && !self.allow_insecure_github_url
            && self.github_api_url.scheme() == "http"
            && !values::is_loopback(&self.github_api_url)
    }

    /// Stores one setting's value from the highest layer that sets it, if
    /// any, and remembers where it came from.
    fn apply(&mut self, spec: &SettingSpec, layers: &mut Layers<'_>) -> Result<(), ConfigError> {
        let origin = match &spec.reach {
            Reach::Layered {
                apply: Layered::Text(apply),
                ..
            } => {
                let Some((text, origin)) = layers.text(spec) else {
                    return Ok(());
                };
                apply(self, &text).map_err(|refusal| invalid(spec.key, &origin, &text, refusal))?;
                origin
            }
            Reach::Layered {
                apply: Layered::List(apply),
                ..
            } => {
                let Some((items, text, origin)) = layers.list(spec) else {
                    return Ok(());
                };
                apply(self, items).map_err(|refusal| invalid(spec.key, &origin, &text, refusal))?;
                origin
            }
            Reach::EnvOnly { apply, .. } => {
                let Some((text, origin)) = layers.env_only(spec) else {
                    return Ok(());
                };
                apply(self, text).map_err(|refusal| invalid(spec.key, &origin, text, refusal))?;
                origin
            }
            Reach::Secret { apply, .. } => {
                let Some((token, origin)) = layers.env_only(spec) else {
                    return Ok(());
                };
                apply(self, SecretString::from(token.to_owned()));
                origin
            }
            Reach::FileRules { apply } => {
                let Some((rules, origin)) = layers.rules(spec) else {
                    return Ok(());
                };
                apply(self, rules).map_err(|refusal| invalid(spec.key, &origin, "", refusal))?;
                origin
            }
            // Read by its own component; only where it came from is noted.
            Reach::Elsewhere { .. } => match layers.env_only(spec) {
                Some((_, origin)) => origin,
                None => return Ok(()),
            },
        };
        self.provenance.record(spec.key, origin);
        Ok(())
    }

    /// What start-up logs about this configuration: the mode, the repo or
    /// org, where each setting not at its default came from, and whether
    /// GitHub will be called without a token.
    #[must_use]
    pub fn startup_report(&self) -> StartupReport<'_> {
        StartupReport {
            mode: match &self.org {
                Some(org) => Mode::Org(org),
                None => Mode::SingleRepo(&self.repo),
            },
            provenance: &self.provenance,
            github_token_unset: self.github_token.is_none(),
        }
    }
}

/// The error for a refused value: the offending part when the refusal
/// names one, else the whole text.
fn invalid(key: &str, origin: &Origin, text: &str, refusal: Refusal) -> ConfigError {
    let Refusal { expected, part, at } = refusal;
    ConfigError::Invalid {
        key: format!("{key}{}", at.unwrap_or_default()),
        origin: origin.to_string(),
        value: values::shown(part.as_deref().unwrap_or(text)),
        expected: expected.to_owned(),
    }
}

#[cfg(test)]
mod declaration_tests;
#[cfg(test)]
mod tests;
