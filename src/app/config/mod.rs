//! Settings: every knob of CONTRACT 1, loaded once at start-up.
//!
//! Precedence, lowest to highest: built-in defaults < config file
//! (`--config PATH`, else `./chimney.toml` when present) < environment <
//! command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::domain::{RepoName, TtlPolicy};

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
