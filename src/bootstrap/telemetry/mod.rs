//! Telemetry start-up: the process-wide `tracing` subscriber (JSON lines on
//! stdout, plus spans and log records bridged to OpenTelemetry), the
//! OTLP/HTTP exporters for traces, metrics and logs, and the exporter of
//! each request's span and log record ([`request_exporter`]), behind one
//! [`TelemetryGuard`] that flushes them on shutdown.
//!
//! Every exporter is configured from the standard variables, resolved once
//! by [`otel_env`]: per signal its endpoint, headers, timeout and
//! compression, the sampler, and the batch and export intervals. The SDK's
//! spans, log records and metrics go through `opentelemetry-otlp`; each
//! request's span and log record through chimney's request exporter; both
//! to the same per-signal targets, sampled alike, and every export's
//! outcome goes to one [`ExportHealth`], which logs a failure when it
//! starts and when it stops (the SDK's own per-export error lines are kept
//! out of the log).
//!
//! Per-request instrumentation lives in `http::observe`; the metric
//! instruments and the exporters in `adapters::otlp`. Nothing here ever
//! blocks start-up or a request on the collector: every exporter runs on a
//! thread of its own with batching and a timeout, and shutdown waits a
//! bounded time.

pub mod otel_env;

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanProcessor as _};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt as _, Targets, filter_fn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::adapters::otlp::export::{BatchOptions, RequestExportConfig, RequestExporter};
use crate::adapters::otlp::health::{EXPORTER_LOG_TARGET, ExportHealth};
use crate::adapters::otlp::sdk::{SdkExporters, sdk_exporters};
use crate::adapters::otlp::sdk_requests::SdkRequestExport;
use crate::adapters::otlp::target::{BuildError, HttpClients, Signal};
use crate::bootstrap::config::OtelSettings;
use crate::bootstrap::version::CHIMNEY_VERSION;
use crate::http::ACCESS_LOG_TARGET;
use crate::http::access_log::{self, AccessLogGuard, AccessLogWriter, WriterOptions};
use crate::ports::RequestExport;

/// The instrumentation scope of chimney's tracer and meter.
pub const INSTRUMENTATION_SCOPE: &str = "chimney";

/// How often metrics are pushed over OTLP unless
/// `OTEL_METRIC_EXPORT_INTERVAL` says otherwise (CONTRACT 8).
pub const METRIC_EXPORT_INTERVAL: Duration = otel_env::DEFAULT_METRIC_INTERVAL;

/// The longest a flush at shutdown may take (CONTRACT 2).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Records buffered per signal before new ones are dropped (under a burst,
/// telemetry is shed rather than memory or latency spent).
const BATCH_QUEUE: usize = 8192;

/// Records per OTLP request: fewer, larger requests under load.
const BATCH_SIZE: usize = 2048;

/// Log lines other than the request log's that may wait for stdout.
const OTHER_LINES_QUEUE: usize = 1024;

/// Filter used when `RUST_LOG` is unset: chimney at info, and the SDK's
/// own diagnostics only when something is wrong.
const DEFAULT_LOG_FILTER: &str =
    "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// Crates whose spans and events never reach the OpenTelemetry layers: the
/// HTTP client stack (the exporters use it, so exporting its spans would
/// feed on itself), the SDK itself and chimney's own exporter.
const NOT_EXPORTED: [&str; 13] = [
    EXPORTER_LOG_TARGET,
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower",
    "tonic",
    "rustls",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "opentelemetry_appender_tracing",
];

/// Where the JSON log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output: the service's normal mode.
    Stdout,
    /// The test harness's captured output (`TEST_LOG=1`).
    TestWriter,
    /// Nowhere: quiet tests.
    Sink,
}

/// What differs between the service and the test suite.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// Where JSON log lines go.
    pub log_output: LogOutput,
    /// The environment the OTLP exporter variables are read from
    /// ([`otel_env`]): the process's for the service, a test's own.
    pub environment: HashMap<String, String>,
    /// Which path request records take to the collector.
    pub request_export: RequestExportPath,
}

impl Default for TelemetryOptions {
    /// Stdout, and no exporter variables (every default).
    fn default() -> Self {
        Self {
            log_output: LogOutput::Stdout,
            environment: HashMap::new(),
            request_export: RequestExportPath::Direct,
        }
    }
}

/// Which path each request's span and log record take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestExportPath {
    /// The request exporter: encoded straight from the record (the
    /// service's path).
    #[default]
    Direct,
    /// Through the SDK and `opentelemetry-otlp`, for `bench/telemetry.sh`
    /// to weigh the two (`CHIMNEY_BENCH_REQUEST_EXPORT=sdk`). Not a
    /// production mode.
    Sdk,
}

impl TelemetryOptions {
    /// Stdout, and the process environment's `OTEL_*` variables (those
    /// that are valid UTF-8; the rest are unusable values and left out).
    /// `CHIMNEY_BENCH_REQUEST_EXPORT=sdk` picks [`RequestExportPath::Sdk`].
    pub fn from_process() -> Self {
        let bench_sdk = std::env::var("CHIMNEY_BENCH_REQUEST_EXPORT").is_ok_and(|v| v == "sdk");
        Self {
            environment: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with("OTEL_"))
                .collect(),
            request_export: if bench_sdk {
                RequestExportPath::Sdk
            } else {
                RequestExportPath::Direct
            },
            ..Self::default()
        }
    }
}

/// Why telemetry could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryInitError {
    /// An OTLP exporter variable holds an unusable value.
    #[error(transparent)]
    Environment(#[from] otel_env::OtelEnvError),
    /// An exporter could not be built (no HTTP client, no thread).
    #[error(transparent)]
    Exporter(#[from] BuildError),
    /// A global `tracing` subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
    /// The request log's writer thread could not be started.
    #[error("cannot start the request log writer")]
    AccessLog(#[source] std::io::Error),
}

/// The three providers and the request exporter, present while export is
/// on.
struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    logger: SdkLoggerProvider,
    requests: Requests,
    described: Described,
}

/// Where request records go.
#[derive(Clone)]
enum Requests {
    Direct(RequestExporter),
    Sdk(Arc<SdkRequestExport>),
}

impl Requests {
    fn export(&self) -> Arc<dyn RequestExport> {
        match self {
            Self::Direct(exporter) => Arc::new(exporter.clone()),
            Self::Sdk(exporter) => Arc::clone(exporter) as Arc<dyn RequestExport>,
        }
    }

    fn force_flush(&self, timeout: Duration) -> bool {
        match self {
            Self::Direct(exporter) => exporter.force_flush(timeout),
            Self::Sdk(exporter) => exporter.force_flush(),
        }
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        match self {
            Self::Direct(exporter) => exporter.shutdown(timeout),
            Self::Sdk(exporter) => exporter.shutdown(timeout),
        }
    }
}

/// Keeps the exporters alive; dropping it (or [`TelemetryGuard::shutdown`])
/// flushes and stops them within [`SHUTDOWN_DEADLINE`]. `main` holds it
/// until the server has stopped.
#[must_use = "dropping the guard shuts telemetry export down"]
pub struct TelemetryGuard {
    providers: Option<Providers>,
    /// Writes the queued request log lines when stopped.
    access_log: Option<AccessLogGuard>,
    /// Flushes the buffered stdout log lines when dropped.
    _log_worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.is_exporting())
            .finish()
    }
}

/// Starts telemetry for the service: JSON lines on stdout, and OTLP export
/// unless `OTEL_SDK_DISABLED=true`, configured by the process
/// environment's exporter variables.
///
/// # Errors
/// Fails when an exporter variable is unusable, an exporter cannot be
/// built or a subscriber is already set.
pub fn init(settings: &OtelSettings) -> Result<TelemetryGuard, TelemetryInitError> {
    init_with(settings, &TelemetryOptions::from_process())
}

/// [`init`] with explicit options (tests use a sink and their own
/// variables).
///
/// # Errors
/// Fails when an exporter variable is unusable, an exporter cannot be
/// built or a subscriber is already set.
pub fn init_with(
    settings: &OtelSettings,
    options: &TelemetryOptions,
) -> Result<TelemetryGuard, TelemetryInitError> {
    let providers = if settings.disabled {
        None
    } else {
        let env = otel_env::resolve(&settings.endpoint, &options.environment)?;
        Some(build_providers(settings, &env, options.request_export)?)
    };
    let log_filter = log_filter();
    let mut log_worker = None;
    let writer = match options.log_output {
        LogOutput::Stdout => {
            // Lines are handed to a writer thread instead of taking the
            // stdout lock on the calling thread. Lossy: under a flood, lines
            // are dropped rather than callers slowed. The request log has
            // its own writer (start_access_log), so the few other lines
            // need a short queue: the default (128,000 lines) is allocated
            // up front and was 4 MiB of the resting footprint.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(OTHER_LINES_QUEUE)
                .thread_name("chimney-log")
                .finish(std::io::BufWriter::new(std::io::stdout()));
            log_worker = Some(guard);
            BoxMakeWriter::new(writer)
        }
        LogOutput::TestWriter => BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::new()),
        LogOutput::Sink => BoxMakeWriter::new(std::io::sink),
    };
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        // Events only: the lines carry no span context, so formatting
        // span fields for them would be wasted work on every request. The
        // SDK's line per failed export is left out: ExportHealth reports
        // failures when they start and when they stop.
        .with_filter(log_filter.and(filter_fn(|meta| {
            meta.is_event() && !is_export_failure_line(meta)
        })));
    let spans = providers.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer.tracer(INSTRUMENTATION_SCOPE))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Info-level events are exported once, as log records by the
            // bridge below; copying each request's log line into its span
            // as a span event too doubled the exported bytes per request.
            // Warnings and errors (a caught panic) stay on the span.
            .with_filter(exported().and(filter_fn(|meta| {
                meta.is_span() || *meta.level() <= tracing::Level::WARN
            })))
    });
    let logs = providers.as_ref().map(|p| {
        OpenTelemetryTracingBridge::new(&p.logger)
            .with_filter(exported().and(filter_fn(|meta| meta.target() != ACCESS_LOG_TARGET)))
    });
    tracing_subscriber::registry()
        .with(json)
        .with(spans)
        .with(logs)
        .try_init()
        .map_err(TelemetryInitError::Subscriber)?;
    let access_log = start_access_log(options.log_output)?;
    if let Some(p) = &providers {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.tracer.clone());
        opentelemetry::global::set_meter_provider(p.meter.clone());
    }
    match &providers {
        Some(p) => tracing::info!(
            exporting = true,
            traces = %p.described.traces,
            metrics = %p.described.metrics,
            logs = %p.described.logs,
            sampler = %p.described.sampler,
            service_name = %settings.service_name,
            "telemetry started"
        ),
        None => tracing::info!(
            exporting = false,
            service_name = %settings.service_name,
            "telemetry started"
        ),
    }
    Ok(TelemetryGuard {
        providers,
        access_log,
        _log_worker: log_worker,
    })
}

/// The request log on stdout: formatted and written in batches by its own
/// thread, so a request only queues its line (bench/run.sh measured the
/// formatting on the request path at a fifth of hit throughput). Whether
/// the lines are written at all follows the log filter, asked once here
/// (`RUST_LOG=warn` turns them off). The test outputs keep the `tracing`
/// event, which their writers capture.
fn start_access_log(output: LogOutput) -> Result<Option<AccessLogGuard>, TelemetryInitError> {
    if output != LogOutput::Stdout {
        return Ok(None);
    }
    // Asked of the filter alone: the installed subscriber would also count
    // its absent OpenTelemetry layers, which enable everything.
    let probe = tracing::Dispatch::new(tracing_subscriber::registry().with(log_filter()));
    let enabled = tracing::dispatcher::with_default(&probe, || {
        tracing::enabled!(
            kind: tracing::metadata::Kind::EVENT,
            target: ACCESS_LOG_TARGET,
            tracing::Level::INFO
        )
    });
    if !enabled {
        access_log::install(None);
        return Ok(None);
    }
    let (writer, guard) =
        AccessLogWriter::start(Box::new(std::io::stdout()), WriterOptions::default())
            .map_err(TelemetryInitError::AccessLog)?;
    Ok(access_log::install(Some(writer)).then_some(guard))
}

/// The JSON log's filter: `RUST_LOG`, else [`DEFAULT_LOG_FILTER`].
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// The lines `opentelemetry_sdk` and `opentelemetry-otlp` log for every
/// failed export (`BatchSpanProcessor.ExportError`,
/// `PeriodicReader.ExportError`, `Export.Failed.Exhausted`, …). Their
/// targets are the crates' package names (`opentelemetry-otlp`).
fn is_export_failure_line(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("opentelemetry")
        && (meta.name().ends_with(".ExportError") || meta.name().starts_with("Export.Failed."))
}

fn exported() -> Targets {
    NOT_EXPORTED
        .iter()
        .fold(Targets::new().with_default(LevelFilter::INFO), |t, name| {
            t.with_target(*name, LevelFilter::OFF)
        })
}

fn build_providers(
    settings: &OtelSettings,
    env: &otel_env::OtelEnv,
    request_export: RequestExportPath,
) -> Result<Providers, TelemetryInitError> {
    let resource = resource(settings);
    let health = Arc::new(ExportHealth::new());
    let mut clients = HttpClients::default();
    let SdkExporters {
        spans,
        metrics,
        logs,
    } = sdk_exporters(&env.targets, &mut clients, &health)?;
    let span_batches = || {
        opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_scheduled_delay(env.span_delay)
            .with_max_queue_size(BATCH_QUEUE)
            .with_max_export_batch_size(BATCH_SIZE)
            .build()
    };
    let tracer = SdkTracerProvider::builder()
        .with_sampler(env.sampling.sdk())
        .with_span_processor(
            BatchSpanProcessor::builder(spans)
                .with_batch_config(span_batches())
                .build(),
        )
        .with_resource(resource.clone())
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(metrics)
                .with_interval(env.metric_interval)
                .build(),
        )
        .with_resource(resource.clone())
        .build();
    let logger = SdkLoggerProvider::builder()
        .with_log_processor(
            BatchLogProcessor::builder(logs)
                .with_batch_config(
                    opentelemetry_sdk::logs::BatchConfigBuilder::default()
                        .with_scheduled_delay(env.log_delay)
                        .with_max_queue_size(BATCH_QUEUE)
                        .with_max_export_batch_size(BATCH_SIZE)
                        .build(),
                )
                .build(),
        )
        .with_resource(resource.clone())
        .build();
    let requests = match request_export {
        RequestExportPath::Direct => Requests::Direct(RequestExporter::start(
            RequestExportConfig {
                traces: &env.targets.traces,
                logs: &env.targets.logs,
                resource: &resource,
                scope: INSTRUMENTATION_SCOPE,
                batching: BatchOptions {
                    // One batch holds both signals: neither waits longer
                    // than its own delay.
                    delay: env.span_delay.min(env.log_delay),
                    max_batch: BATCH_SIZE,
                    queue: BATCH_QUEUE,
                },
                sampling: env.sampling,
                health: Arc::clone(&health),
            },
            &mut clients,
        )?),
        RequestExportPath::Sdk => {
            let mut spans = BatchSpanProcessor::builder(
                sdk_exporters(&env.targets, &mut clients, &health)?.spans,
            )
            .with_batch_config(span_batches())
            .build();
            spans.set_resource(&resource);
            Requests::Sdk(Arc::new(SdkRequestExport::new(
                spans,
                &logger,
                INSTRUMENTATION_SCOPE,
                env.sampling,
            )))
        }
    };
    Ok(Providers {
        tracer,
        meter,
        logger,
        requests,
        described: Described::of(env),
    })
}

/// What the start-up line says about export: each signal's collector and
/// path (never credentials, a query or a header) and the sampler.
#[derive(Debug)]
struct Described {
    traces: String,
    metrics: String,
    logs: String,
    sampler: String,
}

impl Described {
    fn of(env: &otel_env::OtelEnv) -> Self {
        let target = |signal| {
            let target = env.targets.of(signal);
            format!("{}{}", target.collector(), target.url.path())
        };
        Self {
            traces: target(Signal::Traces),
            metrics: target(Signal::Metrics),
            logs: target(Signal::Logs),
            sampler: env.sampling.to_string(),
        }
    }
}

/// `service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`, from
/// the settings only (the SDK's own environment detectors would bypass the
/// configuration layering).
fn resource(settings: &OtelSettings) -> Resource {
    Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new(
            opentelemetry_semantic_conventions::attribute::SERVICE_VERSION,
            CHIMNEY_VERSION,
        ))
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

impl TelemetryGuard {
    /// Where the request middleware sends each request's record, to become
    /// its span and log record; `None` while export is off. The wiring hands
    /// it to [`crate::bootstrap::startup::Application::build`].
    pub fn request_exporter(&self) -> Option<Arc<dyn RequestExport>> {
        self.providers.as_ref().map(|p| p.requests.export())
    }

    /// Whether anything is exported (false under `OTEL_SDK_DISABLED=true`).
    pub fn is_exporting(&self) -> bool {
        self.providers.is_some()
    }

    /// Exports everything recorded so far, waiting up to
    /// [`SHUTDOWN_DEADLINE`]. Blocks the calling thread: call it from a
    /// blocking context. Returns whether every signal finished in time.
    pub fn force_flush(&self) -> bool {
        let Some(p) = &self.providers else {
            return true;
        };
        let (tracer, meter, logger, requests) = (
            p.tracer.clone(),
            p.meter.clone(),
            p.logger.clone(),
            p.requests.clone(),
        );
        within(
            SHUTDOWN_DEADLINE,
            vec![
                Box::new(move || report("traces", "flush", tracer.force_flush())),
                Box::new(move || report("metrics", "flush", meter.force_flush())),
                Box::new(move || report("logs", "flush", logger.force_flush())),
                Box::new(move || {
                    if !requests.force_flush(SHUTDOWN_DEADLINE) {
                        eprintln!("chimney: telemetry request records flush did not finish");
                    }
                }),
            ],
        )
    }

    /// Flushes and stops every exporter, waiting at most
    /// [`SHUTDOWN_DEADLINE`] in all; an absent or slow collector is given
    /// up on. Returns whether every signal finished in time.
    pub fn shutdown(mut self) -> bool {
        self.stop()
    }

    fn stop(&mut self) -> bool {
        // The server has drained: every request's line is queued.
        let lines_written = self
            .access_log
            .take()
            .is_none_or(|log| log.shutdown(SHUTDOWN_DEADLINE));
        if !lines_written {
            eprintln!("chimney: request log lines not written within {SHUTDOWN_DEADLINE:?}");
        }
        let Some(p) = self.providers.take() else {
            return lines_written;
        };
        let Providers {
            tracer,
            meter,
            logger,
            requests,
            described: _,
        } = p;
        let done = within(
            SHUTDOWN_DEADLINE,
            vec![
                Box::new(move || {
                    report(
                        "traces",
                        "shutdown",
                        tracer.shutdown_with_timeout(SHUTDOWN_DEADLINE),
                    )
                }),
                Box::new(move || {
                    report(
                        "metrics",
                        "shutdown",
                        meter.shutdown_with_timeout(SHUTDOWN_DEADLINE),
                    )
                }),
                Box::new(move || {
                    report(
                        "logs",
                        "shutdown",
                        logger.shutdown_with_timeout(SHUTDOWN_DEADLINE),
                    )
                }),
                Box::new(move || {
                    if !requests.shutdown(SHUTDOWN_DEADLINE) {
                        eprintln!("chimney: telemetry request records shutdown did not finish");
                    }
                }),
            ],
        );
        if !done {
            eprintln!(
                "chimney: telemetry flush did not finish within {SHUTDOWN_DEADLINE:?}; giving up"
            );
        }
        done && lines_written
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `jobs` on their own threads and waits for them until `deadline`
/// has passed; stragglers are left to finish (or not) on their own.
fn within(deadline: Duration, jobs: Vec<Job>) -> bool {
    let started = Instant::now();
    let (done, finished) = mpsc::channel::<()>();
    let mut pending = 0usize;
    for job in jobs {
        let done = done.clone();
        let spawned = std::thread::Builder::new()
            .name("chimney-telemetry-flush".to_owned())
            .spawn(move || {
                job();
                let _ = done.send(());
            });
        if spawned.is_ok() {
            pending += 1;
        }
    }
    while pending > 0 {
        let left = deadline.saturating_sub(started.elapsed());
        if finished.recv_timeout(left).is_err() {
            return false;
        }
        pending -= 1;
    }
    true
}

/// Stderr, not `tracing`: the subscriber may be feeding the very exporter
/// that failed.
fn report(signal: &str, action: &str, result: opentelemetry_sdk::error::OTelSdkResult) {
    if let Err(error) = result {
        eprintln!("chimney: telemetry {signal} {action} failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::Tracer as _;

    use super::*;

    #[test]
    fn a_job_past_the_deadline_is_given_up_on() {
        let started = Instant::now();
        let done = within(
            Duration::from_millis(100),
            vec![
                Box::new(|| {}),
                Box::new(|| std::thread::sleep(Duration::from_secs(2))),
            ],
        );
        assert!(!done);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn quick_jobs_finish_within_the_deadline() {
        assert!(within(
            Duration::from_secs(5),
            vec![Box::new(|| {}), Box::new(|| {})]
        ));
    }

    #[test]
    fn a_silent_collector_delays_neither_start_up_nor_shutdown_past_the_deadline() {
        // Accepts connections into its backlog and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = silent.local_addr().expect("address");
        let settings = OtelSettings {
            endpoint: url::Url::parse(&format!("http://{address}")).expect("url"),
            ..OtelSettings::default()
        };
        let env = otel_env::resolve(&settings.endpoint, &HashMap::new()).expect("defaults");
        let started = Instant::now();
        let providers = build_providers(&settings, &env, RequestExportPath::Direct)
            .expect("exporters build without contacting the collector");
        // Contacting the silent collector would take the export timeout (3 s);
        // the margin below that absorbs a loaded machine.
        assert!(started.elapsed() < Duration::from_millis(2500));
        providers.tracer.tracer("test").in_span("work", |_| {});
        let guard = TelemetryGuard {
            providers: Some(providers),
            access_log: None,
            _log_worker: None,
        };

        let started = Instant::now();
        let _ = guard.shutdown();

        assert!(
            // Unbounded, the exporters' retries against a silent collector
            // take several times the export timeout; the margin absorbs load.
            started.elapsed() < SHUTDOWN_DEADLINE + Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_resource_carries_the_configured_service() {
        let settings = OtelSettings {
            service_name: "chimney-blue".to_owned(),
            resource_attributes: vec![("deployment.slot".to_owned(), "blue".to_owned())],
            ..OtelSettings::default()
        };
        let resource = resource(&settings);
        let get = |k: &'static str| resource.get(&opentelemetry::Key::new(k));
        assert_eq!(
            get("service.name").map(|v| v.to_string()),
            Some("chimney-blue".to_owned())
        );
        assert_eq!(
            get("deployment.slot").map(|v| v.to_string()),
            Some("blue".to_owned())
        );
        assert!(get("service.version").is_some());
    }
}
