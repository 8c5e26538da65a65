//! Stampede probe for the benchmarks in `bench/` (see `BENCHMARKS.md`).
//!
//! Fires exactly `--requests` concurrent GETs at one URL, released together by a barrier, and
//! prints the latency percentiles of the individual requests and the counts of their status
//! codes and `X-Cache` headers. With `--warm-url`, the same number of connections is opened
//! first with a round of GETs to that URL, so the timed round measures waiting on the proxy,
//! not TCP connection setup. Everything is bounded by `--timeout-secs`.
//!
//! Output, one record a line, `key=value` fields:
//! ```text
//! STAMPEDE url=... requests=200 completed=200 errors=0 min_ms=50.1 p50_ms=51.0 p99_ms=52.9 max_ms=53.0
//! STATUS 200=200
//! X_CACHE COALESCED=199 MISS=1
//! ```

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use tokio::{sync::Barrier, task::JoinSet};

/// Command line of the stampede probe.
#[derive(Debug, Parser)]
#[command(about = "Fire N concurrent GETs at one URL and report latency percentiles")]
struct Args {
    /// The URL every request asks for (a cold key, to measure a stampede).
    #[arg(long)]
    url: String,
    /// Number of concurrent requests.
    #[arg(long, short = 'n', default_value_t = 200)]
    requests: usize,
    /// Optional URL fetched by a first, untimed round to open the connections.
    #[arg(long)]
    warm_url: Option<String>,
    /// Deadline for the whole run, warm-up included.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// What one request of the timed round observed.
struct Outcome {
    latency: Duration,
    status: Option<u16>,
    x_cache: Option<String>,
    error: Option<String>,
}

/// Runs `n` GETs of `url` together after a barrier, each bounded by `deadline`.
async fn fire(client: &reqwest::Client, url: &str, n: usize, deadline: Instant) -> Vec<Outcome> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        let url = url.to_owned();
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            let started = Instant::now();
            let timeout = deadline.saturating_duration_since(started);
            let result = async {
                let response = client.get(&url).timeout(timeout).send().await?;
                let status = response.status().as_u16();
                let x_cache = response
                    .headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                response.bytes().await?;
                Ok::<_, reqwest::Error>((status, x_cache))
            }
            .await;
            let latency = started.elapsed();
            match result {
                Ok((status, x_cache)) => Outcome {
                    latency,
                    status: Some(status),
                    x_cache,
                    error: None,
                },
                Err(e) => Outcome {
                    latency,
                    status: None,
                    x_cache: None,
                    error: Some(e.to_string()),
                },
            }
        });
    }
    let mut outcomes = Vec::with_capacity(n);
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    };
    let grace = deadline + Duration::from_secs(1);
    if tokio::time::timeout_at(grace.into(), collect)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    outcomes
}

/// Nearest-rank percentile of sorted values; `p` in 0..=100.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn counts_line(label: &str, counts: &BTreeMap<String, usize>) -> String {
    let fields: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{label} {}", fields.join(" "))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.requests == 0 {
        eprintln!("--requests must be at least 1");
        return ExitCode::FAILURE;
    }
    // reqwest is built without a default rustls provider; plain HTTP needs none, but the
    // client builder still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let client = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.requests)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("cannot build HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };

    if let Some(warm_url) = &args.warm_url {
        let warm = fire(&client, warm_url, args.requests, deadline).await;
        let failed = warm.iter().filter(|o| o.error.is_some()).count();
        if failed > 0 {
            eprintln!("warm-up: {failed} of {} requests failed", args.requests);
        }
    }

    let outcomes = fire(&client, &args.url, args.requests, deadline).await;
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    let mut statuses = BTreeMap::new();
    let mut x_cache = BTreeMap::new();
    for outcome in &outcomes {
        if let Some(status) = outcome.status {
            *statuses.entry(status.to_string()).or_insert(0) += 1;
            let label = outcome.x_cache.clone().unwrap_or_else(|| "none".into());
            *x_cache.entry(label).or_insert(0) += 1;
        }
    }

    println!(
        "STAMPEDE url={} requests={} completed={} errors={} min_ms={:.2} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.url,
        args.requests,
        latencies.len(),
        errors + (args.requests - outcomes.len()),
        percentile(&latencies, 0.0),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    );
    println!("{}", counts_line("STATUS", &statuses));
    println!("{}", counts_line("X_CACHE", &x_cache));
    if let Some(error) = outcomes.iter().find_map(|o| o.error.as_deref()) {
        println!("FIRST_ERROR {error}");
    }
    if latencies.len() == args.requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 50.0), 100.0);
        assert_eq!(percentile(&values, 99.0), 198.0);
        assert_eq!(percentile(&values, 100.0), 200.0);
    }
}
