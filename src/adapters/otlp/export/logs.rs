//! `ExportLogsServiceRequest` (`opentelemetry.proto.collector.logs.v1`)
//! written straight from a batch of the SDK's log records.

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};

use super::common::{ExportResource, LogAnyValue, LogAttr, Scope};
use super::proto::{Message, Out, bytes, fixed32, fixed64, measure, string, uint, unix_nanos};

/// The request for one batch: one resource, records grouped by scope.
pub(super) struct LogsRequest<'a> {
    resource: &'a ExportResource,
    scopes: Vec<ScopeLogs<'a>>,
}

impl<'a> LogsRequest<'a> {
    /// Groups the batch's records by scope, in order of first appearance,
    /// and measures each record once.
    pub(super) fn new(resource: &'a ExportResource, batch: &'a LogBatch<'a>) -> Self {
        let mut scopes: Vec<ScopeLogs<'a>> = Vec::with_capacity(2);
        for (record, scope) in batch.iter() {
            let key = ScopeKey::of(record, scope);
            let record = LogRecord::new(record);
            match scopes.iter_mut().find(|s| s.key.same(&key)) {
                Some(group) => group.records.push(record),
                None => scopes.push(ScopeLogs {
                    key,
                    records: vec![record],
                }),
            }
        }
        Self { resource, scopes }
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
        let LogsRequest { resource, scopes } = self.0;
        out.message(1, *resource);
        for scope in scopes {
            out.message(2, scope);
        }
        string(out, 3, resource.schema_url());
    }
}

/// What a record is grouped under: its scope, named by its target when it
/// has one (as `opentelemetry-otlp` does, so `tracing` targets show).
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
            && self.scope.version() == other.scope.version()
            && self.scope.schema_url() == other.scope.schema_url()
            && self.scope.attributes().eq(other.scope.attributes())
    }
}

struct ScopeLogs<'a> {
    key: ScopeKey<'a>,
    records: Vec<LogRecord<'a>>,
}

impl Message for ScopeLogs<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(
            1,
            &Scope {
                name: self.key.name,
                scope: self.key.scope,
            },
        );
        for record in &self.records {
            out.message(2, record);
        }
        string(out, 3, self.key.scope.schema_url().unwrap_or_default());
    }
}

/// A record with its encoded length, measured once.
struct LogRecord<'a> {
    record: &'a SdkLogRecord,
    len: usize,
}

impl<'a> LogRecord<'a> {
    fn new(record: &'a SdkLogRecord) -> Self {
        let mut this = Self { record, len: 0 };
        this.len = measure(&this);
        this
    }
}

impl Message for LogRecord<'_> {
    fn encoded_len(&self) -> usize {
        self.len
    }

    fn write<O: Out>(&self, out: &mut O) {
        let record = self.record;
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
