//! The JSON line on stdout for every request (CONTRACT 8). Its OTLP
//! counterpart is exported from the same [`RequestRecord`] by the request
//! exporter; the line carries the trace and span ids as hex strings, the
//! OTLP record in its own id fields.
//!
//! The service installs an [`AccessLogWriter`] once at start-up
//! ([`install`]): a request then only queues its [`LogLine`], and a thread
//! formats and writes the lines in batches (see `writer`). Without one (the
//! in-process test suite), the line is a `tracing` event, formatted by the
//! subscriber like every other line.

mod line;
mod writer;

use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceId};

use crate::ports::RequestRecord;

pub use line::LogLine;
pub use writer::{AccessLogGuard, AccessLogWriter, WriterOptions};

/// Target of the per-request log lines. Their OTLP records are exported
/// from the request's record by the request exporter, so telemetry's log
/// bridge leaves this target alone.
pub const ACCESS_LOG_TARGET: &str = "chimney::access";

/// Where this process's request lines go, once decided.
enum Destination {
    /// The log filter turns request lines off (`RUST_LOG=warn`).
    Off,
    Writer(AccessLogWriter),
}

static DESTINATION: OnceLock<Destination> = OnceLock::new();

/// Sends this process's request lines to `writer`, or nowhere when `None`
/// (the log filter leaves them out). Decided once, by telemetry start-up:
/// returns false, changing nothing, when it already was.
pub fn install(writer: Option<AccessLogWriter>) -> bool {
    DESTINATION
        .set(writer.map_or(Destination::Off, Destination::Writer))
        .is_ok()
}

/// Writes `record`'s line.
pub fn write(record: &RequestRecord) {
    match DESTINATION.get() {
        Some(Destination::Writer(writer)) => writer.push(LogLine::of(record)),
        Some(Destination::Off) => {}
        None => event(record),
    }
}

/// The line as a `tracing` event, when no writer is installed.
fn event(record: &RequestRecord) {
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
