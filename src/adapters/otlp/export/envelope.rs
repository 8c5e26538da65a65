//! The nesting every OTLP export request shares, the same fields at the
//! same tags for spans and for log records: the request holds one
//! resource's signals (`ResourceSpans` / `ResourceLogs`), grouped by
//! instrumentation scope (`ScopeSpans` / `ScopeLogs`).

use opentelemetry::InstrumentationScope;

use super::common::{Attr, ExportResource};
use super::proto::{Message, Out, measure, string};

/// Groups `items` by scope, in order of first appearance, measuring each
/// item once; `name` overrides the scope's name (a log record's target
/// names its scope, as in `opentelemetry-otlp`).
pub(super) fn group<'a, M: Message>(
    items: impl IntoIterator<Item = (&'a str, &'a InstrumentationScope, M)>,
) -> Vec<Scoped<'a, M>> {
    let mut scopes: Vec<Scoped<'a, M>> = Vec::with_capacity(1);
    for (name, scope, item) in items {
        let item = Measured::new(item);
        match scopes.iter_mut().find(|s| s.is(name, scope)) {
            Some(group) => group.items.push(item),
            None => scopes.push(Scoped {
                name,
                scope,
                items: vec![item],
            }),
        }
    }
    scopes
}

/// An `Export{Trace,Logs}ServiceRequest` payload: `scopes` under `resource`.
pub(super) fn payload<M: Message>(resource: &ExportResource, scopes: &[Scoped<'_, M>]) -> Vec<u8> {
    Request(Resourced { resource, scopes }).to_bytes()
}

/// The request: one resource's signals at tag 1.
struct Request<R>(R);

impl<R: Message> Message for Request<R> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(1, &self.0);
    }
}

/// `ResourceSpans` / `ResourceLogs`.
struct Resourced<'r, 'a, M> {
    resource: &'r ExportResource,
    scopes: &'r [Scoped<'a, M>],
}

impl<M: Message> Message for Resourced<'_, '_, M> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(1, self.resource);
        for scope in self.scopes {
            out.message(2, scope);
        }
        string(out, 3, self.resource.schema_url());
    }
}

/// `ScopeSpans` / `ScopeLogs`: the items of one scope.
pub(super) struct Scoped<'a, M> {
    name: &'a str,
    scope: &'a InstrumentationScope,
    items: Vec<Measured<M>>,
}

impl<M> Scoped<'_, M> {
    fn is(&self, name: &str, scope: &InstrumentationScope) -> bool {
        self.name == name
            && self.scope.version() == scope.version()
            && self.scope.schema_url() == scope.schema_url()
            && self.scope.attributes().eq(scope.attributes())
    }
}

impl<M: Message> Message for Scoped<'_, M> {
    fn write<O: Out>(&self, out: &mut O) {
        out.message(
            1,
            &Scope {
                name: self.name,
                scope: self.scope,
            },
        );
        for item in &self.items {
            out.message(2, item);
        }
        string(out, 3, self.scope.schema_url().unwrap_or_default());
    }
}

/// `InstrumentationScope`, named `name`.
struct Scope<'a> {
    name: &'a str,
    scope: &'a InstrumentationScope,
}

impl Message for Scope<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        string(out, 1, self.name);
        string(out, 2, self.scope.version().unwrap_or_default());
        for attribute in self.scope.attributes() {
            out.message(3, &Attr(attribute));
        }
    }
}

/// A message with its length, measured once: a batch's spans and records
/// would otherwise be measured again at every enclosing level.
struct Measured<M> {
    message: M,
    len: usize,
}

impl<M: Message> Measured<M> {
    fn new(message: M) -> Self {
        let len = measure(&message);
        Self { message, len }
    }
}

impl<M: Message> Message for Measured<M> {
    fn encoded_len(&self) -> usize {
        self.len
    }

    fn write<O: Out>(&self, out: &mut O) {
        self.message.write(out);
    }
}
