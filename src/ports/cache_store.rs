//! `CacheStore`: where cached GitHub responses live.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{CacheKey, CachedResponse, InvalidationScope};

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// This process's in-memory tier.
    Memory,
    /// The Dragonfly tier shared by all instances.
    Dragonfly,
}

impl CacheTier {
    /// The name used in headers, logs and telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Dragonfly => "dragonfly",
        }
    }
}

/// A cached entry and the tier it came from.
#[derive(Debug, Clone)]
pub struct CacheHit {
    /// The entry, shared rather than copied.
    pub entry: Arc<CachedResponse>,
    /// The tier that held it.
    pub tier: CacheTier,
}

/// How much a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierUsage {
    /// Number of entries.
    pub entries: u64,
    /// Approximate bytes held.
    pub bytes: u64,
    /// The backing server's own memory figure as it reports it (Dragonfly's
    /// `used_memory_human`, for the whole server); `None` for a store
    /// without a server.
    pub server_memory: Option<String>,
}

/// One page of a key listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Pass this back to continue; `0` means the listing is complete.
    pub next_cursor: u64,
    /// Keys with their remaining lifetime in milliseconds, when known.
    pub keys: Vec<(CacheKey, Option<i64>)>,
}

/// Why a store operation failed. Callers treat every variant as "this tier
/// is not available right now" and carry on without it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backing service cannot be reached or did not answer in time.
    #[error("cache store {store} unavailable")]
    Unavailable {
        /// Which store failed.
        store: &'static str,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every connection to the backing service was busy for the whole
    /// wait: this process's own congestion, not an outage. The operation
    /// is skipped (a read is a miss) but the store stays in use.
    #[error("cache store {store} busy: no free connection in time")]
    Congested {
        /// Which store was busy.
        store: &'static str,
    },
}

/// A store of cached GitHub responses, keyed by [`CacheKey`].
#[async_trait]
pub trait CacheStore: Send + Sync + 'static {
    /// Reads the entry for `key`.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service
    /// fails; a missing or undecodable entry is `Ok(None)`, never an error.
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError>;

    /// Stores `entry` under `key`, to be kept for at least `retain_for`
    /// (the TTL plus the stale window) unless evicted for space.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn put(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
    ) -> Result<(), CacheError>;

    /// Removes every entry `scope` covers and returns the keys removed.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn invalidate(&self, scope: &InvalidationScope) -> Result<Vec<CacheKey>, CacheError>;

    /// How much the store holds.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn usage(&self) -> Result<TierUsage, CacheError>;

    /// Checks that the store answers.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service does
    /// not answer in time.
    async fn ping(&self) -> Result<(), CacheError>;

    /// A mark that moves on with every invalidation this store applies (its
    /// own, or one another instance announced). A fetch takes it before it
    /// reads the cache, and stores its result with
    /// [`CacheStore::put_unless_invalidated`]. Stores that never see another
    /// instance's invalidations keep the default.
    fn invalidation_mark(&self) -> u64 {
        0
    }

    /// Stores `entry` as [`CacheStore::put`] does, unless an invalidation
    /// covering `key` was applied after `mark` was taken: a fetch that was
    /// in flight when the invalidation arrived must not put back the body
    /// it was told to forget. Returns whether the entry was kept.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn put_unless_invalidated(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
        mark: u64,
    ) -> Result<bool, CacheError> {
        let _ = mark;
        self.put(key, entry, retain_for).await.map(|()| true)
    }

    /// Whether a tier shared with other instances is in use right now, so
    /// that fetching a key is worth coordinating with them (fleet single
    /// flight). Stores private to one process keep the default.
    fn shares_with_fleet(&self) -> bool {
        false
    }

    /// Reads `key` from the tier shared with other instances, past this
    /// process's own copy (which another instance's fetch has not
    /// replaced), and keeps what it finds as this process's copy. Stores
    /// without a shared tier read as [`CacheStore::get`] does.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn get_shared(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        self.get(key).await
    }

    /// One page of the keys held, starting at `cursor` (0 to begin), about
    /// `count` keys long. Keys may repeat across pages.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service fails.
    async fn list_keys(&self, cursor: u64, count: usize) -> Result<KeyPage, CacheError>;
}

/// The in-process tier: a [`CacheStore`] that also answers at once, without
/// a round trip, for the jobs a remote store cannot do cheaply.
pub trait LocalTier: CacheStore {
    /// Drops the entries `scope` covers and returns their keys, without
    /// reporting an invalidation; used when another instance announces one.
    fn evict(&self, scope: &InvalidationScope) -> Vec<CacheKey>;

    /// Number of entries held right now.
    fn len(&self) -> usize;

    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tells other instances sharing the cache about an invalidation.
#[async_trait]
pub trait InvalidationBus: Send + Sync + 'static {
    /// Announces that `scope` was invalidated here.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the message could not be
    /// handed to the bus.
    async fn publish(&self, scope: &InvalidationScope) -> Result<(), CacheError>;
}
