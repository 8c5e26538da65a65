//! Stale-while-revalidate (CONTRACT 3, v2): an entry at most
//! `stale_while_revalidate` past its TTL is served at once with `X-Cache:
//! UPDATING` while one background fetch revalidates it; clients wait for
//! GitHub only for unknown keys and entries older than that.

use std::time::{Duration, Instant};

use chimney::domain::{TtlPolicy, TtlRule};
use futures::future::join_all;

use crate::helpers::{TestApp, spawn_app_with};

const ISSUE: &str = "/issues/1";

/// How long GitHub takes to answer once the entry has expired.
const UPSTREAM_DELAY: Duration = Duration::from_millis(600);

/// An answer from the cache comes well within this, even on a busy machine.
const AT_ONCE: Duration = Duration::from_millis(400);

fn ttl(duration: Duration) -> TtlPolicy {
    TtlPolicy::new(vec![TtlRule {
        path: ISSUE.to_owned(),
        query: None,
        ttl: duration,
    }])
}

/// An app with `ttl` for the issue and `window`, the issue cached (MISS),
/// then changed upstream and slowed down.
async fn cached_then_changed(ttl_for_issue: Duration, window: Duration) -> TestApp {
    let app = spawn_app_with(|s| {
        s.ttl = ttl(ttl_for_issue);
        s.stale_while_revalidate = window;
    })
    .await;
    let upstream = app.upstream(ISSUE);
    app.github
        .set_json(&upstream, &serde_json::json!({ "v": 1 }));
    let first = app.get_github(ISSUE).await;
    assert_eq!(first.x_cache(), "MISS", "{}", first.text());
    app.github
        .set_json(&upstream, &serde_json::json!({ "v": 2 }));
    app.github.delay(&upstream, UPSTREAM_DELAY);
    app
}

#[tokio::test]
async fn an_expired_entry_is_served_at_once_while_one_fetch_renews_it() {
    let app = cached_then_changed(Duration::from_secs(2), Duration::from_secs(60)).await;
    let upstream = app.upstream(ISSUE);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let started = Instant::now();
    let updating = app.get_github(ISSUE).await;
    let waited = started.elapsed();
    assert_eq!(updating.status, 200, "{}", updating.text());
    assert_eq!(updating.x_cache(), "UPDATING");
    assert_eq!(updating.json()["v"], 1, "the old body, at once");
    assert!(waited < AT_ONCE, "waited {waited:?} for a stale entry");

    // More requests while the revalidation runs: served the same way, no
    // second fetch.
    let more = join_all((0..5).map(|_| app.get_github(ISSUE))).await;
    for response in &more {
        assert_eq!(response.x_cache(), "UPDATING");
        assert_eq!(response.json()["v"], 1);
    }

    app.github
        .wait_for_requests(&upstream, 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(UPSTREAM_DELAY + Duration::from_millis(300)).await;
    let renewed = app.get_github(ISSUE).await;
    assert_eq!(renewed.x_cache(), "HIT", "{}", renewed.text());
    assert_eq!(renewed.json()["v"], 2, "the new body");
    assert_eq!(
        app.github.requests_for(&upstream),
        2,
        "exactly one background fetch"
    );
}

#[tokio::test]
async fn a_zero_window_makes_the_client_wait_for_github() {
    let app = cached_then_changed(Duration::ZERO, Duration::ZERO).await;
    let started = Instant::now();
    let fetched = app.get_github(ISSUE).await;
    assert_eq!(fetched.x_cache(), "MISS", "{}", fetched.text());
    assert_eq!(fetched.json()["v"], 2);
    assert!(started.elapsed() >= UPSTREAM_DELAY);
}

#[tokio::test]
async fn an_entry_past_the_window_makes_the_client_wait_for_github() {
    let app = cached_then_changed(Duration::ZERO, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    let fetched = app.get_github(ISSUE).await;
    assert_eq!(fetched.x_cache(), "MISS", "{}", fetched.text());
    assert_eq!(fetched.json()["v"], 2);
    assert!(started.elapsed() >= UPSTREAM_DELAY);
    assert_eq!(app.github.requests_for(&app.upstream(ISSUE)), 2);
}

#[tokio::test]
async fn a_background_fetch_that_fails_keeps_the_entry_for_the_next_request() {
    let app = cached_then_changed(Duration::ZERO, Duration::from_secs(60)).await;
    let upstream = app.upstream(ISSUE);
    app.github.fail_with(&upstream, 500);
    let updating = app.get_github(ISSUE).await;
    assert_eq!(updating.x_cache(), "UPDATING");
    assert_eq!(updating.json()["v"], 1);
    app.github
        .wait_for_requests(&upstream, 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(UPSTREAM_DELAY + Duration::from_millis(300)).await;
    let again = app.get_github(ISSUE).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["v"], 1, "the failure cached nothing");
}

#[tokio::test]
async fn no_background_fetch_is_sent_while_github_rate_limits() {
    let app = cached_then_changed(Duration::ZERO, Duration::from_secs(60)).await;
    let upstream = app.upstream(ISSUE);
    app.github.rate_limit(
        &upstream,
        chimney_testkit::github::RateLimit::TooManyRequests {
            retry_after_secs: 60,
        },
    );
    let updating = app.get_github(ISSUE).await;
    assert_eq!(updating.x_cache(), "UPDATING");
    app.github
        .wait_for_requests(&upstream, 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(UPSTREAM_DELAY + Duration::from_millis(300)).await;

    // The gate is closed: the entry is served as STALE, GitHub not asked.
    for _ in 0..3 {
        let stale = app.get_github(ISSUE).await;
        assert_eq!(stale.x_cache(), "STALE", "{}", stale.text());
        assert_eq!(stale.json()["v"], 1);
    }
    assert_eq!(app.github.requests_for(&upstream), 2);
}
