//! `TieredCache`: the memory tier in front of the shared Dragonfly tier,
//! behaving as one `CacheStore`.
//!
//! Reads try memory first, then Dragonfly, and fill memory from a Dragonfly
//! hit; writes go to both. Dragonfly is optional and never a source of
//! errors: after any failure it is skipped (no request waits on it) until
//! the background probe gets an answer again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::domain::{CacheKey, CachedResponse, InvalidationScope, STALE_IF_ERROR_WINDOW};
use crate::ports::{
    CacheError, CacheHit, CacheStore, InvalidationBus, KeyPage, LocalTier, NoTelemetry, Telemetry,
    TierUsage,
};
use crate::service::health::DragonflyState;

/// First retry delay of the background probe after a failure.
const PROBE_BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between probes while Dragonfly is down.
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a healthy Dragonfly is pinged, so `/healthz` notices an outage
/// even when no request touches the cache.
const PROBE_HEALTHY_EVERY: Duration = Duration::from_secs(2);
/// How often the probe refreshes what `/healthz` reports of Dragonfly (its
/// key count, which costs a SCAN, and its memory), so answering never
/// touches Dragonfly.
const USAGE_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// How many recent invalidations are remembered for in-flight fetches; a
/// fetch older than all of them is treated as invalidated (it is only a
/// miss next time).
const REMEMBERED_INVALIDATIONS: usize = 256;

/// The recent invalidations, numbered, so a fetch can tell whether its key
/// was invalidated while it was in flight.
#[derive(Debug, Default)]
struct InvalidationLog {
    /// The number of the last invalidation applied.
    last: u64,
    /// The most recent invalidations, oldest first.
    recent: std::collections::VecDeque<(u64, InvalidationScope)>,
}

impl InvalidationLog {
    fn record(&mut self, scope: &InvalidationScope) {
        self.last += 1;
        self.recent.push_back((self.last, scope.clone()));
        if self.recent.len() > REMEMBERED_INVALIDATIONS {
            self.recent.pop_front();
        }
    }

    /// Whether an invalidation after `mark` covers `key`.
    fn covers_since(&self, key: &CacheKey, mark: u64) -> bool {
        if self.last <= mark {
            return false;
        }
        let forgotten = self
            .recent
            .front()
            .is_none_or(|(oldest, _)| *oldest > mark + 1);
        forgotten
            || self
                .recent
                .iter()
                .any(|(number, scope)| *number > mark && scope.matches(key))
    }
}

/// What is known of the shared tier without asking it now, kept up to date
/// by the probe: `/healthz` and the cache stats read it for free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedTierSnapshot {
    /// Keys under the cache prefix, as of the last refresh.
    pub keys: Option<u64>,
    /// The server's memory figure (`used_memory_human`).
    pub memory: Option<String>,
    /// The last connection error, credentials removed; kept after recovery
    /// so an operator can see what happened.
    pub last_error: Option<String>,
}

/// The shared tier and its bus.
pub struct RemoteTier {
    /// The Dragonfly store.
    pub store: Arc<dyn CacheStore>,
    /// Where invalidations are announced to other instances.
    pub bus: Arc<dyn InvalidationBus>,
}

/// Keys removed by one invalidation, per tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierEvictions {
    /// Removed from this process's memory tier.
    pub memory: Vec<CacheKey>,
    /// Removed from Dragonfly.
    pub dragonfly: Vec<CacheKey>,
    /// False when Dragonfly is configured but could not be cleared (it is
    /// down): its entries may still be served by other instances.
    pub shared_tier_cleared: bool,
}

impl TierEvictions {
    /// Distinct keys removed from either tier.
    pub fn distinct(&self) -> usize {
        self.memory
            .iter()
            .chain(&self.dragonfly)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Memory + optional Dragonfly. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct TieredCache {
    memory: Arc<dyn LocalTier>,
    remote: Option<Arc<RemoteTier>>,
    state: Arc<AtomicU8>,
    snapshot: Arc<Mutex<SharedTierSnapshot>>,
    invalidations: Arc<Mutex<InvalidationLog>>,
    telemetry: Arc<dyn Telemetry>,
}

impl TieredCache {
    /// A cache with only the memory tier.
    pub fn memory_only(memory: Arc<dyn LocalTier>) -> Self {
        Self {
            memory,
            remote: None,
            state: Arc::new(AtomicU8::new(encode(DragonflyState::Disabled))),
            snapshot: Arc::default(),
            invalidations: Arc::default(),
            telemetry: Arc::new(NoTelemetry),
        }
    }

    /// A cache with both tiers. Dragonfly is considered `connecting` and
    /// unused until [`TieredCache::run_probe`] first reaches it.
    pub fn with_remote(memory: Arc<dyn LocalTier>, remote: RemoteTier) -> Self {
        Self {
            memory,
            remote: Some(Arc::new(remote)),
            state: Arc::new(AtomicU8::new(encode(DragonflyState::Connecting))),
            snapshot: Arc::default(),
            invalidations: Arc::default(),
            telemetry: Arc::new(NoTelemetry),
        }
    }

    /// Reports Dragonfly connectivity changes to `telemetry`, starting with
    /// the current state. Call before cloning.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        telemetry.dragonfly_connected(self.dragonfly_state() == DragonflyState::Connected);
        self.telemetry = telemetry;
        self
    }

    /// The memory tier.
    pub fn memory(&self) -> &Arc<dyn LocalTier> {
        &self.memory
    }

    /// What operators are told about Dragonfly.
    pub fn dragonfly_state(&self) -> DragonflyState {
        decode(self.state.load(Ordering::Relaxed))
    }

    /// What is known of Dragonfly as of the probe's last refresh; the key
    /// count and memory only while it is connected. Never asks Dragonfly.
    pub fn shared_tier_snapshot(&self) -> SharedTierSnapshot {
        let mut snapshot = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if self.dragonfly_state() != DragonflyState::Connected {
            snapshot.keys = None;
            snapshot.memory = None;
        }
        snapshot
    }

    /// Asks Dragonfly for its key count and memory and keeps them for
    /// [`TieredCache::shared_tier_snapshot`].
    pub async fn refresh_shared_usage(&self) {
        let Some(remote) = self.usable_remote() else {
            return;
        };
        match remote.store.usage().await {
            Ok(usage) => {
                let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
                snapshot.keys = Some(usage.entries);
                snapshot.memory = usage.server_memory;
            }
            Err(error) => self.mark_down(&error),
        }
    }

    /// One page of Dragonfly's keys with TTLs; `None` when Dragonfly is not
    /// in use.
    pub async fn dragonfly_key_page(&self, cursor: u64, count: usize) -> Option<KeyPage> {
        let remote = self.usable_remote()?;
        match remote.store.list_keys(cursor, count).await {
            Ok(page) => Some(page),
            Err(error) => {
                self.mark_down(&error);
                None
            }
        }
    }

    /// Removes what `scope` covers from both tiers and tells the other
    /// instances to drop it from their memory tiers.
    #[tracing::instrument(
        name = "chimney.cache.invalidate",
        target = "chimney::cache",
        skip_all,
        fields(
            chimney.cache.invalidation_prefix = scope.literal_prefix(),
            chimney.cache.invalidated_keys = tracing::field::Empty,
        )
    )]
    pub async fn invalidate_tiers(&self, scope: &InvalidationScope) -> TierEvictions {
        let evicted = self.evict_tiers(scope).await;
        // Counted and logged by the caller, which knows the reason.
        tracing::Span::current().record(
            "chimney.cache.invalidated_keys",
            i64::try_from(evicted.distinct()).unwrap_or(i64::MAX),
        );
        evicted
    }

    /// The other instances are told first, so they stop serving the
    /// scope while Dragonfly is still being scanned; then this memory tier
    /// and Dragonfly are cleared. A fetch in flight here will not store
    /// its result for a key in `scope` (see `put_unless_invalidated`).
    ///
    /// Unlike a read, an invalidation always tries a configured Dragonfly,
    /// whatever the probe last saw (it may not have answered yet, or be
    /// back): only a real failure may be reported as one, and the caller is
    /// an operator who can wait the command timeout.
    async fn evict_tiers(&self, scope: &InvalidationScope) -> TierEvictions {
        self.record_invalidation(scope);
        let remote = self.remote.as_ref();
        if let Some(remote) = remote
            && let Err(error) = remote.bus.publish(scope).await
        {
            tracing::warn!(%error, "could not announce the invalidation to other instances");
        }
        let memory = self.memory.evict(scope);
        let mut dragonfly = Vec::new();
        let mut shared_tier_cleared = self.remote.is_none();
        if let Some(remote) = remote {
            match remote.store.invalidate(scope).await {
                Ok(keys) => {
                    dragonfly = keys;
                    shared_tier_cleared = true;
                }
                Err(error) => self.mark_down(&error),
            }
        }
        TierEvictions {
            memory,
            dragonfly,
            shared_tier_cleared,
        }
    }

    /// Applies an invalidation announced by another instance.
    pub fn apply_remote_invalidation(&self, scope: &InvalidationScope) -> usize {
        self.record_invalidation(scope);
        self.memory.evict(scope).len()
    }

    fn record_invalidation(&self, scope: &InvalidationScope) {
        self.invalidations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(scope);
    }

    fn invalidated_since(&self, key: &CacheKey, mark: u64) -> bool {
        self.invalidations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .covers_since(key, mark)
    }

    /// Keeps the Dragonfly state truthful for as long as the process runs:
    /// probes with capped backoff while it is down, and periodically while
    /// it is up. Returns at once in memory-only mode.
    pub async fn run_probe(self) {
        let Some(remote) = self.remote.clone() else {
            return;
        };
        let mut backoff = PROBE_BACKOFF_START;
        let mut refreshed: Option<Instant> = None;
        loop {
            if self.probe(&remote).await {
                backoff = PROBE_BACKOFF_START;
                if refreshed.is_none_or(|at| at.elapsed() >= USAGE_REFRESH_EVERY) {
                    self.refresh_shared_usage().await;
                    refreshed = Some(Instant::now());
                }
                tokio::time::sleep(PROBE_HEALTHY_EVERY).await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(PROBE_BACKOFF_MAX);
            }
        }
    }

    /// Pings Dragonfly once and records the answer; true when it is
    /// connected afterwards. What [`TieredCache::run_probe`] does each
    /// round, for callers that need the shared tier in use right away.
    pub async fn probe_once(&self) -> bool {
        match self.remote.clone() {
            Some(remote) => self.probe(&remote).await,
            None => false,
        }
    }

    async fn probe(&self, remote: &RemoteTier) -> bool {
        match remote.store.ping().await {
            Ok(()) => {
                if self.set_state(DragonflyState::Connected) != DragonflyState::Connected {
                    tracing::info!("Dragonfly connected; shared cache tier in use");
                }
                true
            }
            Err(error) => {
                self.mark_down(&error);
                false
            }
        }
    }

    /// Reads Dragonfly (when in use) and fills memory from a hit.
    async fn read_shared(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        let Some(remote) = self.usable_remote() else {
            return Ok(None);
        };
        match remote.store.get(key).await {
            Ok(Some(hit)) => {
                let left = STALE_IF_ERROR_WINDOW.saturating_sub(hit.entry.age(SystemTime::now()));
                self.memory.put(key, Arc::clone(&hit.entry), left).await?;
                Ok(Some(hit))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.mark_down(&error);
                Ok(None)
            }
        }
    }

    fn usable_remote(&self) -> Option<&Arc<RemoteTier>> {
        let remote = self.remote.as_ref()?;
        (self.dragonfly_state() == DragonflyState::Connected).then_some(remote)
    }

    fn set_state(&self, state: DragonflyState) -> DragonflyState {
        let before = decode(self.state.swap(encode(state), Ordering::Relaxed));
        let connected = state == DragonflyState::Connected;
        if (before == DragonflyState::Connected) != connected {
            self.telemetry.dragonfly_connected(connected);
        }
        before
    }

    /// Stops using Dragonfly until the probe reaches it again, unless the
    /// failure was only this process running out of free connections: then
    /// the one operation goes without Dragonfly (a read is a miss) and every
    /// other keeps using it.
    fn mark_down(&self, error: &CacheError) {
        if matches!(error, CacheError::Congested { .. }) {
            tracing::debug!(%error, "Dragonfly skipped for one operation: every connection was busy");
            return;
        }
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error = Some(without_credentials(&error_chain(error)));
        let before = self.set_state(DragonflyState::Unavailable);
        if before != DragonflyState::Unavailable {
            let cause = std::error::Error::source(error).map(ToString::to_string);
            tracing::warn!(%error, cause, "Dragonfly unavailable; serving from memory until it answers again");
        }
    }
}

#[async_trait]
impl CacheStore for TieredCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        if let Some(hit) = self.memory.get(key).await? {
            return Ok(Some(hit));
        }
        self.read_shared(key).await
    }

    fn shares_with_fleet(&self) -> bool {
        self.usable_remote().is_some()
    }

    /// Another instance's fetch lands in Dragonfly, not in this memory
    /// tier, whose copy is the one being replaced.
    async fn get_shared(&self, key: &CacheKey) -> Result<Option<CacheHit>, CacheError> {
        self.read_shared(key).await
    }

    async fn put(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
    ) -> Result<(), CacheError> {
        self.memory.put(key, Arc::clone(&entry), retain_for).await?;
        if let Some(remote) = self.usable_remote()
            && let Err(error) = remote.store.put(key, entry, retain_for).await
        {
            self.mark_down(&error);
        }
        Ok(())
    }

    fn invalidation_mark(&self) -> u64 {
        self.invalidations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
    }

    /// Checked before the write and again after it: an invalidation that
    /// lands between the check and the write is caught by the second check,
    /// which takes the entry out again.
    async fn put_unless_invalidated(
        &self,
        key: &CacheKey,
        entry: Arc<CachedResponse>,
        retain_for: Duration,
        mark: u64,
    ) -> Result<bool, CacheError> {
        if self.invalidated_since(key, mark) {
            return Ok(false);
        }
        self.put(key, entry, retain_for).await?;
        if self.invalidated_since(key, mark) {
            let exact = InvalidationScope::prefix(key.as_str());
            self.memory.evict(&exact);
            if let Some(remote) = self.usable_remote()
                && let Err(error) = remote.store.invalidate(&exact).await
            {
                self.mark_down(&error);
            }
            return Ok(false);
        }
        Ok(true)
    }

    async fn invalidate(&self, scope: &InvalidationScope) -> Result<Vec<CacheKey>, CacheError> {
        let evicted = self.invalidate_tiers(scope).await;
        let keys: BTreeSet<CacheKey> = evicted
            .memory
            .into_iter()
            .chain(evicted.dragonfly)
            .collect();
        Ok(keys.into_iter().collect())
    }

    async fn usage(&self) -> Result<TierUsage, CacheError> {
        self.memory.usage().await
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn list_keys(&self, cursor: u64, count: usize) -> Result<KeyPage, CacheError> {
        self.memory.list_keys(cursor, count).await
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Many errors already quote their cause in their own message.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` with the user and password of any URL in it removed, so an error
/// that quotes a Redis URL never shows its password.
fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => out.push_str(&authority[userinfo_end + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

fn encode(state: DragonflyState) -> u8 {
    match state {
        DragonflyState::Disabled => 0,
        DragonflyState::Connecting => 1,
        DragonflyState::Connected => 2,
        DragonflyState::Unavailable => 3,
        DragonflyState::Error => 4,
    }
}

fn decode(raw: u8) -> DragonflyState {
    match raw {
        1 => DragonflyState::Connecting,
        2 => DragonflyState::Connected,
        3 => DragonflyState::Unavailable,
        4 => DragonflyState::Error,
        _ => DragonflyState::Disabled,
    }
}
