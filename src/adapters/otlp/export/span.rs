//! The parts of a `Span` (`opentelemetry.proto.trace.v1`) a request's
//! server span shares with every span: its flags, kind and status.

use opentelemetry::trace::{SpanKind, Status};

use super::proto::{Message, Out, string, uint};

/// `SpanFlags`: the context's remoteness is known, and whether it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

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
