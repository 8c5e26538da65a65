//! `MemoryCache`: the per-process cache tier on quick_cache, weighted by
//! what each entry really takes in memory (body, headers, key and the
//! structures around them) so the byte budget holds whatever the mix of
//! entries.
//!
//! quick_cache splits the budget into shards (by default four per core)
//! and refuses an entry heavier than its shard's hot share (97% of the
//! shard). On a 64-core host a 64 MiB budget would be 128 shards of
//! 512 KiB, so every body over about half a MiB would silently never be
//! kept. [`shard_count`] picks the shards so that each one holds at least
//! two of the largest entries chimney stores, whatever the core count.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

use super::footprint::held_bytes;
use crate::domain::{CacheKey, CachedResponse, InvalidationScope};
use crate::ports::{CacheError, CacheHit, CacheStore, CacheTier, KeyPage, LocalTier, TierUsage};

/// Rough size of an average entry, used only to pre-size the hash table.
const TYPICAL_ENTRY_BYTES: u64 = 16 * 1024;

#[derive(Clone)]
struct Stored {
    entry: Arc<CachedResponse>,
    /// After this the entry is useless even for revalidation; quick_cache
    /// has no expiry of its own, so reads check it.
    expires_at: SystemTime,
}

#[derive(Clone)]
struct ByEntrySize;

/// What a live entry takes besides its own allocations: its `(key, value)`
/// pair in quick_cache's slab with the slab's bookkeeping and the hash
/// table's slot, doubled because the slab grows by doubling.
const SLOT_BYTES: u64 = 2 * (size_of::<(CacheKey, Stored)>() as u64 + 16);

/// An entry weighs what it really takes in memory (see `footprint`), so
/// the capacity bounds the tier's memory, not only its bodies.
impl Weighter<CacheKey, Stored> for ByEntrySize {
    fn weight(&self, key: &CacheKey, val: &Stored) -> u64 {
        SLOT_BYTES + held_bytes(key, &val.entry)
    }
}

/// The memory tier. Cloning is cheap and shares the cache.
///
/// quick_cache's sync cache is internally sharded and locked, so no further
/// synchronisation is needed around it.
#[derive(Clone)]
pub struct MemoryCache {
    cache: Arc<Cache<CacheKey, Stored, ByEntrySize>>,
}

/// How many shards a cache of `capacity_bytes` gets on a host with
/// `parallelism` cores, so that an entry of `largest_entry_bytes` is never
/// refused for being heavier than its shard: every shard holds at least
/// two such entries (the factor covers the key, the headers and the 3% of
/// a shard that quick_cache keeps out of reach of new entries). Within
/// that, as many shards as quick_cache would pick by itself (four per
/// core), for less lock contention. Always a power of two, rounded down:
/// quick_cache rounds any other count up, which would shrink the shards
/// below the size worked out here.
pub fn shard_count(capacity_bytes: u64, largest_entry_bytes: u64, parallelism: usize) -> usize {
    let by_size = capacity_bytes / largest_entry_bytes.max(1).saturating_mul(2);
    let by_cores = (parallelism.max(1) as u64).saturating_mul(4);
    let wanted = by_size.min(by_cores).max(1);
    // The largest power of two not above `wanted`.
    let shards = 1u64 << (u64::BITS - 1 - wanted.leading_zeros());
    usize::try_from(shards).unwrap_or(1)
}

impl MemoryCache {
    /// A cache holding at most `capacity_bytes` of entries, any one of
    /// which may take the whole budget (a single shard).
    pub fn new(capacity_bytes: u64) -> Self {
        Self::with_largest_entry(capacity_bytes, capacity_bytes)
    }

    /// A cache holding at most `capacity_bytes`, sharded for this host's
    /// cores but never so finely that an entry of `largest_entry_bytes`
    /// (chimney's body cap) is refused.
    pub fn with_largest_entry(capacity_bytes: u64, largest_entry_bytes: u64) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        Self::for_cores(capacity_bytes, largest_entry_bytes, parallelism)
    }

    /// As [`Self::with_largest_entry`] on a host with `parallelism` cores,
    /// so a test can stand in for a 64-core machine.
    pub fn for_cores(capacity_bytes: u64, largest_entry_bytes: u64, parallelism: usize) -> Self {
        let estimated_items = (capacity_bytes / TYPICAL_ENTRY_BYTES).max(16) as usize;
        let options = OptionsBuilder::new()
            .shards(shard_count(
                capacity_bytes,
                largest_entry_bytes,
                parallelism,
            ))
            .estimated_items_capacity(estimated_items)
            .weight_capacity(capacity_bytes)
            .build()
            .expect("both capacities are set");
        Self {
            cache: Arc::new(Cache::with_options(
                options,
                ByEntrySize,
                DefaultHashBuilder::default(),
                Default::default(),
            )),
        }
    }
}

impl LocalTier for MemoryCache {
    fn evict(&self, scope: &InvalidationScope) -> Vec<CacheKey> {
        let doomed: Vec<CacheKey> = self
            .cache
            .iter()
            .map(|(key, _)| key)
            .filter(|key| scope.matches(key))
            .collect();
        doomed
            .into_iter()
            .filter(|key| self.cache.remove(key).is_some())
            .collect()
    }

    fn len(&self) -> usize {
        self.cache.len()
    }
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        let Some(stored) = self.cache.get(key) else {
            return Ok(None);
        };
        if stored.expires_at <= SystemTime::now() {
            self.cache.remove(key);
            return Ok(None);
        }
        Ok(Some(CacheHit {
            entry: stored.entry,
            tier: CacheTier::Memory,
        }))
    }

    async fn put(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
    ) -> Result<(), CacheError> {
        let expires_at = SystemTime::now() + retain_for;
        self.cache.insert(key.clone(), Stored { entry, expires_at });
        Ok(())
    }

    async fn invalidate(&self, scope: &InvalidationScope) -> Result<Vec<CacheKey>, CacheError> {
        Ok(self.evict(scope))
    }

    async fn usage(&self) -> Result<TierUsage, CacheError> {
        Ok(TierUsage {
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
            ..TierUsage::default()
        })
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    /// The memory tier is small enough to list whole: one page, cursor 0.
    async fn list_keys(&self, _cursor: u64, count: usize) -> Result<KeyPage, CacheError> {
        let now = SystemTime::now();
        let keys = self
            .cache
            .iter()
            .take(count)
            .map(|(key, stored)| {
                let left = stored.expires_at.duration_since(now).unwrap_or_default();
                (
                    key,
                    Some(i64::try_from(left.as_millis()).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        Ok(KeyPage {
            next_cursor: 0,
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HeaderList;
    use bytes::Bytes;

    fn entry(body: &'static [u8]) -> Arc<CachedResponse> {
        Arc::new(CachedResponse::new(
            200,
            HeaderList::new(),
            Bytes::from_static(body),
            SystemTime::now(),
        ))
    }

    fn key(s: &str) -> CacheKey {
        CacheKey::from_stored(s.to_owned())
    }

    const MIB: u64 = 1024 * 1024;
    /// chimney's body cap (`MAX_UPSTREAM_BODY_BYTES`).
    const BODY_CAP: u64 = 10 * MIB;

    #[test]
    fn shards_always_hold_two_of_the_largest_entries() {
        // The default budget on a 64-core host: two shards of 32 MiB
        // (quick_cache alone would make 128 of 512 KiB).
        assert_eq!(shard_count(64 * MIB, BODY_CAP, 64), 2);
        for cores in [1, 2, 3, 8, 64, 256] {
            for capacity in [MIB, 16 * MIB, 64 * MIB, 100 * MIB, 1024 * MIB] {
                let shards = shard_count(capacity, BODY_CAP, cores);
                assert!(shards.is_power_of_two(), "{shards}");
                assert!(shards <= cores * 4, "{capacity} on {cores}: {shards}");
                assert!(
                    shards == 1 || capacity / shards as u64 >= 2 * BODY_CAP,
                    "{capacity} on {cores} cores: {shards} shards"
                );
            }
        }
        // A big budget still spreads over the cores.
        assert_eq!(shard_count(1024 * MIB, BODY_CAP, 64), 32);
        assert_eq!(shard_count(1024 * MIB, BODY_CAP, 2), 8);
    }

    #[tokio::test]
    async fn a_body_at_the_cap_is_kept_on_a_64_core_host() {
        let cache = MemoryCache::for_cores(64 * MIB, BODY_CAP, 64);
        let body = Bytes::from(vec![b'x'; BODY_CAP as usize]);
        let big = Arc::new(CachedResponse::new(
            200,
            HeaderList::new(),
            body.clone(),
            SystemTime::now(),
        ));
        cache
            .put(&key("/big"), big, Duration::from_secs(60))
            .await
            .unwrap();
        let hit = cache.get(&key("/big")).await.unwrap().expect("kept");
        assert_eq!(hit.entry.body.len(), body.len());
    }

    #[tokio::test]
    async fn a_stored_entry_is_read_back_from_memory() {
        let cache = MemoryCache::new(1 << 20);
        cache
            .put(&key("/pulls"), entry(b"[1]"), Duration::from_secs(60))
            .await
            .unwrap();
        let hit = cache.get(&key("/pulls")).await.unwrap().expect("hit");
        assert_eq!(hit.entry.body, Bytes::from_static(b"[1]"));
        assert_eq!(hit.tier, CacheTier::Memory);
        assert!(cache.get(&key("/issues")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_entry_past_its_retention_is_gone() {
        let cache = MemoryCache::new(1 << 20);
        cache
            .put(&key("/pulls"), entry(b"[]"), Duration::ZERO)
            .await
            .unwrap();
        assert!(cache.get(&key("/pulls")).await.unwrap().is_none());
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn the_byte_budget_evicts_entries() {
        let cache = MemoryCache::new(64 * 1024);
        static BODY: [u8; 8 * 1024] = [b'x'; 8 * 1024];
        for i in 0..64 {
            cache
                .put(
                    &key(&format!("/k{i}")),
                    entry(&BODY),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        let usage = cache.usage().await.unwrap();
        assert!(usage.bytes <= 64 * 1024, "{usage:?}");
        assert!(usage.entries < 64, "{usage:?}");
    }

    #[tokio::test]
    async fn an_entry_weighs_its_key_and_headers_not_only_its_body() {
        let cache = MemoryCache::new(MIB);
        let long_key = key(&format!("/pulls?q={}", "k".repeat(2000)));
        let headers: HeaderList = [
            ("content-type", "application/json; charset=utf-8".to_owned()),
            ("etag", "W/\"0123456789abcdef\"".to_owned()),
            (
                "link",
                "<https://api.github.com/x?page=2>; rel=\"next\"".repeat(40),
            ),
        ]
        .into_iter()
        .collect();
        let text: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let lines = headers.len();
        let body = Bytes::from(vec![b'x'; 1000]);
        let stored = Arc::new(CachedResponse::new(200, headers, body, SystemTime::now()));
        cache
            .put(&long_key, stored, Duration::from_secs(60))
            .await
            .unwrap();
        let usage = cache.usage().await.unwrap();
        assert_eq!(usage.entries, 1);
        // Every byte of text, plus each header line's two strings and the
        // structures around the entry.
        let floor = long_key.as_str().len()
            + text
            + 1000
            + lines * std::mem::size_of::<(String, String)>()
            + std::mem::size_of::<CachedResponse>();
        assert!(
            usage.bytes >= floor as u64,
            "weighed {} bytes, holds at least {floor}",
            usage.bytes
        );
    }

    #[tokio::test]
    async fn the_budget_bounds_entries_by_their_real_size() {
        // 8 KiB bodies with GitHub's headers: the budget is reached before
        // the bodies alone would fill it.
        let cache = MemoryCache::new(MIB);
        static BODY: [u8; 8 * 1024] = [b'x'; 8 * 1024];
        for i in 0..512 {
            let headers: HeaderList = [
                ("content-type", "application/json; charset=utf-8".to_owned()),
                ("etag", format!("W/\"{i:032x}\"")),
                ("x-ratelimit-remaining", "4999".to_owned()),
                ("x-ratelimit-reset", "1796428800".to_owned()),
            ]
            .into_iter()
            .collect();
            let stored = Arc::new(CachedResponse::new(
                200,
                headers,
                Bytes::from_static(&BODY),
                SystemTime::now(),
            ));
            cache
                .put(
                    &key(&format!("/issues/{i}")),
                    stored,
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        let usage = cache.usage().await.unwrap();
        assert!(usage.bytes <= MIB, "{usage:?}");
        assert!(
            usage.entries < MIB / (8 * 1024 + 256),
            "{} entries of 8 KiB bodies in 1 MiB",
            usage.entries
        );
    }

    #[tokio::test]
    async fn invalidation_removes_matching_keys_and_reports_them() {
        let cache = MemoryCache::new(1 << 20);
        for k in [
            "/pulls?state=open",
            "/pulls?state=closed",
            "/issues",
            "__pipeline_summary__",
        ] {
            cache
                .put(&key(k), entry(b"[]"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        let mut removed = cache
            .invalidate(&InvalidationScope::prefix("/pulls"))
            .await
            .unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [key("/pulls?state=closed"), key("/pulls?state=open")]
        );
        let removed = cache
            .invalidate(&InvalidationScope::prefix("/"))
            .await
            .unwrap();
        assert_eq!(removed, [key("/issues")]);
        assert!(
            cache
                .get(&key("__pipeline_summary__"))
                .await
                .unwrap()
                .is_some()
        );
    }
}
