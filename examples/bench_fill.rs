//! Cache fill probe for `bench/memory.sh` (see `BENCHMARKS.md`, Footprint).
//!
//! GETs `--keys` distinct URLs, `{--url}{n}` for n in `--first..--first+--keys`, over
//! `--concurrency` keep-alive connections, each URL once, and prints how many answered 200,
//! the other outcomes and the rate. Everything is bounded by `--timeout-secs`.
//!
//! Output, one line:
//! ```text
//! FILL keys=100000 ok=100000 other=0 errors=0 seconds=12.3 rate=8130
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::task::JoinSet;

/// Command line of the fill probe.
#[derive(Debug, Parser)]
#[command(about = "GET N distinct URLs once each and report the fill rate")]
struct Args {
    /// Prefix of every URL; the key's number is appended.
    #[arg(long)]
    url: String,
    /// Number of distinct URLs.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// The first key's number.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Deadline for the whole run.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // reqwest is built without a crypto provider of its own (Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("bench_fill: cannot build the client: {error}");
            return ExitCode::FAILURE;
        }
    };
    let next = Arc::new(AtomicU64::new(args.first));
    let end = args.first + args.keys;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, next, counts, prefix) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&counts),
            args.url.clone(),
        );
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return;
                }
                let outcome = match client.get(format!("{prefix}{n}")).send().await {
                    // Read the body, so the connection is reused.
                    Ok(response) => {
                        let status = response.status();
                        match response.bytes().await {
                            Ok(_) if status == 200 => &counts.ok,
                            Ok(_) => &counts.other,
                            Err(_) => &counts.errors,
                        }
                    }
                    Err(_) => &counts.errors,
                };
                outcome.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let all = async { while tasks.join_next().await.is_some() {} };
    let finished = tokio::time::timeout(Duration::from_secs(args.timeout_secs), all)
        .await
        .is_ok();
    let seconds = started.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    let other = counts.other.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    println!(
        "FILL keys={} ok={ok} other={other} errors={errors} seconds={seconds:.1} rate={:.0}",
        args.keys,
        (ok + other) as f64 / seconds
    );
    if finished && other == 0 && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
