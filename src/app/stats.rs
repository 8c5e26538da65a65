//! Process-wide counters that `/healthz`, `/api/cache/stats` and the
//! dashboard read: cache hits and misses, coalesced requests, and GitHub's
//! last reported rate limit.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::ports::CacheTier;

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
