//! A fake GitHub REST API for the benchmarks in `bench/` (see `BENCHMARKS.md`): the testkit's
//! `FakeGithub`, without its recordings, set up as below.
//!
//! It serves one canned, GitHub-shaped JSON list (about 15 KB of pull-request-like objects,
//! generated once at startup) for every `GET /repos/{owner}/{repo}/{*path}`, with an `ETag`,
//! GitHub's `Cache-Control: private, max-age=60, s-maxage=60` and `X-RateLimit-*` headers,
//! and answers a matching `If-None-Match` with `304`. Every GitHub request is delayed by
//! `--delay-ms` so that coalescing and locking in the proxies under test become visible.
//!
//! Control endpoints (never delayed):
//! * `GET /__count` answers `{"<path and query>": n, ...}`, the requests seen per path.
//! * `POST /__reset` zeroes the counters.
//!
//! The first line on stdout is `PORT=NNNN`, so a script can start it with `--port 0`.
//! Nothing else is set up: one body, one ETag, no errors.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    io::Write,
    net::SocketAddr,
    time::Duration,
};

use bytes::Bytes;
use chimney_testkit::github::{ALL, FakeGithub, Options};
use clap::Parser;
use serde_json::{Value, json};

/// Command line of the fake upstream.
#[derive(Debug, Parser)]
#[command(about = "Fake GitHub REST API for chimney benchmarks")]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Artificial latency added to every repo request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Serve a JSON body of exactly this many bytes instead of the list
    /// (bench/memory.sh fills the cache with 8 KiB bodies).
    #[arg(long)]
    body_bytes: Option<usize>,
}

/// What the canned list answers: every path below a repository.
const EVERY_REPO_PATH: &str = "/repos/*/*/**";

/// Target size of the canned list body, in bytes.
const BODY_TARGET_BYTES: usize = 15 * 1024;

/// Builds a list of pull-request-like objects just over [`BODY_TARGET_BYTES`].
fn pull_requests_body() -> Bytes {
    let mut pulls: Vec<Value> = Vec::new();
    let mut size = 2;
    let mut number: u64 = 1000;
    while size < BODY_TARGET_BYTES {
        let pr = json!({
            "url": format!("https://api.github.com/repos/bench/repo/pulls/{number}"),
            "id": 1_900_000_000 + number,
            "node_id": format!("PR_kwDOBench{number:08}"),
            "html_url": format!("https://github.com/bench/repo/pull/{number}"),
            "number": number,
            "state": "open",
            "locked": false,
            "title": format!("Improve cache coalescing for hot keys (part {number})"),
            "user": {
                "login": "octocat",
                "id": 583231,
                "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
                "html_url": "https://github.com/octocat",
                "type": "User",
                "site_admin": false
            },
            "body": "This change makes concurrent requests for one key share a single upstream fetch.",
            "labels": [{"id": 208045946, "name": "enhancement", "color": "a2eeef", "default": true}],
            "created_at": "2026-10-01T12:00:00Z",
            "updated_at": "2026-10-02T08:30:00Z",
            "closed_at": null,
            "merged_at": null,
            "draft": false,
            "head": {"ref": format!("feature-{number}"), "sha": format!("{:040x}", number * 7919)},
            "base": {"ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
            "author_association": "CONTRIBUTOR"
        });
        size += pr.to_string().len() + 1;
        pulls.push(pr);
        number += 1;
    }
    Bytes::from(serde_json::to_vec(&pulls).expect("a JSON value serialises"))
}

/// A JSON object of exactly `size` bytes (at least 16): `{"padding":"xx…"}`.
fn padded_body(size: usize) -> Bytes {
    let frame = r#"{"padding":""}"#.len();
    let padding = "x".repeat(size.max(frame) - frame);
    Bytes::from(format!(r#"{{"padding":"{padding}"}}"#))
}

/// A weak ETag over the body, shaped like GitHub's list ETags.
fn etag_of(body: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:016x}\"", hasher.finish())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let github = FakeGithub::start_with(Options {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        recordings: false,
    })
    .await?;
    let body = args.body_bytes.map_or_else(pull_requests_body, padded_body);
    let etag = etag_of(&body);
    let reset = github.rate_limit_reset().to_string();
    github.set_resource(
        EVERY_REPO_PATH,
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", &etag),
            ("Cache-Control", "private, max-age=60, s-maxage=60"),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4999"),
            ("X-RateLimit-Reset", &reset),
            ("X-RateLimit-Used", "1"),
            ("X-RateLimit-Resource", "core"),
            ("X-GitHub-Media-Type", "github.v3; format=json"),
        ],
        body,
    );
    if args.delay_ms > 0 {
        github.delay(ALL, Duration::from_millis(args.delay_ms));
    }

    let mut stdout = std::io::stdout();
    writeln!(stdout, "PORT={}", github.addr().port())?;
    stdout.flush()?;
    // The fake serves from tasks of this runtime, until the process is killed.
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_body_has_the_size_asked_for() {
        let body = padded_body(8192);
        assert_eq!(body.len(), 8192);
        let _: Value = serde_json::from_slice(&body).expect("valid JSON");
    }

    #[test]
    fn body_is_about_fifteen_kilobytes_of_json() {
        let body = pull_requests_body();
        assert!((BODY_TARGET_BYTES..BODY_TARGET_BYTES + 2048).contains(&body.len()));
        let parsed: Vec<Value> = serde_json::from_slice(&body).expect("valid JSON");
        assert!(parsed.len() > 10);
    }
}
