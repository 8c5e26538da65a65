//! `FakeGithub`: a stand-in for `api.github.com` on a loopback port that
//! serves the recorded responses of `fixtures/github/recordings.json`, plus
//! whatever its user sets.
//!
//! It has real semantics rather than expectations: resources have a current
//! representation and an ETag, conditional requests are answered `304`, and
//! tests change the world (a new body, an outage, a rate limit, a slow or
//! hanging answer) through methods on the handle. Every request is recorded
//! so tests can assert what chimney actually sent, and so can scripts,
//! through the control endpoints under `/__` (see `serve.rs`), which also
//! set and clear faults at run time (`control.rs`). A resource's
//! path may be a pattern (`/repos/*/*/pulls`, `/repos/*/*/**`), for tools
//! that answer every repository alike. What it does not do: authenticate,
//! or serve anything but GET/HEAD-shaped reads.

mod control;
mod key;
mod recordings;
mod serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use poem::Server;
use poem::http::{HeaderMap, Method};
use poem::listener::TcpAcceptor;
use url::Url;

pub use control::{FaultKind, FaultSpec};
use key::RequestKey;
pub use recordings::{RECORDINGS, Recording};
use serve::{fnv1a, lock, unix_now};

/// Target of a fault that applies to every path.
pub const ALL: &str = "*";

/// The `X-RateLimit-Remaining` of answers the fake makes up (JSON set with
/// [`FakeGithub::set_json`], errors), until a user sets another.
pub const RATE_LIMIT_REMAINING: u64 = 4999;

/// How to start a [`FakeGithub`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Whether to serve the recordings (tools with data of their own can
    /// leave them out).
    pub recordings: bool,
}

impl Default for Options {
    /// A free loopback port, serving the recordings.
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            recordings: true,
        }
    }
}

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
    /// When it arrived (its head had been read).
    pub received_at: SystemTime,
    /// The headers of the answer (empty while pending or hanging), so a
    /// script can tell which rate limit an answer announced.
    pub answer_headers: HeaderMap,
    key: RequestKey,
}

#[derive(Debug, Default)]
struct State {
    resources: Vec<Resource>,
    faults: Vec<(Target, Fault)>,
    delays: Vec<(Target, Duration)>,
    requests: Vec<RecordedRequest>,
}

impl State {
    /// The resource answering `key`: the one set for exactly that path and
    /// query, else the latest pattern covering it.
    fn lookup(&self, key: &RequestKey) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.key == key).or_else(|| {
            self.resources
                .iter()
                .rev()
                .find(|r| r.key.is_pattern() && r.key.covers(key))
        })
    }
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
    /// The `X-RateLimit-Remaining` of made-up answers.
    rate_limit_remaining: AtomicU64,
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
    /// Binds `127.0.0.1:0`, then spawns the server, serving the
    /// recordings, on the current runtime; it answers as soon as this
    /// returns.
    pub async fn start() -> Self {
        Self::start_with(Options::default())
            .await
            .expect("bind the fake GitHub")
    }

    /// Binds `options.addr`, then spawns the server on the current runtime;
    /// it answers as soon as this returns, for as long as the runtime runs.
    pub async fn start_with(options: Options) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(options.addr).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let now = unix_now();
        let mut state = State::default();
        let recordings: &[Recording] = if options.recordings { &RECORDINGS } else { &[] };
        for recording in recordings {
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
            rate_limit_remaining: AtomicU64::new(RATE_LIMIT_REMAINING),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            arrived: tokio::sync::Notify::new(),
        });
        let served = Arc::clone(&inner);
        let endpoint = poem::endpoint::make(move |req: poem::Request| {
            let inner = Arc::clone(&served);
            async move { Ok::<_, poem::Error>(serve::answer(inner, req).await) }
        });
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        Ok(Self { inner })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        let authority = self.inner.origin.trim_start_matches("http://");
        authority
            .parse()
            .expect("the origin names a socket address")
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

    /// Sets the `X-RateLimit-Remaining` of the answers the fake makes up
    /// from now on: JSON set afterwards with [`Self::set_json`], and error
    /// answers. Recorded answers keep their own values.
    pub fn set_rate_limit_remaining(&self, remaining: u64) {
        self.inner
            .rate_limit_remaining
            .store(remaining, Ordering::SeqCst);
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
    ///
    /// A path with wildcards is a pattern: `*` stands for any one segment,
    /// a last `**` for the rest of the path, and a pattern without a query
    /// answers every query. Resources set for an exact path and query come
    /// first, then the patterns, the latest set first.
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
        let remaining = self
            .inner
            .rate_limit_remaining
            .load(Ordering::SeqCst)
            .to_string();
        self.set_resource(
            path_and_query,
            200,
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Cache-Control", "private, max-age=60, s-maxage=60"),
                ("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP"),
                ("ETag", &etag),
                ("X-RateLimit-Limit", "5000"),
                ("X-RateLimit-Remaining", &remaining),
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

    /// What a GET of `path_and_query` is answered with (without faults).
    fn served(&self, path_and_query: &str) -> Canned {
        let key = self.key(path_and_query);
        self.state()
            .lookup(&key)
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
