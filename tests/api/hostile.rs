//! Requests chimney must refuse before anything reaches GitHub: hostile
//! paths (400) and methods other than GET and HEAD (405) (CONTRACT 3). The
//! path policy (403) and over-long paths (414) are in `path_policy`.
//!
//! Paths are sent byte for byte over a raw connection: an HTTP client
//! library would resolve `..` and `%2e%2e` before chimney saw them.

use reqwest::Method;

use crate::helpers::{TestApp, spawn_app};

/// Every target answers 400, with a problem body type, and GitHub never
/// hears of any of them.
async fn assert_rejected(app: &TestApp, targets: &[&str]) {
    for target in targets {
        let response = app.raw_request("GET", target).await;

        assert_eq!(response.status, 400, "GET {target}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "GET {target}"
        );
        assert!(
            response.header("x-injected").is_none(),
            "header injected by {target}"
        );
        if let Some(content_type) = response.header("content-type") {
            assert!(
                content_type.starts_with("application/problem+json"),
                "GET {target}: content-type {content_type:?}"
            );
        }
    }
    assert_eq!(
        app.github.total_requests(),
        0,
        "GitHub saw {:?}",
        app.github
            .requests()
            .iter()
            .map(|r| r.path_and_query.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn dot_dot_traversal_is_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/../../orgs/evil",
            "/api/github/pulls/../../../users",
            "/api/github/pulls/.",
        ],
    )
    .await;
}

#[tokio::test]
async fn percent_encoded_traversal_is_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/%2e%2e/%2e%2e/orgs/evil",
            "/api/github/%2E%2E/users",
            "/api/github/.%2e/users",
            "/api/github/pulls/%2e%2e%2f%2e%2e%2fusers",
        ],
    )
    .await;
}

#[tokio::test]
async fn double_encoded_traversal_is_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/%252e%252e/orgs",
            "/api/github/%252E%252E%252Fusers",
        ],
    )
    .await;
}

#[tokio::test]
async fn empty_segments_are_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github//evil.example/x",
            "/api/github/pulls//1",
            "/api/github/pulls/%2f%2fevil",
        ],
    )
    .await;
}

#[tokio::test]
async fn url_schemes_are_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/http:evil.example/x",
            "/api/github/https:%2f%2fevil.example",
            "/api/github/javascript:alert(1)",
        ],
    )
    .await;
}

#[tokio::test]
async fn crlf_is_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/pulls%0d%0aX-Injected:%20yes",
            "/api/github/pulls%0aX-Injected:%20yes",
            "/api/github/pulls%250d%250aX-Injected:%20yes",
        ],
    )
    .await;
}

#[tokio::test]
async fn control_characters_are_rejected_before_any_upstream_call() {
    let app = spawn_app().await;

    assert_rejected(
        &app,
        &[
            "/api/github/pulls%00",
            "/api/github/pulls%09x",
            "/api/github/pulls%1b[31m",
            "/api/github/pulls%7f",
        ],
    )
    .await;
}

#[tokio::test]
async fn write_methods_on_the_proxy_are_answered_405_allowing_get_and_head() {
    let app = spawn_app().await;

    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let response = app
            .request(method.clone(), &app.github_path("/pulls"), &[])
            .await;

        assert_eq!(response.status, 405, "{method}");
        let mut allowed: Vec<String> = response
            .header_all("allow")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|m| m.trim().to_ascii_uppercase())
            .collect();
        allowed.sort();
        assert_eq!(allowed, ["GET", "HEAD"], "{method}: Allow");
    }
    assert_eq!(app.github.total_requests(), 0);
}
