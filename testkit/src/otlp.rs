//! `OtlpSink`: an OTLP/HTTP collector on a loopback port (`POST
//! /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf), and helpers to read
//! what it received.
//!
//! It runs on a thread and runtime of its own, so it outlives the runtime
//! of any one test. It either keeps every payload, decoded with
//! `opentelemetry-proto`, for tests to read ([`Mode::Keep`]), or only counts
//! payloads and bytes ([`Mode::Count`]): a benchmark's millions of spans
//! would otherwise cost memory and CPU that the server under test shares.
//! Either way `GET /__count` answers `traces=N metrics=N logs=N bytes=N`,
//! so a script can check that something was exported.
//!
//! A test may map signals to other paths ([`OtlpSink::start_with_paths`]),
//! make it answer with another status ([`OtlpSink::answer`]), and read every
//! request it received with its headers ([`OtlpSink::arrivals`]); gzipped
//! bodies are decoded.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
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

/// What the sink does with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decode and keep it (an undecodable one is answered `400`).
    Keep,
    /// Count it and drop it, undecoded.
    Count,
}

/// Payloads received per signal, and their bytes in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `POST /v1/traces` requests.
    pub traces: u64,
    /// `POST /v1/metrics` requests.
    pub metrics: u64,
    /// `POST /v1/logs` requests.
    pub logs: u64,
    /// Body bytes of all of them.
    pub bytes: u64,
}

/// What the sink has received.
struct Received {
    mode: Mode,
    traces: AtomicU64,
    metrics: AtomicU64,
    logs: AtomicU64,
    bytes: AtomicU64,
    kept_traces: Mutex<Vec<ExportTraceServiceRequest>>,
    kept_metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    kept_logs: Mutex<Vec<ExportLogsServiceRequest>>,
    arrivals: Mutex<Vec<Arrival>>,
    /// The status every export is answered with (200 unless set).
    answer: AtomicU16,
}

/// One request the sink received, whatever its fate (kept in
/// [`Mode::Keep`] only).
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

/// An OTLP signal, as the sink tells them apart.
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

impl Received {
    fn counts(&self) -> Counts {
        Counts {
            traces: self.traces.load(Ordering::Relaxed),
            metrics: self.metrics.load(Ordering::Relaxed),
            logs: self.logs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A running sink. Dropping the handle leaves it running until the
/// process exits.
pub struct OtlpSink {
    /// `http://127.0.0.1:{port}`, the OTLP endpoint base.
    pub base_url: String,
    addr: SocketAddr,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OtlpSink {
    /// Starts a sink on a free loopback port.
    ///
    /// # Panics
    /// When it cannot bind or start its thread.
    pub fn start(mode: Mode) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), mode).expect("start the OTLP sink")
    }

    /// Starts a sink on a free loopback port taking each signal on the
    /// given paths; any other path is answered 404 (and recorded).
    ///
    /// # Panics
    /// When it cannot bind or start its thread.
    pub fn start_with_paths(mode: Mode, paths: &[(&str, Signal)]) -> Self {
        Self::start_serving(SocketAddr::from(([127, 0, 0, 1], 0)), mode, paths)
            .expect("start the OTLP sink")
    }

    /// Starts a sink on `addr` (port 0 picks a free one).
    pub fn start_on(addr: SocketAddr, mode: Mode) -> std::io::Result<Self> {
        Self::start_serving(addr, mode, &STANDARD_PATHS)
    }

    fn start_serving(
        addr: SocketAddr,
        mode: Mode,
        paths: &[(&str, Signal)],
    ) -> std::io::Result<Self> {
        let paths: HashMap<String, Signal> = paths
            .iter()
            .map(|(path, signal)| ((*path).to_owned(), *signal))
            .collect();
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received {
            mode,
            traces: AtomicU64::new(0),
            metrics: AtomicU64::new(0),
            logs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            kept_traces: Mutex::default(),
            kept_metrics: Mutex::default(),
            kept_logs: Mutex::default(),
            arrivals: Mutex::default(),
            answer: AtomicU16::new(200),
        });
        let shared = Arc::clone(&received);
        // Built here, so that a failure is this call's error.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("otlp-sink".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("adopt the listener");
                    let acceptor = TcpAcceptor::from_tokio(listener).expect("sink acceptor");
                    let report = Arc::clone(&shared);
                    let app = Route::new().at("/*path", collect(shared, paths)).at(
                        "/__count",
                        poem::endpoint::make_sync(move |_| {
                            let c = report.counts();
                            format!(
                                "traces={} metrics={} logs={} bytes={}\n",
                                c.traces, c.metrics, c.logs, c.bytes
                            )
                        }),
                    );
                    let _ = Server::new_with_acceptor(acceptor).run(app).await;
                });
            })?;
        Ok(Self {
            base_url: format!("http://{addr}"),
            addr,
            received,
        })
    }

    /// Answers every export from now on with `status` (a 2xx keeps it).
    pub fn answer(&self, status: u16) {
        self.received.answer.store(status, Ordering::SeqCst);
    }

    /// Every request received so far, in order ([`Mode::Keep`] only).
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

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Payloads and bytes received so far.
    pub fn counts(&self) -> Counts {
        self.received.counts()
    }

    /// Every span received so far (none in [`Mode::Count`]).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.received.kept_traces)
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

    /// Every metric received so far (none in [`Mode::Count`]).
    pub fn metrics(&self) -> Vec<Metric> {
        lock(&self.received.kept_metrics)
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

    /// Every log record received so far (none in [`Mode::Count`]).
    pub fn log_records(&self) -> Vec<LogRecord> {
        lock(&self.received.kept_logs)
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

fn collect(
    received: Arc<Received>,
    paths: HashMap<String, Signal>,
) -> impl Endpoint<Output = Response> {
    let paths = Arc::new(paths);
    poem::endpoint::make(move |req: Request| {
        let received = Arc::clone(&received);
        let paths = Arc::clone(&paths);
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
            let raw = req.into_body().into_bytes().await.unwrap_or_default();
            let body = match headers.get("content-encoding").map(String::as_str) {
                Some("gzip") => gunzip(&raw).map(Bytes::from),
                None => Some(raw),
                Some(_) => None,
            };
            let answer = received.answer.load(Ordering::SeqCst);
            let reply = match (signal, &body) {
                (Some(signal), Some(body)) => {
                    store(&received, signal, body, (200..300).contains(&answer))
                }
                _ => None,
            };
            let status = match (signal, &reply) {
                (None, _) => 404,
                (Some(_), None) => 400,
                (Some(_), Some(_)) => answer,
            };
            if received.mode == Mode::Keep {
                lock(&received.arrivals).push(Arrival {
                    path,
                    signal,
                    headers,
                    status,
                    decoded: reply.is_some(),
                });
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok::<_, poem::Error>(match reply {
                Some(bytes) if status.is_success() => Response::builder()
                    .status(status)
                    .content_type("application/x-protobuf")
                    .body(bytes),
                _ => Response::builder().status(status).finish(),
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

/// Counts the payload, keeps it decoded in [`Mode::Keep`] when `keep` (the
/// sink answers 2xx), and returns the protobuf answer; `None` when it does
/// not decode.
fn store(received: &Received, signal: Signal, body: &Bytes, keep: bool) -> Option<Vec<u8>> {
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let counter = match signal {
        Signal::Traces => &received.traces,
        Signal::Metrics => &received.metrics,
        Signal::Logs => &received.logs,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let decode = received.mode == Mode::Keep;
    match signal {
        Signal::Traces => {
            if decode {
                let request = ExportTraceServiceRequest::decode(body.as_ref()).ok()?;
                if keep {
                    lock(&received.kept_traces).push(request);
                }
            }
            Some(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Signal::Metrics => {
            if decode {
                let request = ExportMetricsServiceRequest::decode(body.as_ref()).ok()?;
                if keep {
                    lock(&received.kept_metrics).push(request);
                }
            }
            Some(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Signal::Logs => {
            if decode {
                let request = ExportLogsServiceRequest::decode(body.as_ref()).ok()?;
                if keep {
                    lock(&received.kept_logs).push(request);
                }
            }
            Some(ExportLogsServiceResponse::default().encode_to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    /// POSTs `body` to `path` on the sink over a bare HTTP/1.1 connection
    /// and returns the status code.
    fn post(sink: &OtlpSink, path: &str, body: &[u8]) -> u16 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(sink.addr()).expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            sink.addr(),
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body).expect("write body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line")
    }

    fn one_span_payload() -> Vec<u8> {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            name: "GET /x".to_owned(),
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn keep_mode_decodes_and_keeps_spans_and_refuses_garbage() {
        let sink = OtlpSink::start(Mode::Keep);
        assert_eq!(post(&sink, "/v1/traces", &one_span_payload()), 200);
        assert_eq!(post(&sink, "/v1/logs", b"\xff\xff not protobuf"), 400);
        let spans = sink.trace(&"ab".repeat(16));
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].span_id(), "cd".repeat(8));
        assert_eq!(sink.counts().traces, 1);
    }

    #[test]
    fn count_mode_counts_without_keeping() {
        let sink = OtlpSink::start(Mode::Count);
        let payload = one_span_payload();
        assert_eq!(post(&sink, "/v1/traces", &payload), 200);
        assert_eq!(post(&sink, "/v1/metrics", b"anything"), 200);
        assert!(sink.spans().is_empty());
        assert_eq!(
            sink.counts(),
            Counts {
                traces: 1,
                metrics: 1,
                logs: 0,
                bytes: (payload.len() + b"anything".len()) as u64,
            }
        );
    }
}
