//! One upstream request per key at a time, shared by every waiting client,
//! and the cap on concurrent requests to GitHub (CONTRACT 3).

use std::time::{Duration, Instant};

use chimney_testkit::github::ALL;
use futures::future::join_all;

use crate::helpers::{spawn_app, spawn_app_with, stale_immediately};

const README: &str = "/contents/README.md";

/// How long GitHub takes to answer in these tests.
const UPSTREAM_DELAY: Duration = Duration::from_millis(300);

/// Generous: waiters must be woken when the fetch completes, not discover it
/// by polling on a long interval.
const ALL_DONE_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn fifty_concurrent_requests_for_a_cold_key_make_one_upstream_request() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github.delay(&upstream, UPSTREAM_DELAY);

    let started = Instant::now();
    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        join_all((0..50).map(|_| app.get_github(README))),
    )
    .await
    .expect("all 50 requests answered");
    let elapsed = started.elapsed();

    let expected = app.github.body(&upstream);
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, expected);
    }
    let count = |outcome: &str| responses.iter().filter(|r| r.x_cache() == outcome).count();
    assert_eq!(count("MISS"), 1, "exactly one request fetched");
    assert_eq!(count("COALESCED"), 49, "the others shared its fetch");
    assert_eq!(app.github.requests_for(&upstream), 1);
    assert!(
        elapsed < ALL_DONE_WITHIN,
        "50 coalesced requests took {elapsed:?} for a {UPSTREAM_DELAY:?} upstream"
    );
}

#[tokio::test]
async fn requests_to_github_never_exceed_the_upstream_concurrency() {
    let app = spawn_app_with(|s| s.upstream_concurrency = 2).await;
    let rels: Vec<String> = (0..6).map(|i| format!("/issues/{i}")).collect();
    for (i, rel) in rels.iter().enumerate() {
        app.github
            .set_json(&app.upstream(rel), &serde_json::json!({ "id": i }));
    }
    app.github.delay(ALL, UPSTREAM_DELAY);

    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        join_all(rels.iter().map(|rel| app.get_github(rel))),
    )
    .await
    .expect("all 6 requests answered");

    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["id"], i);
    }
    for rel in &rels {
        assert_eq!(app.github.requests_for(&app.upstream(rel)), 1);
    }
    let max = app.github.max_in_flight();
    assert!(max <= 2, "{max} requests were in flight at GitHub at once");
}

#[tokio::test]
async fn concurrent_requests_for_different_keys_are_not_coalesced() {
    let app = spawn_app().await;
    let rels = ["/labels", "/tags"];
    for rel in rels {
        app.github
            .set_json(&app.upstream(rel), &serde_json::json!({ "rel": rel }));
    }
    app.github.delay(ALL, UPSTREAM_DELAY);

    let responses = join_all(rels.iter().map(|rel| app.get_github(rel))).await;

    for (rel, response) in rels.iter().zip(&responses) {
        assert_eq!(response.x_cache(), "MISS");
        assert_eq!(response.json()["rel"], *rel);
        assert_eq!(app.github.requests_for(&app.upstream(rel)), 1);
    }
}

#[tokio::test]
async fn a_fetch_that_failed_for_every_waiter_is_retried_by_the_next_request() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github.fail_with(&upstream, 500);
    app.github.delay(&upstream, UPSTREAM_DELAY);

    let failed = join_all((0..10).map(|_| app.get_github(README))).await;

    for response in &failed {
        response.assert_problem(502);
    }
    assert_eq!(app.github.requests_for(&upstream), 1);

    app.github.clear_faults();
    let recovered = app.get_github(README).await;
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    assert_eq!(recovered.body, app.github.body(&upstream));
    assert_eq!(app.github.requests_for(&upstream), 2);
}

#[tokio::test]
async fn concurrent_requests_for_a_stale_key_share_one_conditional_revalidation() {
    let app = spawn_app_with(|s| s.ttl = stale_immediately(README)).await;
    let upstream = app.upstream(README);
    assert_eq!(app.get_github(README).await.x_cache(), "MISS");
    app.github.delay(&upstream, UPSTREAM_DELAY);

    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        join_all((0..20).map(|_| app.get_github(README))),
    )
    .await
    .expect("all 20 requests answered");

    let expected = app.github.body(&upstream);
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, expected);
    }
    let count = |outcome: &str| responses.iter().filter(|r| r.x_cache() == outcome).count();
    assert_eq!(count("REVALIDATED"), 1);
    assert_eq!(count("COALESCED"), 19);
    assert_eq!(app.github.requests_for(&upstream), 2);
    assert_eq!(app.github.statuses_for(&upstream), [Some(200), Some(304)]);
}
