//! Cache control (CONTRACT 6) and cache statistics (CONTRACT 7):
//! invalidation by literal prefix with per-tier counts, the pipeline
//! summary rule, the `all` guard, warming in the background, CORS, and
//! `/api/cache/stats` with its Dragonfly key pages.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_client::{
    DEPLOY_TOKEN, INVALIDATE_TOKEN, assert_no_secret, bearer, eventually, spawn_admin_app,
    spawn_admin_app_with,
};
use crate::helpers::{Backend, TestApp, spawn_app};

const INVALIDATE: &str = "/api/cache/invalidate";
const WARM: &str = "/api/cache/warm";
const README: &str = "/contents/README.md";

const OPEN_PULLS: &str = "/pulls?state=open&per_page=100";
const OPEN_ISSUES: &str = "/issues?state=open&per_page=100";
const RECENT_RUNS: &str = "/actions/runs?per_page=10";

/// Serves small JSON bodies at `rels` and caches each through the proxy,
/// asserting each was a MISS.
async fn cache_json(app: &TestApp, rels: &[&str]) {
    for rel in rels {
        app.github
            .set_json(&app.upstream(rel), &json!([{ "rel": rel }]));
        let response = app.get_github(rel).await;
        assert_eq!(response.x_cache(), "MISS", "{rel}: {}", response.text());
    }
}

fn count(result: &Value, field: &str) -> u64 {
    result[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {result}"))
}

/// Dragonfly evictions expected for `n` keys on this backend.
fn remote(app: &TestApp, n: u64) -> u64 {
    match app.backend {
        Backend::Memory => 0,
        Backend::Redis(_) => n,
    }
}

/// Waits until Dragonfly is in use, so writes reach it (Redis runs only).
async fn dragonfly_ready(app: &TestApp) {
    if let Backend::Redis(_) = app.backend {
        app.wait_for_dragonfly("connected", Duration::from_secs(5))
            .await;
    }
}

// ---- invalidation ------------------------------------------------------------

#[tokio::test]
async fn invalidating_a_prefix_evicts_every_query_variant_from_both_tiers() {
    // Arrange
    let app = spawn_admin_app().await;
    dragonfly_ready(&app).await;
    cache_json(
        &app,
        &[
            "/pulls?state=open",
            "/pulls?state=closed",
            "/pulls/1",
            "/issues",
        ],
    )
    .await;

    // Act
    let result = app.invalidate_path("/pulls").await;

    // Assert
    assert_eq!(count(&result, "evicted"), 3, "{result}");
    assert_eq!(count(&result, "memory"), 3, "{result}");
    assert_eq!(count(&result, "dragonfly"), remote(&app, 3), "{result}");
    assert_eq!(result["path"], "/pulls");
    assert_eq!(result["reason"], "test");
    assert_eq!(app.get_github("/pulls?state=open").await.x_cache(), "MISS");
    assert_eq!(app.get_github("/issues").await.x_cache(), "HIT");
}

#[tokio::test]
async fn evicted_counts_distinct_keys_and_each_tier_separately() {
    let app = spawn_admin_app().await;
    let Backend::Redis(_) = app.backend else {
        // Memory only: the tier counts are checked by the test above.
        return;
    };
    dragonfly_ready(&app).await;
    cache_json(&app, &["/issues?state=open", "/issues?state=closed"]).await;
    // A restart empties memory but not Dragonfly; reading one key back
    // leaves the tiers holding different sets.
    let shared = app.redis.clone();
    drop(app);
    let restarted = spawn_admin_app_with(move |s| s.redis = shared).await;
    dragonfly_ready(&restarted).await;
    // Read one back into memory from Dragonfly.
    assert_eq!(
        restarted.get_github("/issues?state=open").await.x_cache(),
        "HIT"
    );

    let result = restarted.invalidate_path("/issues").await;

    assert_eq!(count(&result, "memory"), 1, "{result}");
    assert_eq!(count(&result, "dragonfly"), 2, "{result}");
    assert_eq!(count(&result, "evicted"), 2, "distinct keys: {result}");
}

#[tokio::test]
async fn prefix_is_accepted_as_an_alias_of_path() {
    let app = spawn_admin_app().await;
    cache_json(&app, &["/issues?state=open"]).await;

    let response = app
        .invalidate(&json!({"prefix": "/issues", "reason": "alias"}))
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    let result = response.json();
    assert_eq!(count(&result, "evicted"), 1);
    assert_eq!(result["path"], "/issues");
    assert_eq!(app.get_github("/issues?state=open").await.x_cache(), "MISS");
}

#[tokio::test]
async fn giving_both_path_and_prefix_is_a_400() {
    let app = spawn_admin_app().await;

    let response = app
        .invalidate(&json!({"path": "/pulls", "prefix": "/issues"}))
        .await;

    response.assert_problem(400);
    assert!(response.text().contains("prefix"), "{}", response.text());
}

#[tokio::test]
async fn glob_characters_in_the_prefix_are_literal() {
    let app = spawn_admin_app().await;
    dragonfly_ready(&app).await;
    cache_json(&app, &["/pulls?state=open", "/issues"]).await;

    for glob in ["*", "/*", "/pull?", "/[pi]*", "\\*"] {
        let result = app.invalidate_path(glob).await;
        assert_eq!(count(&result, "evicted"), 0, "{glob}: {result}");
    }

    assert_eq!(app.get_github("/pulls?state=open").await.x_cache(), "HIT");
    assert_eq!(app.get_github("/issues").await.x_cache(), "HIT");
}

#[tokio::test]
async fn slash_evicts_all_proxy_entries_but_not_the_pipeline_summary() {
    let app = spawn_admin_app().await;
    dragonfly_ready(&app).await;
    cache_json(&app, &["/issues"]).await;
    let summary = app.get("/api/pipeline/summary").await;
    assert_eq!(summary.status, 200, "{}", summary.text());

    let everything = app.invalidate_path("/").await;
    let named = app.invalidate_path("/__pipeline_summary__").await;

    assert!(count(&everything, "evicted") >= 1, "{everything}");
    assert_eq!(app.get_github("/issues").await.x_cache(), "MISS");
    assert_eq!(
        count(&named, "evicted"),
        1,
        "the summary survived `/` and only goes when named: {named}"
    );
    assert_eq!(count(&named, "memory"), 1, "{named}");
    assert_eq!(count(&named, "dragonfly"), remote(&app, 1), "{named}");
}

#[tokio::test]
async fn all_is_refused_with_a_403_unless_allowed() {
    let app = spawn_admin_app().await;
    cache_json(&app, &["/issues"]).await;

    let response = app
        .invalidate(&json!({"all": true, "reason": "nuke"}))
        .await;

    response.assert_problem(403);
    assert!(
        response.text().contains("INVALIDATE_ALL_ALLOWED"),
        "{}",
        response.text()
    );
    assert_eq!(app.get_github("/issues").await.x_cache(), "HIT");
}

#[tokio::test]
async fn all_evicts_everything_including_the_summary_when_allowed() {
    let app = spawn_admin_app_with(|s| s.invalidate_all_allowed = true).await;
    dragonfly_ready(&app).await;
    cache_json(&app, &["/issues", "/pulls?state=open"]).await;
    assert_eq!(app.get("/api/pipeline/summary").await.status, 200);

    let response = app.invalidate(&json!({"all": true})).await;

    assert_eq!(response.status, 200, "{}", response.text());
    let result = response.json();
    // Two proxy entries, the summary, and what the summary fetched.
    assert!(count(&result, "evicted") >= 3, "{result}");
    assert_eq!(result["path"], Value::Null);
    assert_eq!(app.get_github("/issues").await.x_cache(), "MISS");
    let named = app.invalidate_path("/__pipeline_summary__").await;
    assert_eq!(
        count(&named, "evicted"),
        0,
        "the summary went with all: {named}"
    );
}

#[tokio::test]
async fn invalidating_a_prefix_nothing_matches_evicts_nothing() {
    let app = spawn_admin_app().await;

    let result = app.invalidate_path("/no-such-path").await;

    assert_eq!(count(&result, "evicted"), 0);
    assert_eq!(count(&result, "memory"), 0);
    assert_eq!(count(&result, "dragonfly"), 0);
}

#[tokio::test]
async fn an_invalidation_body_without_path_or_all_is_a_400() {
    let app = spawn_admin_app().await;

    for body in [
        json!({}),
        json!({"reason": "why"}),
        json!({"path": ""}),
        json!({"all": false}),
    ] {
        let response = app.invalidate(&body).await;
        response.assert_problem(400);
        assert!(
            response.text().contains("path"),
            "{body}: {}",
            response.text()
        );
    }
}

#[tokio::test]
async fn wrong_types_in_an_invalidation_are_a_400_naming_the_field() {
    let app = spawn_admin_app().await;

    for (body, field) in [
        (json!({"path": 1}), "path"),
        (json!({"path": "/x", "all": "yes"}), "all"),
        (json!({"path": "/x", "reason": ["r"]}), "reason"),
    ] {
        let response = app.invalidate(&body).await;
        response.assert_problem(400);
        let detail = response.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.starts_with(&format!("{field} must be")),
            "{body}: {detail}"
        );
    }

    let malformed = app
        .post_raw(INVALIDATE, Some(INVALIDATE_TOKEN), "{\"path\": ")
        .await;
    malformed.assert_problem(400);
    assert!(
        malformed.text().contains("not valid JSON"),
        "{}",
        malformed.text()
    );
}

#[tokio::test]
async fn invalidation_needs_the_invalidate_token() {
    let app = spawn_admin_app().await;
    cache_json(&app, &["/issues"]).await;
    let body = json!({"path": "/issues"});

    let missing = app.post_json(INVALIDATE, None, &body).await;
    let wrong = app.post_json(INVALIDATE, Some(DEPLOY_TOKEN), &body).await;

    missing.assert_problem(401);
    wrong.assert_problem(401);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    assert_no_secret(&wrong, INVALIDATE_TOKEN);
    assert_no_secret(&wrong, DEPLOY_TOKEN);
    assert_eq!(app.get_github("/issues").await.x_cache(), "HIT");
}

#[tokio::test]
async fn without_an_invalidate_token_configured_cache_control_is_a_503() {
    let app = spawn_app().await;

    let invalidate = app
        .post_json(INVALIDATE, Some("anything"), &json!({"path": "/x"}))
        .await;
    let warm = app.post_json(WARM, None, &json!({})).await;

    invalidate.assert_problem(503);
    warm.assert_problem(503);
    assert!(invalidate.text().contains("INVALIDATE_TOKEN"));
}

#[tokio::test]
async fn an_invalidation_body_over_64_kib_is_a_413() {
    let app = spawn_admin_app().await;

    let response = app
        .invalidate(&json!({"path": "/x", "reason": "r".repeat(70 * 1024)}))
        .await;

    response.assert_problem(413);
}

#[tokio::test]
async fn cache_admin_endpoints_answer_cors_preflight() {
    let app = spawn_admin_app_with(|s| {
        s.cors_origins = vec!["https://table.beerpub.dev".to_owned()];
    })
    .await;

    for path in [INVALIDATE, WARM] {
        let response = app
            .preflight(path, "https://table.beerpub.dev", "POST")
            .await;
        assert!(response.status < 300, "{path}: {}", response.status);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("https://table.beerpub.dev")
        );
        let headers = response
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(headers.contains("authorization"), "{path}: {headers}");
        assert!(headers.contains("content-type"), "{path}: {headers}");
        app.preflight(path, "https://other.example", "POST")
            .await
            .assert_problem(403);
    }
}

#[tokio::test]
async fn the_proxy_keeps_allowing_any_origin() {
    let app = spawn_admin_app_with(|s| {
        s.cors_origins = vec!["https://table.beerpub.dev".to_owned()];
    })
    .await;

    let response = app
        .get_github_with_headers(README, &[("origin", "https://other.example")])
        .await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
}

// ---- warming -----------------------------------------------------------------

#[tokio::test]
async fn warm_answers_202_at_once_and_fills_the_cache_in_the_background() {
    // Arrange
    let app = spawn_admin_app().await;
    dragonfly_ready(&app).await;
    for rel in [OPEN_PULLS, OPEN_ISSUES, RECENT_RUNS] {
        app.github.set_json(&app.upstream(rel), &json!([]));
        // Slow enough that a synchronous warm could not answer in time.
        app.github
            .delay(&app.upstream(rel), Duration::from_millis(4000));
    }

    // Act
    let started = std::time::Instant::now();
    let response = app.warm().await;
    let answered_in = started.elapsed();

    // Assert
    assert_eq!(response.status, 202, "{}", response.text());
    assert!(
        answered_in < Duration::from_millis(2000),
        "took {answered_in:?}"
    );
    let paths = response.json()["paths"].clone();
    assert_eq!(
        paths,
        json!([
            "/api/github/pulls?state=open&per_page=100",
            "/api/github/issues?state=open&per_page=100",
            "/api/github/actions/runs?per_page=10"
        ])
    );
    let upstream_saw_all = eventually(Duration::from_secs(10), || async {
        [OPEN_PULLS, OPEN_ISSUES, RECENT_RUNS]
            .iter()
            .all(|rel| app.github.requests_for(&app.upstream(rel)) == 1)
    })
    .await;
    assert!(upstream_saw_all, "upstream saw {:?}", app.github.requests());
    app.github.clear_faults();
    let all_hits = eventually(Duration::from_secs(10), || async {
        let mut hits = true;
        for rel in [OPEN_PULLS, OPEN_ISSUES, RECENT_RUNS] {
            hits &= app.get_github(rel).await.x_cache() == "HIT";
        }
        hits
    })
    .await;
    assert!(all_hits, "the warmed paths are not served from the cache");
    for rel in [OPEN_PULLS, OPEN_ISSUES, RECENT_RUNS] {
        assert_eq!(app.github.requests_for(&app.upstream(rel)), 1, "{rel}");
    }
}

#[tokio::test]
async fn warm_needs_the_invalidate_token() {
    let app = spawn_admin_app().await;
    let deploy = bearer(DEPLOY_TOKEN);

    let missing = app.send(Method::POST, WARM, &[], "").await;
    let wrong = app
        .send(
            Method::POST,
            WARM,
            &[("authorization", deploy.as_str())],
            "",
        )
        .await;

    missing.assert_problem(401);
    wrong.assert_problem(401);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.github.total_requests(), 0, "nothing was warmed");
}

// ---- statistics ----------------------------------------------------------------

#[tokio::test]
async fn stats_report_hits_misses_and_the_memory_tier() {
    let app = spawn_app().await;
    let before = app.get("/api/cache/stats").await;
    assert_eq!(before.status, 200, "{}", before.text());
    let before = before.json();

    assert_eq!(app.get_github(README).await.x_cache(), "MISS");
    assert_eq!(app.get_github(README).await.x_cache(), "HIT");
    let after = app.get("/api/cache/stats").await.json();

    assert_eq!(
        count(&after, "misses"),
        count(&before, "misses") + 1,
        "{after}"
    );
    assert_eq!(count(&after, "hits"), count(&before, "hits") + 1, "{after}");
    assert!(count(&after["memory"], "entries") >= 1, "{after}");
    assert!(count(&after["memory"], "bytes") > 0, "{after}");
    match app.backend {
        Backend::Memory => {
            assert_eq!(after["dragonfly"]["state"], "disabled");
            assert_eq!(after["dragonfly"]["keys"], Value::Null);
            assert_eq!(after["dragonfly"]["next_cursor"], Value::Null);
        }
        Backend::Redis(_) => assert!(after["dragonfly"]["state"].is_string()),
    }
}

#[tokio::test]
async fn stats_list_dragonfly_keys_with_ttls_page_by_page() {
    let app = spawn_app().await;
    let Backend::Redis(_) = app.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    dragonfly_ready(&app).await;
    let rels = [
        "/issues?state=open",
        "/issues?state=closed",
        "/pulls",
        "/pulls/1",
    ];
    cache_json(&app, &rels).await;

    let mut seen = std::collections::BTreeMap::new();
    let mut cursor = 0;
    for _ in 0..100 {
        let page = app
            .get(&format!("/api/cache/stats?cursor={cursor}&limit=1"))
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        assert_eq!(page["dragonfly"]["state"], "connected");
        for key in page["dragonfly"]["keys"].as_array().expect("a list") {
            seen.insert(
                key["key"].as_str().expect("key").to_owned(),
                key["ttl_ms"].as_i64(),
            );
        }
        match page["dragonfly"]["next_cursor"].as_u64() {
            Some(next) => cursor = next,
            None => break,
        }
    }

    for rel in rels {
        let ttl = seen
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} not listed: {seen:?}"));
        let ttl = ttl.unwrap_or_else(|| panic!("{rel} has no TTL"));
        assert!(ttl > 0, "{rel}: {ttl}");
    }
}

#[tokio::test]
async fn a_malformed_stats_cursor_is_a_400_naming_it() {
    let app = spawn_app().await;

    let response = app.get("/api/cache/stats?cursor=next").await;

    response.assert_problem(400);
    assert!(response.text().contains("cursor"), "{}", response.text());
}

#[tokio::test]
async fn healthz_reports_the_same_as_before() {
    let app = spawn_admin_app().await;
    cache_json(&app, &["/issues"]).await;

    let health = app.healthz().await;

    for field in [
        "status",
        "repo",
        "dragonfly",
        "mem_cache_entries",
        "cache_hits",
        "cache_misses",
    ] {
        assert!(health.get(field).is_some(), "{field} missing: {health}");
    }
    assert_eq!(count(&health, "mem_cache_entries"), 1);
}

#[tokio::test]
async fn stats_carry_the_original_chimneys_field_names() {
    let app = spawn_app().await;
    app.get_github("/").await;

    let stats = app.get("/api/cache/stats").await;
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["mem_entries"], stats["memory"]["entries"], "{stats}");
    assert!(stats["mem_entries"].as_u64() >= Some(1), "{stats}");
    match app.backend {
        Backend::Memory => assert!(stats["dragonfly_keys"].is_null(), "{stats}"),
        Backend::Redis(_) => assert!(
            stats["dragonfly_keys"].is_null() || stats["dragonfly_keys"].is_u64(),
            "{stats}"
        ),
    }
}

// ---- honest invalidation (CONTRACT 6 v2) ------------------------------------

#[tokio::test]
async fn an_invalidation_that_cannot_reach_dragonfly_clears_memory_and_says_so() {
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        url::Url::parse(&format!("redis://{addr}")).expect("URL")
    };
    let app = spawn_admin_app_with(move |s| s.redis = Some(refused)).await;
    assert_eq!(app.get_github(README).await.x_cache(), "MISS");
    assert_eq!(app.get_github(README).await.x_cache(), "HIT");

    let response = app
        .invalidate(&json!({"path": "/contents", "reason": "deploy"}))
        .await;

    response.assert_problem(503);
    let problem = response.json();
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/shared-tier-unavailable")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap_or_default().contains('1'),
        "the detail counts the memory keys cleared: {problem}"
    );
    // The memory tier was cleared all the same.
    assert_eq!(app.get_github(README).await.x_cache(), "MISS");
    assert_eq!(app.github.requests_for(&app.upstream(README)), 2);
}

#[tokio::test]
async fn a_fetch_in_flight_during_an_invalidation_does_not_store_its_body() {
    let app = spawn_admin_app_with(|_| {}).await;
    let upstream = app.upstream(README);
    app.github.delay(&upstream, Duration::from_millis(600));

    let in_flight = {
        let client = app.client.clone();
        let url = format!("{}/api/github{README}", app.address);
        tokio::spawn(async move { client.get(url).send().await.expect("request").status() })
    };
    // Let the fetch reach GitHub, then invalidate while it waits there.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.github.requests_for(&upstream) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.invalidate_path("/contents").await;
    assert_eq!(in_flight.await.expect("joined"), 200);

    app.github.clear_faults();
    let next = app.get_github(README).await;
    assert_eq!(
        next.x_cache(),
        "MISS",
        "the body fetched before the invalidation was cached"
    );
    assert_eq!(app.github.requests_for(&upstream), 2);
}
