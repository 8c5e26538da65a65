//! Trace context of an incoming request: the remote parent a W3C
//! `traceparent` names, and the ids of the request's own server span.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use poem::http::{HeaderMap, HeaderName};

use crate::ports::RequestExport;

/// The parent span an incoming `traceparent` names, if valid.
pub(super) fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let parent = cx.span().span_context().clone();
    parent.is_valid().then_some(parent)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The ids of the request's server span: the incoming trace id or a fresh
/// one, and always a fresh span id, so `X-Trace-ID`, the log line and the
/// exported span and record agree whether export is on or off.
pub(super) struct TraceIds {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    /// Whether the trace is sampled: the configured sampler's decision
    /// (the exporter's), given the caller's. With export off, the caller's
    /// decision; a trace started here is sampled.
    pub(super) sampled: bool,
}

impl TraceIds {
    pub(super) fn new(remote: Option<&SpanContext>, exporter: Option<&dyn RequestExport>) -> Self {
        let ids = RandomIdGenerator::default();
        let trace_id = remote.map_or_else(|| ids.new_trace_id(), SpanContext::trace_id);
        let parent_sampled = remote.map(SpanContext::is_sampled);
        Self {
            trace_id,
            span_id: ids.new_span_id(),
            sampled: match exporter {
                Some(exporter) => exporter.sampled(&trace_id.to_bytes(), parent_sampled),
                None => parent_sampled.unwrap_or(true),
            },
        }
    }

    /// The context children of the server span are made in.
    pub(super) fn context(&self, remote: Option<&SpanContext>) -> Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = remote.map(|r| r.trace_state().clone()).unwrap_or_default();
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            false,
            state,
        ))
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    #[test]
    fn a_traceparent_names_the_remote_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let parent = remote_parent(&headers).expect("valid traceparent");
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        headers.insert("traceparent", HeaderValue::from_static("00-garbage"));
        assert!(remote_parent(&headers).is_none());
    }

    #[test]
    fn a_continued_trace_keeps_its_id_and_sampling_with_a_fresh_span_id() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let remote = remote_parent(&headers).expect("valid traceparent");
        let ids = TraceIds::new(Some(&remote), None);
        assert_eq!(ids.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ids.span_id, remote.span_id());
        assert_ne!(ids.span_id, SpanId::INVALID);
        assert!(!ids.sampled, "the caller's flags say not sampled");

        let cx = ids.context(Some(&remote));
        let current = cx.span().span_context().clone();
        assert_eq!(
            current.span_id(),
            ids.span_id,
            "children parent on our span"
        );
        assert!(!current.is_remote());

        let fresh = TraceIds::new(None, None);
        assert_ne!(fresh.trace_id, TraceId::INVALID);
        assert!(fresh.sampled);
    }

    /// An exporter whose sampler samples nothing it is asked about.
    struct SamplesNothing;

    impl RequestExport for SamplesNothing {
        fn export(&self, _: crate::ports::RequestRecord) {}

        fn sampled(&self, _: &[u8; 16], _: Option<bool>) -> bool {
            false
        }
    }

    #[test]
    fn with_export_on_the_exporter_s_sampler_decides() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let remote = remote_parent(&headers).expect("valid traceparent");
        assert!(!TraceIds::new(Some(&remote), Some(&SamplesNothing)).sampled);
        assert!(!TraceIds::new(None, Some(&SamplesNothing)).sampled);
        let cx = TraceIds::new(None, Some(&SamplesNothing)).context(None);
        assert!(!cx.span().span_context().is_sampled(), "children follow");
    }
}
