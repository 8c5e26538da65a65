//! A fake OTLP/HTTP collector (POST `/v1/traces`, `/v1/metrics`,
//! `/v1/logs`, or any paths a test maps to signals; protobuf, gzipped or
//! not, decoded with `opentelemetry-proto`), which records every request's
//! path and headers and answers with a status a test may change; and the
//! one telemetry pipeline of this test binary, exporting to it.
//!
//! The pipeline is process-global (a global `tracing` subscriber and global
//! providers), so it is installed once, before any app is built, from the
//! suite's `TRACING` initialiser; every app of the run exports to the same
//! collector, and tests tell their own records apart by trace id.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chimney::bootstrap::config::OtelSettings;
use chimney::bootstrap::telemetry::{self, LogOutput, TelemetryGuard, TelemetryOptions};
use chimney::ports::RequestExport;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Endpoint, EndpointExt, Request, Response, Server};
use prost::Message;

/// The `service.name` the suite's pipeline reports.
pub const TEST_SERVICE_NAME: &str = "chimney-test";

/// How long a test waits for its telemetry to reach the collector.
pub const ARRIVAL_DEADLINE: Duration = Duration::from_secs(20);

/// What the collector has received, decoded.
#[derive(Default)]
struct Received {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    logs: Mutex<Vec<ExportLogsServiceRequest>>,
    arrivals: Mutex<Vec<Arrival>>,
}

/// One request the collector received, whatever its fate.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The request path.
    pub path: String,
    /// The signal its path maps to; `None` for a path nobody configured.
    pub signal: Option<Signal>,
    /// Its headers, names lower-case (values of repeated names joined by
    /// `, `).
    pub headers: HashMap<String, String>,
    /// The status it was answered with.
    pub status: u16,
    /// Whether its body decoded as the signal's OTLP request.
    pub decoded: bool,
}

impl Arrival {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An OTLP signal, as the collector tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
    /// `ExportLogsServiceRequest`.
    Logs,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Self; 3] = [Self::Traces, Self::Metrics, Self::Logs];
}

/// The standard paths.
pub const STANDARD_PATHS: [(&str, Signal); 3] = [
    ("/v1/traces", Signal::Traces),
    ("/v1/metrics", Signal::Metrics),
    ("/v1/logs", Signal::Logs),
];

/// A running fake collector. It lives on its own thread and runtime, so it
/// outlives each test's runtime.
pub struct FakeCollector {
    /// `http://127.0.0.1:{port}`, the OTLP endpoint base.
    pub base_url: String,
    received: Arc<Received>,
    /// The status every export is answered with (200 unless set).
    status: Arc<AtomicU16>,
}

/// A span with the resource attributes of the batch it came in.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span.
    pub span: Span,
    /// Its resource's attributes.
    pub resource: Vec<KeyValue>,
}

impl ReceivedSpan {
    /// The span's trace id, hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span's id, hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span's id, hex (`""` for a root).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute of the span.
    pub fn attr(&self, key: &str) -> Option<Attr> {
        attr(&self.span.attributes, key)
    }
}

/// An attribute value, simplified for assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Anything else.
    Other,
}

/// Looks `key` up in an attribute list.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<Attr> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| simplify(kv.value.as_ref()))
}

fn simplify(value: Option<&AnyValue>) -> Attr {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Attr::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Attr::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Attr::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Attr::Double(*d),
        _ => Attr::Other,
    }
}

/// Lower-case hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeCollector {
    /// Starts a collector on a free loopback port, on the standard paths.
    pub fn start() -> Self {
        Self::start_on(&STANDARD_PATHS)
    }

    /// Starts a collector taking each signal on the given paths; any other
    /// path is answered 404 (and recorded).
    pub fn start_on(paths: &[(&str, Signal)]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake collector");
        listener
            .set_nonblocking(true)
            .expect("non-blocking collector listener");
        let port = listener.local_addr().expect("collector address").port();
        let received = Arc::new(Received::default());
        let shared = Arc::clone(&received);
        let status = Arc::new(AtomicU16::new(200));
        let answer = Arc::clone(&status);
        let paths: HashMap<String, Signal> = paths
            .iter()
            .map(|(path, signal)| ((*path).to_owned(), *signal))
            .collect();
        std::thread::Builder::new()
            .name("fake-otlp-collector".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("collector runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("adopt the listener");
                    let acceptor = TcpAcceptor::from_tokio(listener).expect("collector acceptor");
                    let app = collect(shared, paths, answer);
                    let _ = Server::new_with_acceptor(acceptor).run(app).await;
                });
            })
            .expect("spawn the collector thread");
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            received,
            status,
        }
    }

    /// Answers every export from now on with `status` (a 2xx stores it).
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request received so far, in order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.received.arrivals).clone()
    }

    /// The requests received so far for `signal`.
    pub fn arrivals_of(&self, signal: Signal) -> Vec<Arrival> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.signal == Some(signal))
            .collect()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.received.traces)
            .iter()
            .flat_map(|request| {
                request.resource_spans.iter().flat_map(|rs| {
                    let resource = rs
                        .resource
                        .as_ref()
                        .map(|r| r.attributes.clone())
                        .unwrap_or_default();
                    rs.scope_spans.iter().flat_map(move |ss| {
                        let resource = resource.clone();
                        ss.spans.iter().map(move |span| ReceivedSpan {
                            span: span.clone(),
                            resource: resource.clone(),
                        })
                    })
                })
            })
            .collect()
    }

    /// Spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }

    /// Every metric received so far.
    pub fn metrics(&self) -> Vec<Metric> {
        lock(&self.received.metrics)
            .iter()
            .flat_map(|request| {
                request
                    .resource_metrics
                    .iter()
                    .flat_map(|rm| rm.scope_metrics.iter().flat_map(|sm| sm.metrics.clone()))
            })
            .collect()
    }

    /// The names of every metric received so far.
    pub fn metric_names(&self) -> BTreeSet<String> {
        self.metrics().into_iter().map(|m| m.name).collect()
    }

    /// Every log record received so far.
    pub fn log_records(&self) -> Vec<LogRecord> {
        lock(&self.received.logs)
            .iter()
            .flat_map(|request| {
                request
                    .resource_logs
                    .iter()
                    .flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| sl.log_records.clone()))
            })
            .collect()
    }
}

/// The attributes of every data point of a metric.
pub fn data_point_attributes(metric: &Metric) -> Vec<Vec<KeyValue>> {
    match &metric.data {
        Some(metric::Data::Sum(sum)) => sum
            .data_points
            .iter()
            .map(|p| p.attributes.clone())
            .collect(),
        Some(metric::Data::Gauge(g)) => {
            g.data_points.iter().map(|p| p.attributes.clone()).collect()
        }
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter().map(|p| p.attributes.clone()).collect()
        }
        _ => Vec::new(),
    }
}

fn collect(
    received: Arc<Received>,
    paths: HashMap<String, Signal>,
    status: Arc<AtomicU16>,
) -> impl Endpoint<Output = Response> {
    let paths = Arc::new(paths);
    poem::endpoint::make(move |req: Request| {
        let received = Arc::clone(&received);
        let paths = Arc::clone(&paths);
        let status = Arc::clone(&status);
        async move {
            let path = req.uri().path().to_owned();
            let signal = paths.get(&path).copied();
            let mut headers: HashMap<String, String> = HashMap::new();
            for (name, value) in req.headers() {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert(value);
            }
            let body = req.into_body().into_bytes().await.unwrap_or_default();
            let body = match headers.get("content-encoding").map(String::as_str) {
                Some("gzip") => gunzip(&body),
                None => Some(body.to_vec()),
                Some(_) => None,
            };
            let answer = status.load(Ordering::SeqCst);
            let reply = match (signal, &body) {
                (Some(signal), Some(body)) => decode(signal, body),
                _ => None,
            };
            let stored = reply.is_some() && (200..300).contains(&answer);
            if stored {
                store(&received, signal, body.as_deref().unwrap_or_default());
            }
            let status_code = match (&signal, &reply) {
                (None, _) => 404,
                (Some(_), None) => 400,
                (Some(_), Some(_)) => answer,
            };
            lock(&received.arrivals).push(Arrival {
                path,
                signal,
                headers,
                status: status_code,
                decoded: reply.is_some(),
            });
            let status_code = StatusCode::from_u16(status_code).unwrap_or(StatusCode::OK);
            Ok::<_, poem::Error>(match reply {
                Some(bytes) if status_code.is_success() => Response::builder()
                    .status(status_code)
                    .content_type("application/x-protobuf")
                    .body(bytes),
                _ => Response::builder().status(status_code).finish(),
            })
        }
    })
    .map_to_response()
}

fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The encoded empty response when `body` decodes as `signal`'s request.
fn decode(signal: Signal, body: &[u8]) -> Option<Vec<u8>> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .ok()
            .map(|_| ExportTraceServiceResponse::default().encode_to_vec()),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .ok()
            .map(|_| ExportMetricsServiceResponse::default().encode_to_vec()),
        Signal::Logs => ExportLogsServiceRequest::decode(body)
            .ok()
            .map(|_| ExportLogsServiceResponse::default().encode_to_vec()),
    }
}

fn store(received: &Received, signal: Option<Signal>, body: &[u8]) {
    match signal {
        Some(Signal::Traces) => {
            if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                lock(&received.traces).push(request);
            }
        }
        Some(Signal::Metrics) => {
            if let Ok(request) = ExportMetricsServiceRequest::decode(body) {
                lock(&received.metrics).push(request);
            }
        }
        Some(Signal::Logs) => {
            if let Ok(request) = ExportLogsServiceRequest::decode(body) {
                lock(&received.logs).push(request);
            }
        }
        None => {}
    }
}

/// The suite's telemetry pipeline and the collector it exports to.
pub struct Pipeline {
    /// Where everything is exported.
    pub collector: FakeCollector,
    /// `None` when another global subscriber was installed first (the
    /// pipeline then exports nothing and the telemetry tests say so).
    guard: Option<TelemetryGuard>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Installs the pipeline once (JSON logs quiet unless `TEST_LOG` is set,
/// short export batches) and returns it.
pub fn pipeline() -> &'static Pipeline {
    PIPELINE.get_or_init(|| {
        let collector = FakeCollector::start();
        let settings = OtelSettings {
            endpoint: url::Url::parse(&collector.base_url).expect("collector URL"),
            service_name: TEST_SERVICE_NAME.to_owned(),
            resource_attributes: vec![("deployment.slot".to_owned(), "test".to_owned())],
            disabled: false,
        };
        let options = TelemetryOptions {
            log_output: if std::env::var_os("TEST_LOG").is_some() {
                LogOutput::TestWriter
            } else {
                LogOutput::Sink
            },
            // Short batches, set the standard way.
            environment: [
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..TelemetryOptions::default()
        };
        let guard = telemetry::init_with(&settings, &options).ok();
        Pipeline { collector, guard }
    })
}

/// Where an app spawned now exports its request records: the suite's
/// pipeline once a telemetry test has installed it, else nowhere.
pub fn installed_request_exporter() -> Option<Arc<dyn RequestExport>> {
    PIPELINE
        .get()
        .and_then(|pipeline| pipeline.guard.as_ref())
        .and_then(TelemetryGuard::request_exporter)
}

impl Pipeline {
    /// Whether spans, metrics and logs are being exported to the collector.
    pub fn is_exporting(&self) -> bool {
        self.guard
            .as_ref()
            .is_some_and(TelemetryGuard::is_exporting)
    }

    /// Pushes everything recorded so far to the collector (metrics
    /// included, instead of waiting for the 15 s interval).
    pub async fn flush(&'static self) {
        if let Some(guard) = &self.guard {
            let _ = tokio::task::spawn_blocking(move || guard.force_flush()).await;
        }
    }

    /// Flushes and polls `probe` until it yields, or [`ARRIVAL_DEADLINE`]
    /// passes.
    pub async fn eventually<T>(
        &'static self,
        probe: impl Fn(&FakeCollector) -> Option<T>,
    ) -> Option<T> {
        let started = Instant::now();
        loop {
            self.flush().await;
            if let Some(found) = probe(&self.collector) {
                return Some(found);
            }
            if started.elapsed() > ARRIVAL_DEADLINE {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
