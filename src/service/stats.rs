//! Process-wide counters that `/healthz`, `/api/cache/stats` and the
//! dashboard read: cache hits and misses, coalesced requests, and GitHub's
//! last reported rate limit.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::domain::DeployOutcome;
use crate::ports::{CacheTier, CompletedRequest, Telemetry, UpstreamOutcome};

/// Sentinel for "GitHub has not told us yet".
const UNKNOWN: i64 = -1;

/// Counters shared by the services. Relaxed atomics: each is an
/// independent statistic, read for display only.
#[derive(Debug)]
pub struct CacheCounters {
    memory_hits: AtomicU64,
    dragonfly_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    rate_limit_remaining: AtomicI64,
    rate_limit_reset: AtomicI64,
}

impl Default for CacheCounters {
    fn default() -> Self {
        Self {
            memory_hits: AtomicU64::new(0),
            dragonfly_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            rate_limit_remaining: AtomicI64::new(UNKNOWN),
            rate_limit_reset: AtomicI64::new(UNKNOWN),
        }
    }
}

impl CacheCounters {
    /// A request answered from a fresh entry of `tier`.
    pub fn hit(&self, tier: CacheTier) {
        match tier {
            CacheTier::Memory => &self.memory_hits,
            CacheTier::Dragonfly => &self.dragonfly_hits,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A request that needed GitHub and started the fetch.
    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A request that shared another request's fetch.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Records GitHub's `X-RateLimit-Remaining` / `X-RateLimit-Reset`.
    pub fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        if let Some(r) = remaining {
            self.rate_limit_remaining.store(r, Ordering::Relaxed);
        }
        if let Some(r) = reset {
            self.rate_limit_reset.store(r, Ordering::Relaxed);
        }
    }

    /// Hits from either tier.
    pub fn hits(&self) -> u64 {
        self.memory_hits() + self.dragonfly_hits()
    }

    /// Hits served by the memory tier.
    pub fn memory_hits(&self) -> u64 {
        self.memory_hits.load(Ordering::Relaxed)
    }

    /// Hits served by the Dragonfly tier.
    pub fn dragonfly_hits(&self) -> u64 {
        self.dragonfly_hits.load(Ordering::Relaxed)
    }

    /// Requests that went to GitHub.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Requests that shared a fetch.
    pub fn coalesced_count(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Last `X-RateLimit-Remaining` seen, if any.
    pub fn rate_limit_remaining(&self) -> Option<i64> {
        Some(self.rate_limit_remaining.load(Ordering::Relaxed)).filter(|v| *v != UNKNOWN)
    }

    /// Last `X-RateLimit-Reset` seen (Unix seconds), if any.
    pub fn rate_limit_reset(&self) -> Option<i64> {
        Some(self.rate_limit_reset.load(Ordering::Relaxed)).filter(|v| *v != UNKNOWN)
    }
}

/// The counters are one telemetry sink among others: they keep what
/// `/healthz` and `/api/cache/stats` show and ignore the rest.
impl Telemetry for CacheCounters {
    fn cache_hit(&self, tier: CacheTier) {
        self.hit(tier);
    }
    fn cache_miss(&self) {
        self.miss();
    }
    fn coalesced(&self) {
        CacheCounters::coalesced(self);
    }
    fn upstream_request(&self, _outcome: UpstreamOutcome) {}
    fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        CacheCounters::rate_limit(self, remaining, reset);
    }
    fn dragonfly_connected(&self, _connected: bool) {}
    fn deploy_event(&self, _outcome: DeployOutcome) {}
    fn cache_invalidated(&self, _keys: u64) {}
    fn panic_caught(&self) {}
    fn request_completed(&self, _request: &CompletedRequest) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ports::TeeTelemetry;

    #[test]
    fn counters_behind_a_tee_see_every_cache_event() {
        let first = Arc::new(CacheCounters::default());
        let second = Arc::new(CacheCounters::default());
        let tee = TeeTelemetry::new(first.clone(), second.clone());

        tee.cache_hit(CacheTier::Memory);
        tee.cache_hit(CacheTier::Dragonfly);
        tee.cache_miss();
        tee.coalesced();
        tee.rate_limit(Some(4999), Some(1_700_000_000));

        for counters in [&first, &second] {
            assert_eq!(counters.memory_hits(), 1);
            assert_eq!(counters.dragonfly_hits(), 1);
            assert_eq!(counters.misses(), 1);
            assert_eq!(counters.coalesced_count(), 1);
            assert_eq!(counters.rate_limit_remaining(), Some(4999));
            assert_eq!(counters.rate_limit_reset(), Some(1_700_000_000));
        }
    }
}
