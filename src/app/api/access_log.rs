//! The one log record per request (CONTRACT 8): a JSON line on stdout
//! through `tracing`, and the same record over OTLP, emitted straight to the
//! OpenTelemetry logger rather than bridged from the `tracing` event.
//!
//! In the OTLP record the trace and span ids are the record's own fields,
//! which is where collectors such as Coroot look to join logs to traces;
//! the JSON line, having no such fields, carries them as hex strings.

use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{Key, StringValue};
use opentelemetry_sdk::logs::SdkLogger;

use crate::app::telemetry::ACCESS_LOG_TARGET;

/// What one request's log record says.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// HTTP method.
    pub method: poem::http::Method,
    /// Route template, never the raw path.
    pub route: &'static str,
    /// Response status code.
    pub status: u16,
    /// Time from receiving the request to having the response.
    pub latency: Duration,
    /// Whether a fresh cache entry answered.
    pub cache_hit: bool,
    /// `dragonfly`, `memory` or `none`.
    pub cache_tier: &'static str,
    /// Response body size when known.
    pub bytes: u64,
    /// The request's trace.
    pub trace_id: TraceId,
    /// The request's server span.
    pub span_id: SpanId,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// Writes [`AccessRecord`]s.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    /// `None` while OTLP export is off.
    logger: Option<SdkLogger>,
}

impl AccessLog {
    /// Exports through `logger` too, when there is one.
    pub fn new(logger: Option<SdkLogger>) -> Self {
        Self { logger }
    }

    /// Writes the JSON line and, when export is on, the OTLP record.
    pub fn write(&self, record: &AccessRecord) {
        let latency_ms = record.latency.as_secs_f64() * 1000.0;
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = record.method.as_str(),
            route = record.route,
            status = record.status,
            latency_ms,
            cache_hit = record.cache_hit,
            cache_tier = record.cache_tier,
            bytes = record.bytes,
            trace_id = %record.trace_id,
            span_id = %record.span_id,
            "request"
        );
        if let Some(logger) = &self.logger {
            logger.emit(Self::otlp_record(logger, record, latency_ms));
        }
    }

    fn otlp_record(
        logger: &SdkLogger,
        record: &AccessRecord,
        latency_ms: f64,
    ) -> opentelemetry_sdk::logs::SdkLogRecord {
        let mut otlp = logger.create_log_record();
        otlp.set_timestamp(SystemTime::now());
        otlp.set_severity_number(Severity::Info);
        otlp.set_severity_text("INFO");
        otlp.set_body(AnyValue::String(StringValue::from("request")));
        otlp.add_attributes([
            (Key::from_static_str("method"), method_value(&record.method)),
            (
                Key::from_static_str("route"),
                AnyValue::String(StringValue::from(record.route)),
            ),
            (
                Key::from_static_str("status"),
                AnyValue::Int(i64::from(record.status)),
            ),
            (
                Key::from_static_str("latency_ms"),
                AnyValue::Double(latency_ms),
            ),
            (
                Key::from_static_str("cache_hit"),
                AnyValue::Boolean(record.cache_hit),
            ),
            (
                Key::from_static_str("cache_tier"),
                AnyValue::String(StringValue::from(record.cache_tier)),
            ),
            (
                Key::from_static_str("bytes"),
                AnyValue::Int(i64::try_from(record.bytes).unwrap_or(i64::MAX)),
            ),
        ]);
        let flags = if record.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        otlp.set_trace_context(record.trace_id, record.span_id, Some(flags));
        otlp
    }
}

/// The method as a string value, without allocating for the standard ones.
fn method_value(method: &poem::http::Method) -> AnyValue {
    use poem::http::Method;
    let name: &'static str = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => return AnyValue::String(StringValue::from(method.as_str().to_owned())),
    };
    AnyValue::String(StringValue::from(name))
}
