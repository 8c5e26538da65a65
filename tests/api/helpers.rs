//! `TestApp` and `spawn_app()`: the real chimney, started on a free port in
//! front of its own [`FakeGithub`], plus the small HTTP helpers the
//! behaviour tests use.
//!
//! The cache backend is chosen once here for the whole suite: memory only,
//! or memory + the Redis server named by `CHIMNEY_TEST_DRAGONFLY_URL`.
//! Tests are quiet unless `TEST_LOG` is set.
//!
//! With Redis, every app gets a database of its own, emptied when the app
//! is spawned (zero2prod's database per test), so tests share one server
//! without seeing each other's entries or deploy history. The server must
//! be started with enough databases (`scripts/test.sh` passes
//! `--databases 10000`). Database 0 is left to `tests/cache_contract.rs`
//! and the adapter's own tests.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chimney::bootstrap::config::Settings;
use chimney::bootstrap::startup::Application;
use chimney::domain::{DEFAULT_PROXY_PATHS, PathPolicy, RepoName, TtlPolicy, TtlRule};
use chimney_testkit::github::FakeGithub;
use deadpool_redis::redis;
use reqwest::Method;
use reqwest::header::HeaderMap;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

/// The repository of recordings #1, #8 and #9 (`/contents/README.md`).
pub const HELLO_WORLD: &str = "octokit-fixture-org/hello-world";
/// The repository of the paginated issues, #2–#6.
pub const PAGINATE_ISSUES: &str =
    "octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe";
/// The repository whose branch protection answers 404 (#10).
pub const BRANCH_PROTECTION: &str =
    "octokit-fixture-org/tmp-scenario-branch-protection-20220719043700727-wbo1k";
/// The repository that answers 301 (#11).
pub const RENAME_REPOSITORY: &str =
    "octokit-fixture-org/tmp-scenario-rename-repository-20220719044033126-ukeod";
/// The repository whose `/git/refs/` changes between #16 and #17.
pub const GIT_REFS: &str = "octokit-fixture-org/tmp-scenario-git-refs-20220719043750036-9bssg";

/// Recorded fixtures the suite serves that lie outside the default path
/// policy; tests list them as an operator would with `CHIMNEY_PROXY_PATHS`.
/// Tests of the policy itself set `proxy_paths` back to the default.
pub const FIXTURE_PATHS: [&str; 3] = ["/contents/**", "/git/refs/**", "/branches/*/protection"];

/// The default path policy plus [`FIXTURE_PATHS`].
pub fn test_proxy_paths() -> PathPolicy {
    PathPolicy::parse(DEFAULT_PROXY_PATHS.iter().chain(FIXTURE_PATHS.iter()))
        .expect("valid patterns")
}

/// Names the Redis server the suite runs against; unset means memory only.
pub const DRAGONFLY_URL_ENV: &str = "CHIMNEY_TEST_DRAGONFLY_URL";

/// How long any single request from a test may take before it fails.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// How long a direct command to the test Redis may take.
pub const REDIS_DEADLINE: Duration = Duration::from_secs(5);

/// The body the temporary docs directory serves at `/`.
pub const DOCS_INDEX: &str = "<!doctype html><title>chimney</title><h1>chimney test dashboard</h1>";

/// Installs a subscriber once: output only with `TEST_LOG`, otherwise a
/// sink, so that nothing chimney installs later makes the suite noisy.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    // The suite's OTLP pipeline (exporting to a fake collector) goes first:
    // it is the global subscriber, quiet unless TEST_LOG; the fallback
    // below then finds one installed.
    crate::otlp_pipeline::pipeline();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .try_init();
    }
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
});

/// Readies the test process (subscriber, TLS provider) for a test that
/// makes its own HTTP client instead of spawning an app.
pub fn init_test_process() {
    LazyLock::force(&TRACING);
}

/// The first database handed to an app; 0 belongs to the other test
/// binaries that share the server.
const FIRST_APP_DATABASE: i64 = 1;

/// How many databases the shared server has (`--databases`).
const SERVER_DATABASES: i64 = 10_000;

/// The next database an app gets on the shared Redis.
static NEXT_DATABASE: AtomicI64 = AtomicI64::new(FIRST_APP_DATABASE);

/// The cache backend every `TestApp` of this run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In-memory only (`redis: None`).
    Memory,
    /// Memory + the shared Redis server at this URL.
    Redis(Url),
}

impl Backend {
    /// The one switch between the two suites.
    pub fn from_env() -> Self {
        match std::env::var(DRAGONFLY_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::Redis(
                Url::parse(url.trim())
                    .unwrap_or_else(|e| panic!("{DRAGONFLY_URL_ENV}={url} is not a URL: {e}")),
            ),
            _ => Self::Memory,
        }
    }
}

/// A database on the shared `server` that no other app of this run uses,
/// emptied, as a URL selecting it.
pub async fn fresh_database(server: &Url) -> Url {
    let database = NEXT_DATABASE.fetch_add(1, Ordering::SeqCst);
    assert!(
        database < SERVER_DATABASES,
        "more than {} apps in one run: start the test Redis with more --databases",
        SERVER_DATABASES - FIRST_APP_DATABASE
    );
    let mut url = server.clone();
    url.set_path(&format!("/{database}"));
    let flush = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await
    };
    match tokio::time::timeout(REDIS_DEADLINE, flush).await {
        Ok(Ok(())) => url,
        Ok(Err(e)) => panic!(
            "cannot empty database {database} of {server} (started with --databases {SERVER_DATABASES}?): {e}"
        ),
        Err(_) => panic!("{server} did not answer FLUSHDB within {REDIS_DEADLINE:?}"),
    }
}

/// A running chimney and the fake GitHub behind it. Dropping it stops the
/// server.
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// The port chimney listens on.
    pub port: u16,
    /// A client that does not follow redirects.
    pub client: reqwest::Client,
    /// The upstream this app talks to.
    pub github: FakeGithub,
    /// The repository `/api/github/…` maps to.
    pub repo: RepoName,
    /// The cache backend of the run.
    pub backend: Backend,
    /// The Redis URL this app was configured with (its own database on
    /// the shared server unless the test chose another); `None` in memory
    /// mode.
    pub redis: Option<Url>,
    _docs: TempDir,
    /// Dropping or sending on it stops the server.
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// A response read to the end.
#[derive(Debug)]
pub struct TestResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, repeated ones kept.
    pub headers: HeaderMap,
    /// The complete body.
    pub body: Bytes,
}

impl TestResponse {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// `X-Cache`, or `""` when absent.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an RFC 9457 problem response with `status`.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let content_type = self.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/problem+json"),
            "content-type was {content_type:?}"
        );
        let problem = self.json();
        assert!(problem["type"].is_string(), "type missing: {problem}");
        assert!(problem["title"].is_string(), "title missing: {problem}");
        assert_eq!(problem["status"], status, "status field: {problem}");
        assert!(problem["detail"].is_string(), "detail missing: {problem}");
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TTL policy under which entries at `path` are stale as soon as they
/// are stored: the way to test revalidation without waiting.
pub fn stale_immediately(path: &str) -> TtlPolicy {
    TtlPolicy::new(vec![TtlRule {
        path: path.to_owned(),
        query: None,
        ttl: Duration::ZERO,
    }])
}

/// Spawns chimney for [`HELLO_WORLD`] with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns chimney for `repo` with default settings.
pub async fn spawn_app_for(repo: &str) -> TestApp {
    let repo = RepoName::parse(repo).expect("valid repo");
    spawn_app_with(move |s| s.repo = repo).await
}

/// Spawns chimney after `configure` has adjusted the test settings
/// (port 0, the fake as GitHub, a temporary docs dir, telemetry off).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let backend = Backend::from_env();
    let redis = match &backend {
        Backend::Memory => None,
        Backend::Redis(server) => Some(fresh_database(server).await),
    };
    let github = FakeGithub::start().await;

    let docs = tempfile::tempdir().expect("temporary docs dir");
    std::fs::write(docs.path().join("index.html"), DOCS_INDEX).expect("write index.html");

    let mut settings = Settings {
        addr: "127.0.0.1:0".parse().expect("loopback address"),
        docs: docs.path().to_path_buf(),
        repo: RepoName::parse(HELLO_WORLD).expect("valid repo"),
        redis,
        github_api_url: github.base_url(),
        github_token: None,
        proxy_paths: test_proxy_paths(),
        // Off unless a test turns it on, so a stale entry's revalidation is
        // what the client sees (stale_while_revalidate.rs tests the window).
        stale_while_revalidate: Duration::ZERO,
        // Off unless a test turns it on, so a test can follow a failure
        // with a recovery at once (failures.rs tests the pause).
        failure_backoff: Duration::ZERO,
        ..Settings::default()
    };
    settings.otel.disabled = true;
    configure(&mut settings);
    let repo = settings.repo.clone();
    let redis = settings.redis.clone();

    let app = Application::build(settings, crate::otlp_pipeline::installed_request_exporter())
        .await
        .expect("chimney builds with test settings");
    let port = app.port();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let outcome = app
            .run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = outcome {
            tracing::error!(error = ?e, "chimney stopped with an error");
        }
    });

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("HTTP client");

    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client,
        github,
        repo,
        backend,
        redis,
        _docs: docs,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// The chimney path for `rel` (a path below the repository, with its
    /// query), e.g. `/contents/README.md` → `/api/github/contents/README.md`.
    pub fn github_path(&self, rel: &str) -> String {
        format!("/api/github{rel}")
    }

    /// The Redis key chimney keeps the entry with cache key `key` under
    /// (single-repo mode): `chimney:{owner/name, lower-cased}:{key}`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("chimney:{}:{key}", self.repo.as_str().to_ascii_lowercase())
    }

    /// The upstream path and query chimney should request for `rel`, as the
    /// fake counts it: `/repos/{repo}{rel}`.
    pub fn upstream(&self, rel: &str) -> String {
        if rel == "/" {
            format!("/repos/{}", self.repo)
        } else {
            format!("/repos/{}{rel}", self.repo)
        }
    }

    /// Requests `path` (exactly as given) with `method` and `headers` and no
    /// body; see `TestApp::send` (admin_client.rs) for requests with one.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        self.send(method, path, headers, Vec::new()).await
    }

    /// `GET {path}`, the path exactly as given.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, &[]).await
    }

    /// `GET {path}` with extra request headers.
    pub async fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.request(Method::GET, path, headers).await
    }

    /// `HEAD {path}`.
    pub async fn head(&self, path: &str) -> TestResponse {
        self.request(Method::HEAD, path, &[]).await
    }

    /// `GET` of the proxied resource `rel` (see [`Self::github_path`]).
    pub async fn get_github(&self, rel: &str) -> TestResponse {
        self.get(&self.github_path(rel)).await
    }

    /// `GET` of the proxied resource `rel` with extra request headers.
    pub async fn get_github_with_headers(
        &self,
        rel: &str,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        self.get_with_headers(&self.github_path(rel), headers).await
    }

    /// Signals shutdown, as SIGTERM would, without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits up to `deadline` for the server task to finish after a
    /// shutdown signal; true when it did.
    pub async fn stopped_within(&mut self, deadline: Duration) -> bool {
        let Some(server) = self.server.take() else {
            return true;
        };
        tokio::time::timeout(deadline, server).await.is_ok()
    }

    /// `GET /healthz` as JSON.
    pub async fn healthz(&self) -> serde_json::Value {
        let response = self.get("/healthz").await;
        assert_eq!(response.status, 200, "healthz: {}", response.text());
        response.json()
    }

    /// Polls `/healthz` until its `dragonfly` field reads `state`, failing
    /// the test after `deadline`.
    pub async fn wait_for_dragonfly(&self, state: &str, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let health = self.healthz().await;
            if health["dragonfly"] == state {
                return;
            }
            assert!(
                Instant::now() < until,
                "dragonfly did not become {state:?} within {deadline:?}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `{method} {target} HTTP/1.1` byte for byte, bypassing URL
    /// normalisation (a URL library would resolve `..` and `%2e%2e` before
    /// chimney could see them), and returns the status and headers.
    pub async fn raw_request(&self, method: &str, target: &str) -> RawResponse {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .expect("connect to chimney");
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            stream
                .write_all(request.as_bytes())
                .await
                .expect("write request");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("read response");
            raw
        };
        let raw = tokio::time::timeout(REQUEST_DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {target} got no answer in time"));
        RawResponse::parse(&raw)
    }
}

/// Status line and headers of a raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Header pairs, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Everything after the head, as (lossy) text.
    pub body: String,
}

impl RawResponse {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
