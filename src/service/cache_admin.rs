//! `CacheAdminService`: runtime cache control (invalidate, warm) and the
//! cache statistics. The matching rules live in the domain's
//! `InvalidationScope`; the tiers and the cross-instance announcement in
//! `TieredCache`; this service decides what is allowed and reports.

use std::sync::Arc;

use crate::domain::{CacheKey, GithubPath, InvalidationScope, NormalisedQuery};
use crate::ports::{KeyPage, LiveEventKind, NoTelemetry, Telemetry};
use crate::service::events::LiveEvents;
use crate::service::health::DragonflyState;
use crate::service::proxy::{ProxyReply, ProxyRequest, ProxyService, ProxyTarget, XCache};
use crate::service::stats::CacheCounters;
use crate::service::tiered::TieredCache;

/// The paths `/api/cache/warm` fetches: what the dashboard asks for first
/// (open pulls, open issues, the latest workflow runs), as path and query.
pub const HOT_PATHS: [(&str, &str); 3] = [
    ("/pulls", "state=open&per_page=100"),
    ("/issues", "state=open&per_page=100"),
    ("/actions/runs", "per_page=10"),
];

/// Largest key page `/api/cache/stats` returns at once.
pub const MAX_STATS_PAGE: usize = 500;

/// What to invalidate, as asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvalidateCommand {
    /// A literal cache-key prefix such as `/pulls`.
    pub path: Option<String>,
    /// Everything, the pipeline summary included.
    pub all: bool,
    /// Why, for the log.
    pub reason: Option<String>,
}

/// What an invalidation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidationReport {
    /// Distinct keys removed from either tier.
    pub evicted: u64,
    /// Keys removed from this instance's memory tier.
    pub memory: u64,
    /// Keys removed from Dragonfly (0 without it).
    pub dragonfly: u64,
}

/// Why an invalidation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidateError {
    /// `all: true` while `INVALIDATE_ALL_ALLOWED` is off.
    #[error(
        "a full invalidation (all: true) is disabled on this instance; set INVALIDATE_ALL_ALLOWED=true to allow it"
    )]
    AllNotAllowed,
    /// Neither a non-empty path nor `all` was given.
    #[error("path is required (a cache key prefix such as \"/pulls\") unless all is true")]
    NothingNamed,
    /// Dragonfly is configured but could not be cleared: this instance's
    /// memory tier was, and the other instances were told if Dragonfly
    /// carried the notice, but its own entries may still be served.
    #[error(
        "Dragonfly could not be reached: {memory} keys were cleared from this instance's memory, none from the shared tier; retry"
    )]
    SharedTierUnavailable {
        /// Keys cleared from this instance's memory tier.
        memory: u64,
    },
}

/// The statistics `/api/cache/stats` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStatsReport {
    /// Requests answered fresh from either tier.
    pub hits: u64,
    /// Of those, from memory.
    pub memory_hits: u64,
    /// Of those, from Dragonfly.
    pub dragonfly_hits: u64,
    /// Requests that went to GitHub.
    pub misses: u64,
    /// Requests that shared another request's fetch.
    pub coalesced: u64,
    /// Entries in this instance's memory tier.
    pub memory_entries: u64,
    /// Approximate bytes held by the memory tier.
    pub memory_bytes: u64,
    /// State of the Dragonfly tier.
    pub dragonfly: DragonflyState,
    /// One page of Dragonfly's cache keys with TTLs; `None` when Dragonfly
    /// is not in use.
    pub dragonfly_keys: Option<KeyPage>,
    /// How many cache keys Dragonfly holds, as of the background refresh;
    /// `None` when Dragonfly is not in use.
    pub dragonfly_key_count: Option<u64>,
}

/// Cache control and statistics. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct CacheAdminService {
    cache: TieredCache,
    proxy: ProxyService,
    target: ProxyTarget,
    counters: Arc<CacheCounters>,
    all_allowed: bool,
    telemetry: Arc<dyn Telemetry>,
    events: LiveEvents,
}

impl CacheAdminService {
    /// A service over the tiers, warming through `proxy` for `target` (the
    /// configured repository). `all_allowed` is `INVALIDATE_ALL_ALLOWED`.
    pub fn new(
        cache: TieredCache,
        proxy: ProxyService,
        target: ProxyTarget,
        counters: Arc<CacheCounters>,
        all_allowed: bool,
    ) -> Self {
        Self {
            cache,
            proxy,
            target,
            counters,
            all_allowed,
            telemetry: Arc::new(NoTelemetry),
            events: LiveEvents::local_only(),
        }
    }

    /// Announces every invalidation on `events` (`invalidate`, source `api`
    /// or `webhook`).
    #[must_use]
    pub fn with_events(mut self, events: LiveEvents) -> Self {
        self.events = events;
        self
    }

    /// Counts invalidations in `telemetry` (`chimney.cache.invalidations`).
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Removes what `command` names from both tiers (and, through the
    /// tiered cache, from the other instances' memory).
    ///
    /// # Errors
    /// [`InvalidateError::AllNotAllowed`] for `all` without the opt-in;
    /// [`InvalidateError::NothingNamed`] for neither a path nor `all`.
    pub async fn invalidate(
        &self,
        command: &InvalidateCommand,
    ) -> Result<InvalidationReport, InvalidateError> {
        let scope = if command.all {
            if !self.all_allowed {
                return Err(InvalidateError::AllNotAllowed);
            }
            InvalidationScope::All
        } else {
            match command.path.as_deref() {
                Some(path) if !path.is_empty() => InvalidationScope::prefix(path),
                _ => return Err(InvalidateError::NothingNamed),
            }
        };
        let (report, _) = self.evict(&scope, command.reason.as_deref()).await?;
        let prefixes: Vec<&str> = match &scope {
            InvalidationScope::All => Vec::new(),
            other => vec![other.literal_prefix()],
        };
        self.announce(&prefixes, report.evicted, "api", command.all);
        Ok(report)
    }

    /// Removes what each of `scopes` covers, as [`Self::invalidate`] does
    /// for one, and returns the total and the distinct keys removed. Not
    /// announced on the live events: the caller says what it was for.
    ///
    /// # Errors
    /// [`InvalidateError::SharedTierUnavailable`] when Dragonfly could not
    /// be cleared (what was evicted before stays evicted).
    pub async fn invalidate_scopes(
        &self,
        scopes: &[InvalidationScope],
        reason: &str,
    ) -> Result<(u64, Vec<CacheKey>), InvalidateError> {
        let mut keys = std::collections::BTreeSet::new();
        for scope in scopes {
            let (_, evictions) = self.evict(scope, Some(reason)).await?;
            keys.extend(evictions.memory);
            keys.extend(evictions.dragonfly);
        }
        Ok((keys.len() as u64, keys.into_iter().collect()))
    }

    /// Publishes an `invalidate` live event.
    pub fn announce(&self, prefixes: &[&str], evicted: u64, source: &str, all: bool) {
        let mut data = serde_json::json!({
            "prefixes": prefixes,
            "evicted": evicted,
            "source": source,
        });
        if all {
            data["all"] = serde_json::Value::Bool(true);
        }
        self.events
            .publish(LiveEventKind::Invalidate, data.to_string());
    }

    async fn evict(
        &self,
        scope: &InvalidationScope,
        reason: Option<&str>,
    ) -> Result<(InvalidationReport, crate::service::tiered::TierEvictions), InvalidateError> {
        let evictions = self.cache.invalidate_tiers(scope).await;
        if !evictions.shared_tier_cleared {
            let memory = evictions.memory.len() as u64;
            self.telemetry.cache_invalidated(memory);
            tracing::warn!(
                memory,
                prefix = scope.literal_prefix(),
                reason,
                "cache invalidation reached memory only: Dragonfly is unreachable"
            );
            return Err(InvalidateError::SharedTierUnavailable { memory });
        }
        let report = InvalidationReport {
            evicted: evictions.distinct() as u64,
            memory: evictions.memory.len() as u64,
            dragonfly: evictions.dragonfly.len() as u64,
        };
        self.telemetry.cache_invalidated(report.evicted);
        tracing::info!(
            chimney.cache.invalidated_keys = report.evicted,
            memory = report.memory,
            dragonfly = report.dragonfly,
            all = *scope == InvalidationScope::All,
            prefix = scope.literal_prefix(),
            reason,
            "cache invalidated"
        );
        Ok((report, evictions))
    }

    /// Starts fetching [`HOT_PATHS`] in the background and returns at once
    /// with the paths (as served under the proxy) being warmed.
    pub fn warm(&self) -> Vec<String> {
        let service = self.clone();
        tokio::spawn(async move { service.warm_now().await });
        HOT_PATHS
            .iter()
            .map(|(path, query)| format!("{}{path}?{query}", self.target.local_prefix))
            .collect()
    }

    /// Fetches [`HOT_PATHS`] through the proxy, concurrently, so they land in
    /// the cache; fresh entries are left alone. Best effort: failures are
    /// logged, and the cache fills on the next request anyway.
    pub async fn warm_now(&self) -> Vec<(String, Option<XCache>)> {
        let fetches = HOT_PATHS.iter().map(|(path, query)| async move {
            let label = format!("{path}?{query}");
            let Ok(path) = GithubPath::parse(path) else {
                return (label, None);
            };
            let request = ProxyRequest {
                target: self.target.clone(),
                path,
                query: NormalisedQuery::parse(query),
                if_none_match: None,
            };
            let outcome = match self.proxy.handle(&request).await {
                ProxyReply::Cached { x_cache, .. } => Some(x_cache),
                ProxyReply::PassThrough { status, .. } => {
                    tracing::warn!(path = %label, status, "warming got a non-cacheable answer");
                    None
                }
                ProxyReply::BadGateway { detail } => {
                    tracing::warn!(path = %label, %detail, "warming failed upstream");
                    None
                }
                ProxyReply::RateLimited { retry_after_secs } => {
                    tracing::warn!(path = %label, retry_after_secs, "warming was rate limited");
                    None
                }
                ProxyReply::UpstreamBusy => {
                    tracing::warn!(path = %label, "warming found GitHub too busy");
                    None
                }
                ProxyReply::Refused(refusal) => {
                    tracing::warn!(path = %label, %refusal, "warming was refused");
                    None
                }
            };
            (label, outcome)
        });
        let results = futures::future::join_all(fetches).await;
        let warmed = results.iter().filter(|(_, x)| x.is_some()).count();
        tracing::info!(warmed, of = results.len(), "cache warm finished");
        results
    }

    /// The counters, the memory tier's size, and one page (from `cursor`,
    /// about `limit` long, capped at [`MAX_STATS_PAGE`]) of Dragonfly's keys.
    pub async fn stats(&self, cursor: u64, limit: usize) -> CacheStatsReport {
        let memory = self.cache.memory().usage().await.unwrap_or_default();
        let limit = limit.clamp(1, MAX_STATS_PAGE);
        let dragonfly_keys = self.cache.dragonfly_key_page(cursor, limit).await;
        CacheStatsReport {
            hits: self.counters.hits(),
            memory_hits: self.counters.memory_hits(),
            dragonfly_hits: self.counters.dragonfly_hits(),
            misses: self.counters.misses(),
            coalesced: self.counters.coalesced_count(),
            memory_entries: memory.entries,
            memory_bytes: memory.bytes,
            dragonfly: self.cache.dragonfly_state(),
            dragonfly_keys,
            dragonfly_key_count: self.cache.shared_tier_snapshot().keys,
        }
    }
}
