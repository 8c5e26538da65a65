//! `RequestExport`: where the request middleware sends what it knows about
//! each answered request, once, for telemetry to turn into the request's
//! server span and log record (CONTRACT 8).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// Takes each answered request's record. Must not block: it runs on the
/// request path.
pub trait RequestExport: Send + Sync {
    /// Hands `record` over; it may be dropped under overload.
    fn export(&self, record: RequestRecord);

    /// Whether the request in trace `trace_id` is sampled (its span and
    /// the spans made while answering it are exported), given the
    /// caller's decision when it sent a `traceparent` (`parent_sampled`).
    /// Asked once, when the request arrives. By default the caller
    /// decides, and a trace that starts here is sampled.
    fn sampled(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        let _ = trace_id;
        parent_sampled.unwrap_or(true)
    }
}

/// The span of the caller that sent a `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParent {
    /// The caller's span id (8 bytes, W3C order).
    pub span_id: [u8; 8],
    /// Its `tracestate` header, when not empty.
    pub trace_state: Option<String>,
}

/// Longest path and query the request log keeps (CONTRACT 8 v2).
pub const MAX_LOGGED_TARGET_BYTES: usize = 2 * 1024;

/// What is known about a request once it has been answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// The request's trace id (16 bytes): the caller's, or a new one.
    pub trace_id: [u8; 16],
    /// The request's server span id (8 bytes).
    pub span_id: [u8; 8],
    /// The caller's span, when the request continued a trace.
    pub parent: Option<RemoteParent>,
    /// Whether the trace is sampled; an unsampled request exports its log
    /// record but no span.
    pub sampled: bool,
    /// HTTP method.
    pub method: Cow<'static, str>,
    /// Route template, never the raw path.
    pub route: &'static str,
    /// The raw path (a span attribute, never a metric label).
    pub url_path: String,
    /// The path and query as received, cut at [`MAX_LOGGED_TARGET_BYTES`]
    /// (the request log's `path`, as the original chimney logged it).
    pub target: String,
    /// Response status.
    pub status: u16,
    /// When the request arrived.
    pub start: SystemTime,
    /// How long answering it took.
    pub latency: Duration,
    /// Whether a fresh cache entry answered.
    pub cache_hit: bool,
    /// `dragonfly`, `memory` or `none`.
    pub cache_tier: &'static str,
    /// The GitHub path behind a proxied request.
    pub github_path: Option<String>,
    /// Response body size when known.
    pub bytes: u64,
    /// Why the span is an error (a 5xx, a caught panic), if it is.
    pub error: Option<Cow<'static, str>>,
}

impl RequestRecord {
    /// When the response was ready.
    pub fn end(&self) -> SystemTime {
        self.start + self.latency
    }
}
