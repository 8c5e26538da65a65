//! Telemetry on the wire (CONTRACT 8): spans, metrics and log records as the
//! fake OTLP collector receives them, `X-Trace-ID` on every response,
//! caught panics, and `GET /api/metrics` parsed as Prometheus text. The
//! standard `OTEL_*` variables, on the real binary: `standard_env`.

mod standard_env;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chimney_testkit::otlp::{self, Attr, ReceivedSpan, attr};
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use reqwest::Method;

use crate::helpers::{TestApp, TestResponse, spawn_app};
use crate::otlp_pipeline::{TEST_SERVICE_NAME, pipeline};

const README: &str = "/contents/README.md";

/// A W3C `traceparent` with fresh ids: (header, trace id, parent span id).
fn traceparent() -> (String, String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let trace_id = format!("{:016x}{:016x}", nanos as u64 | 1, n ^ 0x5eed);
    let span_id = format!("{:016x}", (nanos as u64).rotate_left(17) | 1);
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

fn assert_trace_id(response: &TestResponse, context: &str) -> String {
    let id = response
        .header("x-trace-id")
        .unwrap_or_else(|| panic!("{context}: no X-Trace-ID"))
        .to_owned();
    assert_eq!(id.len(), 32, "{context}: X-Trace-ID {id:?}");
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit()),
        "{context}: {id:?}"
    );
    assert_ne!(id, "0".repeat(32), "{context}: invalid trace id");
    id
}

fn require_export() -> bool {
    let exporting = pipeline().is_exporting();
    if !exporting {
        eprintln!("skipping: another tracing subscriber was installed before the OTLP pipeline");
    }
    exporting
}

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

async fn scrape(app: &TestApp) -> Exposition {
    let response = app.get("/api/metrics").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let content_type = response.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content-type {content_type:?}"
    );
    let text = response.text();
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("{text}");
    }
    openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("unparseable metrics ({e:?}):\n{text}"))
}

/// Every sample of `family` as (labels, value).
fn samples<'a>(
    scrape: &'a Exposition,
    family: &str,
) -> Vec<(HashMap<String, String>, &'a PrometheusValue)> {
    let Some(family) = scrape.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .map(|set| {
                    set.iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<HashMap<_, _>>()
                })
                .unwrap_or_default();
            (labels, &s.value)
        })
        .collect()
}

/// The value of the counter or gauge sample of `family` whose labels
/// include `labels`.
fn sample(scrape: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, family)
        .into_iter()
        .filter(|(have, _)| {
            labels
                .iter()
                .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
        .find_map(|(_, value)| match value {
            PrometheusValue::Counter(c) => Some(c.value.as_f64()),
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => Some(n.as_f64()),
            _ => None,
        })
}

/// The route labels of requests to `README` and `/api/no/such/page`: the
/// proxy's template is among them, and no raw path is.
fn assert_route_templates_only(routes: &[String]) {
    assert!(
        routes.iter().any(|r| r == "/api/github/{path}"),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("README") && !r.contains("such")),
        "raw paths used as route labels: {routes:?}"
    );
}

fn span_named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.span.name == name)
}

#[tokio::test]
async fn every_response_carries_a_trace_id_even_errors_and_panics() {
    let app = spawn_app().await;
    let (header, trace_id, _) = traceparent();

    let ok = app.get("/healthz").await;
    let not_found = app.get("/api/no/such/page").await;
    let not_allowed = app
        .request(Method::POST, &app.github_path(README), &[])
        .await;
    let bad = app.raw_request("GET", "/api/github/a//b").await;
    let panicked = app.get("/api/test/panic").await;
    let continued = app
        .get_with_headers("/api/no/such/page", &[("traceparent", header.as_str())])
        .await;

    assert_eq!(ok.status, 200);
    assert_trace_id(&ok, "200");
    not_found.assert_problem(404);
    assert_trace_id(&not_found, "404");
    not_allowed.assert_problem(405);
    assert_trace_id(&not_allowed, "405");
    assert_eq!(bad.status, 400);
    let bad_id = bad.header("x-trace-id").expect("X-Trace-ID on a 400");
    assert_eq!(bad_id.len(), 32);
    panicked.assert_problem(500);
    assert_trace_id(&panicked, "panic");
    assert_eq!(assert_trace_id(&continued, "traceparent"), trace_id);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_is_counted_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let (header, trace_id, _) = traceparent();

    let panicked = app
        .get_with_headers("/api/test/panic", &[("traceparent", header.as_str())])
        .await;
    let after = app.get("/healthz").await;
    let metrics = scrape(&app).await;

    panicked.assert_problem(500);
    assert!(
        !panicked.text().contains("on purpose"),
        "the panic message leaked to the client: {}",
        panicked.text()
    );
    assert_eq!(
        after.status, 200,
        "the server stopped serving after a panic"
    );
    assert_eq!(sample(&metrics, "chimney_panics_total", &[]), Some(1.0));
    assert_eq!(
        sample(
            &metrics,
            "chimney_requests_total",
            &[("route", "/api/test/panic"), ("status_class", "5xx")]
        ),
        Some(1.0)
    );

    if !require_export() {
        return;
    }
    let p = pipeline();
    let span = p
        .eventually(|c| {
            c.trace(&trace_id)
                .into_iter()
                .find(|s| s.span.name == "GET /api/test/panic")
        })
        .await
        .expect("the panicking request's span reached the collector");
    let status = span.span.status.clone().expect("span status");
    assert_eq!(status.code, 2, "span status should be ERROR: {status:?}");
    let log = p
        .eventually(|c| {
            c.log_records()
                .into_iter()
                .find(|r| otlp::hex(&r.trace_id) == trace_id && r.severity_text == "ERROR")
        })
        .await
        .expect("an ERROR log record for the panic");
    let Some(Attr::Str(stack)) = attr(&log.attributes, "stack") else {
        panic!("the panic log has no stack: {log:?}");
    };
    assert!(
        !stack.is_empty() && stack.len() <= 4096,
        "stack of {} bytes",
        stack.len()
    );
    assert!(stack.contains("on purpose"), "{stack}");
}

#[tokio::test]
async fn a_traceparent_is_continued_by_the_server_span_and_its_github_fetch_child() {
    if !require_export() {
        return;
    }
    let app = spawn_app().await;
    let (header, trace_id, parent_id) = traceparent();

    let response = app
        .get_github_with_headers(README, &[("traceparent", header.as_str())])
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "MISS");
    assert_eq!(assert_trace_id(&response, "proxy"), trace_id);
    let spans = pipeline()
        .eventually(|c| {
            let spans = c.trace(&trace_id);
            let server = span_named(&spans, "GET /api/github/{path}")?;
            spans
                .iter()
                .any(|s| {
                    s.span.name == "chimney.github_fetch" && s.parent_span_id() == server.span_id()
                })
                .then(|| spans.clone())
        })
        .await
        .expect("the server span and its chimney.github_fetch child reached the collector");

    let server = span_named(&spans, "GET /api/github/{path}").expect("server span");
    assert_eq!(
        server.parent_span_id(),
        parent_id,
        "parent from traceparent"
    );
    assert_eq!(server.span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        server.attr("http.request.method"),
        Some(Attr::Str("GET".into()))
    );
    assert_eq!(
        server.attr("http.route"),
        Some(Attr::Str("/api/github/{path}".into()))
    );
    assert_eq!(
        server.attr("http.response.status_code"),
        Some(Attr::Int(200))
    );
    assert_eq!(
        server.attr("url.path"),
        Some(Attr::Str(app.github_path(README)))
    );
    assert_eq!(server.attr("chimney.cache_hit"), Some(Attr::Bool(false)));
    assert_eq!(
        server.attr("chimney.cache_tier"),
        Some(Attr::Str("none".into()))
    );
    let github_path = format!("/repos/{}{README}", app.repo);
    assert!(
        matches!(server.attr("chimney.github_path"), Some(Attr::Str(p)) if p.ends_with(README) && p.starts_with("/repos/")),
        "chimney.github_path: {:?}",
        server.attr("chimney.github_path")
    );
    assert_eq!(
        attr(&server.resource, "service.name"),
        Some(Attr::Str(TEST_SERVICE_NAME.into()))
    );

    let fetch = spans
        .iter()
        .find(|s| s.span.name == "chimney.github_fetch")
        .expect("fetch span");
    assert_eq!(fetch.parent_span_id(), server.span_id());
    assert_eq!(fetch.span.kind, 3, "SPAN_KIND_CLIENT");
    assert!(
        matches!(fetch.attr("github.api.path"), Some(Attr::Str(p)) if p.starts_with("/repos/") && p.ends_with(README)),
        "github.api.path: {:?} (expected like {github_path})",
        fetch.attr("github.api.path")
    );
    assert_eq!(fetch.attr("github.api.status_code"), Some(Attr::Int(200)));
    assert_eq!(fetch.attr("github.conditional"), Some(Attr::Bool(false)));
    assert_eq!(fetch.attr("github.not_modified"), Some(Attr::Bool(false)));
}

#[tokio::test]
async fn a_failed_github_fetch_marks_the_fetch_and_the_server_span_as_errors() {
    if !require_export() {
        return;
    }
    let app = spawn_app().await;
    app.github.fail_with(&app.upstream(README), 500);
    let (header, trace_id, _) = traceparent();

    let response = app
        .get_github_with_headers(README, &[("traceparent", header.as_str())])
        .await;

    assert_eq!(response.status, 502, "{}", response.text());
    let spans = pipeline()
        .eventually(|c| {
            let spans = c.trace(&trace_id);
            (span_named(&spans, "GET /api/github/{path}").is_some()
                && span_named(&spans, "chimney.github_fetch").is_some())
            .then_some(spans)
        })
        .await
        .expect("the server span and the fetch span reached the collector");
    let server = span_named(&spans, "GET /api/github/{path}").expect("server span");
    let fetch = span_named(&spans, "chimney.github_fetch").expect("fetch span");
    let status = server.span.status.clone().expect("server span status");
    assert_eq!(status.code, 2, "{status:?}");
    assert_eq!(status.message, "Bad Gateway");
    assert_eq!(
        server.attr("http.response.status_code"),
        Some(Attr::Int(502))
    );
    assert_eq!(fetch.parent_span_id(), server.span_id());
    assert_eq!(fetch.attr("github.api.status_code"), Some(Attr::Int(500)));
    assert_eq!(fetch.span.status.clone().map(|s| s.code), Some(2));
}

#[tokio::test]
async fn an_unsampled_traceparent_exports_the_log_record_but_no_span() {
    if !require_export() {
        return;
    }
    let app = spawn_app().await;
    let (header, trace_id, _) = traceparent();
    let unsampled = format!(
        "{}-00",
        header.strip_suffix("-01").expect("a sampled traceparent")
    );

    let response = app
        .get_github_with_headers(README, &[("traceparent", unsampled.as_str())])
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(assert_trace_id(&response, "unsampled"), trace_id);
    let p = pipeline();
    let log = p
        .eventually(|c| {
            c.log_records().into_iter().find(|r| {
                otlp::hex(&r.trace_id) == trace_id && attr(&r.attributes, "route").is_some()
            })
        })
        .await
        .expect("the request's log record reached the collector");
    assert_eq!(log.flags & 1, 0, "the record says the trace is not sampled");
    // After a flush of every signal, any span of this trace (the request's
    // or its GitHub fetch's) would have reached the collector.
    p.flush().await;
    assert!(
        p.collector.trace(&trace_id).is_empty(),
        "spans were exported for an unsampled trace: {:?}",
        p.collector
            .trace(&trace_id)
            .iter()
            .map(|s| s.span.name.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_invalidation_is_a_child_span_counting_the_keys_it_removed() {
    if !require_export() {
        return;
    }
    let app = crate::admin_client::spawn_admin_app().await;
    app.get_github(README).await;
    let (header, trace_id, _) = traceparent();

    let response = app
        .send(
            Method::POST,
            "/api/cache/invalidate",
            &[
                ("traceparent", header.as_str()),
                (
                    "authorization",
                    &crate::admin_client::bearer(crate::admin_client::INVALIDATE_TOKEN),
                ),
                ("content-type", "application/json"),
            ],
            r#"{"path":"/contents/","reason":"telemetry test"}"#,
        )
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    let spans = pipeline()
        .eventually(|c| {
            let spans = c.trace(&trace_id);
            let server = span_named(&spans, "POST /api/cache/invalidate")?;
            spans
                .iter()
                .any(|s| {
                    s.span.name == "chimney.cache.invalidate"
                        && s.parent_span_id() == server.span_id()
                })
                .then(|| spans.clone())
        })
        .await
        .expect("the invalidation span, a child of the server span, reached the collector");
    let invalidate = span_named(&spans, "chimney.cache.invalidate").expect("invalidate span");
    assert_eq!(
        invalidate.attr("chimney.cache.invalidated_keys"),
        Some(Attr::Int(1))
    );
}

#[tokio::test]
async fn a_cache_hit_marks_the_server_span_with_its_tier_and_logs_the_request() {
    if !require_export() {
        return;
    }
    let app = spawn_app().await;
    let (header, trace_id, _) = traceparent();

    app.get_github(README).await;
    let hit = app
        .get_github_with_headers(README, &[("traceparent", header.as_str())])
        .await;

    assert_eq!(hit.x_cache(), "HIT");
    let p = pipeline();
    let server = p
        .eventually(|c| {
            c.trace(&trace_id)
                .into_iter()
                .find(|s| s.span.name == "GET /api/github/{path}")
        })
        .await
        .expect("the hit's server span reached the collector");
    assert_eq!(server.attr("chimney.cache_hit"), Some(Attr::Bool(true)));
    assert_eq!(
        server.attr("chimney.cache_tier"),
        Some(Attr::Str("memory".into()))
    );
    assert!(
        p.collector
            .trace(&trace_id)
            .iter()
            .all(|s| s.span.name != "chimney.github_fetch"),
        "a hit must not fetch"
    );

    let log = p
        .eventually(|c| {
            c.log_records().into_iter().find(|r| {
                otlp::hex(&r.trace_id) == trace_id && attr(&r.attributes, "route").is_some()
            })
        })
        .await
        .expect("the request's log record, with its trace id, reached the collector");
    assert_eq!(otlp::hex(&log.span_id), server.span_id());
    assert_eq!(
        attr(&log.attributes, "route"),
        Some(Attr::Str("/api/github/{path}".into()))
    );
    assert_eq!(
        attr(&log.attributes, "method"),
        Some(Attr::Str("GET".into()))
    );
    assert_eq!(attr(&log.attributes, "status"), Some(Attr::Int(200)));
    assert_eq!(attr(&log.attributes, "cache_hit"), Some(Attr::Bool(true)));
    assert_eq!(
        attr(&log.attributes, "cache_tier"),
        Some(Attr::Str("memory".into()))
    );
    // The ids are the record's own fields (found by trace id above), where
    // collectors join logs to traces; they are not repeated as attributes.
    assert_eq!(attr(&log.attributes, "trace_id"), None);
    assert_eq!(log.severity_text, "INFO");
    assert!(log.time_unix_nano > 0, "the record carries its time");
    assert!(matches!(attr(&log.attributes, "bytes"), Some(Attr::Int(n)) if n > 0));
    assert!(matches!(attr(&log.attributes, "latency_ms"), Some(Attr::Double(ms)) if ms >= 0.0));
}

#[tokio::test]
async fn the_contract_metric_names_reach_the_collector_labelled_by_route_template() {
    if !require_export() {
        return;
    }
    let app = spawn_app().await;
    app.get_github(README).await;
    app.get_github(README).await;
    app.get("/api/no/such/page").await;

    let expected = [
        "chimney.requests",
        "chimney.request.duration",
        "chimney.cache.hits",
        "chimney.cache.misses",
        "chimney.cache.entries",
        "chimney.upstream.requests",
        "chimney.github.rate_limit.remaining",
        "chimney.github.rate_limit.reset",
        "chimney.dragonfly.connected",
    ];
    let p = pipeline();
    let names = p
        .eventually(|c| {
            let names = c.metric_names();
            expected.iter().all(|n| names.contains(*n)).then_some(names)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "metrics missing at the collector; got {:?}",
                p.collector.metric_names()
            )
        });
    assert!(names.iter().all(|n| n.starts_with("chimney.")), "{names:?}");

    let routes: Vec<String> = p
        .collector
        .metrics()
        .iter()
        .filter(|m| m.name == "chimney.requests")
        .flat_map(otlp::data_point_attributes)
        .filter_map(|attrs| match attr(&attrs, "route") {
            Some(Attr::Str(route)) => Some(route),
            _ => None,
        })
        .collect();
    assert_route_templates_only(&routes);
}

#[tokio::test]
async fn the_metrics_endpoint_counts_requests_by_route_template_and_cache_outcome() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert!(sample(&before, "chimney_uptime_seconds", &[]).is_some());

    app.get_github(README).await;
    app.get_github(README).await;
    app.get("/api/no/such/page").await;
    let after = scrape(&app).await;

    let requests = |route, class| {
        sample(
            &after,
            "chimney_requests_total",
            &[("route", route), ("status_class", class)],
        )
    };
    assert_eq!(requests("/api/github/{path}", "2xx"), Some(2.0));
    assert_eq!(requests("/api/{unknown}", "4xx"), Some(1.0));
    assert_eq!(
        sample(&after, "chimney_cache_hits_total", &[("tier", "memory")]),
        Some(1.0)
    );
    assert_eq!(sample(&after, "chimney_cache_misses_total", &[]), Some(1.0));
    assert_eq!(
        sample(
            &after,
            "chimney_upstream_requests_total",
            &[("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert!(sample(&after, "chimney_cache_entries", &[]).is_some_and(|n| n >= 1.0));
    assert!(sample(&after, "chimney_github_rate_limit_remaining", &[]).is_some());
    assert!(sample(&after, "chimney_dragonfly_connected", &[]).is_some());

    let latency = samples(&after, "chimney_request_latency_ms")
        .into_iter()
        .find(|(labels, _)| labels.get("route").map(String::as_str) == Some("/api/github/{path}"))
        .map(|(_, value)| value.clone())
        .expect("latency histogram for the proxy route");
    let PrometheusValue::Histogram(histogram) = &latency else {
        panic!("chimney_request_latency_ms is not a histogram: {latency:?}");
    };
    let bounds: Vec<f64> = histogram.buckets.iter().map(|b| b.upper_bound).collect();
    assert_eq!(bounds[..5], [5.0, 25.0, 100.0, 500.0, 2000.0]);
    assert_eq!(histogram.count, Some(2));

    let routes: Vec<String> = after
        .families
        .keys()
        .flat_map(|family| samples(&after, family))
        .filter_map(|(labels, _)| labels.get("route").cloned())
        .collect();
    assert_route_templates_only(&routes);
}
