//! How chimney spends the server's token (CONTRACT 3, v2): 404 and 410
//! are cached for `negative_ttl`; after GitHub answers rate-limited nothing
//! is sent until the reset or `Retry-After` has passed; below
//! `rate_limit_reserve` percent of the budget only cached keys are
//! revalidated; and an `X-RateLimit-Reset` that overflows the time
//! arithmetic is a 503, not a crash.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::helpers::{TestApp, TestResponse, spawn_app, spawn_app_with, stale_immediately};
use chimney_testkit::github::{ALL, RateLimit};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn problem_type(response: &TestResponse) -> String {
    response.json()["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn retry_after(response: &TestResponse) -> u64 {
    response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds")
}

/// Requests `rel` until it is answered 200 or `deadline` passes.
async fn eventually_ok(app: &TestApp, rel: &str, deadline: Duration) -> TestResponse {
    let until = Instant::now() + deadline;
    loop {
        let response = app.get_github(rel).await;
        if response.status == 200 || Instant::now() > until {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_missing_resource_asked_in_a_loop_costs_one_request_per_negative_ttl() {
    let negative_ttl = Duration::from_secs(2);
    let app = spawn_app_with(|s| s.negative_ttl = negative_ttl).await;
    let rel = "/issues/999999";
    let upstream = app.upstream(rel);

    let started = Instant::now();
    let mut x_cache = Vec::new();
    for _ in 0..20 {
        let response = app.get_github(rel).await;
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["message"], "Not Found");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        x_cache.push(response.x_cache().to_owned());
    }
    assert!(
        started.elapsed() < negative_ttl,
        "the loop outlived the TTL"
    );

    assert_eq!(x_cache[0], "MISS");
    assert!(x_cache[1..].iter().all(|x| x == "HIT"), "{x_cache:?}");
    assert_eq!(app.github.requests_for(&upstream), 1);

    tokio::time::sleep(negative_ttl).await;
    let after = app.get_github(rel).await;

    assert_eq!(after.status, 404);
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(app.github.requests_for(&upstream), 2);
}

#[tokio::test]
async fn a_410_is_cached_like_a_404() {
    let app = spawn_app().await;
    let rel = "/issues/5";
    let upstream = app.upstream(rel);
    app.github.set_resource(
        &upstream,
        410,
        &[("Content-Type", "application/json; charset=utf-8")],
        r#"{"message":"This issue was deleted"}"#,
    );

    let first = app.get_github(rel).await;
    let second = app.get_github(rel).await;

    assert_eq!((first.status, second.status), (410, 410));
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(app.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn after_a_secondary_rate_limit_nothing_is_sent_until_retry_after_has_passed() {
    let app = spawn_app_with(|s| s.ttl = stale_immediately("/pulls")).await;
    for rel in ["/pulls", "/issues", "/labels"] {
        app.github
            .set_json(&app.upstream(rel), &serde_json::json!([{ "rel": rel }]));
    }
    assert_eq!(app.get_github("/pulls").await.x_cache(), "MISS");
    app.github.rate_limit(
        ALL,
        RateLimit::SecondaryForbidden {
            retry_after_secs: 2,
        },
    );

    let limited = app.get_github("/issues").await;

    limited.assert_problem(503);
    assert_eq!(retry_after(&limited), 2);
    let sent = app.github.total_requests();
    assert_eq!(sent, 2, "the cached /pulls, then the rate-limited /issues");

    // While the gate is closed: new keys are 503, a stale key is served
    // STALE, and GitHub hears nothing.
    for _ in 0..5 {
        let again = app.get_github("/issues").await;
        again.assert_problem(503);
        assert!((1..=2).contains(&retry_after(&again)));
    }
    app.get_github("/labels").await.assert_problem(503);
    let stale = app.get_github("/pulls").await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(
        app.github.total_requests(),
        sent,
        "nothing sent while limited"
    );

    app.github.clear_faults();
    let recovered = eventually_ok(&app, "/issues", Duration::from_secs(6)).await;

    assert_eq!(recovered.status, 200, "{}", recovered.text());
    assert_eq!(recovered.x_cache(), "MISS");
    assert_eq!(app.github.requests_for(&app.upstream("/issues")), 2);
}

#[tokio::test]
async fn remaining_zero_closes_the_gate_until_the_reset() {
    let app = spawn_app().await;
    let reset = (unix_now() + 3).to_string();
    app.github.set_resource(
        &app.upstream("/issues"),
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"last\""),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", &reset),
        ],
        "[]",
    );
    app.github
        .set_json(&app.upstream("/labels"), &serde_json::json!([]));

    let last = app.get_github("/issues").await;
    let held = app.get_github("/labels").await;

    assert_eq!(last.status, 200, "the last request of the budget is served");
    held.assert_problem(503);
    assert!((1..=3).contains(&retry_after(&held)));
    assert_eq!(app.github.requests_for(&app.upstream("/labels")), 0);

    let after_reset = eventually_ok(&app, "/labels", Duration::from_secs(8)).await;

    assert_eq!(after_reset.status, 200, "{}", after_reset.text());
    assert_eq!(app.github.requests_for(&app.upstream("/labels")), 1);
}

#[tokio::test]
async fn the_reserve_keeps_the_last_requests_for_keys_already_cached() {
    let app = spawn_app_with(|s| s.ttl = stale_immediately("/issues")).await;
    let reset = (unix_now() + 600).to_string();
    app.github.set_resource(
        &app.upstream("/issues"),
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"issues\""),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "100"),
            ("X-RateLimit-Reset", &reset),
        ],
        "[]",
    );
    app.github
        .set_json(&app.upstream("/pulls"), &serde_json::json!([]));

    let cached = app.get_github("/issues").await;
    assert_eq!(cached.x_cache(), "MISS");

    // 100 of 5000 left is under the 5 % reserve.
    let new_key = app.get_github("/pulls").await;

    new_key.assert_problem(503);
    assert!(problem_type(&new_key).ends_with("/rate-limit-reserve"));
    assert!((590..=600).contains(&retry_after(&new_key)));
    assert_eq!(app.github.requests_for(&app.upstream("/pulls")), 0);

    let revalidated = app.get_github("/issues").await;

    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.x_cache(), "REVALIDATED");
    assert_eq!(
        app.github.statuses_for(&app.upstream("/issues")),
        [Some(200), Some(304)]
    );
}

#[tokio::test]
async fn a_zero_reserve_holds_nothing_back() {
    let app = spawn_app_with(|s| s.rate_limit_reserve = 0).await;
    let reset = (unix_now() + 600).to_string();
    app.github.set_resource(
        &app.upstream("/issues"),
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "1"),
            ("X-RateLimit-Reset", &reset),
        ],
        "[]",
    );
    app.github
        .set_json(&app.upstream("/pulls"), &serde_json::json!([]));

    app.get_github("/issues").await;
    let new_key = app.get_github("/pulls").await;

    assert_eq!(new_key.status, 200, "{}", new_key.text());
}

#[tokio::test]
async fn an_x_ratelimit_reset_that_overflows_the_clock_is_a_503_not_a_502() {
    let app = spawn_app().await;
    app.github.set_resource(
        &app.upstream("/issues"),
        403,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "18446744073709551615"),
        ],
        r#"{"message":"API rate limit exceeded"}"#,
    );

    let response = app.get_github("/issues").await;

    response.assert_problem(503);
    assert!(problem_type(&response).ends_with("/upstream-rate-limited"));
    assert_eq!(retry_after(&response), 3600);
    let still_serving = app.get("/healthz").await;
    assert_eq!(still_serving.status, 200);
}
