//! The OpenTelemetry instruments behind `OtlpTelemetry`, named as CONTRACT
//! section 8 spells them. Attribute values are `&'static str`, so recording
//! allocates nothing.
//!
//! The per-request instruments are bound to their attributes (the SDK's
//! `bind`, still marked experimental): a request then updates its series
//! directly instead of the SDK hashing and looking up the attribute set on
//! every call, which was the largest telemetry cost left on the hit path.

use std::collections::HashMap;
use std::sync::RwLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, Counter, Gauge, Histogram, Meter, ObservableGauge,
};

use super::Observe;
use crate::domain::DeployOutcome;
use crate::ports::{CacheTier, CompletedRequest, UpstreamOutcome};

/// Bucket boundaries of `chimney.request.duration`, in milliseconds.
pub(super) const LATENCY_BUCKETS_MS: [f64; 5] = [5.0, 25.0, 100.0, 500.0, 2000.0];

pub(super) struct Instruments {
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
    /// The two per-request series of each (route, status class) seen.
    request_series: RwLock<HashMap<(&'static str, &'static str), RequestSeries>>,
    /// `chimney.cache.hits` bound to `tier=memory` and `tier=dragonfly`.
    memory_hits: BoundCounter<u64>,
    dragonfly_hits: BoundCounter<u64>,
    cache_misses: Counter<u64>,
    coalesced: Counter<u64>,
    upstream_requests: Counter<u64>,
    rate_limit_remaining: Gauge<i64>,
    rate_limit_reset: Gauge<i64>,
    dragonfly_connected: Gauge<u64>,
    panics: Counter<u64>,
    deploy_events: Counter<u64>,
    invalidations: Counter<u64>,
    // Kept alive so its callback keeps being collected.
    _cache_entries: ObservableGauge<u64>,
}

impl Instruments {
    pub(super) fn new(meter: &Meter, cache_entries: Observe) -> Self {
        let cache_hits = meter
            .u64_counter("chimney.cache.hits")
            .with_description("Requests answered from a fresh cache entry, by tier")
            .build();
        Self {
            request_series: RwLock::new(HashMap::new()),
            memory_hits: cache_hits.bind(&[KeyValue::new("tier", CacheTier::Memory.as_str())]),
            dragonfly_hits: cache_hits
                .bind(&[KeyValue::new("tier", CacheTier::Dragonfly.as_str())]),
            requests: meter
                .u64_counter("chimney.requests")
                .with_description("Requests by route template and status class")
                .build(),
            request_duration: meter
                .f64_histogram("chimney.request.duration")
                .with_description("Time to produce a response, by route template")
                .with_unit("ms")
                .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
                .build(),
            cache_misses: meter
                .u64_counter("chimney.cache.misses")
                .with_description("Requests that had to ask GitHub")
                .build(),
            coalesced: meter
                .u64_counter("chimney.coalesced")
                .with_description("Requests that shared a concurrent request's fetch")
                .build(),
            upstream_requests: meter
                .u64_counter("chimney.upstream.requests")
                .with_description("Requests to GitHub, by outcome")
                .build(),
            rate_limit_remaining: meter
                .i64_gauge("chimney.github.rate_limit.remaining")
                .with_description("Last X-RateLimit-Remaining GitHub reported")
                .build(),
            rate_limit_reset: meter
                .i64_gauge("chimney.github.rate_limit.reset")
                .with_description("Last X-RateLimit-Reset GitHub reported (Unix seconds)")
                .with_unit("s")
                .build(),
            dragonfly_connected: meter
                .u64_gauge("chimney.dragonfly.connected")
                .with_description("1 while the Dragonfly tier is in use, else 0")
                .build(),
            panics: meter
                .u64_counter("chimney.panics")
                .with_description("Panics caught in request handlers")
                .build(),
            deploy_events: meter
                .u64_counter("chimney.deploy_events")
                .with_description("Deploy events accepted, by outcome")
                .build(),
            invalidations: meter
                .u64_counter("chimney.cache.invalidations")
                .with_description("Cache invalidations performed")
                .build(),
            _cache_entries: meter
                .u64_observable_gauge("chimney.cache.entries")
                .with_description("Entries in the memory tier")
                .with_callback(move |observer| observer.observe(cache_entries(), &[]))
                .build(),
        }
    }

    pub(super) fn cache_hit(&self, tier: CacheTier) {
        match tier {
            CacheTier::Memory => self.memory_hits.add(1),
            CacheTier::Dragonfly => self.dragonfly_hits.add(1),
        }
    }

    pub(super) fn cache_miss(&self) {
        self.cache_misses.add(1, &[]);
    }

    pub(super) fn coalesced(&self) {
        self.coalesced.add(1, &[]);
    }

    pub(super) fn upstream_request(&self, outcome: UpstreamOutcome) {
        self.upstream_requests
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }

    pub(super) fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        if let Some(remaining) = remaining {
            self.rate_limit_remaining.record(remaining, &[]);
        }
        if let Some(reset) = reset {
            self.rate_limit_reset.record(reset, &[]);
        }
    }

    pub(super) fn dragonfly_connected(&self, connected: bool) {
        self.dragonfly_connected.record(u64::from(connected), &[]);
    }

    pub(super) fn deploy_event(&self, outcome: DeployOutcome) {
        self.deploy_events
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }

    pub(super) fn cache_invalidated(&self, _keys: u64) {
        self.invalidations.add(1, &[]);
    }

    pub(super) fn panic_caught(&self) {
        self.panics.add(1, &[]);
    }

    pub(super) fn request_completed(&self, request: &CompletedRequest) {
        let key = (request.route, request.status_class());
        let known = self
            .request_series
            .read()
            .ok()
            .and_then(|series| series.get(&key).cloned());
        let series = known.unwrap_or_else(|| self.bind_request_series(key));
        series
            .duration
            .record(request.latency.as_secs_f64() * 1000.0);
        series.count.add(1);
    }

    /// Binds and keeps the series of a (route, status class) pair: a small,
    /// fixed set, since routes are templates.
    fn bind_request_series(&self, key: (&'static str, &'static str)) -> RequestSeries {
        let (route, status_class) = key;
        let route = KeyValue::new("route", route);
        let series = RequestSeries {
            duration: self.request_duration.bind(std::slice::from_ref(&route)),
            count: self
                .requests
                .bind(&[route, KeyValue::new("status_class", status_class)]),
        };
        if let Ok(mut all) = self.request_series.write() {
            all.entry(key).or_insert_with(|| series.clone());
        }
        series
    }
}

/// The series one request updates.
#[derive(Clone)]
struct RequestSeries {
    duration: BoundHistogram<f64>,
    count: BoundCounter<u64>,
}
