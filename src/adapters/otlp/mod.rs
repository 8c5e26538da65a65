//! `OtlpTelemetry`: the `Telemetry` port recorded twice from one call, into
//! OpenTelemetry instruments (exported over OTLP by whatever meter provider
//! the caller's `Meter` belongs to) and into a Prometheus registry rendered
//! by `MetricsScrape` for `GET /api/metrics`.
//!
//! Why two sinks and not the `opentelemetry-prometheus` exporter: the
//! contract fixes Prometheus names that are not the OpenTelemetry
//! translation of the instrument names (`chimney_request_latency_ms` for
//! `chimney.request.duration`, `chimney_uptime_seconds` with no instrument
//! behind it), and the scrape endpoint must be per application while the
//! meter provider is process-global. Each recording point updates both, so
//! the two never disagree about what happened.
//!
//! The OTLP export itself: [`target`] (where and how each signal is sent),
//! [`sdk`] (`opentelemetry-otlp`'s exporters behind the SDK), [`export`]
//! (the request exporter), [`sampling`] (`OTEL_TRACES_SAMPLER` for both)
//! and [`health`] (export failures logged when they start and stop).

pub mod export;
pub mod health;
mod instruments;
mod prometheus;
pub mod sampling;
pub mod sdk;
pub mod sdk_requests;
pub mod target;

use std::sync::Arc;

use crate::domain::DeployOutcome;
use crate::ports::{
    CacheTier, CompletedRequest, MetricsScrape, Scrape, Telemetry, TelemetryError, UpstreamOutcome,
};

use instruments::Instruments;
use prometheus::PrometheusMetrics;

pub use prometheus::PROMETHEUS_CONTENT_TYPE;

/// Reads a figure that is observed when metrics are collected rather than
/// recorded as it changes (the number of memory-tier entries).
pub type Observe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The OpenTelemetry + Prometheus implementation of [`Telemetry`].
pub struct OtlpTelemetry {
    otel: Instruments,
    prometheus: PrometheusMetrics,
}

impl OtlpTelemetry {
    /// Creates the instruments on `meter` and a fresh Prometheus registry.
    /// `cache_entries` is read at every collection and every scrape.
    pub fn new(meter: &opentelemetry::metrics::Meter, cache_entries: Observe) -> Self {
        Self {
            otel: Instruments::new(meter, Arc::clone(&cache_entries)),
            prometheus: PrometheusMetrics::new(cache_entries),
        }
    }

    /// Labels `/api/metrics` with the build: `chimney_build_info{version,
    /// commit} 1`.
    #[must_use]
    pub fn with_build_info(mut self, version: &str, commit: &str) -> Self {
        self.prometheus.register_build_info(version, commit);
        self
    }
}

impl Telemetry for OtlpTelemetry {
    fn cache_hit(&self, tier: CacheTier) {
        self.otel.cache_hit(tier);
        self.prometheus.cache_hit(tier);
    }

    fn cache_miss(&self) {
        self.otel.cache_miss();
        self.prometheus.cache_miss();
    }

    fn coalesced(&self) {
        self.otel.coalesced();
        self.prometheus.coalesced();
    }

    fn upstream_request(&self, outcome: UpstreamOutcome) {
        self.otel.upstream_request(outcome);
        self.prometheus.upstream_request(outcome);
    }

    fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        self.otel.rate_limit(remaining, reset);
        self.prometheus.rate_limit(remaining, reset);
    }

    fn dragonfly_connected(&self, connected: bool) {
        self.otel.dragonfly_connected(connected);
        self.prometheus.dragonfly_connected(connected);
    }

    fn deploy_event(&self, outcome: DeployOutcome) {
        self.otel.deploy_event(outcome);
        self.prometheus.deploy_event(outcome);
    }

    fn cache_invalidated(&self, keys: u64) {
        self.otel.cache_invalidated(keys);
        self.prometheus.cache_invalidated(keys);
    }

    fn panic_caught(&self) {
        self.otel.panic_caught();
        self.prometheus.panic_caught();
    }

    fn request_completed(&self, request: &CompletedRequest) {
        self.otel.request_completed(request);
        self.prometheus.request_completed(request);
    }
}

impl MetricsScrape for OtlpTelemetry {
    fn scrape(&self) -> Result<Scrape, TelemetryError> {
        Ok(Scrape {
            content_type: PROMETHEUS_CONTENT_TYPE,
            body: self.prometheus.render()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn telemetry() -> OtlpTelemetry {
        let meter = opentelemetry::global::meter("chimney-test");
        OtlpTelemetry::new(&meter, Arc::new(|| 7))
    }

    fn body(t: &OtlpTelemetry) -> String {
        t.scrape().expect("scrape").body
    }

    #[test]
    fn counters_move_under_their_prometheus_names() {
        let t = telemetry();
        t.cache_hit(CacheTier::Memory);
        t.cache_hit(CacheTier::Memory);
        t.cache_hit(CacheTier::Dragonfly);
        t.cache_miss();
        t.coalesced();
        t.upstream_request(UpstreamOutcome::NotModified);
        t.panic_caught();
        t.deploy_event(DeployOutcome::Failure);
        t.cache_invalidated(3);
        let text = body(&t);
        for line in [
            "chimney_cache_hits_total{tier=\"memory\"} 2",
            "chimney_cache_hits_total{tier=\"dragonfly\"} 1",
            "chimney_cache_misses_total 1",
            "chimney_coalesced_total 1",
            "chimney_upstream_requests_total{outcome=\"not_modified\"} 1",
            "chimney_panics_total 1",
            "chimney_deploy_events_total{outcome=\"failure\"} 1",
            "chimney_cache_invalidations_total 1",
            "chimney_cache_entries 7",
            "# TYPE chimney_uptime_seconds gauge",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn requests_are_labelled_by_route_template_and_status_class() {
        let t = telemetry();
        t.request_completed(&CompletedRequest {
            route: "/api/github/{path}",
            status: 404,
            latency: Duration::from_millis(30),
        });
        let text = body(&t);
        assert!(
            text.contains(
                "chimney_requests_total{route=\"/api/github/{path}\",status_class=\"4xx\"} 1"
            ),
            "{text}"
        );
        for line in [
            "chimney_request_latency_ms_bucket{route=\"/api/github/{path}\",le=\"25\"} 0",
            "chimney_request_latency_ms_bucket{route=\"/api/github/{path}\",le=\"100\"} 1",
            "chimney_request_latency_ms_count{route=\"/api/github/{path}\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn rate_limit_and_dragonfly_gauges_appear_once_observed() {
        let t = telemetry();
        assert!(!body(&t).contains("chimney_github_rate_limit_remaining "));
        t.rate_limit(Some(4_999), Some(1_700_000_000));
        t.dragonfly_connected(true);
        let text = body(&t);
        assert!(
            text.contains("chimney_github_rate_limit_remaining 4999"),
            "{text}"
        );
        assert!(
            text.contains("chimney_github_rate_limit_reset 1700000000"),
            "{text}"
        );
        assert!(text.contains("chimney_dragonfly_connected 1"), "{text}");
    }
}
