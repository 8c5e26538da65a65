//! How the fake answers: a request is recorded, then answered from the
//! faults, delays and resources of its state, with recorded headers
//! rewritten to point at the fake; control requests under `/__` are
//! answered apart, unrecorded and never delayed:
//!
//! - `GET /__requests`: every request so far, in arrival order, as a JSON
//!   list of `{"method", "path", "headers": {name: value}, "status"}`
//!   (`path` with its query as received, header names lower-case, values
//!   of a repeated header joined with `, `, `status` null while pending,
//!   `at_ms` the arrival in Unix milliseconds, `answer_headers` the
//!   answer's headers like `headers`);
//! - `GET /__count`: `{"<path and query>": n, ...}`, the requests per path;
//! - `POST /__reset`: forgets every request so far (`204`);
//! - `POST /__faults`: adds the fault its JSON body describes (`204`; `400`
//!   naming what is wrong), see `control.rs`;
//! - `DELETE /__faults`: removes every fault and delay (`204`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::{Body, Request, Response};

use super::control::FaultSpec;
use super::key::RequestKey;
use super::{FakeGithub, Fault, Inner, RateLimit, RecordedRequest, State};

/// The origin the recordings were made against; rewritten to the fake's own
/// origin in `Link` and `Location` so nothing ever points at the internet.
const RECORDED_ORIGIN: &str = "https://api.github.com";

/// How long a hanging answer takes: far beyond any test's deadline.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// Where the control endpoints live: no GitHub path starts with it.
const CONTROL_PREFIX: &str = "/__";

pub(super) fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    inner.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements the in-flight count when an answer is complete or abandoned.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the fake decided to answer, worked out under the lock.
enum Plan {
    Respond(Response),
    Hang,
}

pub(super) async fn answer(inner: Arc<Inner>, req: Request) -> Response {
    if req.uri().path().starts_with(CONTROL_PREFIX) {
        return control(inner, req).await;
    }
    let now_in_flight = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner
        .max_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    let _in_flight = InFlight(&inner.in_flight);

    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let key = RequestKey::parse(&path_and_query);

    let (delay, plan) = {
        let mut state = lock(&inner);
        state.requests.push(RecordedRequest {
            method: req.method().clone(),
            path_and_query,
            headers: req.headers().clone(),
            status: None,
            received_at: SystemTime::now(),
            answer_headers: HeaderMap::new(),
            key: key.clone(),
        });
        let index = state.requests.len() - 1;
        let delay: Duration = state
            .delays
            .iter()
            .filter(|(t, _)| t.covers(&key))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default();
        let fault = state
            .faults
            .iter()
            .rev()
            .find(|(t, _)| t.covers(&key))
            .map(|(_, f)| f.clone());
        let plan = match fault {
            Some(Fault::Hang) => Plan::Hang,
            Some(fault) => Plan::Respond(inner.faulty(&fault)),
            None => Plan::Respond(inner.normal(&state, &key, req.headers())),
        };
        if let Plan::Respond(response) = &plan {
            let recorded = &mut state.requests[index];
            recorded.status = Some(response.status().as_u16());
            recorded.answer_headers = response.headers().clone();
        }
        (delay, plan)
    };
    inner.arrived.notify_waiters();

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match plan {
        Plan::Respond(response) => response,
        Plan::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            inner.github_error(504, "Gateway Timeout")
        }
    }
}

/// A control request (see the module docs); `404` for an unknown one.
async fn control(inner: Arc<Inner>, mut req: Request) -> Response {
    let json = |value: serde_json::Value| {
        Response::builder()
            .content_type("application/json")
            .body(value.to_string())
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/__requests") => {
            let requests: Vec<serde_json::Value> = lock(&inner)
                .requests
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "method": r.method.as_str(),
                        "path": r.path_and_query,
                        "headers": header_object(&r.headers),
                        "status": r.status,
                        "at_ms": unix_millis(r.received_at),
                        "answer_headers": header_object(&r.answer_headers),
                    })
                })
                .collect();
            json(serde_json::Value::from(requests))
        }
        (&Method::GET, "/__count") => {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for request in &lock(&inner).requests {
                *counts.entry(request.path_and_query.clone()).or_default() += 1;
            }
            json(serde_json::json!(counts))
        }
        (&Method::POST, "/__reset") => {
            lock(&inner).requests.clear();
            Response::builder().status(StatusCode::NO_CONTENT).finish()
        }
        (&Method::POST, "/__faults") => {
            let body = match req.take_body().into_bytes().await {
                Ok(body) => body,
                Err(error) => return inner.github_error(400, &error.to_string()),
            };
            match FaultSpec::parse(&body) {
                Ok(spec) => {
                    spec.apply(&FakeGithub { inner });
                    Response::builder().status(StatusCode::NO_CONTENT).finish()
                }
                Err(reason) => inner.github_error(400, &reason),
            }
        }
        (&Method::DELETE, "/__faults") => {
            FakeGithub { inner }.clear_faults();
            Response::builder().status(StatusCode::NO_CONTENT).finish()
        }
        _ => inner.github_error(404, "Not Found"),
    }
}

/// Headers as a JSON object, names lower-case (as `HeaderMap` keeps them),
/// the values of a repeated header joined with `, `.
fn header_object(headers: &HeaderMap) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<not UTF-8>"))
            .collect();
        object.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    serde_json::Value::Object(object)
}

impl Inner {
    /// GitHub's secondary limit as it answers it (a 403 or a 429 with
    /// `Retry-After`, requests still left in the primary budget).
    fn secondary_limit(&self, status: StatusCode, retry_after_secs: u64) -> Response {
        Response::builder()
            .status(status)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Retry-After", retry_after_secs.to_string())
            .header("X-RateLimit-Limit", "5000")
            .header("X-RateLimit-Remaining", "4000")
            .header("X-RateLimit-Reset", self.rate_limit_reset.to_string())
            .body(
                r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#secondary-rate-limits"}"#,
            )
    }

    /// The answer for a known resource, or GitHub's 404.
    fn normal(&self, state: &State, key: &RequestKey, request_headers: &HeaderMap) -> Response {
        let Some(resource) = state.lookup(key) else {
            return self.github_error(404, "Not Found");
        };
        let canned = resource.served();
        let headers = self.rewrite_headers(&canned.headers);
        if let Some(etag) = canned.etag()
            && if_none_match_hits(request_headers, etag)
        {
            let mut builder = Response::builder().status(StatusCode::NOT_MODIFIED);
            for (name, value) in &headers {
                let lower = name.to_ascii_lowercase();
                if matches!(lower.as_str(), "etag" | "cache-control" | "vary" | "date")
                    || lower.starts_with("x-ratelimit-")
                {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            return builder.body(Body::empty());
        }
        let mut builder = Response::builder().status(status(canned.status));
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(canned.body.clone())
    }

    /// Recorded headers as served now: no `Connection` or `Content-Length`
    /// (the server computes it), a current `Date`, a future rate-limit reset,
    /// and links pointing at this fake instead of `api.github.com`.
    pub(super) fn rewrite_headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let now = unix_now();
        headers
            .iter()
            .filter(|(n, _)| {
                !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("content-length")
            })
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let value = match lower.as_str() {
                    "date" => httpdate::fmt_http_date(SystemTime::now()),
                    "x-ratelimit-reset" => match value.trim().parse::<u64>() {
                        Ok(reset) if reset <= now => self.rate_limit_reset.to_string(),
                        _ => value.clone(),
                    },
                    "location" => value.replace(RECORDED_ORIGIN, &self.origin),
                    "link" => self.rewrite_link(value),
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    }

    fn rewrite_link(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|c| open + c) else {
                break;
            };
            out.push_str(&rest[..=open]);
            let url = &rest[open + 1..close];
            out.push_str(&self.rewrite_url(url));
            out.push('>');
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn rewrite_url(&self, url: &str) -> String {
        let Some(after) = url.strip_prefix(RECORDED_ORIGIN) else {
            return url.to_owned();
        };
        let (path, query) = after.split_once('?').unwrap_or((after, ""));
        if query.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query}", self.origin)
        }
    }

    fn faulty(&self, fault: &Fault) -> Response {
        match fault {
            Fault::Status(code) => self.github_error(*code, "Server Error"),
            Fault::Hang => unreachable!("hangs are not answered"),
            Fault::RateLimit(RateLimit::Forbidden { reset_in_secs }) => Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-RateLimit-Limit", "5000")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", (unix_now() + reset_in_secs).to_string())
                .header("X-RateLimit-Used", "5000")
                .header("X-RateLimit-Resource", "core")
                .body(
                    r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#,
                ),
            Fault::RateLimit(RateLimit::TooManyRequests { retry_after_secs }) => self
                .secondary_limit(StatusCode::TOO_MANY_REQUESTS, *retry_after_secs),
            Fault::RateLimit(RateLimit::SecondaryForbidden { retry_after_secs }) => {
                self.secondary_limit(StatusCode::FORBIDDEN, *retry_after_secs)
            }
            Fault::HugeContentLength => Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("Content-Length", (10u64 << 30).to_string())
                .body(Body::from_bytes_stream(stalled_body())),
            Fault::BrokenBody => Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("ETag", "\"broken\"")
                // Promises more than is sent: the body stops early and the
                // connection is closed, as a broken transfer would be.
                .header("Content-Length", "1000")
                .body(Body::from_bytes_stream(broken_body())),
            Fault::Oversized { bytes, streamed } => {
                let builder = Response::builder()
                    .status(StatusCode::OK)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("ETag", "\"oversized\"");
                if *streamed {
                    builder.body(Body::from_bytes_stream(oversized_chunks(*bytes)))
                } else {
                    builder.body(oversized_body(*bytes))
                }
            }
        }
    }

    /// GitHub's error shape: `{"message", "documentation_url"}`.
    fn github_error(&self, code: u16, message: &str) -> Response {
        let body = serde_json::json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        });
        Response::builder()
            .status(status(code))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-RateLimit-Limit", "5000")
            .header(
                "X-RateLimit-Remaining",
                self.rate_limit_remaining.load(Ordering::SeqCst).to_string(),
            )
            .header("X-RateLimit-Reset", self.rate_limit_reset.to_string())
            .body(serde_json::to_vec(&body).expect("JSON serialises"))
    }
}

/// `If-None-Match` against the current ETag, ignoring `W/`, lists and `*`
/// understood.
fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    let current = etag.trim().trim_start_matches("W/");
    headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == current)
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("valid status code")
}

/// A syntactically valid JSON array of exactly `bytes` bytes.
fn oversized_body(bytes: usize) -> Vec<u8> {
    let mut body = vec![b' '; bytes.max(2)];
    body[0] = b'[';
    let last = body.len() - 1;
    body[last] = b']';
    body
}

fn oversized_chunks(
    bytes: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    const CHUNK: usize = 64 * 1024;
    let body = Bytes::from(oversized_body(bytes));
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(CHUNK)
        .map(|start| Ok(body.slice(start..(start + CHUNK).min(body.len()))))
        .collect();
    futures::stream::iter(chunks)
}

/// The start of a body, flushed, then a failure: the connection breaks off
/// after the headers and a few bytes have gone out.
fn broken_body() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"[{\"id\":1},")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fake GitHub broke the connection off",
                    )),
                    2,
                ))
            }
            _ => None,
        }
    })
}

/// A few bytes, then nothing for an hour.
fn stalled_body() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"[")), 1)),
            _ => {
                tokio::time::sleep(HANG_FOR).await;
                None
            }
        }
    })
}

/// Unix time in milliseconds, with the sub-millisecond part.
fn unix_millis(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// FNV-1a, enough to derive distinct ETags for test bodies.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_none_match(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("if-none-match", value.parse().expect("header value"));
        headers
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let etag = "W/\"abc\"";
        assert!(if_none_match_hits(&if_none_match("\"abc\""), etag));
        assert!(if_none_match_hits(&if_none_match("\"x\", W/\"abc\""), etag));
        assert!(if_none_match_hits(&if_none_match("*"), etag));
        assert!(!if_none_match_hits(&if_none_match("\"abd\""), etag));
        assert!(!if_none_match_hits(&HeaderMap::new(), etag));
    }
}
