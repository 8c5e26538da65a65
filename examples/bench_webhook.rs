//! Webhook freshness (BENCHMARKS.md, "Webhook freshness"): how soon a
//! change announced by a GitHub webhook is visible to a client of a running
//! chimney, and how many upstream requests it costs, against the same run
//! without the webhook (the change shows once the entry's TTL expires).
//!
//! ```text
//! bench_webhook --chimney target/debug/chimney --mode webhook|ttl \
//!               [--rounds 200] [--ttl-secs 600] [--poll-ms 10] [--gap-ms 100]
//! ```
//!
//! The fake GitHub (testkit) runs in this process, so each round can change
//! the resource directly: it serves `{"version": n}` at `/pulls`, a client
//! polls `GET /api/github/pulls` every `--poll-ms`, and in `webhook` mode a
//! signed `pull_request` delivery is posted right after the change. The
//! latency of a round runs from the change to the first poll that returns
//! the new body. Prints one JSON line with the figures.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chimney_testkit::github::{FakeGithub, Options};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const REPO: &str = "bench/repo";
const SECRET: &str = "bench-webhook-secret";

struct Args {
    chimney: String,
    mode: String,
    rounds: usize,
    ttl_secs: u64,
    poll_ms: u64,
    gap_ms: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        chimney: "target/debug/chimney".to_owned(),
        mode: "webhook".to_owned(),
        rounds: 200,
        ttl_secs: 600,
        poll_ms: 10,
        gap_ms: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--chimney" => args.chimney = value,
            "--mode" => args.mode = value,
            "--rounds" => args.rounds = value.parse()?,
            "--ttl-secs" => args.ttl_secs = value.parse()?,
            "--poll-ms" => args.poll_ms = value.parse()?,
            "--gap-ms" => args.gap_ms = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.mode != "webhook" && args.mode != "ttl" {
        bail!("--mode is webhook or ttl");
    }
    Ok(args)
}

/// Stops chimney when the bench ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let github = FakeGithub::start_with(Options {
        recordings: false,
        ..Options::default()
    })
    .await?;
    let upstream = format!("/repos/{REPO}/pulls");
    github.set_json(&upstream, &json!({"version": 0}));

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("chimney.toml");
    std::fs::write(
        &config,
        format!(
            "[[ttl]]\npath = \"/pulls\"\nduration = \"{}s\"\n",
            args.ttl_secs
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _chimney = Running(
        Command::new(&args.chimney)
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHIMNEY_ADDR", format!("127.0.0.1:{port}"))
            .env("CHIMNEY_REDIS", "")
            .env("CHIMNEY_REPO", REPO)
            .env("CHIMNEY_GITHUB_API_URL", github.origin())
            .env("CHIMNEY_DOCS", dir.path())
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("OTEL_SDK_DISABLED", "true")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", args.chimney))?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("chimney did not answer /healthz in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let version_seen = || async {
        let response = client
            .get(format!("{base}/api/github/pulls"))
            .send()
            .await
            .ok()?;
        let bytes = response.bytes().await.ok()?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        body["version"].as_u64()
    };
    // The client holds the key: version 0 is cached.
    if version_seen().await != Some(0) {
        bail!("chimney does not serve the fake's version 0");
    }

    let mut latencies = Vec::with_capacity(args.rounds);
    let mut polls = 0u64;
    let give_up = Duration::from_secs(args.ttl_secs + 30);
    for round in 1..=args.rounds as u64 {
        github.set_json(&upstream, &json!({"version": round}));
        let changed = Instant::now();
        if args.mode == "webhook" {
            let body =
                json!({"action": "synchronize", "repository": {"full_name": REPO}}).to_string();
            let answer = client
                .post(format!("{base}/api/github/webhook"))
                .header("content-type", "application/json")
                .header("x-github-event", "pull_request")
                .header(
                    "x-github-delivery",
                    format!("bench-{}-{round}", std::process::id()),
                )
                .header("x-hub-signature-256", sign(body.as_bytes()))
                .body(body)
                .send()
                .await?;
            if answer.status() != 202 {
                bail!("webhook answered {}", answer.status());
            }
        }
        loop {
            polls += 1;
            if version_seen().await == Some(round) {
                break;
            }
            if changed.elapsed() > give_up {
                bail!("round {round}: the change never became visible");
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
        }
        latencies.push(changed.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }

    let statuses = github.statuses_for(&upstream);
    let full = statuses.iter().filter(|s| **s == Some(200)).count();
    let not_modified = statuses.iter().filter(|s| **s == Some(304)).count();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let versions = args.rounds + 1;
    let report = json!({
        "mode": args.mode,
        "rounds": args.rounds,
        "ttl_secs": args.ttl_secs,
        "poll_ms": args.poll_ms,
        "client_polls": polls,
        "visible_ms": {
            "p50": percentile(&sorted, 50.0),
            "p90": percentile(&sorted, 90.0),
            "p99": percentile(&sorted, 99.0),
            "max": sorted.last().copied().unwrap_or(f64::NAN),
        },
        "upstream": {
            "requests": statuses.len(),
            "full_200": full,
            "not_modified_304": not_modified,
            "versions": versions,
            "full_per_version": full as f64 / versions as f64,
        },
    });
    let mut out = std::io::stdout();
    writeln!(out, "{report}")?;
    Ok(())
}
