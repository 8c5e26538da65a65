//! `MemoryCache`: the per-process cache tier on quick_cache, weighted by
//! entry size so the byte budget holds whatever the mix of bodies.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

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

impl Weighter<CacheKey, Stored> for ByEntrySize {
    fn weight(&self, key: &CacheKey, val: &Stored) -> u64 {
        (key.as_str().len() + val.entry.weight()) as u64
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

impl MemoryCache {
    /// A cache holding at most `capacity_bytes` of entries.
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_items = (capacity_bytes / TYPICAL_ENTRY_BYTES).max(16) as usize;
        Self {
            cache: Arc::new(Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                ByEntrySize,
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
