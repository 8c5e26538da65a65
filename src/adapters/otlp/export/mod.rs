//! OTLP/HTTP export of spans and log records, written as protobuf straight
//! from the data rather than through `opentelemetry-otlp`.
//!
//! Two paths:
//!
//! - Each served request's server span and log record skip the SDK: the
//!   request middleware fills one [`RequestRecord`], and [`RequestExporter`]
//!   batches records and writes both OTLP messages from each. Per request,
//!   the SDK's span and log record, its batch processors' copies and the
//!   cross-thread frees cost more CPU than encoding and sending them
//!   (bench/telemetry.sh, BENCHMARKS.md).
//! - Every other span and log record (the GitHub fetch, an invalidation,
//!   start-up, a panic) goes through the SDK's batch processors to
//!   [`OtlpSpanExporter`] and [`OtlpLogExporter`].
//!
//! Why not `opentelemetry-otlp`'s exporters: they first copy every span and
//! record into `opentelemetry-proto`'s owned messages (a `String` per
//! attribute key and value, a `Vec` per id) and then encode those; on the
//! hit path that put 12.7% of the process's CPU on the export threads. The
//! payload is the same OTLP protobuf: the tests decode it with
//! `opentelemetry-proto` and compare it with that crate's own conversion of
//! the same data. Metrics, a handful of points every 15 s, stay on
//! `opentelemetry-otlp`.
//!
//! Exports run on their own threads (the SDK's, and the request
//! exporter's), so the blocking HTTP client never runs on the request
//! runtime.

mod batcher;
mod common;
mod envelope;
mod logs;
mod proto;
mod request;
mod trace;

use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::LogBatch;
use opentelemetry_sdk::trace::SpanData;

pub use batcher::{BatchOptions, EXPORTER_LOG_TARGET, RequestExporter};
use common::ExportResource;

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP HTTP client: {0}")]
pub struct ExporterBuildError(String);

/// Posts encoded payloads to one OTLP/HTTP signal path.
#[derive(Debug, Clone)]
struct Endpoint {
    client: reqwest::blocking::Client,
    url: String,
    signal: &'static str,
}

impl Endpoint {
    fn post(&self, body: Vec<u8>) -> OTelSdkResult {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            // The URL may carry credentials: never in an error message.
            .map_err(|error| {
                OTelSdkError::InternalFailure(format!(
                    "OTLP {} export failed: {}",
                    self.signal,
                    error.without_url()
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "OTLP {} export answered HTTP {status}",
                self.signal
            )))
        }
    }
}

/// The HTTP client both exporters share. Built on a thread of its own: a
/// blocking reqwest client cannot be created inside the async runtime that
/// start-up runs on.
fn blocking_client(timeout: Duration) -> Result<reqwest::blocking::Client, ExporterBuildError> {
    // reqwest is built without a default crypto provider (as for GitHub);
    // an https collector needs ring installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::thread::Builder::new()
        .name("chimney-otlp-client".to_owned())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("chimney/", env!("CARGO_PKG_VERSION")))
                .build()
        })
        .map_err(|error| ExporterBuildError(error.to_string()))?
        .join()
        .map_err(|_| ExporterBuildError("the client thread panicked".to_owned()))?
        .map_err(|error| ExporterBuildError(error.without_url().to_string()))
}

/// The exporters of spans and log records.
#[derive(Debug)]
pub struct Exporters {
    /// For the SDK's batch span processor (every span but the requests').
    pub spans: OtlpSpanExporter,
    /// For the SDK's batch log processor (every log record but the
    /// requests').
    pub logs: OtlpLogExporter,
    /// Each served request's server span and log record.
    pub requests: RequestExporter,
}

/// Builds the exporters for `base` (the collector's base URL; `/v1/traces`
/// and `/v1/logs` are appended), each request bounded by `timeout`, and
/// starts the request exporter's thread. Request records are sent under
/// `resource` and the instrumentation scope `scope`.
///
/// # Errors
/// Fails when the HTTP client or the exporter thread cannot be started.
pub fn exporters(
    base: &str,
    timeout: Duration,
    resource: &Resource,
    scope: &'static str,
    batching: BatchOptions,
) -> Result<Exporters, ExporterBuildError> {
    let client = blocking_client(timeout)?;
    let base = base.trim_end_matches('/');
    let endpoint = |path: &str, signal| Endpoint {
        client: client.clone(),
        url: format!("{base}{path}"),
        signal,
    };
    let requests = RequestExporter::start(
        endpoint("/v1/traces", "traces"),
        endpoint("/v1/logs", "logs"),
        resource,
        InstrumentationScope::builder(scope).build(),
        batching,
    )
    .map_err(|error| ExporterBuildError(error.to_string()))?;
    Ok(Exporters {
        spans: OtlpSpanExporter {
            endpoint: endpoint("/v1/traces", "traces"),
            resource: ExportResource::default(),
        },
        logs: OtlpLogExporter {
            endpoint: endpoint("/v1/logs", "logs"),
            resource: ExportResource::default(),
        },
        requests,
    })
}

/// Exports span batches as `ExportTraceServiceRequest`s.
#[derive(Debug)]
pub struct OtlpSpanExporter {
    endpoint: Endpoint,
    resource: ExportResource,
}

impl opentelemetry_sdk::trace::SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = trace::payload(&self.resource, &batch);
        drop(batch);
        self.endpoint.post(body)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = ExportResource::from(resource);
    }
}

/// Exports log batches as `ExportLogsServiceRequest`s.
#[derive(Debug)]
pub struct OtlpLogExporter {
    endpoint: Endpoint,
    resource: ExportResource,
}

impl opentelemetry_sdk::logs::LogExporter for OtlpLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let body = logs::payload(&self.resource, &batch);
        self.endpoint.post(body)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = ExportResource::from(resource);
    }
}

#[cfg(test)]
mod tests;
