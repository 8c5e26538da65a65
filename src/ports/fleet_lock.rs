//! `FleetLock`: fleet-wide single flight (CONTRACT 3.5). Instances sharing
//! a cache take a short lock per key before asking GitHub, so one of them
//! fetches while the others wait for its result in the shared tier; the
//! holder tells the waiters how its fetch ended with a notice.
//!
//! The lock expires by itself, so a holder that dies only costs the
//! waiters the lock's lifetime.

use std::time::Duration;

use async_trait::async_trait;

use super::CacheError;
use crate::domain::CacheKey;

/// How a fleet-wide fetch ended, as announced to the instances waiting
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightOutcome {
    /// A new or revalidated entry is in the shared tier: read it.
    Stored,
    /// Nothing was stored (an answer that is never cached, or a write that
    /// did not happen): fetch for yourself.
    NotStored,
    /// GitHub failed (5xx, timeout, an answer that cannot be served).
    Failed,
    /// GitHub is rate limiting for this many seconds.
    RateLimited {
        /// Seconds until asking again is worth it.
        retry_after_secs: u64,
    },
}

/// A notice that some instance finished its fetch of `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightNotice {
    /// The cache key fetched.
    pub key: CacheKey,
    /// How it ended.
    pub outcome: FlightOutcome,
}

/// The fleet-wide lock on fetching a key, and the notice that releases
/// its waiters.
#[async_trait]
pub trait FleetLock: Send + Sync + 'static {
    /// Tries to become the one instance fetching `key`, for at most `hold`
    /// (the lock expires by itself after that). True when this instance
    /// now holds it.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service
    /// fails; callers then fetch without the lock.
    async fn try_lock(&self, key: &CacheKey, hold: Duration) -> Result<bool, CacheError>;

    /// Gives the lock on `key` back, only if this instance still holds it
    /// (after an expiry it may be another's), and announces `outcome` to
    /// the instances waiting for it.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing service
    /// fails; the lock then expires by itself.
    async fn release(&self, key: &CacheKey, outcome: FlightOutcome) -> Result<(), CacheError>;
}

/// The lock of an instance that shares nothing: it always holds it, and
/// nobody waits for its notices.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoloFlight;

#[async_trait]
impl FleetLock for SoloFlight {
    async fn try_lock(&self, _key: &CacheKey, _hold: Duration) -> Result<bool, CacheError> {
        Ok(true)
    }

    async fn release(&self, _key: &CacheKey, _outcome: FlightOutcome) -> Result<(), CacheError> {
        Ok(())
    }
}
