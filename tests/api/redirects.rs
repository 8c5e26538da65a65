//! Redirects and repository ids (CONTRACT 3, v2): a 3xx from GitHub is
//! passed on only when its `Location` points into the repository being
//! served on the API origin (rewritten to a local URL, as `Link` is); any
//! other redirect, such as a signed download URL, is a 502 problem. A
//! `/repositories/{id}` URL counts as the served repository only for its
//! own id, which chimney learns from the repository's `/` answer.

use crate::helpers::{HELLO_WORLD, TestApp, spawn_app};

/// The id the fake's `/` answer gives [`HELLO_WORLD`] in these tests.
const HELLO_WORLD_ID: u64 = 4242;

/// Serves a redirect at `rel` to `location` (written against
/// `https://api.github.com`, which the fake rewrites to its own origin).
fn redirect(app: &TestApp, rel: &str, status: u16, location: &str) {
    app.github.set_resource(
        &app.upstream(rel),
        status,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Location", location),
            ("Set-Cookie", "logged_in=no"),
        ],
        r#"{"message":"Moved Permanently","url":"https://api.github.com/x","documentation_url":"https://docs.github.com/rest"}"#,
    );
}

fn describe_repo(app: &TestApp) {
    app.github.set_json(
        &app.upstream("/"),
        &serde_json::json!({ "id": HELLO_WORLD_ID, "full_name": HELLO_WORLD }),
    );
}

#[tokio::test]
async fn a_redirect_within_the_served_repository_is_passed_on_with_a_local_location() {
    let app = spawn_app().await;
    let rel = "/issues/1";
    redirect(
        &app,
        rel,
        301,
        &format!("https://api.github.com/repos/{HELLO_WORLD}/issues/2"),
    );

    let first = app.get_github(rel).await;
    let second = app.get_github(rel).await;

    for response in [&first, &second] {
        assert_eq!(response.status, 301, "{}", response.text());
        assert_eq!(response.header("location"), Some("/api/github/issues/2"));
        assert!(response.header("set-cookie").is_none());
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(
        app.github.requests_for(&app.upstream(rel)),
        2,
        "a redirect is never cached"
    );
    assert_eq!(app.github.requests_for(&app.upstream("/issues/2")), 0);
}

#[tokio::test]
async fn a_redirect_to_a_signed_download_url_is_a_502_that_hides_the_url() {
    let app = spawn_app().await;
    let rel = "/releases/latest";
    let signed = "https://objects.githubusercontent.com/github-production-release-asset/1/2?X-Amz-Signature=abc123secret";
    redirect(&app, rel, 302, signed);

    let response = app.get_github(rel).await;

    response.assert_problem(502);
    assert!(
        response.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/upstream-redirect")
    );
    assert!(response.header("location").is_none());
    assert!(!response.text().contains("abc123secret"));
    assert!(!response.text().contains("githubusercontent"));
    assert_eq!(
        app.github
            .requests()
            .iter()
            .map(|r| r.path_and_query.clone())
            .collect::<Vec<_>>(),
        [app.upstream(rel)],
        "chimney follows no redirect"
    );
}

#[tokio::test]
async fn a_redirect_to_another_repository_or_host_is_a_502() {
    let app = spawn_app().await;
    for (rel, location) in [
        (
            "/issues/3",
            "https://api.github.com/repos/someone/else/issues/9".to_owned(),
        ),
        (
            "/issues/4",
            format!("https://api.github.com.evil.example/repos/{HELLO_WORLD}/issues/4"),
        ),
        ("/issues/5", format!("/repos/{HELLO_WORLD}/issues/5")),
    ] {
        redirect(&app, rel, 301, &location);

        let response = app.get_github(rel).await;

        response.assert_problem(502);
        assert!(response.header("location").is_none(), "{rel}");
    }
}

#[tokio::test]
async fn a_redirect_by_repository_id_is_passed_on_only_for_the_served_repos_id() {
    let app = spawn_app().await;
    describe_repo(&app);
    redirect(
        &app,
        "/issues/6",
        301,
        &format!("https://api.github.com/repositories/{HELLO_WORLD_ID}/issues/60"),
    );
    redirect(
        &app,
        "/issues/7",
        301,
        "https://api.github.com/repositories/9999/issues/70",
    );

    let ours = app.get_github("/issues/6").await;
    let theirs = app.get_github("/issues/7").await;

    assert_eq!(ours.status, 301, "{}", ours.text());
    assert_eq!(ours.header("location"), Some("/api/github/issues/60"));
    theirs.assert_problem(502);
    assert_eq!(
        app.github.requests_for(&app.upstream("/")),
        1,
        "the id was learnt once from the repository's own answer"
    );
}

#[tokio::test]
async fn repository_id_links_are_rewritten_only_for_the_served_repos_id() {
    let app = spawn_app().await;
    describe_repo(&app);
    let ours = format!("https://api.github.com/repositories/{HELLO_WORLD_ID}/pulls?page=2");
    let theirs = "https://api.github.com/repositories/9999/pulls?page=3";
    app.github.set_resource(
        &app.upstream("/pulls"),
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"pulls\""),
            (
                "Link",
                &format!("<{ours}>; rel=\"next\", <{theirs}>; rel=\"last\""),
            ),
        ],
        "[]",
    );

    let response = app.get_github("/pulls").await;

    let link = response.header("link").expect("Link kept").to_owned();
    assert!(
        link.contains("</api/github/pulls?page=2>; rel=\"next\""),
        "{link}"
    );
    assert!(
        link.contains(&format!(
            "<{}/repositories/9999/pulls?page=3>; rel=\"last\"",
            app.github.origin()
        )),
        "another repository's id stays absolute: {link}"
    );
}

#[tokio::test]
async fn an_unknown_repository_id_is_never_taken_for_the_served_repo() {
    let app = spawn_app().await;
    // No `/` answer to learn the id from: GitHub's 404.
    app.github.set_resource(
        &app.upstream("/pulls"),
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"pulls\""),
            (
                "Link",
                "<https://api.github.com/repositories/1234/pulls?page=2>; rel=\"next\"",
            ),
        ],
        "[]",
    );

    let response = app.get_github("/pulls").await;

    assert_eq!(response.status, 200, "{}", response.text());
    let link = response.header("link").expect("Link kept");
    assert!(
        link.starts_with(&format!("<{}/repositories/1234/", app.github.origin())),
        "{link}"
    );
}
