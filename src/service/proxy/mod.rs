//! `ProxyService`: answers `/api/github/...` from the cache, or from GitHub
//! when the decision table says so, with per-key coalescing and an outbound
//! concurrency cap and a bounded queue in front of it. Paths outside the
//! path policy are refused before the cache is read, and the rate-limit gate
//! decides whether GitHub may be asked at all (CONTRACT 3, v2). An entry just
//! past its TTL is served at once while one background fetch revalidates it
//! (stale-while-revalidate).

mod backoff;
pub(crate) mod coalesce;
mod fetch;
mod fleet;
mod gate;
mod recent;
mod slots;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::domain::{
    CacheKey, CachedResponse, DEFAULT_NEGATIVE_TTL, DEFAULT_RATE_LIMIT_RESERVE_PCT,
    DEFAULT_STALE_WHILE_REVALIDATE, Decision, GithubPath, HeaderList, IfNoneMatch, NormalisedQuery,
    PathPolicy, RepoName, TtlPolicy, decide,
};
use crate::ports::{CacheStore, CacheTier, FleetLock, NoTelemetry, Telemetry, UpstreamGithub};

use backoff::FailureBackoff;
use coalesce::{Coalescer, Role};
use fetch::{FetchJob, FetchResult};
use fleet::Fleet;
pub use fleet::FlightNotices;
pub use gate::{GatedUpstream, UpstreamGate};
pub use recent::{MAX_RECENT_KEYS, RECENT_WINDOW, RecentKeys};
use slots::UpstreamSlots;

/// Fetches that may wait for an outbound slot, unless configured.
pub const DEFAULT_UPSTREAM_QUEUE: usize = 256;

/// How long a fetch may wait for an outbound slot, unless configured.
pub const DEFAULT_UPSTREAM_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which repository a request is for and where chimney serves it.
#[derive(Debug, Clone)]
pub struct ProxyTarget {
    /// The GitHub repository.
    pub repo: RepoName,
    /// The local URL prefix it is served under, e.g. `/api/github`.
    pub local_prefix: String,
    /// Whether this is the configured repository (its keys carry no repo
    /// prefix) rather than an org-mode repository.
    pub is_default: bool,
}

/// A validated proxy request.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// The repository and its local prefix.
    pub target: ProxyTarget,
    /// The path below the repository.
    pub path: GithubPath,
    /// The forwarded query.
    pub query: NormalisedQuery,
    /// The client's `If-None-Match`, if any.
    pub if_none_match: Option<IfNoneMatch>,
}

impl ProxyRequest {
    /// The cache key this request reads and writes.
    pub fn cache_key(&self) -> CacheKey {
        if self.target.is_default {
            CacheKey::for_request(&self.path, &self.query)
        } else {
            CacheKey::for_repo_request(&self.target.repo, &self.path, &self.query)
        }
    }
}

/// How a response was produced, as reported in `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    /// Fresh from either tier.
    Hit,
    /// Fetched with no usable entry.
    Miss,
    /// GitHub confirmed the cached entry with a 304.
    Revalidated,
    /// Served from a stale entry after GitHub failed or while it rate
    /// limits.
    Stale,
    /// Shared a concurrent request's fetch.
    Coalesced,
    /// A stale entry served at once while a background fetch revalidates
    /// it.
    Updating,
}

impl XCache {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Revalidated => "REVALIDATED",
            Self::Stale => "STALE",
            Self::Coalesced => "COALESCED",
            Self::Updating => "UPDATING",
        }
    }
}

/// Why chimney answered a request itself instead of with GitHub's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The path matches no `proxy_paths` pattern: never sent upstream.
    PathNotProxied,
    /// Little of the rate limit is left and this key has no entry: the rest
    /// is kept for revalidating cached keys.
    RateLimitReserve {
        /// Seconds until GitHub's budget resets.
        retry_after_secs: u64,
    },
    /// GitHub redirected somewhere other than the served repository.
    UpstreamRedirect {
        /// GitHub's status.
        status: u16,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathNotProxied => f.write_str("the path is not proxied"),
            Self::RateLimitReserve { retry_after_secs } => write!(
                f,
                "GitHub's rate limit is nearly spent; it is kept for cached resources for {retry_after_secs} s"
            ),
            Self::UpstreamRedirect { status } => write!(
                f,
                "GitHub answered {status}, redirecting outside the repository served"
            ),
        }
    }
}

/// The answer to a proxy request.
#[derive(Debug, Clone)]
pub enum ProxyReply {
    /// A cached 2xx representation, or `304` when the client already has it.
    Cached {
        /// The entry served.
        entry: Arc<CachedResponse>,
        /// How it was produced.
        x_cache: XCache,
        /// The tier it came from, for a cache hit.
        tier: Option<CacheTier>,
        /// The client's `If-None-Match` matched: answer `304`.
        not_modified: bool,
    },
    /// GitHub's own non-2xx answer (a 4xx, a redirect within the served
    /// repository, or a 404/410 from the negative cache).
    PassThrough {
        /// GitHub's status.
        status: u16,
        /// The headers clients may see.
        headers: HeaderList,
        /// GitHub's body.
        body: Bytes,
        /// How it was produced.
        x_cache: XCache,
        /// Whole seconds since GitHub gave it (0 unless from the cache).
        age_secs: u64,
        /// The tier it came from, for a negative cache hit.
        tier: Option<CacheTier>,
    },
    /// GitHub failed and nothing usable is cached.
    BadGateway {
        /// What went wrong upstream, safe to show to clients.
        detail: String,
    },
    /// GitHub is rate limiting and nothing usable is cached.
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
    /// No outbound slot could be had (the queue was full or the wait too
    /// long) and nothing usable is cached.
    UpstreamBusy,
    /// Chimney's own refusal; nothing of GitHub's answer (if any) is shown.
    Refused(Refusal),
}

/// Limits the service works within.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// Maximum concurrent requests to GitHub.
    pub upstream_concurrency: usize,
    /// Fetches that may wait for one of those slots at once.
    pub upstream_queue: usize,
    /// How long a fetch may wait for a slot.
    pub upstream_queue_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            upstream_concurrency: 32,
            upstream_queue: DEFAULT_UPSTREAM_QUEUE,
            upstream_queue_timeout: DEFAULT_UPSTREAM_QUEUE_TIMEOUT,
        }
    }
}

/// What the service proxies and how it spends the token (CONTRACT 3, v2).
#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    /// The paths proxied at all.
    pub paths: PathPolicy,
    /// How long 404/410 answers are cached; zero caches none.
    pub negative_ttl: Duration,
    /// How long past its TTL an entry is served while it is revalidated in
    /// the background; zero makes every stale read wait for GitHub.
    pub stale_while_revalidate: Duration,
    /// The gate every fetch consults and feeds; share it with anything
    /// else sending the token (see [`GatedUpstream`]).
    pub gate: Arc<UpstreamGate>,
    /// How long a key whose fetch failed is served from its usable stale
    /// entry without asking GitHub again; zero asks at every request.
    pub failure_backoff: Duration,
}

/// How long a key is not fetched again after its fetch failed, while a
/// usable stale entry stands in, unless configured.
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

impl Default for ProxyPolicy {
    fn default() -> Self {
        Self {
            paths: PathPolicy::default(),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            stale_while_revalidate: DEFAULT_STALE_WHILE_REVALIDATE,
            gate: Arc::new(UpstreamGate::new(DEFAULT_RATE_LIMIT_RESERVE_PCT)),
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
        }
    }
}

/// The caching proxy. Cloning is cheap and shares all state.
#[derive(Clone)]
pub struct ProxyService {
    inner: Arc<Inner>,
    telemetry: Arc<dyn Telemetry>,
    fleet: Arc<Fleet>,
}

struct Inner {
    cache: Arc<dyn CacheStore>,
    upstream: Arc<dyn UpstreamGithub>,
    outbound: UpstreamSlots,
    coalescer: Coalescer<CacheKey, FetchResult>,
    ttl: TtlPolicy,
    api_base: String,
    policy: ProxyPolicy,
    /// Repository ids learnt from the repositories' own `/` answers, by
    /// lower-cased `owner/name`: the only `/repositories/{id}` links and
    /// redirects treated as the served repository's.
    repo_ids: Mutex<HashMap<String, u64>>,
    /// The keys clients asked for lately (see `recent.rs`).
    recent: RecentKeys,
    /// Keys whose last fetch failed (see `backoff.rs`).
    backoff: FailureBackoff,
}

impl ProxyService {
    /// Wires the service to its ports. `upstream` should be the bare
    /// client: the service feeds and consults `policy.gate` itself.
    pub fn new(
        cache: Arc<dyn CacheStore>,
        upstream: Arc<dyn UpstreamGithub>,
        ttl: TtlPolicy,
        api_base: &str,
        limits: &ProxyLimits,
        policy: ProxyPolicy,
    ) -> Self {
        let policy_backoff = policy.failure_backoff;
        Self {
            inner: Arc::new(Inner {
                cache,
                upstream,
                outbound: UpstreamSlots::new(
                    limits.upstream_concurrency,
                    limits.upstream_queue,
                    limits.upstream_queue_timeout,
                ),
                coalescer: Coalescer::new(),
                ttl,
                api_base: api_base.trim_end_matches('/').to_owned(),
                policy,
                repo_ids: Mutex::new(HashMap::new()),
                recent: RecentKeys::default(),
                backoff: FailureBackoff::new(policy_backoff),
            }),
            telemetry: Arc::new(NoTelemetry),
            fleet: Arc::default(),
        }
    }

    /// Coordinates fetches with the other instances sharing the cache
    /// through `lock` (fleet single flight), waiting at most `wait` (the
    /// upstream timeout) for another instance's fetch. Deliver the
    /// finished-fetch notices to [`Self::flight_notices`].
    #[must_use]
    pub fn with_fleet(mut self, lock: Arc<dyn FleetLock>, wait: Duration) -> Self {
        self.fleet = Arc::new(Fleet::new(lock, wait));
        self
    }

    /// Where the notices of other instances' finished fetches go.
    pub fn flight_notices(&self) -> FlightNotices {
        self.fleet.notices()
    }

    /// Reports hits, misses, coalesced requests, rate limits and upstream
    /// outcomes to `telemetry`.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The TTL a key gets under the configured policy.
    pub fn ttl_for(&self, key: &CacheKey) -> Duration {
        self.inner.ttl.ttl_for(key)
    }

    /// The keys clients asked for lately, for refetching after a webhook.
    pub fn recent_keys(&self) -> &RecentKeys {
        &self.inner.recent
    }

    /// The rate-limit gate the service spends the token through.
    pub fn gate(&self) -> Arc<UpstreamGate> {
        Arc::clone(&self.inner.policy.gate)
    }

    /// Answers one request.
    pub async fn handle(&self, request: &ProxyRequest) -> ProxyReply {
        let inner = &self.inner;
        if !inner.policy.paths.allows(&request.path) {
            return ProxyReply::Refused(Refusal::PathNotProxied);
        }
        let key = request.cache_key();
        inner.recent.note(&key, request);
        let ttl = inner.ttl.ttl_for(&key);
        // Taken before the read: an invalidation after it means whatever
        // this request fetches or revalidates may predate the change.
        let mark = inner.cache.invalidation_mark();
        let cached = match inner.cache.get(&key).await {
            Ok(hit) => hit,
            Err(error) => {
                tracing::warn!(error = %error, key = %key, "cache read failed; treating as a miss");
                None
            }
        };
        let now = SystemTime::now();
        let decision = decide(
            cached.as_ref().map(|h| h.entry.as_ref()),
            request.if_none_match.as_ref(),
            ttl,
            inner.policy.negative_ttl,
            inner.policy.stale_while_revalidate,
            now,
        );
        match (decision, cached) {
            (Decision::NotModified | Decision::ServeFresh, Some(hit)) => {
                self.telemetry.cache_hit(hit.tier);
                reply_with(request, &hit.entry, XCache::Hit, Some(hit.tier), now)
            }
            (Decision::ServeStaleAndRevalidate { etag }, Some(hit)) => {
                if inner.policy.gate.closed(now).is_some()
                    || inner.backoff.holds(&key, Instant::now())
                {
                    // Asking GitHub now would only prolong the limit, or
                    // repeat a failure a moment old.
                    return reply_with(request, &hit.entry, XCache::Stale, None, now);
                }
                self.telemetry.cache_hit(hit.tier);
                let job = FetchJob {
                    service: self.clone(),
                    target: request.target.clone(),
                    path: request.path.clone(),
                    query: request.query.clone(),
                    key,
                    ttl,
                    etag,
                    previous: Some(Arc::clone(&hit.entry)),
                    stale_usable: true,
                    mark,
                };
                self.revalidate_in_background(job);
                reply_with(request, &hit.entry, XCache::Updating, Some(hit.tier), now)
            }
            (Decision::Fetch { etag, stale_usable }, cached) => {
                let gate = &inner.policy.gate;
                if let Some(retry_after_secs) = gate.closed(now) {
                    // Asking GitHub now would only prolong the limit.
                    return match cached {
                        Some(hit) if stale_usable => {
                            reply_with(request, &hit.entry, XCache::Stale, None, now)
                        }
                        _ => ProxyReply::RateLimited { retry_after_secs },
                    };
                }
                if stale_usable
                    && let Some(hit) = &cached
                    && inner.backoff.holds(&key, Instant::now())
                {
                    // Its last fetch failed a moment ago: the stale entry
                    // stands in rather than asking again at once.
                    return reply_with(request, &hit.entry, XCache::Stale, None, now);
                }
                if cached.is_none()
                    && let Some(retry_after_secs) = gate.in_reserve(now)
                {
                    return ProxyReply::Refused(Refusal::RateLimitReserve { retry_after_secs });
                }
                let job = FetchJob {
                    service: self.clone(),
                    target: request.target.clone(),
                    path: request.path.clone(),
                    query: request.query.clone(),
                    key: key.clone(),
                    ttl,
                    etag,
                    previous: cached.map(|h| h.entry),
                    stale_usable,
                    mark,
                };
                let (result, role) = inner
                    .coalescer
                    .run(
                        &key,
                        |waiters| job.start(waiters),
                        FetchResult::internal_failure,
                    )
                    .await;
                match role {
                    Role::Leader => self.telemetry.cache_miss(),
                    Role::Follower => self.telemetry.coalesced(),
                }
                reply_from_fetch(request, &result, role, now)
            }
            // `decide` only serves what it was given; without an entry it
            // always fetches.
            (
                Decision::NotModified
                | Decision::ServeFresh
                | Decision::ServeStaleAndRevalidate { .. },
                None,
            ) => ProxyReply::BadGateway {
                detail: "internal cache inconsistency".to_owned(),
            },
        }
    }

    /// Runs `job` through the coalescer in a task of its own, which stays
    /// its one waiter until it lands: no client waits for it, and a fetch
    /// already running for the key is joined rather than doubled. The
    /// task carries the request's span, so the fetch is traced under the
    /// request that prompted it.
    fn revalidate_in_background(&self, job: FetchJob) {
        let coalescer = &self.inner.coalescer;
        if coalescer.is_running(&job.key) {
            return;
        }
        let coalescer = coalescer.clone();
        tokio::spawn(
            async move {
                let key = job.key.clone();
                coalescer
                    .run(
                        &key,
                        |waiters| job.start(waiters),
                        FetchResult::internal_failure,
                    )
                    .await;
            }
            .instrument(tracing::Span::current()),
        );
    }

    /// The numeric id of `target`'s repository, from memory or from its
    /// own `/` answer (through the cache, so usually without an upstream
    /// request); `None` when GitHub cannot say. Boxed: it runs inside a
    /// fetch and calls [`Self::handle`] again, for another key.
    fn repo_id(&self, target: &ProxyTarget) -> BoxFuture<'static, Option<u64>> {
        let service = self.clone();
        let target = target.clone();
        async move {
            if let Some(id) = service.known_repo_id(&target.repo) {
                return Some(id);
            }
            let request = ProxyRequest {
                target: target.clone(),
                path: GithubPath::root(),
                query: NormalisedQuery::default(),
                if_none_match: None,
            };
            match service.handle(&request).await {
                ProxyReply::Cached { entry, .. } => {
                    service.learn_repo_id(&target.repo, &entry.body)
                }
                _ => None,
            }
        }
        .boxed()
    }

    fn known_repo_id(&self, repo: &RepoName) -> Option<u64> {
        self.repo_ids()
            .get(&repo.as_str().to_ascii_lowercase())
            .copied()
    }

    /// Records the id in a repository's `/` answer, if the answer is about
    /// `repo` (GitHub's `full_name`, compared case-insensitively).
    fn learn_repo_id(&self, repo: &RepoName, body: &[u8]) -> Option<u64> {
        #[derive(Deserialize)]
        struct RepoIdentity {
            id: u64,
            full_name: String,
        }
        let identity: RepoIdentity = serde_json::from_slice(body).ok()?;
        if !repo.same_as(&identity.full_name) {
            return None;
        }
        self.repo_ids()
            .insert(repo.as_str().to_ascii_lowercase(), identity.id);
        Some(identity.id)
    }

    fn repo_ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.inner
            .repo_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn client_has(request: &ProxyRequest, entry: &CachedResponse) -> bool {
    match (&request.if_none_match, entry.etag()) {
        (Some(inm), Some(etag)) => inm.matches(etag),
        _ => false,
    }
}

/// An entry as the reply for `request`: a 2xx as `Cached`, a negative
/// (404/410) entry as GitHub's answer passed on.
fn reply_with(
    request: &ProxyRequest,
    entry: &Arc<CachedResponse>,
    x_cache: XCache,
    tier: Option<CacheTier>,
    now: SystemTime,
) -> ProxyReply {
    if entry.is_negative() {
        ProxyReply::PassThrough {
            status: entry.status,
            headers: entry.headers.clone(),
            body: entry.body.clone(),
            x_cache,
            age_secs: entry.age_secs(now),
            tier,
        }
    } else {
        ProxyReply::Cached {
            not_modified: client_has(request, entry),
            entry: Arc::clone(entry),
            x_cache,
            tier,
        }
    }
}

fn reply_from_fetch(
    request: &ProxyRequest,
    result: &FetchResult,
    role: Role,
    now: SystemTime,
) -> ProxyReply {
    let shared = |own: XCache| {
        if role == Role::Leader {
            own
        } else {
            XCache::Coalesced
        }
    };
    match result {
        FetchResult::Stored(entry) => reply_with(request, entry, shared(XCache::Miss), None, now),
        FetchResult::Revalidated(entry) => {
            reply_with(request, entry, shared(XCache::Revalidated), None, now)
        }
        // A stale body is labelled STALE for every waiter: that is what
        // the client most needs to know about it.
        FetchResult::Stale(entry) => reply_with(request, entry, XCache::Stale, None, now),
        FetchResult::PassThrough {
            status,
            headers,
            body,
        } => ProxyReply::PassThrough {
            status: *status,
            headers: headers.clone(),
            body: body.clone(),
            x_cache: shared(XCache::Miss),
            age_secs: 0,
            tier: None,
        },
        FetchResult::BadGateway(detail) => ProxyReply::BadGateway {
            detail: detail.clone(),
        },
        FetchResult::RateLimited(retry_after_secs) => ProxyReply::RateLimited {
            retry_after_secs: *retry_after_secs,
        },
        FetchResult::Busy => ProxyReply::UpstreamBusy,
        FetchResult::Refused(refusal) => ProxyReply::Refused(*refusal),
        FetchResult::Coalesced(entry) => reply_with(request, entry, XCache::Coalesced, None, now),
    }
}
