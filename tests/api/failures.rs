//! `GET /api/github/{path}` when GitHub fails: 5xx, timeouts, refused
//! connections, rate limits and oversized bodies, with and without a stale
//! entry to fall back on (CONTRACT 3, stale-if-error). Nothing of a failed
//! fetch may be cached.

use std::time::{Duration, Instant};

use chimney_testkit::github::{ALL, RateLimit};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, stale_immediately};

const README: &str = "/contents/README.md";

/// Just over the 10 MiB body limit.
const OVER_LIMIT: usize = 10 * 1024 * 1024 + 1;

/// A short upstream deadline for hang tests, and the bound on how long
/// chimney may take to give up.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);
const GIVE_UP_WITHIN: Duration = Duration::from_secs(8);

/// An app whose README entry is stale as soon as it is stored, with that
/// entry already cached.
async fn app_with_stale_readme(
    configure: impl FnOnce(&mut chimney::bootstrap::config::Settings),
) -> TestApp {
    let app = spawn_app_with(|s| {
        s.ttl = stale_immediately(README);
        configure(s);
    })
    .await;
    let first = app.get_github(README).await;
    assert_eq!(first.x_cache(), "MISS", "{}", first.text());
    app
}

/// The stale entry is served with `X-Cache: STALE`, the upstream was asked
/// (once more), and once GitHub recovers the entry is revalidated: the
/// failure left the stale entry in place and cached nothing of its own.
async fn assert_stale_served_then_recovers(app: &TestApp) {
    let upstream = app.upstream(README);

    let stale = app.get_github(README).await;

    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.body, app.github.body(&upstream));
    assert_eq!(
        stale.header("etag"),
        Some(app.github.etag(&upstream).as_str())
    );
    assert_eq!(app.github.requests_for(&upstream), 2);

    app.github.clear_faults();
    let recovered = app.get_github(README).await;

    assert_eq!(recovered.x_cache(), "REVALIDATED");
    assert_eq!(recovered.body, app.github.body(&upstream));
    assert_eq!(app.github.requests_for(&upstream), 3);
}

/// With nothing cached the client gets a 502 problem; the next request
/// goes upstream again; once GitHub recovers the body is fetched afresh.
async fn assert_bad_gateway_then_recovers(app: &TestApp) {
    let upstream = app.upstream(README);

    let first = app.get_github(README).await;
    let second = app.get_github(README).await;

    first.assert_problem(502);
    second.assert_problem(502);
    assert_eq!(
        app.github.requests_for(&upstream),
        2,
        "a failed fetch must not be cached"
    );

    app.github.clear_faults();
    let recovered = app.get_github(README).await;

    assert_eq!(recovered.status, 200);
    assert_eq!(recovered.x_cache(), "MISS");
    assert_eq!(recovered.body, app.github.body(&upstream));
    assert_eq!(app.github.requests_for(&upstream), 3);
}

#[tokio::test]
async fn upstream_500_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.fail_with(&app.upstream(README), 500);

    assert_stale_served_then_recovers(&app).await;
}

#[tokio::test]
async fn upstream_502_everywhere_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.fail_with(ALL, 502);

    assert_stale_served_then_recovers(&app).await;
}

#[tokio::test]
async fn upstream_500_without_an_entry_is_a_502_problem_and_nothing_is_cached() {
    let app = spawn_app().await;
    app.github.fail_with(&app.upstream(README), 500);

    assert_bad_gateway_then_recovers(&app).await;
}

#[tokio::test]
async fn upstream_timeout_with_a_stale_entry_serves_the_stale_body_in_bounded_time() {
    let app = app_with_stale_readme(|s| s.upstream_timeout = UPSTREAM_TIMEOUT).await;
    app.github.hang(&app.upstream(README));

    let started = Instant::now();
    assert_stale_served_then_recovers(&app).await;

    assert!(
        started.elapsed() < GIVE_UP_WITHIN,
        "took {:?} with a {UPSTREAM_TIMEOUT:?} upstream timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn upstream_timeout_without_an_entry_is_a_502_problem() {
    let app = spawn_app_with(|s| s.upstream_timeout = UPSTREAM_TIMEOUT).await;
    app.github.hang(&app.upstream(README));

    let started = Instant::now();
    assert_bad_gateway_then_recovers(&app).await;

    assert!(started.elapsed() < GIVE_UP_WITHIN * 2);
}

#[tokio::test]
async fn unreachable_github_without_an_entry_is_a_502_problem() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let app = spawn_app_with(|s| {
        s.github_api_url = url::Url::parse(&format!("http://{closed}")).unwrap();
    })
    .await;

    let response = app.get_github(README).await;

    response.assert_problem(502);
}

/// The stale entry is served with `X-Cache: STALE` after one rate-limited
/// upstream answer, and again, without asking GitHub, for as long as the
/// rate-limit gate is closed (even after GitHub would answer again).
async fn assert_stale_served_while_gated(app: &TestApp) {
    let upstream = app.upstream(README);

    let limited = app.get_github(README).await;
    app.github.clear_faults();
    let gated = app.get_github(README).await;

    for response in [&limited, &gated] {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.x_cache(), "STALE");
        assert_eq!(response.body, app.github.body(&upstream));
    }
    assert_eq!(
        app.github.requests_for(&upstream),
        2,
        "the gate kept the second request from GitHub"
    );
}

#[tokio::test]
async fn rate_limited_403_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.rate_limit(
        &app.upstream(README),
        RateLimit::Forbidden { reset_in_secs: 120 },
    );

    assert_stale_served_while_gated(&app).await;
}

#[tokio::test]
async fn rate_limited_429_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.rate_limit(
        &app.upstream(README),
        RateLimit::TooManyRequests {
            retry_after_secs: 42,
        },
    );

    assert_stale_served_while_gated(&app).await;
}

#[tokio::test]
async fn rate_limited_403_without_an_entry_is_a_503_with_retry_after_from_the_reset() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github
        .rate_limit(&upstream, RateLimit::Forbidden { reset_in_secs: 120 });

    let first = app.get_github(README).await;
    let second = app.get_github(README).await;

    for response in [&first, &second] {
        response.assert_problem(503);
        let retry_after: u64 = response
            .header("retry-after")
            .expect("Retry-After on a rate-limited 503")
            .parse()
            .expect("Retry-After in seconds");
        assert!(
            (100..=121).contains(&retry_after),
            "Retry-After {retry_after} for a reset 120 s away"
        );
    }
    assert_eq!(
        app.github.requests_for(&upstream),
        1,
        "the rate-limit gate kept the second request from GitHub"
    );
}

#[tokio::test]
async fn rate_limited_429_without_an_entry_is_a_503_with_githubs_retry_after() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github.rate_limit(
        &upstream,
        RateLimit::TooManyRequests {
            retry_after_secs: 42,
        },
    );

    let first = app.get_github(README).await;
    let second = app.get_github(README).await;

    first.assert_problem(503);
    assert_eq!(first.header("retry-after"), Some("42"));
    second.assert_problem(503);
    let retry_after: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (40..=42).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(
        app.github.requests_for(&upstream),
        1,
        "the rate-limit gate kept the second request from GitHub"
    );
}

#[tokio::test]
async fn a_403_that_is_not_a_rate_limit_is_passed_through_and_not_cached() {
    let app = spawn_app().await;
    let rel = "/milestones";
    let upstream = app.upstream(rel);
    let body = r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#;
    app.github.set_resource(
        &upstream,
        403,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-RateLimit-Remaining", "4000"),
        ],
        body,
    );

    let first = app.get_github(rel).await;
    let second = app.get_github(rel).await;

    for response in [&first, &second] {
        assert_eq!(response.status, 403);
        assert_eq!(response.body, body.as_bytes());
    }
    assert_eq!(app.github.requests_for(&upstream), 2);
}

#[tokio::test]
async fn oversized_body_without_an_entry_is_a_502_and_is_neither_cached_nor_truncated() {
    let app = spawn_app().await;
    app.github.oversized(&app.upstream(README), OVER_LIMIT);

    assert_bad_gateway_then_recovers(&app).await;
}

#[tokio::test]
async fn oversized_chunked_body_without_an_entry_is_a_502_and_not_cached() {
    let app = spawn_app().await;
    app.github
        .oversized_streamed(&app.upstream(README), OVER_LIMIT);

    assert_bad_gateway_then_recovers(&app).await;
}

#[tokio::test]
async fn oversized_body_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.oversized(&app.upstream(README), OVER_LIMIT);

    assert_stale_served_then_recovers(&app).await;
}

#[tokio::test]
async fn connection_broken_mid_body_with_a_stale_entry_serves_the_stale_body() {
    let app = app_with_stale_readme(|_| {}).await;
    app.github.break_connection(&app.upstream(README));

    assert_stale_served_then_recovers(&app).await;
}

#[tokio::test]
async fn connection_broken_mid_body_without_an_entry_is_a_502_and_nothing_is_cached() {
    let app = spawn_app().await;
    app.github.break_connection(&app.upstream(README));

    assert_bad_gateway_then_recovers(&app).await;
}

#[tokio::test]
async fn a_body_announcing_ten_gibibytes_is_refused_at_once_and_not_cached() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github.huge_content_length(&upstream);

    let started = Instant::now();
    let response = app.get_github(README).await;

    // Refused on the announced length: neither read (the fake would stall
    // for an hour) nor reserved.
    response.assert_problem(502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    app.github.clear_faults();
    let recovered = app.get_github(README).await;
    assert_eq!(recovered.x_cache(), "MISS");
    assert_eq!(app.github.requests_for(&upstream), 2);
}

/// How long the failure pause lasts in the tests that turn it on.
const BACKOFF: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn after_a_failed_fetch_the_stale_entry_stands_in_for_a_moment_without_asking_again() {
    let app = app_with_stale_readme(|s| s.failure_backoff = BACKOFF).await;
    let upstream = app.upstream(README);
    app.github.fail_with(&upstream, 502);

    // The first request finds the entry stale, asks, and gets the failure.
    let first = app.get_github(README).await;
    assert_eq!(first.x_cache(), "STALE", "{}", first.text());
    assert_eq!(app.github.requests_for(&upstream), 2);

    // The next ones, within the pause, are served the same stale entry
    // without a request to the failing GitHub.
    for _ in 0..5 {
        let again = app.get_github(README).await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.x_cache(), "STALE");
        assert_eq!(again.body, app.github.body(&upstream));
    }
    assert_eq!(app.github.requests_for(&upstream), 2);

    // After the pause GitHub is asked again, and its recovery is seen.
    app.github.clear_faults();
    tokio::time::sleep(BACKOFF + Duration::from_millis(200)).await;
    let recovered = app.get_github(README).await;
    assert_eq!(recovered.x_cache(), "REVALIDATED", "{}", recovered.text());
    assert_eq!(app.github.requests_for(&upstream), 3);
}

#[tokio::test]
async fn the_failure_pause_never_holds_back_a_key_without_an_entry() {
    let app = spawn_app_with(|s| s.failure_backoff = BACKOFF).await;
    let upstream = app.upstream(README);
    app.github.fail_with(&upstream, 500);

    // Nothing to stand in: every request asks GitHub (and nothing of the
    // failure is served from memory).
    for expected in 1..=3 {
        app.get_github(README).await.assert_problem(502);
        assert_eq!(app.github.requests_for(&upstream), expected);
    }

    app.github.clear_faults();
    let recovered = app.get_github(README).await;
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    assert_eq!(recovered.x_cache(), "MISS");
}

#[tokio::test]
async fn the_failure_pause_holds_back_only_the_key_that_failed() {
    let app = app_with_stale_readme(|s| s.failure_backoff = BACKOFF).await;
    app.github.fail_with(&app.upstream(README), 502);
    assert_eq!(app.get_github(README).await.x_cache(), "STALE");

    let issues = app.upstream("/issues");
    app.github.set_json(&issues, &serde_json::json!([]));
    let other = app.get_github("/issues").await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(app.github.requests_for(&issues), 1);
}
