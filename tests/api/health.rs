//! `/healthz`, `/api/version` and the static dashboard at `/`
//! (CONTRACT 2 and 7).

use crate::helpers::{Backend, DOCS_INDEX, HELLO_WORLD, spawn_app};

const README: &str = "/contents/README.md";

fn counter(health: &serde_json::Value, name: &str) -> u64 {
    health[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} is not a count: {health}"))
}

#[tokio::test]
async fn healthz_answers_ok_with_the_repo_and_the_cache_backend() {
    let app = spawn_app().await;

    let health = app.healthz().await;

    assert_eq!(health["status"], "ok");
    assert_eq!(health["repo"], HELLO_WORLD);
    let dragonfly = health["dragonfly"].as_str().unwrap_or_default();
    match app.backend {
        Backend::Memory => assert_eq!(dragonfly, "disabled"),
        Backend::Redis(_) => assert!(
            ["connected", "connecting"].contains(&dragonfly),
            "dragonfly is {dragonfly:?} with a reachable Redis"
        ),
    }
    for name in ["mem_cache_entries", "cache_hits", "cache_misses"] {
        counter(&health, name);
    }
}

#[tokio::test]
async fn healthz_counts_move_after_a_miss_and_a_hit() {
    let app = spawn_app().await;
    let before = app.healthz().await;

    assert_eq!(app.get_github(README).await.x_cache(), "MISS");
    let after_miss = app.healthz().await;
    assert_eq!(app.get_github(README).await.x_cache(), "HIT");
    let after_hit = app.healthz().await;

    assert!(
        counter(&after_miss, "cache_misses") > counter(&before, "cache_misses"),
        "misses did not move: {before} → {after_miss}"
    );
    assert!(counter(&after_miss, "mem_cache_entries") >= 1);
    assert!(
        counter(&after_hit, "cache_hits") > counter(&after_miss, "cache_hits"),
        "hits did not move: {after_miss} → {after_hit}"
    );
    assert_eq!(
        counter(&after_hit, "cache_misses"),
        counter(&after_miss, "cache_misses"),
        "a hit is not a miss"
    );
}

#[tokio::test]
async fn healthz_never_asks_github() {
    let app = spawn_app().await;

    app.healthz().await;

    assert_eq!(app.github.requests_for(&app.upstream(README)), 0);
}

#[tokio::test]
async fn version_reports_chimneys_own_version() {
    let app = spawn_app().await;

    let response = app.get("/api/version").await;

    assert_eq!(response.status, 200, "{}", response.text());
    let version = response.json();
    assert_eq!(version["chimney_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        version.get("wgmesh_version").is_some(),
        "wgmesh_version missing: {version}"
    );
}

#[tokio::test]
async fn root_serves_the_dashboard_from_the_docs_dir() {
    let app = spawn_app().await;

    let response = app.get("/").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.body, DOCS_INDEX.as_bytes());
    let content_type = response.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type:?}"
    );
}

#[tokio::test]
async fn a_file_missing_from_the_docs_dir_is_not_found() {
    let app = spawn_app().await;

    let response = app.get("/no-such-page.html").await;

    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn the_metrics_name_the_build_the_version_endpoint_reports() {
    let app = spawn_app().await;
    let version = app.get("/api/version").await.json();
    let metrics = app.get("/api/metrics").await;
    assert_eq!(metrics.status, 200);

    let text = metrics.text();
    let line = text
        .lines()
        .find(|line| line.starts_with("chimney_build_info{"))
        .unwrap_or_else(|| panic!("no chimney_build_info in:\n{text}"));
    let expected_version = format!(
        "version=\"{}\"",
        version["chimney_version"].as_str().expect("a version")
    );
    assert!(line.contains(&expected_version), "{line}");
    assert!(line.contains("commit=\""), "{line}");
    assert!(line.trim_end().ends_with(" 1"), "{line}");
}
