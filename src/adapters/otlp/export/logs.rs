//! `ExportLogsServiceRequest` (`opentelemetry.proto.collector.logs.v1`)
//! written straight from a batch of the SDK's log records.

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};

use super::common::{ExportResource, LogAnyValue, LogAttr, Scope};
use super::proto::{Message, Out, bytes, fixed32, fixed64, string, uint, unix_nanos};

/// The request for one batch: one resource, records grouped by scope.
pub(super) struct LogsRequest<'a> {
    pub resource: &'a ExportResource,
    pub records: Vec<(&'a SdkLogRecord, &'a InstrumentationScope)>,
}

impl<'a> LogsRequest<'a> {
    pub(super) fn new(resource: &'a ExportResource, batch: &'a LogBatch<'a>) -> Self {
        Self {
            resource,
            records: batch.iter().collect(),
        }
    }
}

impl Message for LogsRequest<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(1, &ResourceLogs(self));
    }
}

struct ResourceLogs<'r, 'a>(&'r LogsRequest<'a>);

impl Message for ResourceLogs<'_, '_> {
    fn write<O: Out>(&self, out: &mut O) {
        let request = self.0;
        out.message(1, request.resource);
        for scope in scopes(&request.records) {
            out.message(
                2,
                &ScopeLogs {
                    scope,
                    records: &request.records,
                },
            );
        }
        string(out, 3, request.resource.schema_url());
    }
}

/// What a record is grouped under: its scope, named by its target when it
/// has one (as `opentelemetry-otlp` does, so `tracing` targets show).
#[derive(Clone, Copy)]
struct ScopeKey<'a> {
    name: &'a str,
    scope: &'a InstrumentationScope,
}

impl<'a> ScopeKey<'a> {
    fn of(record: &'a SdkLogRecord, scope: &'a InstrumentationScope) -> Self {
        Self {
            name: record.target().map_or_else(|| scope.name(), |t| t.as_ref()),
            scope,
        }
    }

    fn same(&self, other: &Self) -> bool {
        self.name == other.name
            && (std::ptr::eq(self.scope, other.scope)
                || (self.scope.version() == other.scope.version()
                    && self.scope.schema_url() == other.scope.schema_url()
                    && self.scope.attributes().eq(other.scope.attributes())))
    }
}

/// The distinct scopes of `records`, in order of first appearance.
fn scopes<'a>(records: &[(&'a SdkLogRecord, &'a InstrumentationScope)]) -> Vec<ScopeKey<'a>> {
    let mut scopes: Vec<ScopeKey<'a>> = Vec::with_capacity(2);
    for (record, scope) in records {
        let key = ScopeKey::of(record, scope);
        if !scopes.iter().any(|s| s.same(&key)) {
            scopes.push(key);
        }
    }
    scopes
}

struct ScopeLogs<'r, 'a> {
    scope: ScopeKey<'a>,
    records: &'r [(&'a SdkLogRecord, &'a InstrumentationScope)],
}

impl Message for ScopeLogs<'_, '_> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(
            1,
            &Scope {
                name: self.scope.name,
                scope: self.scope.scope,
            },
        );
        for (record, scope) in self.records {
            if ScopeKey::of(record, scope).same(&self.scope) {
                out.message(2, &LogRecord(record));
            }
        }
        string(out, 3, self.scope.scope.schema_url().unwrap_or_default());
    }
}

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
