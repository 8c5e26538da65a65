//! `ExportTraceServiceRequest` (`opentelemetry.proto.collector.trace.v1`)
//! written straight from a batch of the SDK's `SpanData`.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;

use super::common::{Attr, ExportResource, count};
use super::envelope;
use super::proto::{Message, Out, bytes, fixed32, fixed64, string, uint, unix_nanos};

/// `SpanFlags`: the context's remoteness is known, and whether it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The `ExportTraceServiceRequest` payload of an SDK batch.
pub(super) fn payload(resource: &ExportResource, spans: &[SpanData]) -> Vec<u8> {
    let scopes = envelope::group(spans.iter().map(|span| {
        let scope = &span.instrumentation_scope;
        (scope.name(), scope, Span(span))
    }));
    envelope::payload(resource, &scopes)
}

/// An SDK span as a `Span`.
struct Span<'a>(&'a SpanData);

impl Message for Span<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let span = self.0;
        let context = &span.span_context;
        bytes(out, 1, &context.trace_id().to_bytes());
        bytes(out, 2, &context.span_id().to_bytes());
        if *context.trace_state() != Default::default() {
            string(out, 3, &context.trace_state().header());
        }
        if span.parent_span_id != SpanId::INVALID {
            bytes(out, 4, &span.parent_span_id.to_bytes());
        }
        string(out, 5, &span.name);
        uint(out, 6, kind(&span.span_kind));
        fixed64(out, 7, unix_nanos(span.start_time));
        fixed64(out, 8, unix_nanos(span.end_time));
        for attribute in &span.attributes {
            out.message(9, &Attr(attribute));
        }
        count(out, 10, span.dropped_attributes_count);
        for event in span.events.iter() {
            out.message(11, &Event(event));
        }
        count(out, 12, span.events.dropped_count);
        for link in span.links.iter() {
            out.message(13, &Link(link));
        }
        count(out, 14, span.links.dropped_count);
        out.message(15, &SpanStatus(&span.status));
        fixed32(
            out,
            16,
            flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
        );
    }
}

/// `Span.flags`: the W3C trace flags and whether the parent is remote.
pub(super) fn flags(remote: bool, trace_flags: u8) -> u32 {
    let flags = u32::from(trace_flags) | HAS_IS_REMOTE;
    if remote { flags | IS_REMOTE } else { flags }
}

/// `Span.kind`.
pub(super) fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

struct Event<'a>(&'a opentelemetry::trace::Event);

impl Message for Event<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let event = self.0;
        fixed64(out, 1, unix_nanos(event.timestamp));
        string(out, 2, &event.name);
        for attribute in &event.attributes {
            out.message(3, &Attr(attribute));
        }
        count(out, 4, event.dropped_attributes_count);
    }
}

struct Link<'a>(&'a opentelemetry::trace::Link);

impl Message for Link<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        let link = self.0;
        let context = &link.span_context;
        bytes(out, 1, &context.trace_id().to_bytes());
        bytes(out, 2, &context.span_id().to_bytes());
        if *context.trace_state() != Default::default() {
            string(out, 3, &context.trace_state().header());
        }
        for attribute in &link.attributes {
            out.message(4, &Attr(attribute));
        }
        count(out, 5, link.dropped_attributes_count);
        fixed32(
            out,
            6,
            flags(context.is_remote(), context.trace_flags().to_u8()),
        );
    }
}

/// `Status`.
pub(super) struct SpanStatus<'a>(pub &'a Status);

impl Message for SpanStatus<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        match self.0 {
            Status::Unset => {}
            Status::Ok => uint(out, 3, 1),
            Status::Error { description } => {
                string(out, 2, description);
                uint(out, 3, 2);
            }
        }
    }
}
