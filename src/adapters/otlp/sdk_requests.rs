//! [`SdkRequestExport`]: the request records through the SDK and
//! `opentelemetry-otlp` instead of the request exporter, for
//! `bench/telemetry.sh` to weigh the two (`CHIMNEY_BENCH_REQUEST_EXPORT=sdk`,
//! BENCHMARKS.md). Not a production mode.
//!
//! Each record becomes the SDK's `SpanData` (handed to a batch span
//! processor of its own, as a span ending would) and an SDK log record
//! (emitted on the logger provider's logger, as the `tracing` bridge does),
//! both sent by `opentelemetry-otlp`'s exporters to the same targets,
//! sampled the same way. The payloads are the ones the request exporter
//! writes (its tests compare them with `opentelemetry-proto`'s conversion
//! of exactly these SDK objects).

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor as _,
};
use opentelemetry_semantic_conventions::attribute::{
    HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, URL_PATH,
};

use super::sampling::Sampling;
use crate::ports::{RequestExport, RequestRecord};

/// Request records as SDK spans and log records.
#[derive(Debug)]
pub struct SdkRequestExport {
    spans: BatchSpanProcessor,
    logger: SdkLogger,
    scope: InstrumentationScope,
    sampling: Sampling,
}

impl SdkRequestExport {
    /// Spans go to `spans` (a processor of their own, with the resource
    /// already set on its exporter), log records to `logs`' logger.
    pub fn new(
        spans: BatchSpanProcessor,
        logs: &SdkLoggerProvider,
        scope: &'static str,
        sampling: Sampling,
    ) -> Self {
        let scope = InstrumentationScope::builder(scope).build();
        Self {
            spans,
            logger: logs.logger_with_scope(scope.clone()),
            scope,
            sampling,
        }
    }

    /// Exports the queued spans (the log records flush with their
    /// provider). Returns whether it worked.
    pub fn force_flush(&self) -> bool {
        self.spans.force_flush().is_ok()
    }

    /// Flushes and stops the span processor within `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.spans.shutdown_with_timeout(timeout).is_ok()
    }

    fn span(&self, r: &RequestRecord) -> SpanData {
        let flags = TraceFlags::SAMPLED;
        let (parent_span_id, state) = match &r.parent {
            Some(parent) => (
                SpanId::from_bytes(parent.span_id),
                parent
                    .trace_state
                    .as_deref()
                    .and_then(|s| s.parse::<TraceState>().ok())
                    .unwrap_or_default(),
            ),
            None => (SpanId::INVALID, TraceState::default()),
        };
        let mut attributes = vec![
            KeyValue::new(HTTP_REQUEST_METHOD, r.method.clone()),
            KeyValue::new(HTTP_ROUTE, r.route),
            KeyValue::new(URL_PATH, r.url_path.clone()),
            KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(r.status)),
            KeyValue::new("chimney.cache_hit", r.cache_hit),
            KeyValue::new("chimney.cache_tier", r.cache_tier),
        ];
        if let Some(path) = &r.github_path {
            attributes.push(KeyValue::new("chimney.github_path", path.clone()));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(r.trace_id),
                SpanId::from_bytes(r.span_id),
                flags,
                false,
                state,
            ),
            parent_span_id,
            parent_span_is_remote: r.parent.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(format!("{} {}", r.method, r.route)),
            start_time: r.start,
            end_time: r.end(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: r.error.clone().map_or(Status::Unset, Status::error),
            instrumentation_scope: self.scope.clone(),
        }
    }

    fn log(&self, r: &RequestRecord) {
        let mut record = self.logger.create_log_record();
        record.set_timestamp(r.end());
        record.set_observed_timestamp(r.end());
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::from("request"));
        record.add_attributes([
            ("method", AnyValue::from(r.method.to_string())),
            ("route", AnyValue::from(r.route)),
            ("status", AnyValue::Int(i64::from(r.status))),
            (
                "latency_ms",
                AnyValue::Double(r.latency.as_secs_f64() * 1000.0),
            ),
            ("cache_hit", AnyValue::Boolean(r.cache_hit)),
            ("cache_tier", AnyValue::from(r.cache_tier)),
            (
                "bytes",
                AnyValue::Int(i64::try_from(r.bytes).unwrap_or(i64::MAX)),
            ),
        ]);
        let flags = if r.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        record.set_trace_context(
            TraceId::from_bytes(r.trace_id),
            SpanId::from_bytes(r.span_id),
            Some(flags),
        );
        self.logger.emit(record);
    }
}

impl RequestExport for SdkRequestExport {
    fn export(&self, record: RequestRecord) {
        if record.sampled {
            self.spans.on_end(self.span(&record));
        }
        self.log(&record);
    }

    fn sampled(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        self.sampling.samples(trace_id, parent_sampled)
    }
}
