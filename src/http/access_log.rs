//! The JSON line on stdout for every request (CONTRACT 8). Its OTLP
//! counterpart is exported from the same [`RequestRecord`] by the request
//! exporter; the line carries the trace and span ids as hex strings, the
//! OTLP record in its own id fields.

use opentelemetry::trace::{SpanId, TraceId};

use crate::ports::RequestRecord;

/// Target of the per-request log lines. Their OTLP records are exported
/// from the request's record by the request exporter, so telemetry's log
/// bridge leaves this target alone.
pub const ACCESS_LOG_TARGET: &str = "chimney::access";

/// Writes `record`'s line.
pub fn write(record: &RequestRecord) {
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        method = &*record.method,
        route = record.route,
        path = record.target.as_str(),
        status = record.status,
        latency_ms = record.latency.as_secs_f64() * 1000.0,
        cache_hit = record.cache_hit,
        cache_tier = record.cache_tier,
        bytes = record.bytes,
        trace_id = %TraceId::from_bytes(record.trace_id),
        span_id = %SpanId::from_bytes(record.span_id),
        "request"
    );
}
