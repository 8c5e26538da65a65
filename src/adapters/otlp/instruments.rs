//! The OpenTelemetry instruments behind `OtlpTelemetry`, named as CONTRACT
//! section 8 spells them. Attribute values are `&'static str`, so recording
//! allocates nothing.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, ObservableGauge};

use super::Observe;
use crate::domain::DeployOutcome;
use crate::ports::{CacheTier, CompletedRequest, UpstreamOutcome};

/// Bucket boundaries of `chimney.request.duration`, in milliseconds.
pub(super) const LATENCY_BUCKETS_MS: [f64; 5] = [5.0, 25.0, 100.0, 500.0, 2000.0];

pub(super) struct Instruments {
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
    cache_hits: Counter<u64>,
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
        Self {
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
            cache_hits: meter
                .u64_counter("chimney.cache.hits")
                .with_description("Requests answered from a fresh cache entry, by tier")
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
        self.cache_hits
            .add(1, &[KeyValue::new("tier", tier.as_str())]);
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
        let route = KeyValue::new("route", request.route);
        self.request_duration.record(
            request.latency.as_secs_f64() * 1000.0,
            std::slice::from_ref(&route),
        );
        self.requests.add(
            1,
            &[route, KeyValue::new("status_class", request.status_class())],
        );
    }
}
