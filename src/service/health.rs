//! `HealthService`: gathers what `/healthz` reports from the cache tiers
//! and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::RepoName;
use crate::service::stats::CacheCounters;
use crate::service::tiered::TieredCache;

/// The state of the Dragonfly tier as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DragonflyState {
    /// Configured and answering.
    Connected,
    /// Configured; the first connection attempt has not finished.
    Connecting,
    /// Configured but unreachable; retrying in the background.
    Unavailable,
    /// Reachable but failing commands.
    Error,
    /// Not configured: memory only.
    Disabled,
}

impl DragonflyState {
    /// The name used in `/healthz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Unavailable => "unavailable",
            Self::Error => "error",
            Self::Disabled => "disabled",
        }
    }
}

/// Whether this instance takes traffic: true from start-up until a stop
/// signal arrives, after which `/readyz` answers 503 so a load balancer
/// moves traffic away while requests are still served. Cloning is cheap
/// and shares the flag.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    /// True until [`Readiness::stop_taking_traffic`].
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// From now on `/readyz` answers 503.
    pub fn stop_taking_traffic(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// What `/healthz` says.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The configured repository.
    pub repo: String,
    /// Dragonfly tier state.
    pub dragonfly: DragonflyState,
    /// Keys in Dragonfly, when connected (as of the last background
    /// refresh).
    pub dragonfly_keys: Option<u64>,
    /// Dragonfly's `used_memory_human`, when connected.
    pub dragonfly_memory: Option<String>,
    /// The last Dragonfly connection error, credentials removed.
    pub dragonfly_error: Option<String>,
    /// Entries in the memory tier.
    pub mem_cache_entries: u64,
    /// Fresh cache hits.
    pub cache_hits: u64,
    /// Upstream fetches.
    pub cache_misses: u64,
}

/// Builds health reports.
pub struct HealthService {
    repo: RepoName,
    cache: TieredCache,
    counters: Arc<CacheCounters>,
}

impl HealthService {
    /// A health service over the cache tiers and the counters.
    pub fn new(repo: RepoName, cache: TieredCache, counters: Arc<CacheCounters>) -> Self {
        Self {
            repo,
            cache,
            counters,
        }
    }

    /// The current report. Never asks Dragonfly: its figures come from
    /// the background probe, so this is as cheap as a cache hit.
    pub fn report(&self) -> HealthReport {
        let shared = self.cache.shared_tier_snapshot();
        HealthReport {
            repo: self.repo.to_string(),
            dragonfly: self.cache.dragonfly_state(),
            dragonfly_keys: shared.keys,
            dragonfly_memory: shared.memory,
            dragonfly_error: shared.last_error,
            mem_cache_entries: self.cache.memory().len() as u64,
            cache_hits: self.counters.hits(),
            cache_misses: self.counters.misses(),
        }
    }
}
