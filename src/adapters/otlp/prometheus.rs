//! The Prometheus side of `OtlpTelemetry`: a `prometheus-client` registry
//! holding the contract's `chimney_*` names, rendered in the text format
//! 0.0.4 by that crate's encoder (no hand-built exposition strings).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Observe;
use super::instruments::LATENCY_BUCKETS_MS;
use crate::domain::DeployOutcome;
use crate::ports::{CacheTier, CompletedRequest, TelemetryError, UpstreamOutcome};

/// The `Content-Type` of `GET /api/metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Sentinel for "GitHub has not reported this yet": such gauges are left
/// out of the scrape rather than shown as 0 (which would read as "rate
/// limit exhausted").
const UNKNOWN: i64 = i64::MIN;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type LatencyFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

pub(super) struct PrometheusMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    cache_hits: Family<TierLabel, Counter>,
    cache_misses: Counter,
    coalesced: Counter,
    upstream_requests: Family<OutcomeLabel, Counter>,
    dragonfly_connected: Gauge,
    panics: Counter,
    deploy_events: Family<OutcomeLabel, Counter>,
    invalidations: Counter,
    observed: Arc<Observed>,
}

/// Figures read at scrape time: uptime, memory-tier entries, and GitHub's
/// rate limit once it has been reported.
struct Observed {
    started: Instant,
    cache_entries: Observe,
    rate_limit_remaining: AtomicI64,
    rate_limit_reset: AtomicI64,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |value: i64| ConstGauge::new(value);
        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "chimney_uptime_seconds",
            "Seconds since this chimney started",
            None,
            uptime.metric_type(),
        )?)?;
        let entries = gauge(i64::try_from((self.cache_entries)()).unwrap_or(i64::MAX));
        entries.encode(encoder.encode_descriptor(
            "chimney_cache_entries",
            "Entries in the memory tier",
            None,
            entries.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "chimney_github_rate_limit_remaining",
                "Last X-RateLimit-Remaining GitHub reported",
                &self.rate_limit_remaining,
            ),
            (
                "chimney_github_rate_limit_reset",
                "Last X-RateLimit-Reset GitHub reported (Unix seconds)",
                &self.rate_limit_reset,
            ),
        ] {
            let value = value.load(Ordering::Relaxed);
            if value != UNKNOWN {
                let g = gauge(value);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

impl PrometheusMetrics {
    /// Adds `chimney_build_info{version,commit} 1`, the usual way to put a
    /// build's identity next to its metrics.
    pub(super) fn register_build_info(&mut self, version: &str, commit: &str) {
        let info = Info::new(vec![
            ("version".to_owned(), version.to_owned()),
            ("commit".to_owned(), commit.to_owned()),
        ]);
        self.registry
            .register("chimney_build", "The build of this chimney", info);
    }

    pub(super) fn new(cache_entries: Observe) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "chimney_requests",
            "Requests by route template and status class",
            requests.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "chimney_request_latency_ms",
            "Time to produce a response in milliseconds, by route template",
            latency.clone(),
        );
        let cache_hits = Family::<TierLabel, Counter>::default();
        registry.register(
            "chimney_cache_hits",
            "Requests answered from a fresh cache entry, by tier",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "chimney_cache_misses",
            "Requests that had to ask GitHub",
            cache_misses.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "chimney_coalesced",
            "Requests that shared a concurrent request's fetch",
            coalesced.clone(),
        );
        let upstream_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "chimney_upstream_requests",
            "Requests to GitHub, by outcome",
            upstream_requests.clone(),
        );
        let dragonfly_connected = Gauge::default();
        registry.register(
            "chimney_dragonfly_connected",
            "1 while the Dragonfly tier is in use, else 0",
            dragonfly_connected.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "chimney_panics",
            "Panics caught in request handlers",
            panics.clone(),
        );
        let deploy_events = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "chimney_deploy_events",
            "Deploy events accepted, by outcome",
            deploy_events.clone(),
        );
        let invalidations = Counter::default();
        registry.register(
            "chimney_cache_invalidations",
            "Cache invalidations performed",
            invalidations.clone(),
        );
        let observed = Arc::new(Observed {
            started: Instant::now(),
            cache_entries,
            rate_limit_remaining: AtomicI64::new(UNKNOWN),
            rate_limit_reset: AtomicI64::new(UNKNOWN),
        });
        registry.register_collector(Box::new(Arc::clone(&observed)));
        Self {
            registry,
            requests,
            latency,
            cache_hits,
            cache_misses,
            coalesced,
            upstream_requests,
            dragonfly_connected,
            panics,
            deploy_events,
            invalidations,
            observed,
        }
    }

    pub(super) fn render(&self) -> Result<String, TelemetryError> {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .map_err(|e| TelemetryError::Encoding(Box::new(e)))?;
        Ok(text)
    }

    pub(super) fn cache_hit(&self, tier: CacheTier) {
        self.cache_hits
            .get_or_create(&TierLabel {
                tier: tier.as_str(),
            })
            .inc();
    }

    pub(super) fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    pub(super) fn coalesced(&self) {
        self.coalesced.inc();
    }

    pub(super) fn upstream_request(&self, outcome: UpstreamOutcome) {
        self.upstream_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub(super) fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        if let Some(remaining) = remaining {
            self.observed
                .rate_limit_remaining
                .store(remaining, Ordering::Relaxed);
        }
        if let Some(reset) = reset {
            self.observed
                .rate_limit_reset
                .store(reset, Ordering::Relaxed);
        }
    }

    pub(super) fn dragonfly_connected(&self, connected: bool) {
        self.dragonfly_connected.set(i64::from(connected));
    }

    pub(super) fn deploy_event(&self, outcome: DeployOutcome) {
        self.deploy_events
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub(super) fn cache_invalidated(&self, _keys: u64) {
        self.invalidations.inc();
    }

    pub(super) fn panic_caught(&self) {
        self.panics.inc();
    }

    pub(super) fn request_completed(&self, request: &CompletedRequest) {
        self.requests
            .get_or_create(&RequestLabels {
                route: request.route,
                status_class: request.status_class(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: request.route,
            })
            .observe(request.latency.as_secs_f64() * 1000.0);
    }
}
