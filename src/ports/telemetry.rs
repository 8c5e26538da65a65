//! `Telemetry`: what the application reports about its own work (cache
//! hits, upstream outcomes, requests, panics …), and `MetricsScrape`: the
//! same figures rendered for a scraper. No telemetry crate appears here; the
//! OpenTelemetry adapter implements these traits; `TeeTelemetry` fans one report out to two sinks.

use std::sync::Arc;

use std::time::Duration;

use crate::domain::DeployOutcome;
use crate::ports::CacheTier;

/// How one request to GitHub ended, as counted in
/// `chimney.upstream.requests{outcome}`. A small fixed set, so the label
/// never explodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamOutcome {
    /// 2xx: a new representation.
    Ok,
    /// 304: the cached representation is still current.
    NotModified,
    /// Another 3xx/4xx, passed through to the client uncached.
    Passthrough,
    /// 5xx or a transport failure.
    Error,
    /// No complete answer within the deadline.
    Timeout,
    /// 429, or 403 with the budget spent.
    RateLimited,
    /// The body exceeded the size limit.
    TooLarge,
}

impl UpstreamOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::NotModified,
        Self::Passthrough,
        Self::Error,
        Self::Timeout,
        Self::RateLimited,
        Self::TooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotModified => "not_modified",
            Self::Passthrough => "passthrough",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
        }
    }
}

/// One finished HTTP request, as the request middleware saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedRequest {
    /// The route template (`/api/github/{path}`, `/healthz`, …), never a
    /// raw path: it is a metric label.
    pub route: &'static str,
    /// The response status.
    pub status: u16,
    /// Time from receiving the request to having the response ready.
    pub latency: Duration,
}

impl CompletedRequest {
    /// `1xx` … `5xx`, the `status_class` label.
    pub fn status_class(&self) -> &'static str {
        match self.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }
}

/// Where application services report what happened. Every method is a
/// cheap, non-blocking, infallible record: telemetry never fails or slows a
/// request, so implementations swallow their own errors.
pub trait Telemetry: Send + Sync + 'static {
    /// A request was answered from a fresh entry of `tier`.
    fn cache_hit(&self, tier: CacheTier);

    /// A request needed GitHub and started the fetch.
    fn cache_miss(&self);

    /// A request shared a concurrent request's fetch.
    fn coalesced(&self);

    /// A request to GitHub ended with `outcome`.
    fn upstream_request(&self, outcome: UpstreamOutcome);

    /// GitHub reported its rate limit (`X-RateLimit-Remaining`,
    /// `X-RateLimit-Reset` as Unix seconds); either may be absent.
    fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>);

    /// The Dragonfly tier became usable (`true`) or unusable (`false`).
    fn dragonfly_connected(&self, connected: bool);

    /// A deploy event was accepted.
    fn deploy_event(&self, outcome: DeployOutcome);

    /// An invalidation removed `keys` distinct cache keys.
    fn cache_invalidated(&self, keys: u64);

    /// A panic in a handler was caught and answered with a 500.
    fn panic_caught(&self);

    /// An HTTP request completed.
    fn request_completed(&self, request: &CompletedRequest);
}

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The encoder failed.
    #[error("metrics could not be encoded")]
    Encoding(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The current metrics as a scraper reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrape {
    /// The `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The rendered metrics.
    pub body: String,
}

/// Renders the recorded metrics for a scraper (`GET /api/metrics`).
pub trait MetricsScrape: Send + Sync + 'static {
    /// Every instrument's current value in the Prometheus text format 0.0.4.
    ///
    /// # Errors
    /// MUST return [`TelemetryError::Encoding`] when the text cannot be
    /// produced; it never fails for lack of data.
    fn scrape(&self) -> Result<Scrape, TelemetryError>;
}

/// A `Telemetry` that records nothing: the default until one is wired.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn cache_hit(&self, _tier: CacheTier) {}
    fn cache_miss(&self) {}
    fn coalesced(&self) {}
    fn upstream_request(&self, _outcome: UpstreamOutcome) {}
    fn rate_limit(&self, _remaining: Option<i64>, _reset: Option<i64>) {}
    fn dragonfly_connected(&self, _connected: bool) {}
    fn deploy_event(&self, _outcome: DeployOutcome) {}
    fn cache_invalidated(&self, _keys: u64) {}
    fn panic_caught(&self) {}
    fn request_completed(&self, _request: &CompletedRequest) {}
}

/// Reports every event to two sinks, e.g. the OpenTelemetry instruments and
/// the in-process counters `/healthz` reads, so services report once.
#[derive(Clone)]
pub struct TeeTelemetry {
    first: Arc<dyn Telemetry>,
    second: Arc<dyn Telemetry>,
}

impl TeeTelemetry {
    /// Forwards to `first`, then `second`.
    pub fn new(first: Arc<dyn Telemetry>, second: Arc<dyn Telemetry>) -> Self {
        Self { first, second }
    }
}

impl Telemetry for TeeTelemetry {
    fn cache_hit(&self, tier: CacheTier) {
        self.first.cache_hit(tier);
        self.second.cache_hit(tier);
    }
    fn cache_miss(&self) {
        self.first.cache_miss();
        self.second.cache_miss();
    }
    fn coalesced(&self) {
        self.first.coalesced();
        self.second.coalesced();
    }
    fn upstream_request(&self, outcome: UpstreamOutcome) {
        self.first.upstream_request(outcome);
        self.second.upstream_request(outcome);
    }
    fn rate_limit(&self, remaining: Option<i64>, reset: Option<i64>) {
        self.first.rate_limit(remaining, reset);
        self.second.rate_limit(remaining, reset);
    }
    fn dragonfly_connected(&self, connected: bool) {
        self.first.dragonfly_connected(connected);
        self.second.dragonfly_connected(connected);
    }
    fn deploy_event(&self, outcome: DeployOutcome) {
        self.first.deploy_event(outcome);
        self.second.deploy_event(outcome);
    }
    fn cache_invalidated(&self, keys: u64) {
        self.first.cache_invalidated(keys);
        self.second.cache_invalidated(keys);
    }
    fn panic_caught(&self) {
        self.first.panic_caught();
        self.second.panic_caught();
    }
    fn request_completed(&self, request: &CompletedRequest) {
        self.first.request_completed(request);
        self.second.request_completed(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_bucket_every_status() {
        let class = |status| {
            CompletedRequest {
                route: "/healthz",
                status,
                latency: Duration::ZERO,
            }
            .status_class()
        };
        assert_eq!(
            [class(101), class(200), class(304), class(404), class(503)],
            ["1xx", "2xx", "3xx", "4xx", "5xx"]
        );
        assert_eq!(class(999), "5xx");
    }

    #[test]
    fn outcome_labels_are_distinct() {
        let labels: std::collections::BTreeSet<_> =
            UpstreamOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels.len(), UpstreamOutcome::ALL.len());
    }
}
