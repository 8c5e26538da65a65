//! The request exporter: each served request's server span and log record,
//! written as OTLP protobuf straight from one plain record and posted in
//! batches, without the SDK.
//!
//! The request middleware fills one [`RequestRecord`](crate::ports::RequestRecord)
//! per request; [`RequestExporter`] batches the records and writes both
//! OTLP messages from each. Per request, an SDK span and log record, their
//! batch processors' copies, `opentelemetry-proto`'s owned copy of each
//! (a `String` per attribute key and value, a `Vec` per id) and the
//! cross-thread frees cost several times what encoding the record does
//! (bench/telemetry.sh, BENCHMARKS.md). The payload is the same OTLP
//! protobuf: the tests decode it with `opentelemetry-proto` and compare it
//! with that crate's own conversion of the equivalent SDK span and record.
//!
//! Every other span and log record (the GitHub fetch, an invalidation,
//! start-up, a panic), and the metrics, go through the SDK and
//! `opentelemetry-otlp` (`super::sdk`). Both paths send each signal to the
//! same [`SignalTarget`]: URL, headers, timeout and compression; both
//! sample with the same [`Sampling`](super::sampling::Sampling) and report
//! to the same [`ExportHealth`](super::health::ExportHealth).
//!
//! Exports run on the exporter's own thread, so the blocking HTTP client
//! never runs on the request runtime.

mod batcher;
mod common;
mod envelope;
mod proto;
mod request;
mod span;

use std::io::Write as _;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};

use super::health::Failure;
use super::target::{BuildError, Compression, HttpClients, OtlpHttpClient, Signal, SignalTarget};

pub use batcher::{BatchOptions, RequestExportConfig, RequestExporter};

/// Posts encoded payloads to one signal's target.
#[derive(Debug, Clone)]
struct Endpoint {
    signal: Signal,
    url: url::Url,
    client: OtlpHttpClient,
    compression: Compression,
    /// The collector, as failures name it.
    collector: String,
}

/// Why a post failed: how, for grouping, and the error's text.
#[derive(Debug)]
struct PostError {
    failure: Failure,
    detail: String,
}

impl Endpoint {
    fn new(
        signal: Signal,
        target: &SignalTarget,
        clients: &mut HttpClients,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            signal,
            url: target.url.clone(),
            client: clients.for_target(target)?,
            compression: target.compression,
            collector: target.collector(),
        })
    }

    fn post(&self, body: Vec<u8>) -> Result<(), PostError> {
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => gzip(&body).map_err(|error| PostError {
                failure: Failure::Other,
                detail: format!("cannot gzip the {} payload: {error}", self.signal),
            })?,
        };
        let mut request = self
            .client
            .reqwest()
            .post(self.url.clone())
            .headers(self.client.headers().clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
        if self.compression == Compression::Gzip {
            request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let response = request.body(body).send().map_err(|error| PostError {
            failure: Failure::NoAnswer,
            // The URL may carry credentials: never in an error message.
            detail: error.without_url().to_string(),
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError {
                failure: Failure::Status(status.as_u16()),
                detail: format!("HTTP {status}"),
            })
        }
    }
}

/// `body` gzipped at the fastest level: request batches are most of what
/// is exported, and OTLP protobuf compresses well even so.
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests;
