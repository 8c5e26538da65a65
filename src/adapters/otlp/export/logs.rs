//! `ExportLogsServiceRequest` (`opentelemetry.proto.collector.logs.v1`)
//! written straight from a batch of the SDK's log records.

use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};

use super::common::{ExportResource, LogAnyValue, LogAttr};
use super::envelope;
use super::proto::{Message, Out, bytes, fixed32, fixed64, string, uint, unix_nanos};

/// The `ExportLogsServiceRequest` payload of an SDK batch. A record's
/// target, when it has one, names its scope (as in `opentelemetry-otlp`, so
/// `tracing` targets show).
pub(super) fn payload(resource: &ExportResource, batch: &LogBatch<'_>) -> Vec<u8> {
    let scopes = envelope::group(batch.iter().map(|(record, scope)| {
        let name = record.target().map_or_else(|| scope.name(), |t| t.as_ref());
        (name, scope, LogRecord(record))
    }));
    envelope::payload(resource, &scopes)
}

/// An SDK log record as a `LogRecord`.
struct LogRecord<'a>(&'a SdkLogRecord);

impl Message for LogRecord<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let record = self.0;
        fixed64(out, 1, record.timestamp().map_or(0, unix_nanos));
        uint(
            out,
            2,
            record.severity_number().map_or(0, |s| s as i32 as u64),
        );
        string(out, 3, record.severity_text().unwrap_or_default());
        if let Some(body) = record.body() {
            out.message(5, &LogAnyValue(body));
        }
        for (key, value) in record.attributes_iter() {
            out.message(6, &LogAttr(key, value));
        }
        if let Some(context) = record.trace_context() {
            fixed32(
                out,
                8,
                context.trace_flags.map_or(0, |f| u32::from(f.to_u8())),
            );
            bytes(out, 9, &context.trace_id.to_bytes());
            bytes(out, 10, &context.span_id.to_bytes());
        }
        fixed64(out, 11, record.observed_timestamp().map_or(0, unix_nanos));
        string(out, 12, record.event_name().unwrap_or_default());
    }
}
