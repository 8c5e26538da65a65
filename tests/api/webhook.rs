//! `POST /api/github/webhook` (CONTRACT 6, v2): the signature, the secret,
//! the size cap, `ping`, repeated deliveries (across instances sharing a
//! Dragonfly), foreign repositories, each event family's prefixes, the
//! background refetch, and hostile input.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::live_client::{
    WEBHOOK, WEBHOOK_SECRET, delivery_id, payload, sign, spawn_webhook_app_with,
};

/// Every prefix family of the table, one cached path each.
const ALL_PATHS: [&str; 12] = [
    "/",
    "/commits",
    "/branches",
    "/compare/main...dev",
    "/readme",
    "/pulls?state=open",
    "/issues?state=open",
    "/actions/runs",
    "/releases",
    "/tags",
    "/labels",
    "/milestones",
];

async fn webhook_app() -> TestApp {
    spawn_webhook_app_with(|_| {}).await
}

/// Waits until Dragonfly is in use (Redis runs only).
async fn dragonfly_ready(app: &TestApp) {
    if let Backend::Redis(_) = app.backend {
        app.wait_for_dragonfly("connected", Duration::from_secs(5))
            .await;
    }
}

/// Serves and caches each of `rels`, asserting a MISS.
async fn cache_all(app: &TestApp, rels: &[&str]) {
    for rel in rels {
        app.github
            .set_json(&app.upstream(rel), &json!({ "rel": rel, "version": 1 }));
        let response = app.get_github(rel).await;
        assert_eq!(response.status, 200, "{rel}: {}", response.text());
        assert_eq!(response.x_cache(), "MISS", "{rel}");
    }
}

async fn x_cache(app: &TestApp, rel: &str) -> String {
    app.get_github(rel).await.x_cache().to_owned()
}

async fn post_signed(
    app: &TestApp,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> crate::helpers::TestResponse {
    app.send(Method::POST, WEBHOOK, headers, body).await
}

// ---- the signature and the secret ---------------------------------------------

#[tokio::test]
async fn a_correctly_signed_push_is_accepted() {
    let app = webhook_app().await;
    let answer = app.deliver_event("push").await;
    assert_eq!(answer["event"], "push");
    assert_eq!(
        answer["prefixes"],
        json!(["/commits", "/branches", "/compare", "/readme", "/"])
    );
    assert_eq!(answer["evicted"], 0);
}

#[tokio::test]
async fn a_missing_or_wrong_signature_is_refused_and_nothing_is_evicted() {
    let app = webhook_app().await;
    dragonfly_ready(&app).await;
    cache_all(&app, &["/commits"]).await;
    let body = payload(app.repo.as_str()).to_string();
    let id = delivery_id();
    let base = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", id.as_str()),
    ];

    let missing = post_signed(&app, &base, body.clone().into_bytes()).await;
    missing.assert_problem(401);

    let wrong_secret = sign("another-secret", body.as_bytes());
    let mut headers = base.to_vec();
    headers.push(("x-hub-signature-256", &wrong_secret));
    post_signed(&app, &headers, body.clone().into_bytes())
        .await
        .assert_problem(401);

    // Signed correctly, but for another body.
    let other_body = sign(WEBHOOK_SECRET, b"{}");
    let mut headers = base.to_vec();
    headers.push(("x-hub-signature-256", &other_body));
    post_signed(&app, &headers, body.clone().into_bytes())
        .await
        .assert_problem(401);

    for malformed in ["sha256=", "sha256=zz", "sha1=abc", "garbage"] {
        let mut headers = base.to_vec();
        headers.push(("x-hub-signature-256", malformed));
        post_signed(&app, &headers, body.clone().into_bytes())
            .await
            .assert_problem(401);
    }

    assert_eq!(x_cache(&app, "/commits").await, "HIT");
    // The refused attempts did not use up the delivery id.
    let response = app.deliver("push", &id, &payload(app.repo.as_str())).await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json()["evicted"], 1);
}

#[tokio::test]
async fn an_unset_or_blank_secret_disables_the_endpoint() {
    for secret in [None, Some(""), Some("   ")] {
        let app = spawn_app_with(|s| {
            s.github_webhook_secret = secret.map(secrecy::SecretString::from);
        })
        .await;
        let response = app
            .deliver("push", &delivery_id(), &payload(app.repo.as_str()))
            .await;
        response.assert_problem(503);
        assert!(
            response.json()["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/endpoint-disabled"))
        );
        assert!(!response.text().contains(WEBHOOK_SECRET));
    }
}

#[tokio::test]
async fn other_methods_are_refused() {
    let app = webhook_app().await;
    let response = app.get(WEBHOOK).await;
    response.assert_problem(405);
    assert_eq!(response.header("allow"), Some("POST"));
}

// ---- size -------------------------------------------------------------------

#[tokio::test]
async fn a_body_over_5_mib_is_refused_whatever_its_framing() {
    let app = webhook_app().await;
    let body = vec![b' '; 5 * 1024 * 1024 + 1];
    let signature = sign(WEBHOOK_SECRET, &body);
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    post_signed(&app, &headers, body.clone())
        .await
        .assert_problem(413);

    // Chunked, no Content-Length: cut off while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = app.send(Method::POST, WEBHOOK, &headers, stream).await;
    response.assert_problem(413);

    // Exactly 5 MiB of valid JSON is read and handled.
    let mut big = payload(app.repo.as_str());
    let filler = 5 * 1024 * 1024 - big.to_string().len() - 20;
    big["filler"] = json!("x".repeat(filler));
    let response = app.deliver("push", &delivery_id(), &big).await;
    assert_eq!(response.status, 202, "{}", response.text());
}

#[tokio::test]
async fn without_a_signature_a_huge_announced_body_is_refused_at_once() {
    let app = webhook_app().await;
    // Announces 100 MiB but sends nothing: the answer must not wait for it.
    let started = std::time::Instant::now();
    let response = status_line_of(
        &app,
        "POST /api/github/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\nX-GitHub-Event: push\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- ping, repeats, repositories --------------------------------------------

#[tokio::test]
async fn ping_is_answered_200() {
    let app = webhook_app().await;
    let response = app
        .deliver(
            "ping",
            &delivery_id(),
            &json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["event"], "ping");
}

#[tokio::test]
async fn a_repeated_delivery_is_acknowledged_and_ignored() {
    let app = webhook_app().await;
    dragonfly_ready(&app).await;
    let id = delivery_id();
    let first = app.deliver("push", &id, &payload(app.repo.as_str())).await;
    assert_eq!(first.status, 202);
    cache_all(&app, &["/commits"]).await;

    let again = app.deliver("push", &id, &payload(app.repo.as_str())).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(x_cache(&app, "/commits").await, "HIT");
}

#[tokio::test]
async fn a_delivery_handled_by_one_instance_is_ignored_by_another() {
    let blue = webhook_app().await;
    let Backend::Redis(_) = blue.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    let shared = blue.redis.clone();
    let green = spawn_webhook_app_with(move |s| s.redis = shared).await;
    dragonfly_ready(&blue).await;
    dragonfly_ready(&green).await;
    let id = delivery_id();
    let body = payload(blue.repo.as_str());
    assert_eq!(blue.deliver("issues", &id, &body).await.status, 202);
    let repeat = green.deliver("issues", &id, &body).await;
    assert_eq!(repeat.status, 200, "{}", repeat.text());
    assert_eq!(repeat.json()["duplicate"], true);
}

#[tokio::test]
async fn an_event_for_a_repository_not_served_evicts_nothing() {
    let app = webhook_app().await;
    dragonfly_ready(&app).await;
    cache_all(&app, &["/commits", "/pulls?state=open"]).await;
    for body in [
        payload("someone/else"),
        json!({"repository": {"full_name": 42}}),
        json!({"no": "repository"}),
        json!([1, 2, 3]),
    ] {
        let response = app.deliver("push", &delivery_id(), &body).await;
        // A payload whose repository is not a string is no repository.
        if response.status == 400 {
            continue;
        }
        assert_eq!(response.status, 202, "{body}: {}", response.text());
        assert_eq!(response.json()["evicted"], 0, "{body}");
        assert_eq!(response.json()["prefixes"], json!([]), "{body}");
    }
    assert_eq!(x_cache(&app, "/commits").await, "HIT");
    assert_eq!(x_cache(&app, "/pulls?state=open").await, "HIT");

    // The repository's own name matches whatever its case.
    let shouting = app.repo.as_str().to_ascii_uppercase();
    let response = app
        .deliver("push", &delivery_id(), &payload(&shouting))
        .await;
    assert_eq!(response.json()["evicted"], 1, "{}", response.text());
}

#[tokio::test]
async fn an_unknown_event_is_accepted_with_nothing_to_evict() {
    let app = webhook_app().await;
    cache_all(&app, &["/commits"]).await;
    let answer = app.deliver_event("star").await;
    assert_eq!(
        answer,
        json!({"event": "star", "prefixes": [], "evicted": 0})
    );
    assert_eq!(x_cache(&app, "/commits").await, "HIT");
}

// ---- the prefix table ---------------------------------------------------------

#[tokio::test]
async fn each_event_family_evicts_its_prefixes_and_keeps_the_rest() {
    let families: [(&str, &[&str]); 7] = [
        (
            "push",
            &[
                "/",
                "/commits",
                "/branches",
                "/compare/main...dev",
                "/readme",
            ],
        ),
        ("pull_request", &["/pulls?state=open", "/issues?state=open"]),
        ("issue_comment", &["/issues?state=open"]),
        ("check_suite", &["/actions/runs", "/commits"]),
        ("release", &["/releases", "/tags"]),
        ("delete", &["/branches", "/tags"]),
        ("label", &["/", "/labels", "/milestones"]),
    ];
    let app = webhook_app().await;
    dragonfly_ready(&app).await;
    for (event, evicted) in families {
        app.github.clear_faults();
        // Every path cached (again) and fresh.
        for rel in ALL_PATHS {
            app.github
                .set_json(&app.upstream(rel), &json!({ "rel": rel }));
            let _ = app.get_github(rel).await;
            assert_eq!(x_cache(&app, rel).await, "HIT", "{event}: {rel} before");
        }
        let answer = app.deliver_event(event).await;
        assert_eq!(answer["evicted"], evicted.len(), "{event}: {answer}");
        for rel in ALL_PATHS {
            let expected = if evicted.contains(&rel) {
                "MISS"
            } else {
                "HIT"
            };
            // The background refetch may already have stored it again.
            let seen = x_cache(&app, rel).await;
            if expected == "MISS" {
                assert_ne!(seen, "", "{event}: {rel}");
            } else {
                assert_eq!(seen, "HIT", "{event}: {rel} must be kept");
            }
        }
    }
}

#[tokio::test]
async fn evicted_keys_asked_for_lately_are_fetched_again_in_the_background() {
    let app = webhook_app().await;
    dragonfly_ready(&app).await;
    let rel = "/pulls?state=open";
    cache_all(&app, &[rel, "/issues?state=closed"]).await;
    let upstream = app.upstream(rel);
    assert_eq!(app.github.requests_for(&upstream), 1);

    app.github
        .set_json(&upstream, &json!({ "rel": rel, "version": 2 }));
    let answer = app.deliver_event("pull_request").await;
    assert_eq!(answer["evicted"], 2);

    // Without any client request, the new body is fetched once...
    app.github
        .wait_for_requests(&upstream, 2, Duration::from_secs(5))
        .await;
    // ...and the next client request is a fresh HIT with it.
    let response = app.get_github(rel).await;
    assert_eq!(response.x_cache(), "HIT");
    assert_eq!(response.json()["version"], 2);
    assert_eq!(app.github.requests_for(&upstream), 2);
}

#[tokio::test]
async fn in_single_repo_mode_another_repository_of_the_owner_is_not_served() {
    // Org mode, where it is, is tested in org.rs.
    let app = webhook_app().await;
    cache_all(&app, &["/commits"]).await;
    let response = app
        .deliver(
            "push",
            &delivery_id(),
            &payload("octokit-fixture-org/other"),
        )
        .await;
    assert_eq!(response.json()["evicted"], 0);
    assert_eq!(x_cache(&app, "/commits").await, "HIT");
}

// ---- hostile input ------------------------------------------------------------

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_a_bad_request() {
    let app = webhook_app().await;
    cache_all(&app, &["/commits"]).await;
    for body in [
        &b"payload=%7B%7D"[..],
        b"",
        b"\xff\xfe",
        b"{\"repository\":",
    ] {
        let signature = sign(WEBHOOK_SECRET, body);
        let id = delivery_id();
        let response = post_signed(
            &app,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-github-event", "push"),
                ("x-github-delivery", id.as_str()),
                ("x-hub-signature-256", signature.as_str()),
            ],
            body.to_vec(),
        )
        .await;
        response.assert_problem(400);
        assert!(
            response.text().contains("application/json"),
            "{}",
            response.text()
        );
    }
    assert_eq!(x_cache(&app, "/commits").await, "HIT");
}

#[tokio::test]
async fn bad_event_and_delivery_headers_are_refused() {
    let app = webhook_app().await;
    let body = payload(app.repo.as_str()).to_string();
    let signature = sign(WEBHOOK_SECRET, body.as_bytes());
    let long_event = "a".repeat(65);
    let long_delivery = "d".repeat(129);
    let huge = "x".repeat(60 * 1024);
    for (event, delivery) in [
        (None, Some("abc")),
        (Some("Push!"), Some("abc")),
        (Some(long_event.as_str()), Some("abc")),
        (Some("push"), Some("a:b")),
        (Some("push"), Some(long_delivery.as_str())),
        (Some(huge.as_str()), Some("abc")),
        (Some("push"), Some(huge.as_str())),
    ] {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-hub-signature-256", signature.as_str()),
        ];
        if let Some(event) = event {
            headers.push(("x-github-event", event));
        }
        if let Some(delivery) = delivery {
            headers.push(("x-github-delivery", delivery));
        }
        let response = post_signed(&app, &headers, body.clone().into_bytes()).await;
        assert!(
            response.status == 400 || response.status == 431,
            "{event:?}/{delivery:?}: {} {}",
            response.status,
            response.text()
        );
    }
    // Still serving.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn the_secret_never_appears_in_an_answer() {
    let app = webhook_app().await;
    for event in ["push", "ping", "star"] {
        let response = app
            .deliver(event, &delivery_id(), &payload(app.repo.as_str()))
            .await;
        assert!(!response.text().contains(WEBHOOK_SECRET));
    }
}

/// Sends `raw` and returns the first line of the answer.
async fn status_line_of(app: &TestApp, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        stream.write_all(raw.as_bytes()).await.expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("an answer within 5 s")
}

#[tokio::test]
async fn an_invalidation_that_cannot_reach_dragonfly_is_503_and_can_be_redelivered() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let app = spawn_webhook_app_with(|s| {
        s.redis = Some(url::Url::parse(&format!("redis://127.0.0.1:{port}")).expect("URL"));
    })
    .await;
    let id = delivery_id();
    let body = payload(app.repo.as_str());
    let first = app.deliver("push", &id, &body).await;
    first.assert_problem(503);
    // Forgotten, so GitHub's redelivery is handled (and fails the same way
    // while Dragonfly is away) rather than ignored as a repeat.
    let again = app.deliver("push", &id, &body).await;
    again.assert_problem(503);
    let text = again.text();
    assert!(!text.contains("duplicate"), "{text}");
}
