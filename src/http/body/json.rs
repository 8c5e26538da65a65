//! A JSON payload type for the admin endpoints whose errors name the field
//! at fault.
//!
//! poem-openapi's own `Json<T>` reports a missing or mistyped field as, for
//! example, `Type "string" expects an input value`, without saying which
//! field; [`JsonBody`] keeps the typed schema in the OpenAPI document but
//! parses field by field, so the 400 says `sha is required` or
//! `duration_s must be a whole number of seconds (0 or more), not a string`.

use poem::Request;
use poem::RequestBody;
use poem::error::ReadBodyError;
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::{Map, Value};

use super::limit::MAX_ADMIN_BODY_BYTES;

/// A body type read from a JSON object field by field (see the module
/// documentation). The type's poem-openapi schema describes the body in the
/// document; `from_fields` must accept exactly what the schema describes.
pub trait FromJsonFields: Type + Sized {
    /// Builds the value from the body's top-level object.
    ///
    /// # Errors
    /// A message naming the first field at fault.
    fn from_fields(fields: &JsonFields) -> Result<Self, String>;
}

/// The top-level object of a JSON body.
#[derive(Debug)]
pub struct JsonFields(Map<String, Value>);

impl JsonFields {
    /// Parses `bytes` as a JSON object.
    ///
    /// # Errors
    /// A message for an empty body, malformed JSON, or a value that is not
    /// an object.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err("the request body is empty; expected a JSON object".to_owned());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(other) => Err(format!(
                "the request body must be a JSON object, not {}",
                kind(&other)
            )),
            Err(err) => Err(format!("the request body is not valid JSON: {err}")),
        }
    }

    /// A field that must be present and not null.
    ///
    /// # Errors
    /// `{name} is required` when absent or null; `{name} must be {expected}`
    /// when of the wrong type.
    pub fn required<T: FieldValue>(&self, name: &str, expected: &str) -> Result<T, String> {
        self.optional(name, expected)?
            .ok_or_else(|| format!("{name} is required"))
    }

    /// A field that may be absent or null.
    ///
    /// # Errors
    /// `{name} must be {expected}` when present with the wrong type.
    pub fn optional<T: FieldValue>(&self, name: &str, expected: &str) -> Result<Option<T>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::from_json(value)
                .map(Some)
                .ok_or_else(|| format!("{name} must be {expected}, not {}", kind(value))),
        }
    }

    /// A field that may also be spelled `alias`; giving both is refused as
    /// ambiguous.
    ///
    /// # Errors
    /// As [`JsonFields::optional`], or when both spellings are present.
    pub fn optional_with_alias<T: FieldValue>(
        &self,
        name: &str,
        alias: &str,
        expected: &str,
    ) -> Result<Option<T>, String> {
        let primary = self.optional(name, expected)?;
        let aliased = self.optional(alias, expected)?;
        match (primary, aliased) {
            (Some(_), Some(_)) => Err(format!("give either {name} or its alias {alias}, not both")),
            (primary, aliased) => Ok(primary.or(aliased)),
        }
    }
}

/// A field type read strictly from JSON: no coercion between types (unlike
/// poem-openapi, which reads `123` as the string `"123"`), so the schema in
/// the document is exactly what is accepted.
pub trait FieldValue: Sized {
    /// The value, or `None` when `value` has another type or range.
    fn from_json(value: &Value) -> Option<Self>;
}

impl FieldValue for String {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FieldValue for u64 {
    /// Non-negative integers only: `-1` and `4.5` are refused.
    fn from_json(value: &Value) -> Option<Self> {
        value.as_u64()
    }
}

impl FieldValue for bool {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FieldValue for Vec<String> {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_array()?.iter().map(String::from_json).collect()
    }
}

/// A JSON type's name with an article, for messages; values are never
/// echoed, so a message stays short whatever was sent.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON request body of type `T`, parsed with [`FromJsonFields`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: FromJsonFields + Send> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: FromJsonFields + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_ADMIN_BODY_BYTES)
            .await
            .map_err(|err| -> poem::Error {
                match err {
                    ReadBodyError::PayloadTooLarge => err.into(),
                    _ => ParseRequestPayloadError {
                        reason: "the request body could not be read".to_owned(),
                    }
                    .into(),
                }
            })?;
        let fields =
            JsonFields::parse(&bytes).map_err(|reason| ParseRequestPayloadError { reason })?;
        T::from_fields(&fields)
            .map(Self)
            .map_err(|reason| ParseRequestPayloadError { reason }.into())
    }
}

impl<'a, T: FromJsonFields + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // A missing Content-Type is read as JSON (a bare `curl -d` is the
        // likeliest sender); a different one is refused by name.
        if let Some(content_type) = request.content_type()
            && !<Self as Payload>::check_content_type(content_type)
        {
            return Err(ParseRequestPayloadError {
                reason: format!(
                    "Content-Type must be application/json, not {}",
                    content_type.chars().take(80).collect::<String>()
                ),
            }
            .into());
        }
        <Self as ParsePayload>::from_request(request, body).await
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;

    use super::*;

    #[derive(Debug, Object)]
    struct Sample {
        name: String,
        count: Option<u64>,
        #[oai(default)]
        tags: Vec<String>,
    }

    impl FromJsonFields for Sample {
        fn from_fields(fields: &JsonFields) -> Result<Self, String> {
            Ok(Self {
                name: fields.required("name", "a string")?,
                count: fields.optional_with_alias("count", "n", "a whole number")?,
                tags: fields
                    .optional("tags", "a list of strings")?
                    .unwrap_or_default(),
            })
        }
    }

    fn parse(body: &str) -> Result<Sample, String> {
        Sample::from_fields(&JsonFields::parse(body.as_bytes())?)
    }

    #[test]
    fn a_well_formed_body_parses() {
        let sample = parse(r#"{"name":"x","count":3,"tags":["a"],"extra":true}"#).expect("valid");
        assert_eq!(sample.name, "x");
        assert_eq!(sample.count, Some(3));
        assert_eq!(sample.tags, ["a"]);
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        assert_eq!(parse("{}").expect_err("missing"), "name is required");
        assert_eq!(
            parse(r#"{"name":null}"#).expect_err("null"),
            "name is required"
        );
        assert_eq!(
            parse(r#"{"name":1}"#).expect_err("wrong type"),
            "name must be a string, not a number"
        );
        assert_eq!(
            parse(r#"{"name":"x","count":-1}"#).expect_err("negative"),
            "count must be a whole number, not a number"
        );
        assert_eq!(
            parse(r#"{"name":"x","tags":[1]}"#).expect_err("bad item"),
            "tags must be a list of strings, not an array"
        );
        assert_eq!(
            parse(r#"{"name":"x","count":4.5}"#).expect_err("fraction"),
            "count must be a whole number, not a number"
        );
    }

    #[test]
    fn types_are_not_coerced() {
        for (body, field) in [
            (r#"{"name":123}"#, "name"),
            (r#"{"name":true}"#, "name"),
            (r#"{"name":"x","count":"3"}"#, "count"),
            (r#"{"name":"x","tags":"a"}"#, "tags"),
        ] {
            let err = parse(body).expect_err(body);
            assert!(
                err.starts_with(&format!("{field} must be")),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn an_alias_is_accepted_but_not_together_with_the_name() {
        assert_eq!(
            parse(r#"{"name":"x","n":2}"#).expect("alias").count,
            Some(2)
        );
        assert_eq!(
            parse(r#"{"name":"x","n":2,"count":2}"#).expect_err("both"),
            "give either count or its alias n, not both"
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_described() {
        assert_eq!(
            parse("").expect_err("empty"),
            "the request body is empty; expected a JSON object"
        );
        assert_eq!(
            parse("[1]").expect_err("array"),
            "the request body must be a JSON object, not an array"
        );
        let malformed = parse(r#"{"name": "x",}"#).expect_err("malformed");
        assert!(
            malformed.starts_with("the request body is not valid JSON: "),
            "{malformed}"
        );
    }

    #[test]
    fn messages_never_echo_the_value_sent() {
        let long = "y".repeat(10_000);
        let err = parse(&format!(r#"{{"name":"x","count":"{long}"}}"#)).expect_err("bad");
        assert!(err.len() < 100, "{err}");
    }
}
