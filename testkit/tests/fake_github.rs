//! The fake GitHub from the outside, as the tools that share it use it:
//! without recordings, resources set by pattern, made-up rate-limit
//! figures, and the control endpoints under `/__`.

use std::net::SocketAddr;

use chimney_testkit::github::{FakeGithub, Options};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response read to the end.
struct Answer {
    status: u16,
    /// Header pairs, names lower-case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// `{method} {target}` over a fresh HTTP/1.1 connection. A bare client on
/// purpose: reqwest's features depend on what else the workspace builds
/// (chimney's leave it without a TLS provider), and nothing here needs more.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    send_body(addr, method, target, headers, "").await
}

/// Like [`send`], with a body.
async fn send_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the fake");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    // A broken-off answer ends in a reset: what arrived before it is kept.
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn get(github: &FakeGithub, target: &str) -> Answer {
    send(github.addr(), "GET", target, &[]).await
}

async fn without_recordings() -> FakeGithub {
    FakeGithub::start_with(Options {
        recordings: false,
        ..Options::default()
    })
    .await
    .expect("start the fake")
}

#[tokio::test]
async fn the_recordings_are_served_unless_left_out() {
    let with = FakeGithub::start().await;
    let root = get(&with, "/").await;
    assert_eq!(root.status, 200);
    assert_eq!(root.header("etag"), with.etag("/"));

    let without = without_recordings().await;
    assert_eq!(get(&without, "/").await.status, 404);
}

#[tokio::test]
async fn a_pattern_answers_every_matching_path_after_exact_resources() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/pulls", &json!([{"number": 7}]));
    let exact = github.set_json("/repos/o/special/pulls", &json!([{"number": 8}]));

    let any = get(&github, "/repos/a/b/pulls?state=open").await;
    assert_eq!(any.status, 200);
    assert_eq!(any.json(), json!([{"number": 7}]));
    assert_eq!(
        get(&github, "/repos/o/special/pulls").await.header("etag"),
        exact
    );
    assert_eq!(get(&github, "/repos/a/b/issues").await.status, 404);

    let etag = github.etag("/repos/a/b/pulls");
    let again = send(
        github.addr(),
        "GET",
        "/repos/a/b/pulls",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn made_up_answers_report_the_rate_limit_remaining_that_was_set() {
    let github = without_recordings().await;
    github.set_rate_limit_remaining(4987);
    github.set_json("/repos/o/r", &json!({"id": 1}));
    for path in ["/repos/o/r", "/repos/o/r/unknown"] {
        let answer = get(&github, path).await;
        assert_eq!(answer.header("x-ratelimit-remaining"), "4987", "{path}");
    }
}

#[tokio::test]
async fn the_control_endpoints_report_and_forget_requests_without_being_recorded() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/**", &json!([]));
    let pulls = "/repos/o/r/pulls?state=open";
    send(
        github.addr(),
        "GET",
        pulls,
        &[("Authorization", "Bearer t0ken")],
    )
    .await;
    get(&github, pulls).await;
    get(&github, "/nowhere").await;

    let requests = get(&github, "/__requests").await.json();
    assert_eq!(requests.as_array().expect("a list").len(), 3);
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], pulls);
    assert_eq!(requests[0]["headers"]["authorization"], "Bearer t0ken");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[2]["status"], 404);

    let counts = get(&github, "/__count").await.json();
    assert_eq!(counts, json!({pulls: 2, "/nowhere": 1}));
    assert_eq!(github.total_requests(), 3, "control requests were recorded");

    assert_eq!(
        send(github.addr(), "POST", "/__reset", &[]).await.status,
        204
    );
    assert_eq!(github.total_requests(), 0);
    assert_eq!(get(&github, "/__count").await.json(), json!({}));
}

/// Posts a fault to the control endpoint; returns the status.
async fn post_fault(github: &FakeGithub, spec: Value) -> u16 {
    send_body(
        github.addr(),
        "POST",
        "/__faults",
        &[("Content-Type", "application/json")],
        &spec.to_string(),
    )
    .await
    .status
}

#[tokio::test]
async fn faults_are_switched_on_and_off_over_http() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/**", &json!([{"number": 1}]));
    let pulls = "/repos/o/r/pulls";

    assert_eq!(
        post_fault(&github, json!({"fault": "status", "status": 502})).await,
        204
    );
    assert_eq!(get(&github, pulls).await.status, 502);

    let scoped =
        json!({"fault": "too_many_requests", "retry_after_secs": 7, "path": "/repos/*/*/issues"});
    assert_eq!(post_fault(&github, scoped).await, 204);
    let limited = get(&github, "/repos/o/r/issues").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), "7");

    assert_eq!(
        post_fault(&github, json!({"fault": "rate_limit", "reset_in_secs": 30})).await,
        204
    );
    let exhausted = get(&github, pulls).await;
    assert_eq!(exhausted.status, 403);
    assert_eq!(exhausted.header("x-ratelimit-remaining"), "0");
    let reset: u64 = exhausted
        .header("x-ratelimit-reset")
        .parse()
        .expect("a reset");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        (now + 28..=now + 31).contains(&reset),
        "reset {reset}, now {now}"
    );

    assert_eq!(
        post_fault(&github, json!({"fault": "break_connection"})).await,
        204
    );
    let broken = get(&github, pulls).await;
    assert_eq!(broken.status, 200);
    assert!(broken.body.len() < 1000, "the body broke off");

    assert_eq!(
        send(github.addr(), "DELETE", "/__faults", &[]).await.status,
        204
    );
    assert_eq!(
        post_fault(&github, json!({"fault": "delay", "ms": 300})).await,
        204
    );
    let started = std::time::Instant::now();
    let slow = get(&github, pulls).await;
    assert_eq!(slow.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    assert_eq!(
        send(github.addr(), "DELETE", "/__faults", &[]).await.status,
        204
    );
    let started = std::time::Instant::now();
    assert_eq!(get(&github, pulls).await.json(), json!([{"number": 1}]));
    assert!(started.elapsed() < std::time::Duration::from_millis(300));

    for nonsense in [
        json!({"fault": "flood"}),
        json!({"fault": "status", "status": 7}),
    ] {
        assert_eq!(post_fault(&github, nonsense).await, 400);
    }
}

#[tokio::test]
async fn recorded_requests_carry_their_arrival_and_the_limit_they_were_answered() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/**", &json!([]));
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0;
    get(&github, "/repos/o/r/pulls").await;
    post_fault(
        &github,
        json!({"fault": "too_many_requests", "retry_after_secs": 5}),
    )
    .await;
    get(&github, "/repos/o/r/pulls").await;

    let requests = get(&github, "/__requests").await.json();
    let at = |i: usize| requests[i]["at_ms"].as_f64().expect("at_ms");
    assert!(at(0) >= before_ms - 1.0 && at(1) >= at(0), "{requests}");
    assert_eq!(
        requests[0]["answer_headers"]["x-ratelimit-remaining"],
        "4999"
    );
    assert_eq!(requests[1]["status"], 429);
    assert_eq!(requests[1]["answer_headers"]["retry-after"], "5");
}
