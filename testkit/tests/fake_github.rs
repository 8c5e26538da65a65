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
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the fake");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
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
