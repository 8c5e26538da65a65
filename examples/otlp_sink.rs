//! An OTLP/HTTP sink for `bench/telemetry.sh`: accepts `POST /v1/traces`,
//! `/v1/metrics` and `/v1/logs`, reads and drops each payload, and answers
//! `200` with an empty protobuf message, so chimney's exporters do their
//! full work against a collector that costs next to nothing.
//!
//! `GET /__count` answers `traces=N metrics=N logs=N bytes=N`, so a script
//! can check that something was exported. The first line on stdout is
//! `PORT=NNNN` (start it with `--port 0`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use poem::listener::TcpAcceptor;
use poem::{Endpoint, EndpointExt, Request, Response, Route, Server};

/// Command line.
#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// Payloads received per signal, and bytes in all.
#[derive(Default)]
struct Counts {
    traces: AtomicU64,
    metrics: AtomicU64,
    logs: AtomicU64,
    bytes: AtomicU64,
}

fn sink(counts: Arc<Counts>, pick: fn(&Counts) -> &AtomicU64) -> impl Endpoint<Output = Response> {
    poem::endpoint::make(move |req: Request| {
        let counts = Arc::clone(&counts);
        async move {
            let body = req.into_body().into_bytes().await.unwrap_or_default();
            counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            pick(&counts).fetch_add(1, Ordering::Relaxed);
            Ok::<_, poem::Error>(
                Response::builder()
                    .content_type("application/x-protobuf")
                    .body(Vec::new()),
            )
        }
    })
    .map_to_response()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    println!("PORT={port}");
    std::io::stdout().flush()?;
    let counts = Arc::new(Counts::default());
    let report = Arc::clone(&counts);
    let app = Route::new()
        .at("/v1/traces", sink(Arc::clone(&counts), |c| &c.traces))
        .at("/v1/metrics", sink(Arc::clone(&counts), |c| &c.metrics))
        .at("/v1/logs", sink(counts, |c| &c.logs))
        .at(
            "/__count",
            poem::endpoint::make_sync(move |_| {
                format!(
                    "traces={} metrics={} logs={} bytes={}\n",
                    report.traces.load(Ordering::Relaxed),
                    report.metrics.load(Ordering::Relaxed),
                    report.logs.load(Ordering::Relaxed),
                    report.bytes.load(Ordering::Relaxed),
                )
            }),
        );
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run(app)
        .await
}
