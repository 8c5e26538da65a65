//! A fake GitHub REST API for the benchmarks in `bench/` (see `BENCHMARKS.md`).
//!
//! It serves one canned, GitHub-shaped JSON list (about 15 KB of pull-request-like objects,
//! generated once at startup) for every `GET /repos/{owner}/{repo}/{*path}`, with an `ETag`,
//! GitHub's `Cache-Control: private, max-age=60, s-maxage=60` and `X-RateLimit-*` headers,
//! and answers a matching `If-None-Match` with `304`. Every repo request is delayed by
//! `--delay-ms` so that coalescing and locking in the proxies under test become visible.
//!
//! Control endpoints (never delayed):
//! * `GET /__count` answers `{"<path and query>": n, ...}`, the repo requests seen per path.
//! * `POST /__reset` zeroes the counters.
//!
//! The first line on stdout is `PORT=NNNN`, so a script can start it with `--port 0`.
//! It is not a test double with GitHub's full semantics: one body, one ETag, no errors.

use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use clap::Parser;
use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
    http::{StatusCode, header},
    listener::TcpAcceptor,
    post,
    web::{Data, Json},
};
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
}

/// Shared state. The counter map sits behind a std `Mutex` because it is only held for a
/// map update, never across an `.await`.
struct State {
    body: Bytes,
    etag: String,
    rate_limit_reset: String,
    delay: Duration,
    counts: Mutex<BTreeMap<String, u64>>,
}

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

/// A weak ETag over the body, shaped like GitHub's list ETags.
fn etag_of(body: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:016x}\"", hasher.finish())
}

/// Weak comparison of an `If-None-Match` value (a list, or `*`) against our ETag.
fn if_none_match_matches(value: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    value
        .split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == ours)
}

#[handler]
async fn repo(req: &Request, state: Data<&Arc<State>>) -> Response {
    let key = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    *state
        .counts
        .lock()
        .expect("counter lock is never poisoned")
        .entry(key)
        .or_insert(0) += 1;
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match_matches(v, &state.etag));
    let builder = Response::builder()
        .header(header::ETAG, state.etag.as_str())
        .header(header::CACHE_CONTROL, "private, max-age=60, s-maxage=60")
        .header("X-RateLimit-Limit", "5000")
        .header("X-RateLimit-Remaining", "4999")
        .header("X-RateLimit-Reset", state.rate_limit_reset.as_str())
        .header("X-RateLimit-Used", "1")
        .header("X-RateLimit-Resource", "core")
        .header("X-GitHub-Media-Type", "github.v3; format=json");
    if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).finish()
    } else {
        builder
            .content_type("application/json; charset=utf-8")
            .body(state.body.clone())
    }
}

#[handler]
fn count(state: Data<&Arc<State>>) -> Json<BTreeMap<String, u64>> {
    Json(
        state
            .counts
            .lock()
            .expect("counter lock is never poisoned")
            .clone(),
    )
}

#[handler]
fn reset(state: Data<&Arc<State>>) -> StatusCode {
    state
        .counts
        .lock()
        .expect("counter lock is never poisoned")
        .clear();
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let body = pull_requests_body();
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let state = Arc::new(State {
        etag: etag_of(&body),
        body,
        rate_limit_reset: reset_at.to_string(),
        delay: Duration::from_millis(args.delay_ms),
        counts: Mutex::new(BTreeMap::new()),
    });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "PORT={port}")?;
    stdout.flush()?;

    let app = Route::new()
        .at("/repos/:owner/:repo/*path", poem::get(repo))
        .at("/__count", poem::get(count))
        .at("/__reset", post(reset))
        .data(state);
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run(app)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_about_fifteen_kilobytes_of_json() {
        let body = pull_requests_body();
        assert!((BODY_TARGET_BYTES..BODY_TARGET_BYTES + 2048).contains(&body.len()));
        let parsed: Vec<Value> = serde_json::from_slice(&body).expect("valid JSON");
        assert!(parsed.len() > 10);
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let etag = "W/\"abc\"";
        assert!(if_none_match_matches("\"abc\"", etag));
        assert!(if_none_match_matches("\"x\", W/\"abc\"", etag));
        assert!(if_none_match_matches("*", etag));
        assert!(!if_none_match_matches("\"abd\"", etag));
    }
}
