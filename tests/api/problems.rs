//! Problem types (CONTRACT 7 v2): every `type` URI a client receives
//! resolves to a page chimney serves that explains it.

use crate::helpers::spawn_app;

/// The path part of a problem's `type` URI.
fn type_path(problem: &serde_json::Value) -> String {
    let uri = problem["type"].as_str().expect("a problem has a type");
    let url = url::Url::parse(uri).expect("the type is an absolute URI");
    url.path().to_owned()
}

#[tokio::test]
async fn the_type_of_an_error_answer_resolves_to_a_page_explaining_it() {
    let app = spawn_app().await;
    // Three different errors: an unknown API path, a hostile proxy path,
    // an admin endpoint whose token is not configured.
    let not_found = app.get("/api/nothing-here").await;
    let bad_path = app.get("/api/github/..%2F..%2Fetc").await;
    let disabled = app.post_raw("/api/cache/invalidate", None, "{}").await;
    for response in [not_found, bad_path, disabled] {
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let problem = response.json();
        let page = app.get(&type_path(&problem)).await;
        assert_eq!(page.status, 200, "{} does not resolve", problem["type"]);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(
            page.text()
                .contains(problem["title"].as_str().expect("a title")),
            "the page names the problem's title"
        );
    }
}

#[tokio::test]
async fn the_index_links_every_problem_type_and_unknown_types_are_404() {
    let app = spawn_app().await;
    let index = app.get("/problems").await;
    assert_eq!(index.status, 200);
    let text = index.text();
    for slug in [
        "bad-request",
        "unauthorized",
        "upstream-failure",
        "payload-too-large",
    ] {
        assert!(text.contains(&format!("/problems/{slug}")), "{slug} listed");
        assert_eq!(app.get(&format!("/problems/{slug}")).await.status, 200);
    }
    let unknown = app.get("/problems/no-such-type").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.header("content-type"),
        Some("application/problem+json")
    );
}
