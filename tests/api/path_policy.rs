//! The path policy and the canonical form of a proxied request (CONTRACT 3,
//! v2): only paths matching `proxy_paths` are proxied, everything else is a
//! 403 problem with no upstream call; percent-encoding is normalised before
//! keying and forwarding; a path over 2,048 bytes is a 414.
//!
//! Paths are sent byte for byte over a raw connection: an HTTP client
//! library would normalise `%70ulls` or `..` before chimney saw them.

use chimney::domain::PathPolicy;

use crate::helpers::{RawResponse, TestApp, spawn_app, spawn_app_with};

/// An app with the default policy, as shipped.
async fn spawn_default_policy_app() -> TestApp {
    spawn_app_with(|s| s.proxy_paths = PathPolicy::default()).await
}

fn assert_problem_type(response: &RawResponse, status: u16, slug: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/problem+json")),
        "{:?}",
        response.headers
    );
    let problem: serde_json::Value = serde_json::from_str(&response.body).expect("problem JSON");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("/{slug}"))),
        "{problem}"
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
}

fn seen_by_github(app: &TestApp) -> Vec<String> {
    app.github
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect()
}

#[tokio::test]
async fn paths_outside_the_policy_answer_403_and_never_reach_github() {
    let app = spawn_default_policy_app().await;
    // What the server's token could read but the dashboard never needs.
    for target in [
        "/api/github/hooks",
        "/api/github/hooks/1/config",
        "/api/github/keys",
        "/api/github/actions/secrets",
        "/api/github/actions/secrets/public-key",
        "/api/github/actions/variables",
        "/api/github/code-scanning/alerts",
        "/api/github/traffic/views",
        "/api/github/collaborators",
        "/api/github/invitations",
        "/api/github/actions/runs/1/logs",
        "/api/github/actions/artifacts/1/zip",
        "/api/github/tarball/main",
        "/api/github/zipball/main",
        "/api/github/contents/.env",
        "/api/github/pulls/1/merge",
        "/api/github/Hooks",
        "/api/github/%68ooks",
        "/api/github/branches/main%2Fprotection",
        "/api/github/branches/main%2fprotection",
        "/api/github/issues/",
        "/api/github/a..b",
    ] {
        let response = app.raw_request("GET", target).await;
        assert_problem_type(&response, 403, "path-not-proxied");
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    }
    assert_eq!(seen_by_github(&app), Vec::<String>::new());
}

#[tokio::test]
async fn the_default_policy_serves_what_the_dashboard_reads() {
    let app = spawn_default_policy_app().await;
    for rel in [
        "/pulls/7/files",
        "/commits/2a6c97f/check-runs",
        "/actions/workflows/goose-build.yml/runs",
        "/actions/runs/42/jobs",
        "/releases/latest",
        "/readme",
    ] {
        app.github
            .set_json(&app.upstream(rel), &serde_json::json!({ "rel": rel }));

        let response = app.get_github(rel).await;

        assert_eq!(response.status, 200, "{rel}: {}", response.text());
        assert_eq!(response.json()["rel"], rel);
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(app.github.requests_for(&app.upstream(rel)), 1);
    }
}

#[tokio::test]
async fn proxy_paths_is_what_an_operator_extends_the_policy_with() {
    let app = spawn_app_with(|s| {
        s.proxy_paths = PathPolicy::parse(["/", "/contents/**"]).unwrap();
    })
    .await;
    let readme = app.upstream("/contents/README.md");

    let served = app.get_github("/contents/README.md").await;
    let refused = app.raw_request("GET", "/api/github/pulls").await;

    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.body, app.github.body(&readme));
    assert_problem_type(&refused, 403, "path-not-proxied");
    assert_eq!(seen_by_github(&app), [readme]);
}

#[tokio::test]
async fn dots_inside_a_segment_are_not_traversal() {
    let app = spawn_default_policy_app().await;
    let upstream = app.upstream("/compare/main...feature");
    app.github
        .set_json(&upstream, &serde_json::json!({ "status": "ahead" }));

    let response = app
        .raw_request("GET", "/api/github/compare/main...feature")
        .await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(seen_by_github(&app), [upstream]);
}

#[tokio::test]
async fn encoded_spellings_of_one_path_share_one_key_and_one_upstream_request() {
    let app = spawn_app().await;
    let upstream = app.upstream("/pulls");
    app.github
        .set_json(&upstream, &serde_json::json!([{ "number": 1 }]));

    let mut x_cache = Vec::new();
    for target in [
        "/api/github/pulls",
        "/api/github/%70ulls",
        "/api/github/p%75lls",
        "/api/github/%70%75%6C%6C%73",
        "/api/github/%70%75%6c%6c%73",
    ] {
        let response = app.raw_request("GET", target).await;
        assert_eq!(response.status, 200, "{target}: {}", response.body);
        x_cache.push(response.header("x-cache").unwrap_or_default().to_owned());
    }

    assert_eq!(x_cache, ["MISS", "HIT", "HIT", "HIT", "HIT"]);
    assert_eq!(seen_by_github(&app), [upstream]);
}

#[tokio::test]
async fn encoded_spellings_are_forwarded_canonically_and_share_a_key() {
    let app = spawn_app().await;

    let first = app
        .raw_request("GET", "/api/github/branches/release%3dv1")
        .await;
    let second = app
        .raw_request("GET", "/api/github/branches/%72elease%3Dv1")
        .await;

    // The fake has no such branch: GitHub's 404, cached for the negative
    // TTL under the one canonical key.
    assert_eq!(first.status, 404, "{}", first.body);
    assert_eq!(second.status, 404, "{}", second.body);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(
        seen_by_github(&app),
        [app.upstream("/branches/release%3Dv1")]
    );
}

#[tokio::test]
async fn a_path_longer_than_2048_bytes_answers_414_without_an_upstream_call() {
    let app = spawn_app().await;
    let prefix = "/api/github";
    let over = format!("{prefix}/pulls/{}", "a".repeat(2048));
    let at_limit = format!("{prefix}/pulls/{}", "a".repeat(2048 - "/pulls/".len()));

    let refused = app.raw_request("GET", &over).await;

    assert_problem_type(&refused, 414, "uri-too-long");
    assert_eq!(seen_by_github(&app), Vec::<String>::new());

    let accepted = app.raw_request("GET", &at_limit).await;

    assert_eq!(accepted.status, 404, "{}", accepted.body);
    assert_eq!(app.github.total_requests(), 1);
}
