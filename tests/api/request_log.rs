//! The per-request JSON log line on stdout, read from the real binary: every
//! request gets one, with the fields CONTRACT 8 names, ids that match the
//! response's `X-Trace-ID` and an incoming `traceparent`, and no secret.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chimney_testkit::github::FakeGithub;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use crate::helpers::{HELLO_WORLD, REQUEST_DEADLINE, init_test_process};

const TOKEN: &str = "ghp_request_log_test_secret_0123456789";
const README: &str = "/api/github/contents/README.md";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Sends SIGTERM: a graceful stop, so the log writer flushes its buffer.
fn terminate(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) with a pid this test spawned and still owns (not yet
    // waited for, so not reused) and a valid signal number.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM could not be sent");
}

#[tokio::test]
async fn every_request_writes_one_json_line_with_its_ids_and_no_secret() {
    init_test_process();
    let github = FakeGithub::start().await;
    let port = free_port();
    let mut chimney = tokio::process::Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--github-api-url",
            github.base_url().as_str(),
            "--redis",
            "",
            "--repo",
            HELLO_WORLD,
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_SDK_DISABLED", "true")
        .env("GITHUB_TOKEN", TOKEN)
        // The recorded README lies outside the default path policy.
        .env("CHIMNEY_PROXY_PATHS", "/contents/**")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chimney starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("client");

    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < REQUEST_DEADLINE,
            "chimney did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let miss = client
        .get(format!("{base}{README}"))
        .send()
        .await
        .expect("miss");
    assert_eq!(miss.status(), 200);
    let hit = client
        .get(format!("{base}{README}"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .expect("hit");
    assert_eq!(hit.status(), 200);
    let hit_trace = hit.headers()["x-trace-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let hit_bytes = hit.bytes().await.expect("body").len();
    let missing = client
        .get(format!("{base}/api/nothing?x=1&y=%20z"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);

    terminate(chimney.id().expect("running"));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out = chimney.stdout.take().expect("stdout");
    let mut err = chimney.stderr.take().expect("stderr");
    let read = async {
        let _ = out.read_to_string(&mut stdout).await;
        let _ = err.read_to_string(&mut stderr).await;
        chimney.wait().await
    };
    tokio::time::timeout(REQUEST_DEADLINE, read)
        .await
        .expect("chimney stopped after SIGTERM")
        .expect("exit status");

    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token was printed"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    let routes: Vec<&str> = requests
        .iter()
        .map(|l| l["route"].as_str().unwrap_or_default())
        .collect();
    assert!(
        routes.ends_with(&["/api/github/{path}", "/api/github/{path}", "/api/{unknown}"]),
        "one line per request, in order: {routes:?}"
    );

    let hit_line = requests
        .iter()
        .find(|l| l["trace_id"] == TRACE_ID)
        .expect("the hit's line carries the incoming trace id");
    assert_eq!(hit_trace, TRACE_ID);
    assert_eq!(hit_line["method"], "GET");
    assert_eq!(hit_line["status"], 200);
    assert_eq!(hit_line["cache_hit"], true);
    assert_eq!(hit_line["cache_tier"], "memory");
    assert_eq!(hit_line["bytes"], hit_bytes);
    assert!(hit_line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(hit_line["level"] == "INFO");
    let span_id = hit_line["span_id"].as_str().expect("span id");
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, PARENT_ID, "the request's own span, not its parent");

    let miss_line = requests.iter().rev().nth(2).expect("the miss's line");
    assert_eq!(miss_line["cache_hit"], false);
    assert_eq!(miss_line["cache_tier"], "none");
    assert_ne!(miss_line["trace_id"], TRACE_ID);
    assert_eq!(miss_line["trace_id"].as_str().map(str::len), Some(32));
    // The path and query as received (CONTRACT 8 v2).
    assert_eq!(hit_line["path"], README);
    let missing_line = requests.last().expect("the 404's line");
    assert_eq!(missing_line["path"], "/api/nothing?x=1&y=%20z");
}

/// A chimney binary on a free port, memory tier only, export off, its
/// stdout and stderr piped.
struct Binary {
    child: tokio::process::Child,
    base: String,
}

impl Binary {
    async fn start(github: &FakeGithub, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chimney"));
        command
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--github-api-url",
                github.base_url().as_str(),
                "--redis",
                "",
                "--repo",
                HELLO_WORLD,
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OTEL_SDK_DISABLED", "true")
            .env("CHIMNEY_PROXY_PATHS", "/contents/**")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("chimney starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < REQUEST_DEADLINE,
                "chimney did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base }
    }

    /// SIGTERM, then everything it wrote to stdout until it exited.
    async fn stop(mut self) -> String {
        terminate(self.child.id().expect("running"));
        let mut stdout = String::new();
        let mut out = self.child.stdout.take().expect("stdout");
        let read = async {
            let _ = out.read_to_string(&mut stdout).await;
            self.child.wait().await
        };
        let status = tokio::time::timeout(REQUEST_DEADLINE, read)
            .await
            .expect("chimney stopped after SIGTERM")
            .expect("exit status");
        assert!(status.success(), "{status}");
        stdout
    }
}

/// The request lines among `stdout`'s lines, every line checked to be JSON.
fn request_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .filter(|line: &Value| line["message"] == "request")
        .collect()
}

#[tokio::test]
async fn no_request_line_is_lost_when_stopped_right_after_a_burst() {
    init_test_process();
    let github = FakeGithub::start().await;
    let chimney = Binary::start(&github, &[]).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("client");
    assert_eq!(
        client
            .get(format!("{}{README}", chimney.base))
            .send()
            .await
            .expect("warm")
            .status(),
        200
    );
    // Many lines at once, hits and 404s with hostile paths, over parallel
    // connections; the stop signal follows the last answer at once, while
    // lines are still queued for the writer.
    const REQUESTS: usize = 3_000;
    let answered: usize = futures::future::join_all((0..16).map(|worker| {
        let client = client.clone();
        let base = chimney.base.clone();
        async move {
            let mut answered = 0;
            for n in (worker..REQUESTS).step_by(16) {
                let url = if n % 3 == 0 {
                    format!("{base}/api/nothing/%22%7D%0A{n}?q=%E2%80%A8\\")
                } else {
                    format!("{base}{README}?n={n}")
                };
                let response = client.get(url).send().await.expect("answered");
                response.bytes().await.expect("body");
                answered += 1;
            }
            answered
        }
    }))
    .await
    .into_iter()
    .sum();
    assert_eq!(answered, REQUESTS);

    let stdout = chimney.stop().await;
    // The start-up probe's /healthz line aside.
    let lines: Vec<Value> = request_lines(&stdout)
        .into_iter()
        .filter(|l| l["path"] != "/healthz")
        .collect();
    assert_eq!(lines.len(), REQUESTS + 1, "one line per request, none lost");
    let mut seen: Vec<usize> = lines
        .iter()
        .filter_map(|l| l["path"].as_str())
        .filter_map(|p| {
            p.rsplit_once("?n=").map(|(_, n)| n).or_else(|| {
                p.strip_prefix("/api/nothing/%22%7D%0A")
                    .map(|r| r.split('?').next().unwrap_or(r))
            })
        })
        .map(|n| n.parse().expect("a request number"))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), REQUESTS, "every request has its own line");
}

#[tokio::test]
async fn a_warn_log_filter_turns_the_request_log_off() {
    init_test_process();
    let github = FakeGithub::start().await;
    let chimney = Binary::start(&github, &[("RUST_LOG", "warn")]).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for _ in 0..3 {
        let status = client
            .get(format!("{}{README}", chimney.base))
            .send()
            .await
            .expect("answered")
            .status();
        assert_eq!(status, 200);
    }
    let stdout = chimney.stop().await;
    assert!(request_lines(&stdout).is_empty(), "{stdout}");
}
