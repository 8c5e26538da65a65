//! A [`RequestRecord`] exported twice from the same data: as the request's
//! server span (`ExportTraceServiceRequest`) and as its log record
//! (`ExportLogsServiceRequest`).
//!
//! The record is a plain struct built by the request middleware: no SDK
//! span, no SDK log record, nothing shared between threads but the queue it
//! travels on. The names (span name, attribute keys, log fields) are
//! CONTRACT 8's.

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::Severity;
use opentelemetry::trace::{SpanKind, Status, TraceFlags};
use opentelemetry_semantic_conventions::attribute::{
    HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, URL_PATH,
};

use super::common::{ExportResource, Field, Scalar};
use super::envelope;
use super::proto::{Message, Out, bytes, fixed32, fixed64, string, uint, unix_nanos};
use super::span::{SpanStatus, flags as span_flags, kind as span_kind};
use crate::ports::RequestRecord;

/// W3C trace flags of the record's trace.
fn trace_flags(record: &RequestRecord) -> u8 {
    if record.sampled {
        TraceFlags::SAMPLED.to_u8()
    } else {
        TraceFlags::default().to_u8()
    }
}

/// The `ExportTraceServiceRequest` payload of a batch: the sampled
/// records' server spans, under `resource` and `scope`.
pub(super) fn spans_payload(
    resource: &ExportResource,
    scope: &InstrumentationScope,
    records: &[RequestRecord],
) -> Vec<u8> {
    let spans = records
        .iter()
        .filter(|r| r.sampled)
        .map(|record| (scope.name(), scope, ServerSpan(record)));
    envelope::payload(resource, &envelope::group(spans))
}

/// The `ExportLogsServiceRequest` payload of a batch: every record's log
/// record, under `resource` and `scope`.
pub(super) fn logs_payload(
    resource: &ExportResource,
    scope: &InstrumentationScope,
    records: &[RequestRecord],
) -> Vec<u8> {
    let logs = records
        .iter()
        .map(|record| (scope.name(), scope, AccessRecord(record)));
    envelope::payload(resource, &envelope::group(logs))
}

/// The record as the request's `Span`.
struct ServerSpan<'a>(&'a RequestRecord);

impl Message for ServerSpan<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let r = self.0;
        bytes(out, 1, &r.trace_id);
        bytes(out, 2, &r.span_id);
        if let Some(parent) = &r.parent {
            string(out, 3, parent.trace_state.as_deref().unwrap_or_default());
            bytes(out, 4, &parent.span_id);
        }
        out.message(5, &SpanName(r));
        uint(out, 6, span_kind(&SpanKind::Server));
        fixed64(out, 7, unix_nanos(r.start));
        fixed64(out, 8, unix_nanos(r.end()));
        let fields = [
            Field(HTTP_REQUEST_METHOD, Scalar::Str(&r.method)),
            Field(HTTP_ROUTE, Scalar::Str(r.route)),
            Field(URL_PATH, Scalar::Str(&r.url_path)),
            Field(HTTP_RESPONSE_STATUS_CODE, Scalar::Int(i64::from(r.status))),
            Field("chimney.cache_hit", Scalar::Bool(r.cache_hit)),
            Field("chimney.cache_tier", Scalar::Str(r.cache_tier)),
        ];
        for field in &fields {
            out.message(9, field);
        }
        if let Some(path) = &r.github_path {
            out.message(9, &Field("chimney.github_path", Scalar::Str(path)));
        }
        let status = r.error.clone().map_or(Status::Unset, Status::error);
        out.message(15, &SpanStatus(&status));
        fixed32(out, 16, span_flags(r.parent.is_some(), trace_flags(r)));
    }
}

/// `{method} {route template}`, written without building the string.
struct SpanName<'a>(&'a RequestRecord);

impl SpanName<'_> {
    fn parts(&self) -> [&str; 3] {
        [&self.0.method, " ", self.0.route]
    }
}

impl Message for SpanName<'_> {
    // Only ever written as a string field's payload: see `ServerSpan`.
    fn write<O: Out>(&self, out: &mut O) {
        for part in self.parts() {
            out.raw(part.as_bytes());
        }
    }
}

/// The record as the request's `LogRecord`.
struct AccessRecord<'a>(&'a RequestRecord);

impl Message for AccessRecord<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let r = self.0;
        let end = unix_nanos(r.end());
        fixed64(out, 1, end);
        uint(out, 2, Severity::Info as u64);
        string(out, 3, "INFO");
        out.message(5, &Scalar::Str("request"));
        let fields = [
            Field("method", Scalar::Str(&r.method)),
            Field("route", Scalar::Str(r.route)),
            Field("path", Scalar::Str(&r.target)),
            Field("status", Scalar::Int(i64::from(r.status))),
            Field(
                "latency_ms",
                Scalar::Double(r.latency.as_secs_f64() * 1000.0),
            ),
            Field("cache_hit", Scalar::Bool(r.cache_hit)),
            Field("cache_tier", Scalar::Str(r.cache_tier)),
            Field(
                "bytes",
                Scalar::Int(i64::try_from(r.bytes).unwrap_or(i64::MAX)),
            ),
        ];
        for field in &fields {
            out.message(6, field);
        }
        fixed32(out, 8, u32::from(trace_flags(r)));
        bytes(out, 9, &r.trace_id);
        bytes(out, 10, &r.span_id);
        fixed64(out, 11, end);
    }
}
