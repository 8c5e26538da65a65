//! Request records: the span and log record written from one record are
//! exactly what `opentelemetry-proto` makes of the equivalent SDK span and
//! log record, and the exporter thread batches, flushes, stops and sheds
//! load without ever blocking the caller.

use std::borrow::Cow;
use std::io::Read as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::logs::{LogBatch, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::super::BatchOptions;
use super::super::common::ExportResource;
use super::super::request::{logs_payload, spans_payload};
use super::{build, collector_answering, resource, start, target};
use crate::adapters::otlp::health::ExportHealth;
use crate::adapters::otlp::target::Compression;
use crate::ports::{RemoteParent, RequestExport as _, RequestRecord};

fn record(n: u64) -> RequestRecord {
    RequestRecord {
        trace_id: TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_0000 + u128::from(n))
            .to_bytes(),
        span_id: SpanId::from(0x1000 + n).to_bytes(),
        parent: Some(RemoteParent {
            span_id: SpanId::from(0xb7ad_6b71_6920_3331).to_bytes(),
            trace_state: Some("vendor=value".to_owned()),
        }),
        sampled: true,
        method: Cow::Borrowed("GET"),
        route: "/api/github/{path}",
        url_path: "/api/github/contents/README.md".to_owned(),
        target: "/api/github/contents/README.md?ref=main".to_owned(),
        status: 502,
        start: SystemTime::now(),
        latency: Duration::from_micros(1234),
        cache_hit: false,
        cache_tier: "none",
        github_path: Some("/repos/o/r/contents/README.md".to_owned()),
        bytes: 321,
        error: Some(Cow::Borrowed("Bad Gateway")),
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("chimney").build()
}

/// The SDK span a tracer would have recorded for `r`.
fn sdk_span(r: &RequestRecord) -> SpanData {
    let parent = r.parent.as_ref().expect("a parent");
    let state = TraceState::from_key_value([("vendor", "value")]).expect("trace state");
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(r.trace_id),
            SpanId::from_bytes(r.span_id),
            TraceFlags::SAMPLED,
            false,
            state,
        ),
        parent_span_id: SpanId::from_bytes(parent.span_id),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Owned(format!("{} {}", r.method, r.route)),
        start_time: r.start,
        end_time: r.start + r.latency,
        attributes: vec![
            KeyValue::new("http.request.method", r.method.clone()),
            KeyValue::new("http.route", r.route),
            KeyValue::new("url.path", r.url_path.clone()),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
            KeyValue::new("chimney.cache_hit", r.cache_hit),
            KeyValue::new("chimney.cache_tier", r.cache_tier),
            KeyValue::new(
                "chimney.github_path",
                r.github_path.clone().expect("a GitHub path"),
            ),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::error("Bad Gateway"),
        instrumentation_scope: scope(),
    }
}

#[test]
fn a_request_record_is_the_span_opentelemetry_proto_makes_of_the_same_span() {
    let resource = resource();
    let records = [record(1), record(2)];
    let ours = spans_payload(&ExportResource::from(&resource), &scope(), &records);
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
    let expected = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            records.iter().map(sdk_span).collect(),
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    assert_eq!(decoded, expected);
}

#[test]
fn a_request_record_is_the_log_record_opentelemetry_proto_makes_of_the_same_record() {
    let resource = resource();
    let r = record(3);
    let provider = SdkLoggerProvider::builder().build();
    let scope = scope();
    let mut sdk = provider
        .logger_with_scope(scope.clone())
        .create_log_record();
    sdk.set_timestamp(r.start + r.latency);
    sdk.set_observed_timestamp(r.start + r.latency);
    sdk.set_severity_number(Severity::Info);
    sdk.set_severity_text("INFO");
    sdk.set_body(AnyValue::from("request"));
    sdk.add_attributes([
        ("method", AnyValue::from("GET")),
        ("route", AnyValue::from(r.route)),
        (
            "path",
            AnyValue::from("/api/github/contents/README.md?ref=main"),
        ),
        ("status", AnyValue::Int(502)),
        ("latency_ms", AnyValue::Double(1.234)),
        ("cache_hit", AnyValue::Boolean(false)),
        ("cache_tier", AnyValue::from("none")),
        ("bytes", AnyValue::Int(321)),
    ]);
    sdk.set_trace_context(
        TraceId::from_bytes(r.trace_id),
        SpanId::from_bytes(r.span_id),
        Some(TraceFlags::SAMPLED),
    );

    let ours = logs_payload(
        &ExportResource::from(&resource),
        &scope,
        std::slice::from_ref(&r),
    );
    let decoded = ExportLogsServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
    let records = [(&sdk, &scope)];
    let expected = ExportLogsServiceRequest {
        resource_logs: group_logs_by_resource_and_scope(
            &LogBatch::new(&records),
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    assert_eq!(decoded, expected);
}

#[test]
fn an_unsampled_request_sends_its_log_record_but_no_span() {
    let mut unsampled = record(4);
    unsampled.sampled = false;
    unsampled.parent = None;
    unsampled.github_path = None;
    unsampled.error = None;
    let records = [unsampled, record(5)];
    let resource = ExportResource::from(&resource());
    let scope = scope();

    let spans = spans_payload(&resource, &scope, &records);
    let spans = ExportTraceServiceRequest::decode(spans.as_slice()).expect("valid protobuf");
    let sent: Vec<_> = spans.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_id, records[1].span_id);

    let logs = logs_payload(&resource, &scope, &records);
    let logs = ExportLogsServiceRequest::decode(logs.as_slice()).expect("valid protobuf");
    let logged = &logs.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].flags, 0, "not sampled");
    assert_eq!(logged[1].flags, 1, "sampled");
}

#[test]
fn the_exporter_posts_a_batch_on_flush_and_stops_on_shutdown() {
    let (port, posts) = collector_answering(200);
    let exporter = build(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
    for n in 0..3 {
        exporter.export(record(n));
    }
    assert!(exporter.force_flush(Duration::from_secs(5)));

    let mut received = Vec::new();
    for _ in 0..2 {
        received.push(
            posts
                .recv_timeout(Duration::from_secs(5))
                .expect("a post per signal"),
        );
    }
    received.sort();
    assert_eq!(received[0].0, "/v1/logs");
    assert_eq!(received[1].0, "/v1/traces");
    let logs = ExportLogsServiceRequest::decode(received[0].2.as_slice()).expect("logs");
    assert_eq!(logs.resource_logs[0].scope_logs[0].log_records.len(), 3);
    let spans = ExportTraceServiceRequest::decode(received[1].2.as_slice()).expect("spans");
    assert_eq!(spans.resource_spans[0].scope_spans[0].spans.len(), 3);

    assert!(exporter.shutdown(Duration::from_secs(5)));
    // After shutdown a record is dropped, quietly.
    exporter.export(record(9));
    assert!(!exporter.force_flush(Duration::from_millis(100)));
}

#[test]
fn a_silent_collector_never_blocks_the_caller_and_shutdown_gives_up_on_time() {
    // Accepts connections into its backlog and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let base = format!("http://127.0.0.1:{port}");
    let exporter = start(
        &target(&base, "/v1/traces", Duration::from_secs(3)),
        &target(&base, "/v1/logs", Duration::from_secs(3)),
        BatchOptions {
            delay: Duration::from_millis(10),
            max_batch: 1,
            queue: 4,
        },
        &Arc::new(ExportHealth::new()),
    );

    let started = Instant::now();
    for n in 0..1000 {
        exporter.export(record(n));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "handing over records took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    assert!(!exporter.shutdown(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(silent);
}

#[test]
fn each_signal_goes_to_its_own_url_with_its_headers_and_compression() {
    let (traces_port, traces_posts) = collector_answering(200);
    let (logs_port, logs_posts) = collector_answering(200);
    let mut traces = target(
        &format!("http://127.0.0.1:{traces_port}"),
        "/custom/spans",
        Duration::from_secs(5),
    );
    traces.headers.insert(
        "authorization",
        reqwest::header::HeaderValue::from_static("Bearer traces-token"),
    );
    traces.compression = Compression::Gzip;
    let mut logs = target(
        &format!("http://127.0.0.1:{logs_port}"),
        "/",
        Duration::from_secs(5),
    );
    logs.headers.insert(
        "x-scope-orgid",
        reqwest::header::HeaderValue::from_static("tenant-1"),
    );
    let health = Arc::new(ExportHealth::new());
    let exporter = start(
        &traces,
        &logs,
        BatchOptions {
            delay: Duration::from_millis(50),
            max_batch: 512,
            queue: 1024,
        },
        &health,
    );
    exporter.export(record(1));
    assert!(exporter.force_flush(Duration::from_secs(5)));

    let (path, head, body) = traces_posts
        .recv_timeout(Duration::from_secs(5))
        .expect("spans posted");
    assert_eq!(path, "/custom/spans");
    assert!(
        head.contains("\r\nauthorization: bearer traces-token"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-encoding: gzip"), "{head}");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_end(&mut unzipped)
        .expect("gzip");
    let spans = ExportTraceServiceRequest::decode(unzipped.as_slice()).expect("spans");
    assert_eq!(spans.resource_spans[0].scope_spans[0].spans.len(), 1);

    let (path, head, body) = logs_posts
        .recv_timeout(Duration::from_secs(5))
        .expect("logs posted");
    assert_eq!(path, "/");
    assert!(head.contains("\r\nx-scope-orgid: tenant-1"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    ExportLogsServiceRequest::decode(body.as_slice()).expect("plain protobuf logs");
    assert!(!health.is_failing());
    assert!(exporter.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_refusing_collector_is_reported_to_the_health_and_its_recovery_too() {
    let (refusing, _) = collector_answering(401);
    let (accepting, _) = collector_answering(200);
    let options = BatchOptions {
        delay: Duration::from_millis(20),
        max_batch: 512,
        queue: 1024,
    };
    let health = Arc::new(ExportHealth::new());
    let refused = target(
        &format!("http://127.0.0.1:{refusing}"),
        "/v1/traces",
        Duration::from_secs(5),
    );
    let exporter = start(&refused, &refused, options, &health);
    exporter.export(record(1));
    assert!(exporter.force_flush(Duration::from_secs(5)));
    assert!(health.is_failing());
    assert!(exporter.shutdown(Duration::from_secs(5)));

    let accepted = target(
        &format!("http://127.0.0.1:{accepting}"),
        "/v1/traces",
        Duration::from_secs(5),
    );
    let exporter = start(&accepted, &accepted, options, &health);
    exporter.export(record(2));
    assert!(exporter.force_flush(Duration::from_secs(5)));
    assert!(!health.is_failing());
    assert!(exporter.shutdown(Duration::from_secs(5)));
}
