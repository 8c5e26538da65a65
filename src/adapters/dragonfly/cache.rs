//! `DragonflyCache`: the shared cache tier, a [`CacheStore`] over a
//! deadpool-redis pool. The byte format is `wire.rs`'s, the key names are
//! `keys.rs`'s; this file only issues commands and maps their failures.
//!
//! Dragonfly is trusted no more than GitHub (CONTRACT 4, v2): whatever is
//! read back is decoded within a size bound and checked by the rules every
//! upstream answer passes (`CachedResponse::check`); a value that fails is
//! a miss and is deleted.
//!
//! Only commands Dragonfly implements are used: GETRANGE, SET with PX, DEL,
//! SCAN, PTTL and PING.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{self, RedisError};
use deadpool_redis::{Connection, Pool};

use super::command;
use super::error::Error;
use super::keys::NamespacedKeys;
use super::wire;
use crate::domain::{
    CacheKey, CacheNamespace, CachedResponse, DEFAULT_NEGATIVE_TTL, InvalidationScope,
};
use crate::ports::{CacheError, CacheHit, CacheStore, CacheTier, KeyPage, TierUsage};

/// SCAN's COUNT hint when walking the whole namespace: large enough to keep
/// round trips few, small enough that one step stays well inside the
/// command timeout on a busy server.
const SCAN_BATCH: usize = 500;

/// The largest page [`DragonflyCache::list_keys`] asks for, whatever the
/// caller requests, so a stats request cannot hold a connection for long.
const MAX_LIST_PAGE: usize = 1000;

/// The longest expiry ever set. Redis refuses a PX whose deadline overflows,
/// and no cache entry is worth keeping for ten years anyway.
const MAX_RETAIN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The Dragonfly tier. Cloning is cheap: the pool is a shared handle.
///
/// Every operation runs under `command_timeout`, the checkout of a pooled
/// connection included, so a slow or dead server costs a request at most
/// that long (CONTRACT 2). Multi-step operations (invalidation, counting,
/// listing) apply the deadline to each step instead.
#[derive(Debug, Clone)]
pub struct DragonflyCache {
    pool: Pool,
    command_timeout: Duration,
    keys: NamespacedKeys,
    /// How old a stored 404/410 may be and still be served.
    negative_ttl: Duration,
}

impl DragonflyCache {
    /// A cache of `namespace`'s entries over `pool` (see
    /// [`build_pool`](super::build_pool)), each command bounded by
    /// `command_timeout` (200 ms in production).
    pub fn new(pool: Pool, command_timeout: Duration, namespace: &CacheNamespace) -> Self {
        Self {
            pool,
            command_timeout,
            keys: NamespacedKeys::new(namespace),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
        }
    }

    /// Accepts stored 404/410 entries up to `negative_ttl` old (the
    /// deployment's setting; 30 s unless changed).
    #[must_use]
    pub fn with_negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = negative_ttl;
        self
    }

    /// Checks that the server answers, e.g. for the background probe that
    /// decides when to start using Dragonfly again after an outage.
    ///
    /// # Errors
    /// Returns [`CacheError::Unavailable`] when no connection can be had or
    /// the server does not answer `PING` within the timeout.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self
            .single("PING", |mut conn| async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        Ok(())
    }

    /// One page of the cache keys held in Dragonfly with their remaining
    /// lifetime in milliseconds (`None` for a key without an expiry), for
    /// `/api/cache/stats`.
    ///
    /// Pass cursor 0 to start and the returned cursor to continue; a
    /// returned cursor of 0 means the walk is complete. `count` is SCAN's
    /// hint, capped at 1000: a page may hold somewhat more or fewer keys,
    /// keys may repeat across pages, and keys that expire between the SCAN
    /// and their PTTL are left out.
    ///
    /// # Errors
    /// Returns [`CacheError::Unavailable`] when the server fails or a step
    /// overruns the timeout.
    pub async fn list_keys(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(CacheKey, Option<i64>)>), CacheError> {
        let count = count.clamp(1, MAX_LIST_PAGE);
        let mut conn = self.checkout("SCAN").await?;
        let (next, keys) = self
            .scan_step(&mut conn, cursor, &self.keys.match_pattern(""), count)
            .await?;
        let keys: Vec<(Vec<u8>, String)> = keys
            .into_iter()
            .filter_map(|raw| {
                let text = self.keys.cache_key_text(&raw)?.to_owned();
                Some((raw, text))
            })
            .collect();
        if keys.is_empty() {
            return Ok((next, Vec::new()));
        }

        let mut pipe = redis::pipe();
        for (raw, _) in &keys {
            pipe.cmd("PTTL").arg(raw);
        }
        let ttls: Vec<i64> = self.step("PTTL", pipe.query_async(&mut conn)).await?;
        let page = keys
            .into_iter()
            .zip(ttls)
            .filter_map(|((_, text), ttl)| {
                // PTTL: -2 the key is gone, -1 it has no expiry.
                let ttl = match ttl {
                    -2 => return None,
                    -1 => None,
                    ms => Some(ms),
                };
                Some((CacheKey::from_stored(text), ttl))
            })
            .collect();
        Ok((next, page))
    }

    /// Runs a single-command operation with one deadline covering both the
    /// connection checkout and the command.
    async fn single<T, F, Fut>(&self, operation: &'static str, command: F) -> Result<T, Error>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        command::single(&self.pool, self.command_timeout, operation, command).await
    }

    /// A pooled connection for a multi-step operation, within the timeout.
    async fn checkout(&self, operation: &'static str) -> Result<Connection, Error> {
        command::checkout(&self.pool, self.command_timeout, operation).await
    }

    /// One command of a multi-step operation, within the timeout.
    async fn step<T>(
        &self,
        operation: &'static str,
        command: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Error> {
        self.deadline(operation, async {
            command
                .await
                .map_err(|source| Error::Command { operation, source })
        })
        .await
    }

    async fn deadline<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        command::within(self.command_timeout, operation, work).await
    }

    /// One SCAN step over keys matching `pattern`. Keys come back as bytes:
    /// a key that is not UTF-8 was not written by chimney and is skipped by
    /// the callers rather than failing the walk.
    async fn scan_step(
        &self,
        conn: &mut Connection,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), Error> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.step("SCAN", cmd.query_async(conn)).await
    }

    /// Deletes a value that could not be used, so the next read fetches
    /// afresh instead of tripping over it again. Best effort: failure only
    /// means the next reader deletes it, or it expires.
    ///
    /// A writer may replace the value between our GET and this DEL, in
    /// which case a good entry is dropped; that costs one upstream
    /// revalidation and is not worth a server-side script.
    async fn discard(&self, key: &str) {
        let result: Result<i64, Error> = self
            .single("DEL", |mut conn| async move {
                redis::cmd("DEL").arg(key).query_async(&mut conn).await
            })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, redis.key = key, "could not delete undecodable entry");
        }
    }
}

#[async_trait]
impl CacheStore for DragonflyCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        let redis_key = self.keys.redis_key(key);
        // GETRANGE rather than GET: a value larger than any entry chimney
        // writes is never transferred in full, one byte past the bound is
        // enough to know it is not ours. A missing key reads as empty.
        let value: Result<Vec<u8>, Error> = self
            .single("GETRANGE", |mut conn| {
                let redis_key = &redis_key;
                async move {
                    redis::cmd("GETRANGE")
                        .arg(redis_key)
                        .arg(0)
                        .arg(wire::MAX_ENCODED_LEN)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await;
        let value = match value {
            // Missing, or an empty value that is a miss anyway and is
            // overwritten by the next fetch: no DEL for every miss.
            Ok(value) if value.is_empty() => return Ok(None),
            Ok(value) if value.len() > wire::MAX_ENCODED_LEN => {
                tracing::warn!(redis.key = %redis_key, "cache value larger than any entry; treating as a miss");
                self.discard(&redis_key).await;
                return Ok(None);
            }
            Ok(value) => value,
            // Someone stored a list or hash under our name: not an entry.
            Err(Error::Command { source, .. }) if source.code() == Some("WRONGTYPE") => {
                tracing::warn!(redis.key = %redis_key, "cache key holds a non-string value; treating as a miss");
                self.discard(&redis_key).await;
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let entry = match wire::decode_bytes(Bytes::from(value)) {
            Ok(entry) => entry,
            Err(err) => {
                // Likely written by an incompatible chimney version or by
                // hand; a miss makes the caller refetch and overwrite it.
                tracing::warn!(error = %err, redis.key = %redis_key, "undecodable cache entry; treating as a miss");
                self.discard(&redis_key).await;
                return Ok(None);
            }
        };
        // Well-formed is not enough: it must be something chimney would
        // have stored from GitHub (no cookie, no HTML, no 302 …).
        if let Err(fault) = entry.check(SystemTime::now(), self.negative_ttl) {
            tracing::warn!(%fault, redis.key = %redis_key, "cache entry fails the upstream checks; treating as a miss");
            self.discard(&redis_key).await;
            return Ok(None);
        }
        Ok(Some(CacheHit {
            entry: Arc::new(entry),
            tier: CacheTier::Dragonfly,
        }))
    }

    async fn put(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
    ) -> Result<(), CacheError> {
        let redis_key = self.keys.redis_key(key);
        let value = wire::encode(&entry);
        // PX 0 is an error; a zero retention still stores (and at once
        // expires) the value, so it also replaces any older entry.
        let retain_ms = retain_for.min(MAX_RETAIN).as_millis().max(1) as u64;
        self.single("SET", |mut conn| {
            let (redis_key, value) = (&redis_key, &value);
            async move {
                redis::cmd("SET")
                    .arg(redis_key)
                    .arg(value)
                    .arg("PX")
                    .arg(retain_ms)
                    .exec_async(&mut conn)
                    .await
            }
        })
        .await?;
        Ok(())
    }

    async fn invalidate(&self, scope: &InvalidationScope) -> Result<Vec<CacheKey>, CacheError> {
        let pattern = self.keys.match_pattern(scope.literal_prefix());
        let mut conn = self.checkout("SCAN").await?;
        let mut removed = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self
                .scan_step(&mut conn, cursor, &pattern, SCAN_BATCH)
                .await?;
            // MATCH only narrows the traffic; the domain's matcher decides,
            // so literal prefixes and the pipeline-summary rule hold even if
            // a server's glob handling differs from Redis's.
            let doomed: Vec<(Vec<u8>, String)> = keys
                .into_iter()
                .filter_map(|raw| {
                    let text = self
                        .keys
                        .cache_key_text(&raw)
                        .filter(|text| scope.matches_str(text))?
                        .to_owned();
                    Some((raw, text))
                })
                .collect();
            if !doomed.is_empty() {
                // One DEL per key in a pipeline rather than one multi-key
                // DEL: each reply says whether that key existed, so the
                // result lists exactly the keys removed and a key SCAN
                // returns twice is only counted once.
                let mut pipe = redis::pipe();
                for (raw, _) in &doomed {
                    pipe.cmd("DEL").arg(raw);
                }
                let deleted: Vec<i64> = self.step("DEL", pipe.query_async(&mut conn)).await?;
                removed.extend(
                    doomed
                        .into_iter()
                        .zip(deleted)
                        .filter(|(_, n)| *n > 0)
                        .map(|((_, text), _)| CacheKey::from_stored(text)),
                );
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed)
    }

    /// Counts this namespace's entries with SCAN (DBSIZE would also count
    /// deploy history, other namespaces and anything else sharing the
    /// server).
    ///
    /// `bytes` is always 0: Dragonfly can only size keys one at a time
    /// (`MEMORY USAGE`, a round trip per key, outside the command set this
    /// adapter limits itself to), and INFO's `used_memory` covers the whole
    /// server, not the cache namespace, so any figure would be either
    /// expensive or wrong. The server's own figure is reported apart, as
    /// `server_memory` (`used_memory_human`), for operators.
    async fn usage(&self) -> Result<TierUsage, CacheError> {
        let pattern = self.keys.match_pattern("");
        let mut conn = self.checkout("SCAN").await?;
        let mut entries = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = self
                .scan_step(&mut conn, cursor, &pattern, SCAN_BATCH)
                .await?;
            entries += keys
                .iter()
                .filter(|raw| self.keys.cache_key_text(raw).is_some())
                .count() as u64;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let info: String = self
            .step(
                "INFO",
                redis::cmd("INFO").arg("memory").query_async(&mut conn),
            )
            .await?;
        Ok(TierUsage {
            entries,
            bytes: 0,
            server_memory: used_memory_human(&info),
        })
    }

    async fn ping(&self) -> Result<(), CacheError> {
        DragonflyCache::ping(self).await
    }

    async fn list_keys(&self, cursor: u64, count: usize) -> Result<KeyPage, CacheError> {
        let (next_cursor, keys) = DragonflyCache::list_keys(self, cursor, count).await?;
        Ok(KeyPage { next_cursor, keys })
    }
}

/// `used_memory_human` from the text of `INFO memory`.
fn used_memory_human(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory_human:"))
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod info_tests {
    use super::used_memory_human;

    #[test]
    fn used_memory_human_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1030344\r\nused_memory_human:1006.20K\r\nused_memory_rss:7000000\r\n";
        assert_eq!(used_memory_human(info).as_deref(), Some("1006.20K"));
        assert_eq!(used_memory_human("# Memory\r\n"), None);
    }
}
