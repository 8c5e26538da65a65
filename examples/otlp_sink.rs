//! An OTLP/HTTP sink for `bench/telemetry.sh`: `chimney_testkit::otlp`'s
//! sink in counting mode, which accepts `POST /v1/traces`, `/v1/metrics`
//! and `/v1/logs`, reads and drops each payload, and answers `200` with an
//! empty protobuf message, so chimney's exporters do their full work
//! against a collector that costs next to nothing.
//!
//! `GET /__count` answers `traces=N metrics=N logs=N bytes=N`, so a script
//! can check that something was exported. The first line on stdout is
//! `PORT=NNNN` (start it with `--port 0`).

use std::io::Write;
use std::net::SocketAddr;

use chimney_testkit::otlp::{Mode, OtlpSink};
use clap::Parser;

/// Command line.
#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let sink = OtlpSink::start_on(SocketAddr::from(([127, 0, 0, 1], args.port)), Mode::Count)?;
    println!("PORT={}", sink.addr().port());
    std::io::stdout().flush()?;
    // The sink serves from a thread of its own; this one only keeps the
    // process alive until it is killed.
    loop {
        std::thread::park();
    }
}
