//! Fleet single flight (CONTRACT 3.5): with a shared tier, one upstream
//! request per key at a time across every instance sharing it.
//!
//! The per-instance coalescer comes first, so only an instance's leader
//! gets here. It takes the fleet-wide lock on the key and fetches, or, when
//! another instance holds it, waits for that instance's notice and reads
//! the result from the shared tier (served `COALESCED`). The wait is
//! bounded by the upstream timeout; the cache is re-read whenever a notice
//! arrives, every [`RECHECK_EVERY`] in case one is lost, and once at the
//! deadline, after which the instance fetches for itself. A holder that
//! dies stops blocking anyone when its lock expires.
//!
//! A holder whose fetch failed says so: its waiters then answer as its own
//! requests did (the stale entry if they have one, else the same 502 or
//! 503) instead of waiting out the timeout or asking a failing GitHub
//! again. When nothing was stored (an answer that is never cached), they
//! fetch for themselves, one instance at a time. Without a shared tier in
//! use, or when it fails, nothing here runs: per-instance coalescing only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::fetch::{FetchJob, FetchResult};
use crate::domain::{CacheKey, CachedResponse, Freshness};
use crate::ports::{FleetLock, FlightNotice, FlightOutcome, SoloFlight};

/// How long past the wait a lock lives: the holder's fetch may wait for
/// an outbound slot before its upstream timeout starts.
const LOCK_MARGIN: Duration = Duration::from_secs(2);

/// How often a waiter looks at the shared tier and the lock without a
/// notice: pub/sub keeps no backlog, so a notice sent while the subscriber
/// reconnects is lost.
const RECHECK_EVERY: Duration = Duration::from_millis(500);

/// How soon a waiter told that nothing was stored tries the lock again,
/// when the holder had not yet let go of it.
const RELEASE_GRACE: Duration = Duration::from_millis(20);

/// Instances' clocks differ a little: an entry fetched this much before
/// the wait began still counts as the result waited for.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// How precisely the shared tier keeps an entry's fetch time.
const STORED_PRECISION: Duration = Duration::from_millis(1);

/// The upstream timeout unless told otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The detail of the 502 a waiter answers when the fetch it waited for
/// failed and it has nothing stale.
const FAILED_ELSEWHERE: &str =
    "GitHub failed to answer another instance's request for this resource just now";

/// The fleet-wide lock and the notices waiters are woken by.
pub(super) struct Fleet {
    lock: Arc<dyn FleetLock>,
    notices: FlightNotices,
    /// How long a waiter waits for another instance's fetch.
    wait: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            lock: Arc::new(SoloFlight),
            notices: FlightNotices::default(),
            wait: DEFAULT_WAIT,
        }
    }
}

impl Fleet {
    pub(super) fn new(lock: Arc<dyn FleetLock>, wait: Duration) -> Self {
        Self {
            lock,
            notices: FlightNotices::default(),
            wait,
        }
    }

    pub(super) fn notices(&self) -> FlightNotices {
        self.notices.clone()
    }
}

/// Where finished-fetch notices are delivered (by the shared tier's
/// listener) and waiters watch for them. Cloning shares it.
#[derive(Clone, Default)]
pub struct FlightNotices {
    // A std mutex: held only to look up, insert or remove, never across an
    // await.
    waiting: Arc<Mutex<HashMap<CacheKey, watch::Sender<Option<FlightOutcome>>>>>,
}

impl FlightNotices {
    /// Wakes whoever on this instance waits for `notice.key`.
    pub fn deliver(&self, notice: FlightNotice) {
        if let Some(sender) = self.map().get(&notice.key) {
            sender.send_replace(Some(notice.outcome));
        }
    }

    /// Starts listening for `key`'s notices: only those delivered from now
    /// on are heard.
    fn watch(&self, key: &CacheKey) -> NoticeWatch {
        let receiver = self
            .map()
            .entry(key.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        NoticeWatch {
            key: key.clone(),
            notices: self.clone(),
            receiver: Some(receiver),
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CacheKey, watch::Sender<Option<FlightOutcome>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.map().len()
    }
}

/// One waiter's subscription to a key's notices; unregisters when dropped.
struct NoticeWatch {
    key: CacheKey,
    notices: FlightNotices,
    receiver: Option<watch::Receiver<Option<FlightOutcome>>>,
}

impl NoticeWatch {
    /// A notice delivered since the last one read, if any, without
    /// waiting.
    fn pending(&mut self) -> Option<FlightOutcome> {
        let receiver = self.receiver.as_mut()?;
        if receiver.has_changed().unwrap_or(false) {
            *receiver.borrow_and_update()
        } else {
            None
        }
    }

    /// The next notice for the key.
    async fn next(&mut self) -> Option<FlightOutcome> {
        let receiver = self.receiver.as_mut()?;
        match receiver.changed().await {
            Ok(()) => *receiver.borrow_and_update(),
            // The sender lives while any receiver does; never reached.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for NoticeWatch {
    fn drop(&mut self) {
        let mut map = self.notices.map();
        // Dropped under the lock, so no new watcher can subscribe between
        // the count and the removal.
        self.receiver.take();
        if map
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            map.remove(&self.key);
        }
    }
}

/// What the fleet step decided for an instance's leader.
enum Turn {
    /// Fetch from GitHub; `announce` when others may be waiting for it.
    Fetch { announce: bool },
    /// Another instance's fetch answered for this one.
    Shared(FetchResult),
}

/// Runs `job` under fleet single flight: fetches when this instance gets
/// (or times out waiting for) the key's lock, else shares the holder's
/// result. `fetch` is the job's own upstream fetch.
pub(super) async fn fly<F>(job: FetchJob, fetch: impl FnOnce(FetchJob) -> F) -> FetchResult
where
    F: Future<Output = FetchResult>,
{
    let service = job.service.clone();
    if !service.inner.cache.shares_with_fleet() {
        return fetch(job).await;
    }
    let fleet = &service.fleet;
    match take_turn(fleet, &job).await {
        Turn::Shared(result) => result,
        Turn::Fetch { announce } => {
            let key = job.key.clone();
            let result = fetch(job).await;
            if announce && let Err(error) = fleet.lock.release(&key, outcome_of(&result)).await {
                tracing::debug!(%error, key = %key, "could not release the fetch lock; it expires by itself");
            }
            result
        }
    }
}

async fn take_turn(fleet: &Fleet, job: &FetchJob) -> Turn {
    let key = &job.key;
    // Watching before the first attempt: a notice sent between a failed
    // attempt and the wait is still heard.
    let mut watch = fleet.notices.watch(key);
    let waiting_since = SystemTime::now();
    let deadline = Instant::now() + fleet.wait;
    let hold = fleet.wait + LOCK_MARGIN;
    let mut nap = RECHECK_EVERY;
    let mut waited = false;
    loop {
        match fleet.lock.try_lock(key, hold).await {
            Ok(true) => return after_locking(fleet, job, &mut watch, waiting_since).await,
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%error, key = %key, "fetch lock unavailable; fetching without it");
                return Turn::Fetch { announce: false };
            }
        }
        if !waited {
            waited = true;
            tracing::debug!(key = %key, "another instance is fetching this key; waiting for it");
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(result) = landed(job, waiting_since).await {
                return Turn::Shared(result);
            }
            tracing::warn!(
                key = %key,
                waited_ms = fleet.wait.as_millis() as u64,
                "another instance's fetch did not finish within the upstream timeout; fetching"
            );
            // Announced all the same: others may be waiting too.
            return Turn::Fetch { announce: true };
        }
        let heard = tokio::select! {
            outcome = watch.next() => outcome,
            () = tokio::time::sleep(nap.min(deadline - now)) => None,
        };
        nap = RECHECK_EVERY;
        match heard {
            Some(outcome @ (FlightOutcome::Failed | FlightOutcome::RateLimited { .. })) => {
                return Turn::Shared(failed_elsewhere(job, outcome));
            }
            // Nothing to read, and the holder is letting go of the lock
            // (it announces first): try again shortly.
            Some(FlightOutcome::NotStored) => nap = RELEASE_GRACE,
            Some(FlightOutcome::Stored) | None => {
                if let Some(result) = landed(job, waiting_since).await {
                    return Turn::Shared(result);
                }
            }
        }
    }
}

/// This instance holds the lock. The holder before it may have finished
/// just before: between this instance's cache read and its lock, or
/// while it waited, with the notice still on its way. Then its result is
/// shared instead of fetched again.
async fn after_locking(
    fleet: &Fleet,
    job: &FetchJob,
    watch: &mut NoticeWatch,
    waiting_since: SystemTime,
) -> Turn {
    let (result, outcome) = match landed(job, waiting_since).await {
        Some(result) => (result, FlightOutcome::Stored),
        None => match watch.pending() {
            Some(outcome @ (FlightOutcome::Failed | FlightOutcome::RateLimited { .. })) => {
                (failed_elsewhere(job, outcome), outcome)
            }
            _ => return Turn::Fetch { announce: true },
        },
    };
    if let Err(error) = fleet.lock.release(&job.key, outcome).await {
        tracing::debug!(%error, key = %job.key, "could not release the fetch lock; it expires by itself");
    }
    Turn::Shared(result)
}

/// The entry another instance stored for the key since this one read it,
/// if there is one.
async fn landed(job: &FetchJob, waiting_since: SystemTime) -> Option<FetchResult> {
    let hit = match job.service.inner.cache.get_shared(&job.key).await {
        Ok(hit) => hit?,
        Err(error) => {
            tracing::debug!(%error, key = %job.key, "could not read the shared tier");
            return None;
        }
    };
    is_news(job, &hit.entry, waiting_since).then(|| FetchResult::Coalesced(hit.entry))
}

/// Whether `entry` is a result this job can serve instead of fetching:
/// fetched after the entry it started from, and fresh, or fetched after
/// the wait began (an entry with a zero TTL is never fresh).
fn is_news(job: &FetchJob, entry: &CachedResponse, waiting_since: SystemTime) -> bool {
    // The shared tier keeps fetch times to the millisecond, so the entry
    // started from, read back, may differ from its memory copy by less.
    let newer = job
        .previous
        .as_ref()
        .is_none_or(|previous| entry.fetched_at >= previous.fetched_at + STORED_PRECISION);
    if !newer {
        return false;
    }
    let now = SystemTime::now();
    let negative_ttl = job.service.inner.policy.negative_ttl;
    entry.freshness(now, job.ttl, negative_ttl) == Freshness::Fresh
        || entry.fetched_at + CLOCK_SLACK >= waiting_since
}

/// What a waiter answers when the fetch it waited for failed: its own
/// stale entry when usable, else the holder's kind of failure.
fn failed_elsewhere(job: &FetchJob, outcome: FlightOutcome) -> FetchResult {
    match (&job.previous, outcome) {
        (Some(previous), _) if job.stale_usable => FetchResult::Stale(Arc::clone(previous)),
        (_, FlightOutcome::RateLimited { retry_after_secs }) => {
            FetchResult::RateLimited(retry_after_secs)
        }
        _ => FetchResult::BadGateway(FAILED_ELSEWHERE.to_owned()),
    }
}

/// The notice a finished fetch sends to its waiters.
fn outcome_of(result: &FetchResult) -> FlightOutcome {
    match result {
        FetchResult::Stored(_) | FetchResult::Revalidated(_) | FetchResult::Coalesced(_) => {
            FlightOutcome::Stored
        }
        // Busy: this instance had no outbound slot, another may have one.
        FetchResult::PassThrough { .. } | FetchResult::Refused(_) | FetchResult::Busy => {
            FlightOutcome::NotStored
        }
        FetchResult::Stale(_) | FetchResult::BadGateway(_) => FlightOutcome::Failed,
        FetchResult::RateLimited(retry_after_secs) => FlightOutcome::RateLimited {
            retry_after_secs: *retry_after_secs,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> CacheKey {
        CacheKey::from_stored(text.to_owned())
    }

    #[tokio::test]
    async fn a_watcher_hears_notices_for_its_key_only() {
        let notices = FlightNotices::default();
        let mut watch = notices.watch(&key("/a"));
        notices.deliver(FlightNotice {
            key: key("/b"),
            outcome: FlightOutcome::Failed,
        });
        notices.deliver(FlightNotice {
            key: key("/a"),
            outcome: FlightOutcome::Stored,
        });
        let heard = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("the notice arrives");
        assert_eq!(heard, Some(FlightOutcome::Stored));
    }

    #[tokio::test]
    async fn a_notice_before_the_watch_is_not_heard() {
        let notices = FlightNotices::default();
        let _earlier = notices.watch(&key("/a"));
        notices.deliver(FlightNotice {
            key: key("/a"),
            outcome: FlightOutcome::Failed,
        });
        let mut watch = notices.watch(&key("/a"));
        let heard = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
        assert!(heard.is_err(), "an old notice must not wake a new waiter");
    }

    #[test]
    fn dropped_watchers_leave_nothing_behind() {
        let notices = FlightNotices::default();
        let first = notices.watch(&key("/a"));
        let second = notices.watch(&key("/a"));
        drop(first);
        assert_eq!(notices.watched(), 1);
        drop(second);
        assert_eq!(notices.watched(), 0);
        // Nobody listens: delivering is a no-op.
        notices.deliver(FlightNotice {
            key: key("/a"),
            outcome: FlightOutcome::Stored,
        });
        assert_eq!(notices.watched(), 0);
    }
}
