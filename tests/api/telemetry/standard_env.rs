//! OpenTelemetry configured the standard way (CONTRACT 1 and 8), on the
//! real binary: each test starts `chimney` with its own `OTEL_*`
//! variables (the suite's in-process pipeline is installed once per test
//! binary, so variants need processes of their own), exports to fake
//! collectors, stops it with SIGTERM (the final flush) and reads what
//! arrived and what it logged.
//!
//! Every signal is covered on both of its paths where it has two: spans
//! and log records made by the SDK (the invalidation's span and log
//! record, start-up's record) go through `opentelemetry-otlp`; each
//! request's span and log record through the request exporter.

use std::process::Stdio;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use crate::helpers::{REQUEST_DEADLINE, init_test_process};
use chimney_testkit::otlp::{self as fake_otlp, Arrival, Mode, OtlpSink, Signal, attr};

const INVALIDATE_TOKEN: &str = "standard-env-invalidate-token";
const GENERIC_SECRET: &str = "generic-s3cret-0123";
const LOGS_SECRET: &str = "logs-s3cret-4567";
/// How long a test waits for something to reach a collector.
const ARRIVAL: Duration = Duration::from_secs(20);

/// Trace ids whose `TraceIdRatioBased` decision at 0.5 is known: the low
/// 63 bits of the last 8 bytes are 0 (sampled at any ratio above 0) or
/// 2^63 - 1 (sampled only at 1).
const LOW_TRACE: &str = "4bf92f3577b34da60000000000000001";
const HIGH_TRACE: &str = "4bf92f3577b34da6fffffffffffffffe";
const PARENT: &str = "00f067aa0ba902b7";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running chimney binary.
struct Chimney {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

/// What a stopped chimney printed.
struct Output {
    stdout: String,
    stderr: String,
    lines: Vec<Value>,
}

impl Output {
    /// The JSON lines logged to `target` at `level`.
    fn lines_of(&self, target: &str, level: &str) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["target"] == target && l["level"] == level)
            .collect()
    }

    /// Every warning or error from the OpenTelemetry crates themselves.
    fn sdk_lines(&self) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| {
                l["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("opentelemetry"))
                    && (l["level"] == "WARN" || l["level"] == "ERROR")
            })
            .collect()
    }

    fn errors(&self) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["level"] == "ERROR")
            .collect()
    }
}

impl Chimney {
    /// Starts chimney with the memory tier only, no GitHub, and `env` (the
    /// only variables it sees, with `PATH`).
    async fn start(env: &[(&str, String)]) -> Self {
        // The test process's own set-up (the TLS provider reqwest needs).
        init_test_process();
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chimney"));
        command
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--github-api-url",
                "http://127.0.0.1:9",
                "--redis",
                "",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("INVALIDATE_TOKEN", INVALIDATE_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("chimney starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_DEADLINE)
            .build()
            .expect("client");
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < REQUEST_DEADLINE,
                "chimney did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            client,
        }
    }

    /// `GET path`, continuing trace `trace` (sampled) when given; returns
    /// the response's `X-Trace-ID`.
    async fn get(&self, path: &str, trace: Option<&str>) -> String {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(trace) = trace {
            request = request.header("traceparent", format!("00-{trace}-{PARENT}-01"));
        }
        let response = request.send().await.expect("GET");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        trace_id(&response)
    }

    /// An invalidation (an SDK span and log record inside the request's
    /// trace), continuing `trace` (sampled) when given.
    async fn invalidate(&self, trace: Option<&str>) -> String {
        let mut request = self
            .client
            .post(format!("{}/api/cache/invalidate", self.base))
            .bearer_auth(INVALIDATE_TOKEN)
            .header("content-type", "application/json")
            .body(r#"{"path":"/contents/","reason":"standard env test"}"#);
        if let Some(trace) = trace {
            request = request.header("traceparent", format!("00-{trace}-{PARENT}-01"));
        }
        let response = request.send().await.expect("POST invalidate");
        assert_eq!(response.status(), 200);
        trace_id(&response)
    }

    /// SIGTERM, then everything it printed once it has exited (after its
    /// final flush).
    async fn stop(mut self) -> Output {
        let pid = self.child.id().expect("running");
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid this test spawned and still owns (not
        // yet waited for, so not reused) and a valid signal number.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut out = self.child.stdout.take().expect("stdout");
        let mut err = self.child.stderr.take().expect("stderr");
        let read = async {
            let _ = out.read_to_string(&mut stdout).await;
            let _ = err.read_to_string(&mut stderr).await;
            self.child.wait().await
        };
        let status = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("chimney stopped after SIGTERM")
            .expect("exit status");
        assert!(status.success(), "chimney exited {status}: {stderr}");
        let lines = stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect();
        Output {
            stdout,
            stderr,
            lines,
        }
    }
}

fn trace_id(response: &reqwest::Response) -> String {
    response.headers()["x-trace-id"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Polls `probe` until it holds or [`ARRIVAL`] passes.
async fn until(what: &str, probe: impl Fn() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < ARRIVAL, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Short batches and intervals, set the standard way.
fn quick() -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
    ]
}

fn span_names(collector: &OtlpSink, trace: &str) -> Vec<String> {
    collector
        .trace(trace)
        .into_iter()
        .map(|s| s.span.name)
        .collect()
}

/// The log records of `trace`: (body text, flags).
fn records_of(collector: &OtlpSink, trace: &str) -> Vec<(String, u32)> {
    collector
        .log_records()
        .into_iter()
        .filter(|r| fake_otlp::hex(&r.trace_id) == trace)
        .map(|r| (body(&r), r.flags))
        .collect()
}

fn body(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> String {
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn assert_every(arrivals: &[Arrival], what: &str, check: impl Fn(&Arrival) -> bool) {
    assert!(!arrivals.is_empty(), "nothing arrived for {what}");
    for arrival in arrivals {
        assert!(check(arrival), "{what}: {arrival:#?}");
    }
}

#[tokio::test]
async fn endpoints_headers_and_compression_are_honoured_for_every_signal() {
    let generic = OtlpSink::start(Mode::Keep);
    let traces = OtlpSink::start_with_paths(Mode::Keep, &[("/custom/spans", Signal::Traces)]);
    let logs = OtlpSink::start_with_paths(Mode::Keep, &[("/otlp/logs-in", Signal::Logs)]);
    let mut env = quick();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", generic.base_url.clone()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/custom/spans", traces.base_url),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("{}/otlp/logs-in", logs.base_url),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{GENERIC_SECRET},x-tenant=chimney"),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            format!("Authorization=Bearer%20{LOGS_SECRET}"),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
        ("OTEL_SERVICE_NAME", "chimney-env-test".to_owned()),
    ]);
    let chimney = Chimney::start(&env).await;

    let request_trace = chimney.get("/healthz", None).await;
    let invalidation_trace = chimney.invalidate(None).await;
    // The request exporter's span and record, and the SDK's.
    until("both kinds of spans at the traces endpoint", || {
        span_names(&traces, &request_trace).contains(&"GET /healthz".to_owned())
            && span_names(&traces, &invalidation_trace)
                .contains(&"chimney.cache.invalidate".to_owned())
    })
    .await;
    until("both kinds of log records at the logs endpoint", || {
        records_of(&logs, &request_trace)
            .iter()
            .any(|(body, _)| body == "request")
            && records_of(&logs, &invalidation_trace)
                .iter()
                .any(|(body, _)| body == "cache invalidated")
    })
    .await;
    until("metrics at the generic endpoint", || {
        generic.metric_names().contains("chimney.requests")
    })
    .await;
    let output = chimney.stop().await;

    let bearer = |secret| format!("Bearer {secret}");
    assert_every(&traces.arrivals(), "traces", |a| {
        a.path == "/custom/spans"
            && a.decoded
            && a.header("content-encoding") == Some("gzip")
            && a.header("authorization") == Some(bearer(GENERIC_SECRET).as_str())
            && a.header("x-tenant") == Some("chimney")
    });
    // The signal's own headers replace the generic ones.
    assert_every(&logs.arrivals(), "logs", |a| {
        a.path == "/otlp/logs-in"
            && a.decoded
            && a.header("content-encoding") == Some("gzip")
            && a.header("authorization") == Some(bearer(LOGS_SECRET).as_str())
            && a.header("x-tenant").is_none()
    });
    assert_every(&generic.arrivals(), "the generic collector", |a| {
        a.path == "/v1/metrics"
            && a.decoded
            && a.header("content-encoding").is_none()
            && a.header("authorization") == Some(bearer(GENERIC_SECRET).as_str())
            && a.header("x-tenant") == Some("chimney")
    });
    let request_span = traces
        .trace(&request_trace)
        .into_iter()
        .find(|s| s.span.name == "GET /healthz")
        .expect("the request span");
    assert_eq!(
        attr(&request_span.resource, "service.name"),
        Some(fake_otlp::Attr::Str("chimney-env-test".into()))
    );
    for secret in [GENERIC_SECRET, LOGS_SECRET] {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "a header value was printed"
        );
    }
    let started = output
        .lines
        .iter()
        .find(|l| l["message"] == "telemetry started")
        .expect("the start-up line");
    assert_eq!(
        started["traces"],
        format!("{}/custom/spans", traces.base_url)
    );
    assert!(output.errors().is_empty(), "{:?}", output.errors());
}

#[tokio::test]
async fn the_trace_id_ratio_sampler_decides_for_request_spans_and_their_children() {
    let collector = OtlpSink::start(Mode::Keep);
    let mut env = quick();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base_url.clone()),
        ("OTEL_TRACES_SAMPLER", "traceidratio".to_owned()),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5".to_owned()),
    ]);
    let chimney = Chimney::start(&env).await;

    // Not parent-based: the caller's sampled flag does not matter.
    assert_eq!(chimney.invalidate(Some(LOW_TRACE)).await, LOW_TRACE);
    assert_eq!(chimney.invalidate(Some(HIGH_TRACE)).await, HIGH_TRACE);
    until("the sampled trace's spans", || {
        let names = span_names(&collector, LOW_TRACE);
        names.contains(&"POST /api/cache/invalidate".to_owned())
            && names.contains(&"chimney.cache.invalidate".to_owned())
    })
    .await;
    until("both traces' request records", || {
        [LOW_TRACE, HIGH_TRACE].iter().all(|trace| {
            records_of(&collector, trace)
                .iter()
                .any(|(body, _)| body == "request")
        })
    })
    .await;
    let output = chimney.stop().await;

    assert!(
        span_names(&collector, HIGH_TRACE).is_empty(),
        "spans exported for an unsampled trace: {:?}",
        span_names(&collector, HIGH_TRACE)
    );
    let started = output
        .lines
        .iter()
        .find(|l| l["message"] == "telemetry started")
        .expect("the start-up line");
    assert_eq!(started["sampler"], "traceidratio(0.5)");
    for (trace, flags) in [(LOW_TRACE, 1), (HIGH_TRACE, 0)] {
        let records = records_of(&collector, trace);
        for body in ["request", "cache invalidated"] {
            assert!(
                records.iter().any(|(b, f)| b == body && f & 1 == flags),
                "{trace}: no {body:?} record with sampled flag {flags}: {records:?}"
            );
        }
    }
    assert!(output.errors().is_empty(), "{:?}", output.errors());
}

#[tokio::test]
async fn always_off_exports_no_span_but_every_log_record_and_parent_based_ratio_follows_the_caller()
{
    // always_off: nothing traced, everything logged.
    let off = OtlpSink::start(Mode::Keep);
    let mut env = quick();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", off.base_url.clone()),
        ("OTEL_TRACES_SAMPLER", "always_off".to_owned()),
    ]);
    let chimney = Chimney::start(&env).await;
    let trace = chimney.invalidate(Some(LOW_TRACE)).await;
    until("the request's and the invalidation's log records", || {
        let records = records_of(&off, &trace);
        records.iter().any(|(b, _)| b == "request")
            && records.iter().any(|(b, _)| b == "cache invalidated")
    })
    .await;
    chimney.stop().await;
    assert!(off.spans().is_empty(), "always_off exported spans");
    assert!(
        off.log_records()
            .iter()
            .any(|r| body(r) == "telemetry started"),
        "the SDK's own records are still exported"
    );

    // parentbased_traceidratio at 0: a sampled caller is followed, a trace
    // that starts here is not sampled.
    let ratio = OtlpSink::start(Mode::Keep);
    let mut env = quick();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ratio.base_url.clone()),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()),
        ("OTEL_TRACES_SAMPLER_ARG", "0".to_owned()),
    ]);
    let chimney = Chimney::start(&env).await;
    let followed = chimney.get("/healthz", Some(HIGH_TRACE)).await;
    let started_here = chimney.get("/healthz", None).await;
    until("the followed trace's span and both records", || {
        !span_names(&ratio, &followed).is_empty()
            && [&followed, &started_here]
                .iter()
                .all(|t| !records_of(&ratio, t).is_empty())
    })
    .await;
    chimney.stop().await;
    assert!(
        span_names(&ratio, &started_here).is_empty(),
        "a root trace was sampled at ratio 0"
    );
}

#[tokio::test]
async fn an_export_failure_is_logged_once_when_it_starts_and_once_when_it_stops() {
    let collector = OtlpSink::start(Mode::Keep);
    collector.answer(500);
    let mut env = quick();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base_url.clone()));
    let chimney = Chimney::start(&env).await;

    // Failing: requests (spans, records), invalidations (SDK spans and
    // records) and metrics every 300 ms, each refused, several times over.
    let failing = |c: &OtlpSink| {
        Signal::ALL
            .iter()
            .all(|s| c.arrivals_of(*s).iter().filter(|a| a.status == 500).count() >= 3)
    };
    let started = Instant::now();
    while !failing(&collector) {
        assert!(started.elapsed() < ARRIVAL, "the exports did not fail");
        chimney.get("/healthz", None).await;
        chimney.invalidate(None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.answer(200);
    let switched = collector.arrivals().len();
    let recovered = |c: &OtlpSink| {
        let after = &c.arrivals()[switched..];
        Signal::ALL.iter().all(|s| {
            after
                .iter()
                .any(|a| a.signal == Some(*s) && a.status == 200)
        })
    };
    let started = Instant::now();
    while !recovered(&collector) {
        assert!(started.elapsed() < ARRIVAL, "the exports did not recover");
        chimney.get("/healthz", None).await;
        chimney.invalidate(None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = chimney.stop().await;

    let warnings = output.lines_of("chimney::otlp", "WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{:?}",
        warnings[0]
    );
    let recoveries: Vec<_> = output
        .lines_of("chimney::otlp", "INFO")
        .into_iter()
        .filter(|l| l["message"] == "OTLP export recovered")
        .collect();
    assert_eq!(recoveries.len(), 1, "{recoveries:#?}");
    assert_eq!(recoveries[0]["signals"], "traces,metrics,logs");
    assert!(
        output.sdk_lines().is_empty(),
        "the SDK logged per export: {:#?}",
        output.sdk_lines()
    );
    assert!(output.errors().is_empty(), "{:#?}", output.errors());
}

#[tokio::test]
async fn a_first_run_with_no_collector_logs_one_warning() {
    let absent = free_port();
    let mut env = quick();
    env.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{absent}"),
    ));
    let chimney = Chimney::start(&env).await;
    // Several metric intervals and request batches, all lost.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        chimney.get("/healthz", None).await;
        chimney.invalidate(None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = chimney.stop().await;

    // The start-up warning about an unset GITHUB_TOKEN is not about export.
    let warnings: Vec<_> = output
        .lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["target"] != "chimney")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["target"], "chimney::otlp");
    assert_eq!(
        warnings[0]["collector"],
        format!("http://127.0.0.1:{absent}")
    );
    assert!(output.sdk_lines().is_empty(), "{:#?}", output.sdk_lines());
    assert!(output.errors().is_empty(), "{:#?}", output.errors());
}

/// `bench/telemetry.sh` weighs the request exporter against the SDK path:
/// that path must export the same request span and log record.
#[tokio::test]
async fn the_benchmark_s_sdk_path_exports_request_spans_and_records_too() {
    let collector = OtlpSink::start(Mode::Keep);
    let mut env = quick();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base_url.clone()),
        ("CHIMNEY_BENCH_REQUEST_EXPORT", "sdk".to_owned()),
    ]);
    let chimney = Chimney::start(&env).await;
    assert_eq!(chimney.get("/healthz", Some(LOW_TRACE)).await, LOW_TRACE);
    until("the request's span and record", || {
        span_names(&collector, LOW_TRACE).contains(&"GET /healthz".to_owned())
            && records_of(&collector, LOW_TRACE)
                .iter()
                .any(|(body, flags)| body == "request" && flags & 1 == 1)
    })
    .await;
    chimney.stop().await;
    let span = collector
        .trace(LOW_TRACE)
        .into_iter()
        .find(|s| s.span.name == "GET /healthz")
        .expect("the request span");
    assert_eq!(span.parent_span_id(), PARENT);
    assert_eq!(span.span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        span.attr("http.route"),
        Some(fake_otlp::Attr::Str("/healthz".into()))
    );
}
