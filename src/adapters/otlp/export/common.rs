//! The OTLP messages spans and log records share (`opentelemetry.proto.
//! common.v1` and `resource.v1`): values, attributes, the resource and the
//! instrumentation scope.

use opentelemetry::logs::AnyValue as LogValue;
use opentelemetry::{Array, Key, KeyValue, Value};
use opentelemetry_sdk::Resource;

use super::proto::{
    Message, Out, bool_always, bytes_always, double_always, int64_always, string, string_always,
    uint,
};

/// `AnyValue` from an attribute value.
pub(super) struct AttrValue<'a>(pub &'a Value);

impl Message for AttrValue<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        match self.0 {
            Value::Bool(v) => Scalar::Bool(*v).write(out),
            Value::I64(v) => Scalar::Int(*v).write(out),
            Value::F64(v) => Scalar::Double(*v).write(out),
            Value::String(v) => Scalar::Str(v.as_str()).write(out),
            Value::Array(array) => out.message(5, &ArrayOf(array)),
            // `Value` is non-exhaustive; a kind added later is sent as its
            // text rather than dropped.
            other => Scalar::Str(&other.as_str()).write(out),
        }
    }
}

/// `AnyValue` holding one scalar.
pub(super) enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
}

impl Message for Scalar<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        match *self {
            Self::Str(v) => string_always(out, 1, v),
            Self::Bool(v) => bool_always(out, 2, v),
            Self::Int(v) => int64_always(out, 3, v),
            Self::Double(v) => double_always(out, 4, v),
        }
    }
}

/// `ArrayValue` from an attribute array.
struct ArrayOf<'a>(&'a Array);

impl Message for ArrayOf<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        match self.0 {
            Array::Bool(values) => values
                .iter()
                .for_each(|v| out.message(1, &Scalar::Bool(*v))),
            Array::I64(values) => values.iter().for_each(|v| out.message(1, &Scalar::Int(*v))),
            Array::F64(values) => values
                .iter()
                .for_each(|v| out.message(1, &Scalar::Double(*v))),
            Array::String(values) => values
                .iter()
                .for_each(|v| out.message(1, &Scalar::Str(v.as_str()))),
            other => out.message(1, &Scalar::Str(&other.to_string())),
        }
    }
}

/// `KeyValue` with a fixed key.
pub(super) struct Field<'a>(pub &'static str, pub Scalar<'a>);

impl Message for Field<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        string(out, 1, self.0);
        out.message(2, &self.1);
    }
}

/// `KeyValue` from an attribute.
pub(super) struct Attr<'a>(pub &'a KeyValue);

impl Message for Attr<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        string(out, 1, self.0.key.as_str());
        out.message(2, &AttrValue(&self.0.value));
    }
}

/// `AnyValue` from a log record's body or attribute value.
pub(super) struct LogAnyValue<'a>(pub &'a LogValue);

impl Message for LogAnyValue<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        match self.0 {
            LogValue::Int(v) => Scalar::Int(*v).write(out),
            LogValue::Double(v) => Scalar::Double(*v).write(out),
            LogValue::String(v) => Scalar::Str(v.as_str()).write(out),
            LogValue::Boolean(v) => Scalar::Bool(*v).write(out),
            LogValue::Bytes(v) => bytes_always(out, 7, v),
            LogValue::ListAny(values) => out.message(5, &LogList(values)),
            LogValue::Map(map) => out.message(6, &LogMap(map)),
            // Non-exhaustive: a kind added later is sent as its debug text.
            other => Scalar::Str(&format!("{other:?}")).write(out),
        }
    }
}

/// `ArrayValue` from a log value list.
struct LogList<'a>(&'a [LogValue]);

impl Message for LogList<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        for value in self.0 {
            out.message(1, &LogAnyValue(value));
        }
    }
}

/// `KeyValueList` from a log value map.
struct LogMap<'a>(&'a std::collections::HashMap<Key, LogValue>);

impl Message for LogMap<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        for (key, value) in self.0 {
            out.message(1, &LogAttr(key, value));
        }
    }
}

/// `KeyValue` from a log record attribute.
pub(super) struct LogAttr<'a>(pub &'a Key, pub &'a LogValue);

impl Message for LogAttr<'_> {
    fn write<O: Out>(&self, out: &mut O) {
        string(out, 1, self.0.as_str());
        out.message(2, &LogAnyValue(self.1));
    }
}

/// The resource every exported batch is sent under, kept by the exporter
/// from the provider's `set_resource` call.
#[derive(Debug, Default, Clone)]
pub(super) struct ExportResource {
    attributes: Vec<KeyValue>,
    schema_url: String,
}

impl ExportResource {
    pub(super) fn schema_url(&self) -> &str {
        &self.schema_url
    }
}

impl From<&Resource> for ExportResource {
    fn from(resource: &Resource) -> Self {
        Self {
            attributes: resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

impl Message for ExportResource {
    fn write<O: Out>(&self, out: &mut O) {
        for attribute in &self.attributes {
            out.message(1, &Attr(attribute));
        }
    }
}

/// A `uint32` count field.
pub(super) fn count<O: Out>(out: &mut O, tag: u32, value: u32) {
    uint(out, tag, u64::from(value));
}
