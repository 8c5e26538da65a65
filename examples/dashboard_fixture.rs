//! A running chimney for the dashboard's browser test (and for looking at
//! the dashboard by hand): the real server, serving `docs/`, in front of
//! the testkit's fake GitHub with fixed, GitHub-shaped data (and none of its
//! recordings), with three deploy events recorded.
//!
//! ```text
//! cargo run --example dashboard_fixture [-- --port 8080] [--max-seconds 600]
//! ```
//!
//! Prints one JSON line on stdout once it serves,
//! `{"url": "http://127.0.0.1:…", "upstream": "http://127.0.0.1:…", "pid": …, "deploys_recorded": true}`,
//! then runs until SIGTERM/SIGINT, or stops by itself after
//! `--max-seconds` (default 600) so a crashed test never leaves it behind.
//!
//! What the fake serves for `atvirokodosprendimai/wgmesh`: 6 open issues of
//! which 2 are pull requests, 2 open pull requests, closed pull requests
//! whose latest merged one is #128, and 10 completed `goose-build.yml` runs
//! of which 8 succeeded; every answer says `X-RateLimit-Remaining: 4987`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chimney::bootstrap::config::Settings;
use chimney::bootstrap::startup::Application;
use chimney_testkit::github::{FakeGithub, Options};
use serde_json::{Value, json};

/// The repository the fixture serves (chimney's default).
const REPO: &str = "atvirokodosprendimai/wgmesh";
/// What every fake answer reports as GitHub's remaining budget.
const RATE_LIMIT_REMAINING: u64 = 4987;
/// The deploy ingestion token the fixture configures.
const DEPLOY_TOKEN: &str = "dashboard-fixture-deploy-token";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse()?;

    let upstream = start_fake_github().await?;
    let mut settings = Settings {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        docs: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs"),
        repo: chimney::domain::RepoName::parse(REPO).context("fixture repo")?,
        redis: None,
        github_api_url: upstream.base_url(),
        github_token: None,
        deploy_token: Some(DEPLOY_TOKEN.to_owned().into()),
        ..Settings::default()
    };
    settings.otel.disabled = true;
    let app = Application::build(settings, None).await?;
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let deploys_recorded = record_deploys(&url).await;
    println!(
        "{}",
        json!({
            "url": url,
            "upstream": upstream.origin(),
            "pid": std::process::id(),
            "deploys_recorded": deploys_recorded,
            // The browser test posts a deploy with it, to see it pushed.
            "deploy_token": DEPLOY_TOKEN,
        })
    );

    tokio::select! {
        () = shutdown_signal() => {}
        () = tokio::time::sleep(Duration::from_secs(args.max_seconds)) => {
            eprintln!("dashboard_fixture: stopping after {} s", args.max_seconds);
        }
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(6), server).await;
    Ok(())
}

struct Args {
    port: u16,
    max_seconds: u64,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            port: 0,
            max_seconds: 600,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--port" => args.port = value.parse().context("--port")?,
                "--max-seconds" => args.max_seconds = value.parse().context("--max-seconds")?,
                other => anyhow::bail!("unknown flag {other}"),
            }
        }
        Ok(args)
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Posts three deploy events, oldest first: a failed one on green, then two
/// successful ones on blue, the newest for PR #128. False when the deploy
/// endpoint is not there (or refuses), which the browser test then expects
/// the dashboard to show.
async fn record_deploys(base: &str) -> bool {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("dashboard_fixture: no HTTP client: {error}");
            return false;
        }
    };
    let now = SystemTime::now();
    let at = |secs_ago: u64| {
        humantime::format_rfc3339_seconds(now - Duration::from_secs(secs_ago)).to_string()
    };
    let events = [
        json!({"sha": "9b1d4c07aa52e8f3016c2d9e4b7a8f0c1d2e3f40", "slot": "green", "outcome": "failure",
               "duration_s": 95, "deployed_at": at(7_200), "pr_number": 126, "pr_title": "Tune relay MTU",
               "origin_ips": ["203.0.113.10"]}),
        json!({"sha": "c3e8a1f29d4b7e6051a2c9d8e7f6b5a4c3d2e1f0", "slot": "blue", "outcome": "success",
               "duration_s": 51, "deployed_at": at(3_600), "pr_number": 127, "pr_title": "Peer store compaction",
               "origin_ips": ["203.0.113.11"]}),
        json!({"sha": "4f2c9e1b7a3d5c8e0f1a2b3c4d5e6f708192a3b4", "slot": "blue", "outcome": "success",
               "duration_s": 42, "deployed_at": at(300), "pr_number": 128, "pr_title": "Faster key rotation",
               "origin_ips": ["203.0.113.11", "2001:db8::11"]}),
    ];
    for event in events {
        let sent = client
            .post(format!("{base}/api/deploy/events"))
            .bearer_auth(DEPLOY_TOKEN)
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                eprintln!(
                    "dashboard_fixture: deploy event refused with {}",
                    response.status()
                );
                return false;
            }
            Err(error) => {
                eprintln!("dashboard_fixture: deploy event failed: {error}");
                return false;
            }
        }
    }
    true
}

// ---- the fake GitHub ------------------------------------------------------

/// Starts the fake on a free loopback port, serving [`resources`] and
/// reporting [`RATE_LIMIT_REMAINING`] in every answer.
async fn start_fake_github() -> anyhow::Result<FakeGithub> {
    let github = FakeGithub::start_with(Options {
        recordings: false,
        ..Options::default()
    })
    .await?;
    github.set_rate_limit_remaining(RATE_LIMIT_REMAINING);
    for (path_and_query, body) in resources() {
        github.set_json(&path_and_query, &body);
    }
    Ok(github)
}

/// `path?query` → body. Times are relative to start-up, so the dashboard
/// shows realistic ages.
fn resources() -> Vec<(String, Value)> {
    let r = REPO;
    let now = SystemTime::now();
    let ago =
        |secs: u64| humantime::format_rfc3339_seconds(now - Duration::from_secs(secs)).to_string();
    let issues = json!([
        issue(r, 131, "Relay drops peers after rekey", false),
        issue(r, 130, "Faster key rotation", true),
        issue(r, 129, "Document the lighthouse API", false),
        issue(r, 127, "Peer store compaction", true),
        issue(r, 125, "IPv6 endpoints for mesh peers", false),
        issue(r, 122, "Flaky handshake test on arm64", false),
    ]);
    let open_pulls = json!([
        pull(r, 130, "Faster key rotation", None),
        pull(r, 127, "Peer store compaction", None),
    ]);
    let closed_pulls = json!([
        pull(r, 126, "Tune relay MTU (superseded)", None),
        pull(r, 128, "Faster key rotation", Some(&ago(2 * 3600 + 540))),
        pull(r, 124, "Bump wireguard-go", Some(&ago(3 * 86_400))),
    ]);
    let conclusions = [
        "success",
        "success",
        "failure",
        "success",
        "success",
        "success",
        "cancelled",
        "success",
        "success",
        "success",
    ];
    let runs: Vec<Value> = conclusions
        .iter()
        .enumerate()
        .map(|(i, c)| run(r, 9_410_000 - i as u64, 512 - i as u64, c))
        .collect();
    vec![
        (format!("/repos/{r}"), repository(r)),
        (format!("/repos/{r}/issues?per_page=100&state=open"), issues),
        (
            format!("/repos/{r}/pulls?per_page=100&state=open"),
            open_pulls,
        ),
        (
            format!("/repos/{r}/pulls?direction=desc&per_page=10&sort=updated&state=closed"),
            closed_pulls,
        ),
        (
            format!(
                "/repos/{r}/actions/workflows/goose-build.yml/runs?per_page=10&status=completed"
            ),
            json!({"total_count": 512, "workflow_runs": runs}),
        ),
    ]
}

fn user(login: &str, id: u64) -> Value {
    json!({"login": login, "id": id, "type": "User", "site_admin": false,
           "html_url": format!("https://github.com/{login}")})
}

fn repository(full_name: &str) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, full_name));
    json!({
        "id": 701_234_567,
        "name": name,
        "full_name": full_name,
        "private": false,
        "owner": {"login": owner, "id": 150_000_001, "type": "Organization"},
        "html_url": format!("https://github.com/{full_name}"),
        "description": "WireGuard mesh networking with automatic peer discovery",
        "fork": false,
        "created_at": "2023-11-02T09:12:44Z",
        "updated_at": "2024-05-03T08:01:10Z",
        "pushed_at": "2024-05-03T08:00:59Z",
        "language": "Go",
        "archived": false,
        "open_issues_count": 6,
        "default_branch": "main",
        "visibility": "public",
    })
}

fn issue(repo: &str, number: u64, title: &str, is_pr: bool) -> Value {
    let mut issue = json!({
        "url": format!("https://api.github.com/repos/{repo}/issues/{number}"),
        "html_url": format!("https://github.com/{repo}/issues/{number}"),
        "id": 2_100_000_000_u64 + number,
        "number": number,
        "title": title,
        "user": user("mesh-dev", 4_242),
        "labels": [],
        "state": "open",
        "comments": 2,
        "created_at": "2024-04-28T10:00:00Z",
        "updated_at": "2024-05-02T10:00:00Z",
        "closed_at": null,
        "author_association": "MEMBER",
    });
    if is_pr {
        issue["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
            "html_url": format!("https://github.com/{repo}/pull/{number}"),
            "merged_at": null,
        });
    }
    issue
}

fn pull(repo: &str, number: u64, title: &str, merged_at: Option<&str>) -> Value {
    let closed = merged_at.is_some() || number == 126;
    json!({
        "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
        "id": 1_800_000_000_u64 + number,
        "html_url": format!("https://github.com/{repo}/pull/{number}"),
        "number": number,
        "state": if closed { "closed" } else { "open" },
        "title": title,
        "user": user("mesh-dev", 4_242),
        "created_at": "2024-04-30T08:00:00Z",
        "updated_at": "2024-05-03T08:00:00Z",
        "closed_at": if closed { json!("2024-05-03T08:00:00Z") } else { Value::Null },
        "merged_at": merged_at,
        "draft": false,
        "head": {"ref": format!("pr-{number}"), "sha": format!("{number:040x}")},
        "base": {"ref": "main"},
    })
}

fn run(repo: &str, id: u64, run_number: u64, conclusion: &str) -> Value {
    json!({
        "id": id,
        "name": "goose build",
        "head_branch": "main",
        "head_sha": format!("{id:040x}"),
        "path": ".github/workflows/goose-build.yml",
        "run_number": run_number,
        "event": "push",
        "status": "completed",
        "conclusion": conclusion,
        "workflow_id": 77_001,
        "html_url": format!("https://github.com/{repo}/actions/runs/{id}"),
        "created_at": "2024-05-03T09:00:00Z",
        "updated_at": "2024-05-03T09:06:00Z",
        "run_attempt": 1,
    })
}
