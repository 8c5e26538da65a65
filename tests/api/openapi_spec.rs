//! The OpenAPI document (CONTRACT 7): the one served at
//! `/api/openapi.json` must equal the committed `openapi/openapi.json`, and
//! it must describe the admin endpoints the way clients rely on (bearer
//! schemes, problem+json errors).
//!
//! Regenerate the committed file after changing an operation with:
//!
//! ```text
//! UPDATE_OPENAPI=1 cargo test --test api openapi_spec
//! ```

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::spawn_app;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json")
}

/// The document without `info.version`, which is the only field allowed to
/// vary between builds.
fn comparable(mut document: Value) -> Value {
    if let Some(info) = document.get_mut("info").and_then(Value::as_object_mut) {
        info.remove("version");
    }
    document
}

async fn served_document() -> Value {
    let app = spawn_app().await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[tokio::test]
async fn the_served_document_matches_the_committed_file() {
    let served = served_document().await;
    let path = committed_path();

    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        let mut text = serde_json::to_string_pretty(&served).expect("document serialises");
        text.push('\n');
        std::fs::create_dir_all(path.parent().expect("a parent directory"))
            .expect("create openapi/");
        std::fs::write(&path, text).expect("write openapi/openapi.json");
        println!("rewrote {}", path.display());
        return;
    }

    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); generate it with UPDATE_OPENAPI=1 cargo test --test api openapi_spec",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&committed).expect("the committed file is JSON");
    assert!(
        comparable(served) == comparable(committed),
        "openapi/openapi.json is out of date; regenerate it with \
         UPDATE_OPENAPI=1 cargo test --test api openapi_spec and commit the result"
    );
}

#[tokio::test]
async fn the_document_describes_every_json_endpoint() {
    let document = served_document().await;
    let paths = &document["paths"];

    for (path, method) in [
        ("/healthz", "get"),
        ("/api/version", "get"),
        ("/api/deploy/events", "post"),
        ("/api/deploy/status", "get"),
        ("/api/cache/invalidate", "post"),
        ("/api/cache/warm", "post"),
        ("/api/cache/stats", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not in the document"
        );
    }
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
}

#[tokio::test]
async fn admin_operations_require_their_bearer_scheme() {
    let document = served_document().await;
    let schemes = &document["components"]["securitySchemes"];

    for (path, scheme) in [
        ("/api/deploy/events", "DeployToken"),
        ("/api/cache/invalidate", "InvalidateToken"),
        ("/api/cache/warm", "InvalidateToken"),
    ] {
        assert_eq!(schemes[scheme]["type"], "http", "{scheme}");
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
        let security = &document["paths"][path]["post"]["security"];
        assert!(
            security
                .as_array()
                .is_some_and(|list| list.iter().any(|s| s.get(scheme).is_some())),
            "{path} does not require {scheme}: {security}"
        );
    }
    for path in ["/api/deploy/status", "/api/cache/stats"] {
        assert!(
            document["paths"][path]["get"].get("security").is_none(),
            "{path} must stay public"
        );
    }
}

#[tokio::test]
async fn every_documented_error_is_problem_json() {
    let document = served_document().await;

    for (path, method, statuses) in [
        (
            "/api/deploy/events",
            "post",
            &["400", "401", "403", "413", "500", "503"][..],
        ),
        (
            "/api/cache/invalidate",
            "post",
            &["400", "401", "403", "413", "503"][..],
        ),
        ("/api/cache/warm", "post", &["401", "403", "413", "503"][..]),
        ("/api/cache/stats", "get", &["400"][..]),
        ("/api/deploy/status", "get", &["500"][..]),
    ] {
        let responses = &document["paths"][path][method]["responses"];
        for status in statuses {
            let content = &responses[*status]["content"];
            assert!(
                content["application/problem+json"]["schema"].is_object(),
                "{method} {path} {status} is not problem+json: {content}"
            );
        }
    }
    let responses = &document["paths"]["/api/deploy/status"]["get"]["responses"];
    assert!(responses["204"].is_object(), "204 is documented");
    let warm = &document["paths"]["/api/cache/warm"]["post"]["responses"];
    assert!(warm["202"].is_object(), "202 is documented");
}

#[tokio::test]
async fn the_deploy_event_schema_documents_outcome_and_the_alias() {
    let document = served_document().await;
    let schema = &document["components"]["schemas"]["DeployEventRequest"];

    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        required.contains(&"sha") && required.contains(&"outcome"),
        "{schema}"
    );
    assert_eq!(
        document["components"]["schemas"]["DeployOutcome"]["enum"],
        serde_json::json!(["success", "failure"])
    );
    assert_eq!(schema["properties"]["timestamp"]["deprecated"], true);
}

#[tokio::test]
async fn the_interactive_viewer_is_served() {
    let app = spawn_app().await;

    let response = app.get("/api/docs").await;

    assert_eq!(response.status, 200);
    assert!(response.text().to_ascii_lowercase().contains("<html"));
}

/// Telemetry labels requests with `chimney::http::route_template`; every
/// operation of the document must be labelled with its own path, so a new
/// endpoint cannot be counted as `/api/{unknown}`.
#[test]
fn every_documented_path_is_its_own_route_template() {
    let text = std::fs::read_to_string(committed_path()).expect("read openapi/openapi.json");
    let document: Value = serde_json::from_str(&text).expect("openapi/openapi.json is JSON");
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    assert!(!paths.is_empty());
    for path in paths.keys() {
        assert_eq!(
            chimney::http::route_template(path),
            path,
            "{path} is documented but missing from src/http/routes.rs"
        );
    }
}

/// The proxy is described by hand (it is not a poem-openapi operation), so
/// its description is checked against a real answer: every header the
/// document says a 200 always carries is on a cache hit.
#[tokio::test]
async fn the_documented_proxy_headers_are_on_a_real_answer() {
    let app = spawn_app().await;
    let document = served_document().await;
    let ok = &document["paths"]["/api/github/{path}"]["get"]["responses"]["200"];
    let required: Vec<&str> = ok["headers"]
        .as_object()
        .expect("the 200 answer documents its headers")
        .iter()
        .filter(|(_, header)| header["required"] == Value::Bool(true))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(required.len() >= 3, "{required:?}");
    let _miss = app.get_github("/").await;
    let hit = app.get_github("/").await;
    assert_eq!(hit.status, 200);
    for name in required {
        assert!(hit.header(name).is_some(), "{name} documented but not sent");
    }
}

#[tokio::test]
async fn the_problem_schema_lists_every_problem_type() {
    let served = served_document().await;
    let description =
        served["components"]["schemas"]["Problem"]["properties"]["type"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();

    for slug in chimney::http::problem::ProblemType::ALL.map(|kind| kind.slug()) {
        assert!(
            description.contains(&format!("`{slug}`")),
            "the Problem type description does not list {slug}: {description}"
        );
    }
}
