//! Tests of the exporters, with `opentelemetry-proto` decoding what they
//! send.

mod requests;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::{BatchOptions, RequestExportConfig, RequestExporter};
use crate::adapters::otlp::health::ExportHealth;
use crate::adapters::otlp::sampling::Sampling;
use crate::adapters::otlp::target::{HttpClients, SignalTarget};

pub(super) fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("chimney-test")
        .with_schema_url(
            [KeyValue::new("deployment.slot", "blue")],
            "https://opentelemetry.io/schemas/1.30.0",
        )
        .build()
}

/// `base` + `path`, with no headers and no compression.
pub(super) fn target(base: &str, path: &str, timeout: Duration) -> SignalTarget {
    SignalTarget::plain(
        url::Url::parse(&format!("{base}{path}")).expect("url"),
        timeout,
    )
}

/// Starts a request exporter sending to `traces` and `logs`.
pub(super) fn start(
    traces: &SignalTarget,
    logs: &SignalTarget,
    batching: BatchOptions,
    health: &Arc<ExportHealth>,
) -> RequestExporter {
    RequestExporter::start(
        RequestExportConfig {
            traces,
            logs,
            resource: &resource(),
            scope: "chimney",
            batching,
            sampling: Sampling::default(),
            health: Arc::clone(health),
        },
        &mut HttpClients::default(),
    )
    .expect("the exporter starts")
}

/// A request exporter for the collector at `base` (`/v1/traces`,
/// `/v1/logs`), batching records for 50 ms.
fn build(base: &str, timeout: Duration) -> RequestExporter {
    start(
        &target(base, "/v1/traces", timeout),
        &target(base, "/v1/logs", timeout),
        BatchOptions {
            delay: Duration::from_millis(50),
            max_batch: 512,
            queue: 1024,
        },
        &Arc::new(ExportHealth::new()),
    )
}

/// Answers up to 8 requests on a loopback port with `status`; returns the
/// port and the (path, head, body) of each request received (the head
/// lower-cased).
fn collector_answering(status: u16) -> (u16, Receiver<(String, String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (sender, bodies) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut chunk = [0u8; 8192];
            let received = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    return;
                };
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    let path = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    break (
                        path,
                        text[..end].to_owned(),
                        request[end + 4..end + 4 + length].to_vec(),
                    );
                }
            };
            let _ = sender.send(received);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, bodies)
}
