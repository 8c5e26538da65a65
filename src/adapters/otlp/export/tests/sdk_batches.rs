//! The SDK batch exporters: their payloads decode, with
//! `opentelemetry-proto`, to exactly what that crate's own conversion (the
//! one `opentelemetry-otlp` sends) makes of the same batch; and they report
//! a failing collector.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prost::Message as _;

use super::super::common::ExportResource;
use super::super::{logs, trace};
use super::{build, collector_answering, resource};

fn every_kind_of_attribute() -> Vec<KeyValue> {
    vec![
        KeyValue::new("http.route", "/api/github/{path}"),
        KeyValue::new("chimney.cache_hit", false),
        KeyValue::new("http.response.status_code", 200_i64),
        KeyValue::new("negative", -42_i64),
        KeyValue::new("ratio", 0.25),
        KeyValue::new("empty", ""),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, i64::MAX]))),
        KeyValue::new("floats", Value::Array(Array::F64(vec![0.0, -1.5]))),
        KeyValue::new(
            "strings",
            Value::Array(Array::String(vec![
                StringValue::from("a"),
                StringValue::from(""),
            ])),
        ),
        KeyValue::new("long", "x".repeat(300)),
    ]
}

fn context(trace: u128, span: u64, remote: bool, state: TraceState) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        state,
    )
}

fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
    let start = SystemTime::now();
    SpanData {
        span_context: context(7, 8, false, TraceState::default()),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: start,
        end_time: start + Duration::from_micros(1500),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

fn spans() -> Vec<SpanData> {
    let chimney = InstrumentationScope::builder("chimney").build();
    let library = InstrumentationScope::builder("library")
        .with_version("1.2.3")
        .with_schema_url("https://example.test/schema")
        .with_attributes([KeyValue::new("scope.kind", "test")])
        .build();
    let state = TraceState::from_key_value([("vendor", "value")]).expect("trace state");

    let mut server = span("GET /api/github/{path}", &chimney);
    server.span_context = context(u128::MAX - 3, 0x1234, false, state.clone());
    server.parent_span_id = SpanId::from(0x99);
    server.parent_span_is_remote = true;
    server.span_kind = SpanKind::Server;
    server.attributes = every_kind_of_attribute();
    server.dropped_attributes_count = 3;
    server.status = Status::error("upstream failed");
    server.events.events.push(Event::new(
        "exception",
        SystemTime::now(),
        vec![KeyValue::new("exception.message", "boom")],
        1,
    ));
    server.events.dropped_count = 2;
    server.links.links.push(Link::new(
        context(5, 6, true, state),
        vec![KeyValue::new("link.kind", "follows")],
        4,
    ));
    server.links.dropped_count = 1;

    let mut fetch = span("chimney.github_fetch", &chimney);
    fetch.span_kind = SpanKind::Client;
    fetch.status = Status::Ok;
    fetch.parent_span_id = SpanId::from(0x1234);

    let mut other = span("library work", &library);
    other.span_kind = SpanKind::Producer;
    let mut consumer = span("consume", &library);
    consumer.span_kind = SpanKind::Consumer;
    vec![server, fetch, other, consumer]
}

/// Sorted by scope name: `opentelemetry-proto` groups through a hash map.
fn by_scope_name<T>(groups: &mut [T], name: impl Fn(&T) -> String) {
    groups.sort_by_key(|g| name(g));
}

#[test]
fn span_batches_decode_to_what_opentelemetry_proto_makes_of_them() {
    let resource = resource();
    let batch = spans();
    let ours = trace::payload(&ExportResource::from(&resource), &batch);
    let mut decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
    let mut expected = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            batch,
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    for request in [&mut decoded, &mut expected] {
        for resource_spans in &mut request.resource_spans {
            by_scope_name(&mut resource_spans.scope_spans, |s| {
                s.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default()
            });
        }
    }
    assert_eq!(decoded, expected);
    assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2);
}

#[test]
fn an_empty_span_batch_is_a_valid_request() {
    let ours = trace::payload(&ExportResource::from(&resource()), &[]);
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
    assert_eq!(decoded.resource_spans.len(), 1);
    assert!(decoded.resource_spans[0].scope_spans.is_empty());
}

#[test]
fn log_batches_decode_to_what_opentelemetry_proto_makes_of_them() {
    let provider = SdkLoggerProvider::builder().build();
    let chimney_scope = InstrumentationScope::builder("chimney").build();
    let library_scope = InstrumentationScope::builder("library")
        .with_version("0.1.0")
        .with_attributes([KeyValue::new("scope.kind", "test")])
        .build();
    let chimney = provider.logger_with_scope(chimney_scope.clone());
    let library = provider.logger_with_scope(library_scope.clone());

    let mut request = chimney.create_log_record();
    request.set_timestamp(SystemTime::now());
    request.set_observed_timestamp(SystemTime::now());
    request.set_severity_number(Severity::Info);
    request.set_severity_text("INFO");
    request.set_body(AnyValue::from("request"));
    request.add_attributes([
        ("method", AnyValue::from("GET")),
        ("status", AnyValue::Int(200)),
        ("negative", AnyValue::Int(-7)),
        ("latency_ms", AnyValue::Double(0.125)),
        ("cache_hit", AnyValue::Boolean(false)),
        ("empty", AnyValue::from("")),
    ]);
    request.set_trace_context(
        TraceId::from(0xabcdef_u128),
        SpanId::from(0x42_u64),
        Some(TraceFlags::SAMPLED),
    );

    let mut bridged = chimney.create_log_record();
    bridged.set_observed_timestamp(SystemTime::now());
    bridged.set_target("chimney::cache");
    bridged.set_event_name("cache invalidated");
    bridged.set_severity_number(Severity::Warn);
    bridged.set_body(AnyValue::ListAny(Box::new(vec![
        AnyValue::Int(1),
        AnyValue::Bytes(Box::new(vec![0, 1, 2])),
    ])));
    bridged.add_attribute(
        "details",
        AnyValue::Map(Box::new(HashMap::from([(
            Key::from("keys"),
            AnyValue::Int(3),
        )]))),
    );
    bridged.add_attribute("raw", AnyValue::Bytes(Box::default()));

    let mut bare = library.create_log_record();
    bare.set_observed_timestamp(SystemTime::now());

    let records = [
        (&request, &chimney_scope),
        (&bridged, &chimney_scope),
        (&bare, &library_scope),
        (&request, &chimney_scope),
    ];
    let batch = LogBatch::new(&records);
    let resource = resource();
    let ours = logs::payload(&ExportResource::from(&resource), &batch);
    let mut decoded = ExportLogsServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
    let mut expected = ExportLogsServiceRequest {
        resource_logs: group_logs_by_resource_and_scope(
            &batch,
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    for request in [&mut decoded, &mut expected] {
        for resource_logs in &mut request.resource_logs {
            by_scope_name(&mut resource_logs.scope_logs, |s| {
                s.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default()
            });
        }
    }
    assert_eq!(decoded, expected);
    let names: Vec<_> = decoded.resource_logs[0]
        .scope_logs
        .iter()
        .map(|s| {
            s.scope
                .as_ref()
                .map(|s| s.name.as_str())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["chimney", "chimney::cache", "library"]);
}

#[test]
fn spans_are_posted_as_protobuf_and_a_refusal_is_an_error() {
    let (port, bodies) = collector_answering(200);
    let mut spans_out = build(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).spans;
    spans_out.set_resource(&resource());
    let result = futures::executor::block_on(spans_out.export(spans()));
    assert!(result.is_ok(), "{result:?}");
    let (_, body) = bodies
        .recv_timeout(Duration::from_secs(5))
        .expect("a request");
    let decoded = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf body");
    assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2);

    let (port, _bodies) = collector_answering(503);
    let logs_out = build(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).logs;
    let records: [(
        &opentelemetry_sdk::logs::SdkLogRecord,
        &InstrumentationScope,
    ); 0] = [];
    let result = futures::executor::block_on(logs_out.export(LogBatch::new(&records)));
    let error = result.expect_err("a 503 is a failed export").to_string();
    assert!(error.contains("503"), "{error}");
}

#[test]
fn an_absent_collector_fails_fast_without_leaking_the_endpoint() {
    // A port nothing listens on: bind, note it, close it.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let spans_out = build(
        &format!("http://user:hunter2@127.0.0.1:{port}"),
        Duration::from_secs(3),
    )
    .spans;
    let started = Instant::now();
    let error = futures::executor::block_on(spans_out.export(spans()))
        .expect_err("nothing listens")
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(error.contains("traces"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(!error.contains("127.0.0.1"), "{error}");
}
