//! `RecentKeys`: which cache keys clients asked for lately, and how to ask
//! for each again, so a webhook's invalidation can refetch exactly those in
//! the background (CONTRACT 6, v2). Bounded: at most [`MAX_RECENT_KEYS`]
//! keys, entries older than [`RECENT_WINDOW`] are pruned when it fills, and
//! keys beyond the bound are simply not recorded (they are refetched on
//! their next request instead).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ProxyRequest;
use crate::domain::CacheKey;

/// How long a request makes its key "recently asked for".
pub const RECENT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Most keys remembered.
pub const MAX_RECENT_KEYS: usize = 4096;

/// Least time between two prunes of a full record, so a flood of distinct
/// keys costs one scan a second, not one per request.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

struct Asked {
    request: ProxyRequest,
    at: Instant,
}

#[derive(Default)]
struct Record {
    keys: HashMap<CacheKey, Asked>,
    pruned_at: Option<Instant>,
}

/// The record; one per proxy service.
#[derive(Default)]
pub struct RecentKeys {
    record: Mutex<Record>,
}

impl RecentKeys {
    /// Notes that a client asked for `key` with `request` now.
    pub fn note(&self, key: &CacheKey, request: &ProxyRequest) {
        let now = Instant::now();
        let mut record = self.lock();
        if let Some(asked) = record.keys.get_mut(key) {
            asked.at = now;
            return;
        }
        if record.keys.len() >= MAX_RECENT_KEYS {
            let due = record
                .pruned_at
                .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY);
            if !due {
                return;
            }
            record.pruned_at = Some(now);
            record
                .keys
                .retain(|_, asked| now.duration_since(asked.at) < RECENT_WINDOW);
            if record.keys.len() >= MAX_RECENT_KEYS {
                return;
            }
        }
        let mut request = request.clone();
        // A refetch asks for the whole body, whatever this client held.
        request.if_none_match = None;
        record.keys.insert(key.clone(), Asked { request, at: now });
    }

    /// The request for `key` and when it was last asked for, when that was
    /// within [`RECENT_WINDOW`].
    pub fn asked_lately(&self, key: &CacheKey) -> Option<(ProxyRequest, Instant)> {
        let record = self.lock();
        let asked = record.keys.get(key)?;
        (asked.at.elapsed() < RECENT_WINDOW).then(|| (asked.request.clone(), asked.at))
    }

    /// Puts back when `key` was last asked for: a background refetch goes
    /// through the proxy like a client, and must not make the key look
    /// asked for by one.
    pub fn restore(&self, key: &CacheKey, at: Instant) {
        if let Some(asked) = self.lock().keys.get_mut(key) {
            asked.at = asked.at.min(at);
        }
    }

    /// Keys recorded now.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
