//! A short pause after a key's fetch fails (a 5xx, a timeout, a broken
//! connection), while a usable stale entry stands in: without it every
//! request for an expired key starts a new fetch the moment the last one
//! failed, and a struggling GitHub gets many times its usual traffic from
//! the very clients that are being served fine from the cache.
//!
//! Only keys with something to serve are held back; a key with no usable
//! entry still asks GitHub each time (one fetch at a time), so nothing of a
//! failure is ever served from memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::CacheKey;

/// How many keys are remembered at most; past it, expired ones are
/// dropped, and when none has expired a new failure is not recorded
/// (that key then simply fetches again: the pause is an economy, never a
/// promise).
const MAX_KEYS: usize = 4096;

/// Keys whose last fetch failed, until when they are not fetched again.
pub(super) struct FailureBackoff {
    period: Duration,
    // A std mutex: held only for a map lookup or insert, never across an
    // await.
    until: Mutex<HashMap<CacheKey, Instant>>,
}

impl FailureBackoff {
    pub(super) fn new(period: Duration) -> Self {
        Self {
            period,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// The fetch of `key` failed at `now`.
    pub(super) fn failed(&self, key: &CacheKey, now: Instant) {
        if self.period.is_zero() {
            return;
        }
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if until.len() >= MAX_KEYS && !until.contains_key(key) {
            until.retain(|_, deadline| *deadline > now);
            if until.len() >= MAX_KEYS {
                return;
            }
        }
        until.insert(key.clone(), now + self.period);
    }

    /// The fetch of `key` got an answer from GitHub.
    pub(super) fn answered(&self, key: &CacheKey) {
        if self.period.is_zero() {
            return;
        }
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Whether `key` is still in its pause at `now`.
    pub(super) fn holds(&self, key: &CacheKey, now: Instant) -> bool {
        if self.period.is_zero() {
            return false;
        }
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        match until.get(key) {
            Some(deadline) if *deadline > now => true,
            Some(_) => {
                until.remove(key);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> CacheKey {
        CacheKey::from_stored(text.to_owned())
    }

    #[test]
    fn a_failed_key_is_held_for_the_period_only() {
        let backoff = FailureBackoff::new(Duration::from_secs(5));
        let start = Instant::now();
        backoff.failed(&key("/pulls"), start);
        assert!(backoff.holds(&key("/pulls"), start + Duration::from_secs(4)));
        assert!(!backoff.holds(&key("/issues"), start));
        assert!(!backoff.holds(&key("/pulls"), start + Duration::from_secs(5)));
    }

    #[test]
    fn an_answer_ends_the_pause() {
        let backoff = FailureBackoff::new(Duration::from_secs(5));
        let start = Instant::now();
        backoff.failed(&key("/pulls"), start);
        backoff.answered(&key("/pulls"));
        assert!(!backoff.holds(&key("/pulls"), start));
    }

    #[test]
    fn a_zero_period_holds_nothing() {
        let backoff = FailureBackoff::new(Duration::ZERO);
        let start = Instant::now();
        backoff.failed(&key("/pulls"), start);
        assert!(!backoff.holds(&key("/pulls"), start));
    }

    #[test]
    fn the_record_stays_bounded_and_makes_room_from_expired_keys() {
        let backoff = FailureBackoff::new(Duration::from_secs(5));
        let start = Instant::now();
        for i in 0..MAX_KEYS {
            backoff.failed(&key(&format!("/k/{i}")), start);
        }
        // Full, nothing expired: a new key is not recorded.
        backoff.failed(&key("/new"), start);
        assert!(!backoff.holds(&key("/new"), start));
        // Once the old ones have expired, it is.
        let later = start + Duration::from_secs(6);
        backoff.failed(&key("/new"), later);
        assert!(backoff.holds(&key("/new"), later));
        let size = backoff.until.lock().unwrap().len();
        assert!(size <= MAX_KEYS, "{size}");
    }
}
