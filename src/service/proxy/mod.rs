//! `ProxyService`: answers `/api/github/...` from the cache, or from GitHub
//! when the decision table says so, with per-key coalescing and an outbound
//! concurrency cap.

pub(crate) mod coalesce;
mod fetch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::domain::{
    CacheKey, CachedResponse, Decision, GithubPath, HeaderList, IfNoneMatch, NormalisedQuery,
    RepoName, TtlPolicy, decide,
};
use crate::ports::{CacheStore, CacheTier, NoTelemetry, Telemetry, UpstreamGithub};

use coalesce::{Coalescer, Role};
use fetch::{FetchJob, FetchResult};

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
    /// Served from a stale entry after GitHub failed.
    Stale,
    /// Shared a concurrent request's fetch.
    Coalesced,
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
        }
    }
}

/// The answer to a proxy request.
#[derive(Debug, Clone)]
pub enum ProxyReply {
    /// A cached representation, or `304` when the client already has it.
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
    /// GitHub's own non-cacheable answer (3xx/4xx), passed through.
    PassThrough {
        /// GitHub's status.
        status: u16,
        /// The headers clients may see.
        headers: HeaderList,
        /// GitHub's body.
        body: Bytes,
        /// How it was produced.
        x_cache: XCache,
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
}

/// Limits the service works within.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// Maximum concurrent requests to GitHub.
    pub upstream_concurrency: usize,
}

/// The caching proxy. Cloning is cheap and shares all state.
#[derive(Clone)]
pub struct ProxyService {
    inner: Arc<Inner>,
    telemetry: Arc<dyn Telemetry>,
}

struct Inner {
    cache: Arc<dyn CacheStore>,
    upstream: Arc<dyn UpstreamGithub>,
    outbound: Arc<Semaphore>,
    coalescer: Coalescer<CacheKey, FetchResult>,
    ttl: TtlPolicy,
    api_base: String,
}

impl ProxyService {
    /// Wires the service to its ports.
    pub fn new(
        cache: Arc<dyn CacheStore>,
        upstream: Arc<dyn UpstreamGithub>,
        ttl: TtlPolicy,
        api_base: &str,
        limits: &ProxyLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                upstream,
                outbound: Arc::new(Semaphore::new(limits.upstream_concurrency.max(1))),
                coalescer: Coalescer::new(),
                ttl,
                api_base: api_base.trim_end_matches('/').to_owned(),
            }),
            telemetry: Arc::new(NoTelemetry),
        }
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

    /// Answers one request.
    pub async fn handle(&self, request: &ProxyRequest) -> ProxyReply {
        let inner = &self.inner;
        let key = request.cache_key();
        let ttl = inner.ttl.ttl_for(&key);
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
            now,
        );
        match (decision, cached) {
            (Decision::NotModified | Decision::ServeFresh, Some(hit)) => {
                self.telemetry.cache_hit(hit.tier);
                ProxyReply::Cached {
                    not_modified: client_has(request, &hit.entry),
                    entry: hit.entry,
                    x_cache: XCache::Hit,
                    tier: Some(hit.tier),
                }
            }
            (Decision::Fetch { etag, stale_usable }, cached) => {
                let job = FetchJob {
                    cache: Arc::clone(&inner.cache),
                    upstream: Arc::clone(&inner.upstream),
                    outbound: Arc::clone(&inner.outbound),
                    telemetry: Arc::clone(&self.telemetry),
                    api_base: inner.api_base.clone(),
                    target: request.target.clone(),
                    path: request.path.clone(),
                    query: request.query.clone(),
                    key: key.clone(),
                    ttl,
                    etag,
                    previous: cached.map(|h| h.entry),
                    stale_usable,
                };
                let (result, role) = inner
                    .coalescer
                    .run(&key, || job.start(), FetchResult::internal_failure)
                    .await;
                match role {
                    Role::Leader => self.telemetry.cache_miss(),
                    Role::Follower => self.telemetry.coalesced(),
                }
                reply_from_fetch(request, &result, role)
            }
            // `decide` only serves what it was given; without an entry it
            // always fetches.
            (Decision::NotModified | Decision::ServeFresh, None) => ProxyReply::BadGateway {
                detail: "internal cache inconsistency".to_owned(),
            },
        }
    }
}

fn client_has(request: &ProxyRequest, entry: &CachedResponse) -> bool {
    match (&request.if_none_match, entry.etag()) {
        (Some(inm), Some(etag)) => inm.matches(etag),
        _ => false,
    }
}

fn reply_from_fetch(request: &ProxyRequest, result: &FetchResult, role: Role) -> ProxyReply {
    let shared = |own: XCache| {
        if role == Role::Leader {
            own
        } else {
            XCache::Coalesced
        }
    };
    let cached = |entry: &Arc<CachedResponse>, x_cache: XCache| ProxyReply::Cached {
        not_modified: client_has(request, entry),
        entry: Arc::clone(entry),
        x_cache,
        tier: None,
    };
    match result {
        FetchResult::Stored(entry) => cached(entry, shared(XCache::Miss)),
        FetchResult::Revalidated(entry) => cached(entry, shared(XCache::Revalidated)),
        // A stale body is labelled STALE for every waiter: that is what
        // the client most needs to know about it.
        FetchResult::Stale(entry) => cached(entry, XCache::Stale),
        FetchResult::PassThrough {
            status,
            headers,
            body,
        } => ProxyReply::PassThrough {
            status: *status,
            headers: headers.clone(),
            body: body.clone(),
            x_cache: shared(XCache::Miss),
        },
        FetchResult::BadGateway(detail) => ProxyReply::BadGateway {
            detail: detail.clone(),
        },
        FetchResult::RateLimited(retry_after_secs) => ProxyReply::RateLimited {
            retry_after_secs: *retry_after_secs,
        },
    }
}
