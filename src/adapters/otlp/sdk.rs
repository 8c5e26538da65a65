//! The exporters behind the SDK's processors: `opentelemetry-otlp`'s span,
//! log and metric exporters, each configured from its signal's
//! [`SignalTarget`] and wrapped in [`Reported`], which tells
//! [`ExportHealth`] how each export went.
//!
//! Everything is set in code (endpoint, timeout, protocol, compression;
//! the headers through [`OtlpHttpClient`]), so what is exported where
//! follows chimney's resolution of the `OTEL_EXPORTER_OTLP_*` variables
//! rather than the crate's own reading of them. (The crate still adds the
//! headers it reads from the process environment itself; chimney's client
//! sets the same ones, resolved from the same variables, over them.)

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::Protocol;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::health::ExportHealth;
use super::target::{BuildError, Compression, HttpClients, Signal, SignalTarget};

/// The SDK's exporters, one per signal.
#[derive(Debug)]
pub struct SdkExporters {
    /// For the batch span processor.
    pub spans: Reported<opentelemetry_otlp::SpanExporter>,
    /// For the periodic metric reader.
    pub metrics: Reported<opentelemetry_otlp::MetricExporter>,
    /// For the batch log processor.
    pub logs: Reported<opentelemetry_otlp::LogExporter>,
}

/// The targets of the three signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Spans.
    pub traces: SignalTarget,
    /// Metric points.
    pub metrics: SignalTarget,
    /// Log records.
    pub logs: SignalTarget,
}

impl Targets {
    /// The target of `signal`.
    pub fn of(&self, signal: Signal) -> &SignalTarget {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

/// Builds the three exporters; nothing is sent until the SDK exports.
///
/// # Errors
/// Fails when an HTTP client or an exporter cannot be built.
pub fn sdk_exporters(
    targets: &Targets,
    clients: &mut HttpClients,
    health: &Arc<ExportHealth>,
) -> Result<SdkExporters, BuildError> {
    let failed = |signal| move |source| BuildError::Exporter { signal, source };
    let spans = configure(
        opentelemetry_otlp::SpanExporter::builder().with_http(),
        &targets.traces,
        clients,
    )?
    .build()
    .map_err(failed(Signal::Traces))?;
    let metrics = configure(
        opentelemetry_otlp::MetricExporter::builder().with_http(),
        &targets.metrics,
        clients,
    )?
    .build()
    .map_err(failed(Signal::Metrics))?;
    let logs = configure(
        opentelemetry_otlp::LogExporter::builder().with_http(),
        &targets.logs,
        clients,
    )?
    .build()
    .map_err(failed(Signal::Logs))?;
    let reported = |signal: Signal| Reporting {
        signal,
        collector: targets.of(signal).collector(),
        health: Arc::clone(health),
    };
    Ok(SdkExporters {
        spans: Reported::new(spans, reported(Signal::Traces)),
        metrics: Reported::new(metrics, reported(Signal::Metrics)),
        logs: Reported::new(logs, reported(Signal::Logs)),
    })
}

/// Sets `target` on an HTTP exporter builder.
fn configure<B>(
    builder: B,
    target: &SignalTarget,
    clients: &mut HttpClients,
) -> Result<B, BuildError>
where
    B: opentelemetry_otlp::WithExportConfig + opentelemetry_otlp::WithHttpConfig,
{
    let builder = builder
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(target.url.as_str())
        .with_timeout(target.timeout)
        .with_http_client(clients.for_target(target)?);
    Ok(match target.compression {
        Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
        // Left unset, the crate would read OTEL_EXPORTER_OTLP_*COMPRESSION
        // itself: the same variables chimney resolved to "none".
        Compression::None => builder,
    })
}

/// Where an exporter reports.
#[derive(Debug)]
struct Reporting {
    signal: Signal,
    collector: String,
    health: Arc<ExportHealth>,
}

/// An exporter that reports each export's outcome to [`ExportHealth`].
/// (The SDK's processors also log every failed export themselves;
/// telemetry start-up keeps those lines out of the log.)
#[derive(Debug)]
pub struct Reported<E> {
    inner: E,
    reporting: Reporting,
}

impl<E> Reported<E> {
    fn new(inner: E, reporting: Reporting) -> Self {
        Self { inner, reporting }
    }

    fn report(&self, result: &OTelSdkResult) {
        let r = &self.reporting;
        r.health.report(r.signal, &r.collector, result);
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.report(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Reported<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.report(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter + std::fmt::Debug> PushMetricExporter for Reported<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.report(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
