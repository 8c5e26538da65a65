//! CORS on the public reads (CONTRACT 7 v2): every endpoint that needs no
//! token answers a cross-origin read with `Access-Control-Allow-Origin: *`,
//! whatever origins the admin endpoints are limited to.

use crate::admin_client::spawn_admin_app_with;

const OTHER_ORIGIN: &str = "https://dashboard.example";

const PUBLIC_READS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/version",
    "/api/pipeline/summary",
    "/api/github/org/repos",
    "/api/deploy/status",
    "/api/cache/stats",
    "/api/metrics",
    "/api/openapi.json",
];

#[tokio::test]
async fn every_public_read_allows_any_origin() {
    let app = spawn_admin_app_with(|s| {
        s.cors_origins = vec!["https://table.beerpub.dev".to_owned()];
    })
    .await;

    for path in PUBLIC_READS {
        let response = app
            .get_with_headers(path, &[("origin", OTHER_ORIGIN)])
            .await;
        assert!(response.status < 300, "{path}: {}", response.status);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_preflight_for_a_public_read_is_answered_for_any_origin() {
    let app = spawn_admin_app_with(|s| {
        s.cors_origins = vec!["https://table.beerpub.dev".to_owned()];
    })
    .await;

    for path in ["/api/deploy/status", "/healthz", "/api/github/pulls"] {
        let response = app.preflight(path, OTHER_ORIGIN, "GET").await;
        assert_eq!(response.status, 204, "{path}");
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let methods = response
            .header("access-control-allow-methods")
            .unwrap_or_default();
        assert!(methods.contains("GET"), "{path}: {methods}");
    }
    // The admin endpoints keep their own, narrower rule.
    app.preflight("/api/cache/invalidate", OTHER_ORIGIN, "POST")
        .await
        .assert_problem(403);
}

#[tokio::test]
async fn a_read_without_origin_carries_no_cors_header() {
    let app = spawn_admin_app_with(|_| {}).await;
    let response = app.get("/api/version").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), None);
}
