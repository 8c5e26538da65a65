//! A fake OTLP/HTTP collector (POST `/v1/traces`, `/v1/metrics`,
//! `/v1/logs`, protobuf decoded with `opentelemetry-proto`), and the one
//! telemetry pipeline of this test binary, exporting to it.
//!
//! The pipeline is process-global (a global `tracing` subscriber and global
//! providers), so it is installed once, before any app is built, from the
//! suite's `TRACING` initialiser; every app of the run exports to the same
//! collector, and tests tell their own records apart by trace id.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
use poem::{Endpoint, EndpointExt, Request, Response, Route, Server};
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
}

/// A running fake collector. It lives on its own thread and runtime, so it
/// outlives each test's runtime.
pub struct FakeCollector {
    /// `http://127.0.0.1:{port}`, the OTLP endpoint base.
    pub base_url: String,
    received: Arc<Received>,
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
    /// Starts a collector on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake collector");
        listener
            .set_nonblocking(true)
            .expect("non-blocking collector listener");
        let port = listener.local_addr().expect("collector address").port();
        let received = Arc::new(Received::default());
        let shared = Arc::clone(&received);
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
                    let app = Route::new()
                        .at("/v1/traces", collect(Arc::clone(&shared), Signal::Traces))
                        .at("/v1/metrics", collect(Arc::clone(&shared), Signal::Metrics))
                        .at("/v1/logs", collect(shared, Signal::Logs));
                    let _ = Server::new_with_acceptor(acceptor).run(app).await;
                });
            })
            .expect("spawn the collector thread");
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            received,
        }
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

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

fn collect(received: Arc<Received>, signal: Signal) -> impl Endpoint<Output = Response> {
    poem::endpoint::make(move |req: Request| {
        let received = Arc::clone(&received);
        async move {
            let body = req.into_body().into_bytes().await.unwrap_or_default();
            let reply = store(&received, signal, &body);
            Ok::<_, poem::Error>(match reply {
                Some(bytes) => Response::builder()
                    .status(StatusCode::OK)
                    .content_type("application/x-protobuf")
                    .body(bytes),
                None => Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body("undecodable OTLP payload"),
            })
        }
    })
    .map_to_response()
}

fn store(received: &Received, signal: Signal, body: &Bytes) -> Option<Vec<u8>> {
    match signal {
        Signal::Traces => {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).ok()?;
            lock(&received.traces).push(request);
            Some(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Signal::Metrics => {
            let request = ExportMetricsServiceRequest::decode(body.as_ref()).ok()?;
            lock(&received.metrics).push(request);
            Some(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Signal::Logs => {
            let request = ExportLogsServiceRequest::decode(body.as_ref()).ok()?;
            lock(&received.logs).push(request);
            Some(ExportLogsServiceResponse::default().encode_to_vec())
        }
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
