//! `RecordingTelemetry`: a `Telemetry` that remembers every report, for
//! tests that check what was recorded (not in which order it was called).
//! A real implementation with in-memory semantics, not a mock.

use std::sync::{Mutex, PoisonError};

use crate::domain::DeployOutcome;
use crate::ports::{CacheTier, CompletedRequest, Telemetry, UpstreamOutcome};

/// One report made to [`Telemetry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelemetryEvent {
    /// [`Telemetry::cache_hit`].
    CacheHit(CacheTier),
    /// [`Telemetry::cache_miss`].
    CacheMiss,
    /// [`Telemetry::coalesced`].
    Coalesced,
    /// [`Telemetry::upstream_request`].
    Upstream(UpstreamOutcome),
    /// [`Telemetry::rate_limit`].
    RateLimit {
        /// `X-RateLimit-Remaining`.
        remaining: Option<i64>,
        /// `X-RateLimit-Reset`.
        reset: Option<i64>,
    },
    /// [`Telemetry::dragonfly_connected`].
    Dragonfly(bool),
    /// [`Telemetry::deploy_event`].
    Deploy(DeployOutcome),
    /// [`Telemetry::cache_invalidated`].
    Invalidated(u64),
    /// [`Telemetry::panic_caught`].
    Panic,
    /// [`Telemetry::request_completed`].
    Request(CompletedRequest),
}

/// Every report, kept in memory.
#[derive(Debug, Default)]
pub struct RecordingTelemetry {
    // A std mutex: held only to push or copy, never across an await.
    events: Mutex<Vec<TelemetryEvent>>,
}

impl RecordingTelemetry {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything reported so far.
    pub fn events(&self) -> Vec<TelemetryEvent> {
        self.lock().clone()
    }

    /// How many reports equal `event`.
    pub fn count(&self, event: &TelemetryEvent) -> usize {
        self.lock().iter().filter(|e| *e == event).count()
    }

    /// How many reports satisfy `predicate`.
    pub fn count_where(&self, predicate: impl Fn(&TelemetryEvent) -> bool) -> usize {
        self.lock().iter().filter(|e| predicate(e)).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TelemetryEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, event: TelemetryEvent) {
        self.lock().push(event);
    }
}

impl Telemetry for RecordingTelemetry {
    fn cache_hit(&self, tier: CacheTier) {
        self.push(TelemetryEvent::CacheHit(tier));
    }

    fn cache_miss(&self) {
        self.push(TelemetryEvent::CacheMiss);
    }

    fn coalesced(&self) {
        self.push(TelemetryEvent::Coalesced);
    }

    fn upstream_request(&self, outcome: UpstreamOutcome) {
        self.push(TelemetryEvent::Upstream(outcome));
    }

    fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        self.push(TelemetryEvent::RateLimit { remaining, reset });
    }

    fn dragonfly_connected(&self, connected: bool) {
        self.push(TelemetryEvent::Dragonfly(connected));
    }

    fn deploy_event(&self, outcome: DeployOutcome) {
        self.push(TelemetryEvent::Deploy(outcome));
    }

    fn cache_invalidated(&self, keys: u64) {
        self.push(TelemetryEvent::Invalidated(keys));
    }

    fn panic_caught(&self) {
        self.push(TelemetryEvent::Panic);
    }

    fn request_completed(&self, request: &CompletedRequest) {
        self.push(TelemetryEvent::Request(*request));
    }
}
