//! The OTLP messages spans and log records share (`opentelemetry.proto.
//! common.v1` and `resource.v1`): values, attributes, the resource and the
//! instrumentation scope.

use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;

use super::proto::{Message, Out, bool_always, double_always, int64_always, string, string_always};

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

/// The resource every exported batch is sent under, copied once from the
/// SDK's `Resource` when the exporter starts.
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
