//! `FakeGithub`: an in-process stand-in for `api.github.com` that serves the
//! recorded responses in `../shared/fixtures/github/recordings.json`.
//!
//! It has real semantics rather than expectations: resources have a current
//! representation and an ETag, conditional requests are answered `304`, and
//! tests change the world (a new body, an outage, a rate limit, a slow or
//! hanging answer) through methods on the handle. Every request is recorded
//! so tests can assert what chimney actually sent. What it does not do:
//! authenticate, or serve anything but GET/HEAD-shaped reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::listener::TcpAcceptor;
use poem::{Body, Request, Response, Server};
use serde::Deserialize;
use url::Url;

/// Target of a fault that applies to every path.
pub const ALL: &str = "*";

/// The upstream path prefix GitHub also uses for the paginate-issues
/// repository (`/repositories/{id}/…`), and the name it stands for.
const REPO_ID_ALIASES: [(&str, &str); 1] = [(
    "/repositories/515435940",
    "/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe",
)];

/// The origin the recordings were made against; rewritten to the fake's own
/// origin in `Link` and `Location` so nothing ever points at the internet.
const RECORDED_ORIGIN: &str = "https://api.github.com";

/// How long a hanging answer takes: far beyond any test's deadline.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// One recorded exchange, as in `recordings.json` (in step order, so a path
/// recorded twice lists its earlier representation first).
#[derive(Debug, Clone, Deserialize)]
pub struct Recording {
    /// Path and query as sent to GitHub.
    pub path: String,
    /// Status GitHub answered.
    pub status: u16,
    /// Response headers in recorded order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON, or the raw text.
    pub body: serde_json::Value,
    /// Whether `body` is JSON.
    pub body_is_json: bool,
}

impl Recording {
    /// The body as the fake sends it: compact JSON, or the text as it is.
    pub fn body_bytes(&self) -> Bytes {
        match (&self.body, self.body_is_json) {
            (serde_json::Value::String(text), false) => Bytes::from(text.clone()),
            (value, _) => Bytes::from(serde_json::to_vec(value).expect("JSON serialises")),
        }
    }
}

/// All 30 recordings, parsed once per test binary.
pub static RECORDINGS: LazyLock<Vec<Recording>> = LazyLock::new(|| {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github/recordings.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("recordings.json is a list of recordings")
});

/// How a rate limit is signalled.
#[derive(Debug, Clone, Copy)]
pub enum RateLimit {
    /// `403` with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` this
    /// many seconds from now (GitHub's primary limit).
    Forbidden {
        /// Seconds until the budget resets.
        reset_in_secs: u64,
    },
    /// `429` with `Retry-After` (GitHub's secondary limit).
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// `403` with `Retry-After` and requests left: GitHub's secondary
    /// limit as it usually answers it.
    SecondaryForbidden {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
}

/// A misbehaviour injected into answers for a path.
#[derive(Debug, Clone)]
enum Fault {
    Status(u16),
    Hang,
    RateLimit(RateLimit),
    Oversized { bytes: usize, streamed: bool },
    BrokenBody,
    HugeContentLength,
}

/// One representation of a resource: what the fake answers with.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Canned {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn etag(&self) -> Option<&str> {
        self.header("etag")
    }
}

/// A path (plus query) the fake knows, with its representations in step
/// order; `current` is the one served now.
#[derive(Debug)]
struct Resource {
    key: RequestKey,
    steps: Vec<Canned>,
    current: usize,
}

impl Resource {
    fn served(&self) -> &Canned {
        &self.steps[self.current]
    }
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Path and query exactly as received.
    pub path_and_query: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The status answered; `None` while the answer is pending (or hangs).
    pub status: Option<u16>,
    key: RequestKey,
}

/// A request path with aliases resolved, and its query
/// as a sorted list of decoded pairs, so that order does not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestKey {
    path: String,
    query: Vec<(String, String)>,
}

impl RequestKey {
    fn parse(path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut path = path.to_owned();
        for (alias, name) in REPO_ID_ALIASES {
            if let Some(rest) = path.strip_prefix(alias)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                path = format!("{name}{rest}");
            }
        }
        let mut query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        query.sort();
        Self { path, query }
    }

    /// Whether a fault or delay registered under `self` covers `request`:
    /// a target without a query covers every query of its path.
    fn covers(&self, request: &Self) -> bool {
        self.path == request.path && (self.query.is_empty() || self.query == request.query)
    }
}

#[derive(Debug, Default)]
struct State {
    resources: Vec<Resource>,
    faults: Vec<(Target, Fault)>,
    delays: Vec<(Target, Duration)>,
    requests: Vec<RecordedRequest>,
}

#[derive(Debug, Clone)]
enum Target {
    All,
    Key(RequestKey),
}

impl Target {
    fn covers(&self, key: &RequestKey) -> bool {
        match self {
            Self::All => true,
            Self::Key(target) => target.covers(key),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// This is a `std::sync::Mutex`: it is never held across an `.await`.
    state: Mutex<State>,
    /// `http://127.0.0.1:{port}`, without a trailing slash.
    origin: String,
    /// The `X-RateLimit-Reset` served in place of recorded (past) values.
    rate_limit_reset: u64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Woken on every request, so tests can await arrivals.
    arrived: tokio::sync::Notify,
}

/// Handle on a running fake. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct FakeGithub {
    inner: Arc<Inner>,
}

impl FakeGithub {
    /// Binds `127.0.0.1:0`, then spawns the server on the current runtime;
    /// it answers as soon as this returns.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let now = unix_now();
        let mut state = State::default();
        for recording in RECORDINGS.iter() {
            let key = RequestKey::parse(&recording.path);
            let canned = Canned {
                status: recording.status,
                headers: recording.headers.clone(),
                body: recording.body_bytes(),
            };
            match state.resources.iter_mut().find(|r| r.key == key) {
                Some(resource) => resource.steps.push(canned),
                None => state.resources.push(Resource {
                    key,
                    steps: vec![canned],
                    current: 0,
                }),
            }
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            origin: format!("http://{addr}"),
            rate_limit_reset: now + 3600,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            arrived: tokio::sync::Notify::new(),
        });
        let served = Arc::clone(&inner);
        let endpoint = poem::endpoint::make(move |req: Request| {
            let inner = Arc::clone(&served);
            async move { Ok::<_, poem::Error>(answer(inner, req).await) }
        });
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor from listener");
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        Self { inner }
    }

    /// The base URL to configure as chimney's GitHub API URL.
    pub fn base_url(&self) -> Url {
        Url::parse(&self.inner.origin).expect("fake origin is a URL")
    }

    /// `http://127.0.0.1:{port}`, as it appears in rewritten `Link`s.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The `X-RateLimit-Reset` (Unix seconds) served instead of recorded
    /// values that lie in the past.
    pub fn rate_limit_reset(&self) -> u64 {
        self.inner.rate_limit_reset
    }

    fn key(&self, path_and_query: &str) -> RequestKey {
        RequestKey::parse(path_and_query)
    }

    fn target(&self, path_or_all: &str) -> Target {
        if path_or_all == ALL {
            Target::All
        } else {
            Target::Key(self.key(path_or_all))
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner)
    }

    /// Replaces what `path_and_query` answers with (or creates it).
    /// `headers` are sent in order; give an `ETag` to make it cacheable.
    pub fn set_resource(
        &self,
        path_and_query: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) {
        let key = self.key(path_and_query);
        let canned = Canned {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.into(),
        };
        let mut state = self.state();
        match state.resources.iter_mut().find(|r| r.key == key) {
            Some(resource) => {
                resource.steps = vec![canned];
                resource.current = 0;
            }
            None => state.resources.push(Resource {
                key,
                steps: vec![canned],
                current: 0,
            }),
        }
    }

    /// Serves `body` as GitHub would serve JSON at `path_and_query`: 200,
    /// the usual headers, and an ETag derived from the body. Returns the ETag.
    pub fn set_json(&self, path_and_query: &str, body: &serde_json::Value) -> String {
        let bytes = serde_json::to_vec(body).expect("JSON serialises");
        let etag = format!("\"{:016x}{:08x}\"", fnv1a(&bytes), bytes.len());
        let reset = self.inner.rate_limit_reset.to_string();
        self.set_resource(
            path_and_query,
            200,
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Cache-Control", "private, max-age=60, s-maxage=60"),
                ("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP"),
                ("ETag", &etag),
                ("X-RateLimit-Limit", "5000"),
                ("X-RateLimit-Remaining", "4999"),
                ("X-RateLimit-Reset", &reset),
                ("X-RateLimit-Used", "1"),
                ("X-RateLimit-Resource", "core"),
                ("Vary", "Accept-Encoding, Accept, X-Requested-With"),
            ],
            bytes,
        );
        etag
    }

    /// Moves a path recorded more than once (#16/#17, #21/#22) to its next
    /// recorded step, as if the resource had changed upstream.
    pub fn advance(&self, path_and_query: &str) {
        let key = self.key(path_and_query);
        let mut state = self.state();
        let resource = state
            .resources
            .iter_mut()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no resource at {path_and_query}"));
        assert!(
            resource.current + 1 < resource.steps.len(),
            "{path_and_query} has no further step"
        );
        resource.current += 1;
    }

    /// The body currently served at `path_and_query` (as the fake sends it).
    pub fn body(&self, path_and_query: &str) -> Bytes {
        self.served(path_and_query).body
    }

    /// A header of the representation currently served at `path_and_query`,
    /// after the fake's rewriting (origin, dates).
    pub fn header(&self, path_and_query: &str, name: &str) -> Option<String> {
        let canned = self.served(path_and_query);
        self.inner
            .rewrite_headers(&canned.headers)
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The ETag currently served at `path_and_query`.
    pub fn etag(&self, path_and_query: &str) -> String {
        self.served(path_and_query)
            .etag()
            .unwrap_or_else(|| panic!("{path_and_query} has no ETag"))
            .to_owned()
    }

    fn served(&self, path_and_query: &str) -> Canned {
        let key = self.key(path_and_query);
        self.state()
            .resources
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no resource at {path_and_query}"))
            .served()
            .clone()
    }

    fn add_fault(&self, path_or_all: &str, fault: Fault) {
        let target = self.target(path_or_all);
        self.state().faults.push((target, fault));
    }

    /// Answers `path_or_all` (a path, a path and query, or [`ALL`]) with
    /// `status` and a GitHub-shaped error body.
    pub fn fail_with(&self, path_or_all: &str, status: u16) {
        self.add_fault(path_or_all, Fault::Status(status));
    }

    /// Never answers `path_or_all` (in practice: after an hour).
    pub fn hang(&self, path_or_all: &str) {
        self.add_fault(path_or_all, Fault::Hang);
    }

    /// Answers `path_or_all` normally, but only after `delay`.
    pub fn delay(&self, path_or_all: &str, delay: Duration) {
        let target = self.target(path_or_all);
        self.state().delays.push((target, delay));
    }

    /// Rate-limits `path_or_all`.
    pub fn rate_limit(&self, path_or_all: &str, kind: RateLimit) {
        self.add_fault(path_or_all, Fault::RateLimit(kind));
    }

    /// Answers `path_or_all` with a 200 JSON body of `bytes` bytes, with a
    /// `Content-Length`.
    pub fn oversized(&self, path_or_all: &str, bytes: usize) {
        self.add_fault(
            path_or_all,
            Fault::Oversized {
                bytes,
                streamed: false,
            },
        );
    }

    /// Like [`Self::oversized`], but chunked, without a `Content-Length`.
    pub fn oversized_streamed(&self, path_or_all: &str, bytes: usize) {
        self.add_fault(
            path_or_all,
            Fault::Oversized {
                bytes,
                streamed: true,
            },
        );
    }

    /// Answers `path_or_all` with a 200 announcing a 10 GiB body
    /// (`Content-Length`), then sends a few bytes and stalls: only a client
    /// that trusts the announced length would reserve memory for it.
    pub fn huge_content_length(&self, path_or_all: &str) {
        self.add_fault(path_or_all, Fault::HugeContentLength);
    }

    /// Starts a 200 answer for `path_or_all`, then breaks the connection off
    /// in the middle of the body.
    pub fn break_connection(&self, path_or_all: &str) {
        self.add_fault(path_or_all, Fault::BrokenBody);
    }

    /// Removes every fault and delay.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.delays.clear();
    }

    /// Requests received for `path_and_query` (query order ignored; a path
    /// without a query counts only requests without one).
    pub fn requests_for(&self, path_and_query: &str) -> usize {
        let key = self.key(path_and_query);
        self.state()
            .requests
            .iter()
            .filter(|r| r.key == key)
            .count()
    }

    /// Every request received.
    pub fn total_requests(&self) -> usize {
        self.state().requests.len()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The headers of the latest request for `path_and_query`.
    pub fn last_request_headers(&self, path_and_query: &str) -> Option<HeaderMap> {
        let key = self.key(path_and_query);
        self.state()
            .requests
            .iter()
            .rev()
            .find(|r| r.key == key)
            .map(|r| r.headers.clone())
    }

    /// The statuses answered for `path_and_query`, in order.
    pub fn statuses_for(&self, path_and_query: &str) -> Vec<Option<u16>> {
        let key = self.key(path_and_query);
        self.state()
            .requests
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.status)
            .collect()
    }

    /// Waits until `count` requests for `path_and_query` have arrived.
    ///
    /// # Panics
    /// When they have not arrived within `deadline`.
    pub async fn wait_for_requests(&self, path_and_query: &str, count: usize, deadline: Duration) {
        let arrived = async {
            loop {
                let notified = self.inner.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.requests_for(path_and_query) >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, arrived)
            .await
            .unwrap_or_else(|_| {
                panic!("{count} request(s) for {path_and_query} did not arrive within {deadline:?}")
            });
    }

    /// The most requests that were ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    inner.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements the in-flight count when an answer is complete or abandoned.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the fake decided to answer, worked out under the lock.
enum Plan {
    Respond(Response),
    Hang,
}

async fn answer(inner: Arc<Inner>, req: Request) -> Response {
    let now_in_flight = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner
        .max_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    let _in_flight = InFlight(&inner.in_flight);

    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let key = RequestKey::parse(&path_and_query);

    let (delay, plan) = {
        let mut state = lock(&inner);
        state.requests.push(RecordedRequest {
            method: req.method().clone(),
            path_and_query,
            headers: req.headers().clone(),
            status: None,
            key: key.clone(),
        });
        let index = state.requests.len() - 1;
        let delay: Duration = state
            .delays
            .iter()
            .filter(|(t, _)| t.covers(&key))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default();
        let fault = state
            .faults
            .iter()
            .rev()
            .find(|(t, _)| t.covers(&key))
            .map(|(_, f)| f.clone());
        let plan = match fault {
            Some(Fault::Hang) => Plan::Hang,
            Some(fault) => Plan::Respond(inner.faulty(&fault)),
            None => Plan::Respond(inner.normal(&state, &key, req.headers())),
        };
        if let Plan::Respond(response) = &plan {
            state.requests[index].status = Some(response.status().as_u16());
        }
        (delay, plan)
    };
    inner.arrived.notify_waiters();

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match plan {
        Plan::Respond(response) => response,
        Plan::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            inner.github_error(504, "Gateway Timeout")
        }
    }
}

impl Inner {
    /// The answer for a known resource, or GitHub's 404.
    fn normal(&self, state: &State, key: &RequestKey, request_headers: &HeaderMap) -> Response {
        let Some(resource) = state.resources.iter().find(|r| &r.key == key) else {
            return self.github_error(404, "Not Found");
        };
        let canned = resource.served();
        let headers = self.rewrite_headers(&canned.headers);
        if let Some(etag) = canned.etag()
            && if_none_match_hits(request_headers, etag)
        {
            let mut builder = Response::builder().status(StatusCode::NOT_MODIFIED);
            for (name, value) in &headers {
                let lower = name.to_ascii_lowercase();
                if matches!(lower.as_str(), "etag" | "cache-control" | "vary" | "date")
                    || lower.starts_with("x-ratelimit-")
                {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            return builder.body(Body::empty());
        }
        let mut builder = Response::builder().status(status(canned.status));
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(canned.body.clone())
    }

    /// Recorded headers as served now: no `Connection` or `Content-Length`
    /// (the server computes it), a current `Date`, a future rate-limit reset,
    /// and links pointing at this fake instead of `api.github.com`.
    fn rewrite_headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let now = unix_now();
        headers
            .iter()
            .filter(|(n, _)| {
                !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("content-length")
            })
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let value = match lower.as_str() {
                    "date" => httpdate::fmt_http_date(SystemTime::now()),
                    "x-ratelimit-reset" => match value.trim().parse::<u64>() {
                        Ok(reset) if reset <= now => self.rate_limit_reset.to_string(),
                        _ => value.clone(),
                    },
                    "location" => value.replace(RECORDED_ORIGIN, &self.origin),
                    "link" => self.rewrite_link(value),
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    }

    fn rewrite_link(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|c| open + c) else {
                break;
            };
            out.push_str(&rest[..=open]);
            let url = &rest[open + 1..close];
            out.push_str(&self.rewrite_url(url));
            out.push('>');
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn rewrite_url(&self, url: &str) -> String {
        let Some(after) = url.strip_prefix(RECORDED_ORIGIN) else {
            return url.to_owned();
        };
        let (path, query) = after.split_once('?').unwrap_or((after, ""));
        if query.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query}", self.origin)
        }
    }

    fn faulty(&self, fault: &Fault) -> Response {
        match fault {
            Fault::Status(code) => self.github_error(*code, "Server Error"),
            Fault::Hang => unreachable!("hangs are not answered"),
            Fault::RateLimit(RateLimit::Forbidden { reset_in_secs }) => Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-RateLimit-Limit", "5000")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", (unix_now() + reset_in_secs).to_string())
                .header("X-RateLimit-Used", "5000")
                .header("X-RateLimit-Resource", "core")
                .body(
                    r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#,
                ),
            Fault::RateLimit(RateLimit::TooManyRequests { retry_after_secs }) => {
                Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("Retry-After", retry_after_secs.to_string())
                    .header("X-RateLimit-Limit", "5000")
                    .header("X-RateLimit-Remaining", "4000")
                    .header("X-RateLimit-Reset", self.rate_limit_reset.to_string())
                    .body(
                        r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#secondary-rate-limits"}"#,
                    )
            }
            Fault::RateLimit(RateLimit::SecondaryForbidden { retry_after_secs }) => {
                Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("Retry-After", retry_after_secs.to_string())
                    .header("X-RateLimit-Limit", "5000")
                    .header("X-RateLimit-Remaining", "4000")
                    .header("X-RateLimit-Reset", self.rate_limit_reset.to_string())
                    .body(
                        r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#secondary-rate-limits"}"#,
                    )
            }
            Fault::HugeContentLength => Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("Content-Length", (10u64 << 30).to_string())
                .body(Body::from_bytes_stream(stalled_body())),
            Fault::BrokenBody => Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("ETag", "\"broken\"")
                // Promises more than is sent: the body stops early and the
                // connection is closed, as a broken transfer would be.
                .header("Content-Length", "1000")
                .body(Body::from_bytes_stream(broken_body())),
            Fault::Oversized { bytes, streamed } => {
                let builder = Response::builder()
                    .status(StatusCode::OK)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("ETag", "\"oversized\"");
                if *streamed {
                    builder.body(Body::from_bytes_stream(oversized_chunks(*bytes)))
                } else {
                    builder.body(oversized_body(*bytes))
                }
            }
        }
    }

    /// GitHub's error shape: `{"message", "documentation_url"}`.
    fn github_error(&self, code: u16, message: &str) -> Response {
        let body = serde_json::json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        });
        Response::builder()
            .status(status(code))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-RateLimit-Limit", "5000")
            .header("X-RateLimit-Remaining", "4999")
            .header("X-RateLimit-Reset", self.rate_limit_reset.to_string())
            .body(serde_json::to_vec(&body).expect("JSON serialises"))
    }
}

/// `If-None-Match` against the current ETag, ignoring `W/`, lists and `*`
/// understood.
fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    let current = etag.trim().trim_start_matches("W/");
    headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == current)
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("valid status code")
}

/// A syntactically valid JSON array of exactly `bytes` bytes.
fn oversized_body(bytes: usize) -> Vec<u8> {
    let mut body = vec![b' '; bytes.max(2)];
    body[0] = b'[';
    let last = body.len() - 1;
    body[last] = b']';
    body
}

fn oversized_chunks(
    bytes: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    const CHUNK: usize = 64 * 1024;
    let body = Bytes::from(oversized_body(bytes));
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(CHUNK)
        .map(|start| Ok(body.slice(start..(start + CHUNK).min(body.len()))))
        .collect();
    futures::stream::iter(chunks)
}

/// The start of a body, flushed, then a failure: the connection breaks off
/// after the headers and a few bytes have gone out.
fn broken_body() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"[{\"id\":1},")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fake GitHub broke the connection off",
                    )),
                    2,
                ))
            }
            _ => None,
        }
    })
}

/// A few bytes, then nothing for an hour.
fn stalled_body() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"[")), 1)),
            _ => {
                tokio::time::sleep(HANG_FOR).await;
                None
            }
        }
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// FNV-1a, enough to derive distinct ETags for test bodies.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_query_order_and_resolve_the_repository_id_alias() {
        let a = RequestKey::parse("/repositories/515435940/issues?per_page=3&page=2");
        let b = RequestKey::parse(
            "/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues?page=2&per_page=3",
        );
        assert_eq!(a, b);
    }
}
