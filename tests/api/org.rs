//! Org mode: background discovery of the organisation's repositories
//! (pagination, archived and excluded repositories), routing of
//! `/api/github/{owner}/{repo}/...` to discovered repositories only, and
//! `GET /api/github/org/repos` in both modes.

use std::time::{Duration, Instant};

use chimney_testkit::github::ALL;
use serde_json::{Value, json};

use crate::helpers::{HELLO_WORLD, TestApp, spawn_app, spawn_app_with};

const ORG: &str = "acme-mesh";
const FIRST_PAGE: &str = "/orgs/acme-mesh/repos?type=public&per_page=100";
const SECOND_PAGE: &str = "/organizations/4242/repos?type=public&per_page=100&page=2";
/// The configured repository in org mode.
const CONFIGURED: &str = "acme-mesh/wgmesh";

fn repo(name: &str, archived: bool, language: Option<&str>) -> Value {
    json!({
        "id": 90_000 + name.len() as u64,
        "node_id": format!("R_{name}"),
        "name": name,
        "full_name": format!("{ORG}/{name}"),
        "private": false,
        "owner": {"login": ORG, "id": 4242, "type": "Organization"},
        "html_url": format!("https://github.com/{ORG}/{name}"),
        "description": format!("The {name} service"),
        "fork": false,
        "url": format!("https://api.github.com/repos/{ORG}/{name}"),
        "created_at": "2023-01-10T12:00:00Z",
        "updated_at": "2024-05-02T12:00:00Z",
        "pushed_at": "2024-05-02T12:00:00Z",
        "language": language,
        "archived": archived,
        "disabled": false,
        "open_issues_count": 4,
        "visibility": "public",
        "default_branch": "main",
    })
}

/// Two pages: the first links to the second with GitHub's
/// `/organizations/{id}` form, as the real API does.
fn serve_org(app: &TestApp) {
    let origin = app.github.origin().to_owned();
    let page1 = serde_json::to_vec(&json!([
        repo("wgmesh", false, Some("Go")),
        repo("chimney", false, Some("Rust")),
        repo("old-site", true, Some("HTML")),
        repo("Secrets", false, None),
    ]))
    .expect("JSON");
    let link =
        format!("<{origin}{SECOND_PAGE}>; rel=\"next\", <{origin}{SECOND_PAGE}>; rel=\"last\"");
    app.github.set_resource(
        FIRST_PAGE,
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Link", &link),
            ("ETag", "\"org-page-1\""),
        ],
        page1,
    );
    app.github.set_json(
        SECOND_PAGE,
        &json!([
            repo("lighthouse", false, Some("Go")),
            repo("infra", false, Some("HCL")),
        ]),
    );
}

async fn spawn_org_app(serve: impl FnOnce(&TestApp)) -> TestApp {
    let app = spawn_app_with(|s| {
        s.org = Some(ORG.to_owned());
        s.repo = chimney::domain::RepoName::parse(CONFIGURED).expect("repo");
        s.repos_exclude = vec!["secrets".to_owned(), "ACME-MESH/Infra".to_owned()];
    })
    .await;
    serve(&app);
    app
}

/// Polls the listing until it names `count` repositories.
async fn wait_for_discovery(app: &TestApp, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/api/github/org/repos").await;
        assert_eq!(response.status, 200, "{}", response.text());
        let listing = response.json();
        if listing["repos"].as_array().map_or(0, Vec::len) >= count {
            return listing;
        }
        assert!(
            Instant::now() < deadline,
            "discovery did not finish: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(listing: &Value) -> Vec<String> {
    listing["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .map(|r| r["full_name"].as_str().expect("full_name").to_owned())
        .collect()
}

#[tokio::test]
async fn discovery_follows_pagination_and_skips_archived_and_excluded_repos() {
    let app = spawn_org_app(serve_org).await;

    let listing = wait_for_discovery(&app, 3).await;

    assert_eq!(listing["org"], ORG);
    assert_eq!(listing["mode"], "org");
    assert_eq!(
        names(&listing),
        [
            "acme-mesh/wgmesh",
            "acme-mesh/chimney",
            "acme-mesh/lighthouse"
        ]
    );
    let chimney = &listing["repos"][1];
    assert_eq!(chimney["name"], "chimney");
    assert_eq!(chimney["description"], "The chimney service");
    assert_eq!(chimney["language"], "Rust");
    assert_eq!(chimney["open_issues_count"], 4);
    assert_eq!(chimney["updated_at"], "2024-05-02T12:00:00Z");
    assert_eq!(chimney["html_url"], "https://github.com/acme-mesh/chimney");
    assert_eq!(app.github.requests_for(FIRST_PAGE), 1);
    assert_eq!(app.github.requests_for(SECOND_PAGE), 1);
}

#[tokio::test]
async fn a_discovered_repo_is_proxied_to_that_repo_under_its_own_keys() {
    let app = spawn_org_app(serve_org).await;
    wait_for_discovery(&app, 3).await;
    let upstream = "/repos/acme-mesh/lighthouse/issues?state=open";
    app.github.set_json(
        upstream,
        &json!([{"number": 7, "title": "lighthouse issue"}]),
    );
    let configured = "/repos/acme-mesh/wgmesh/issues?state=open";
    app.github
        .set_json(configured, &json!([{"number": 1, "title": "wgmesh issue"}]));

    let response = app
        .get("/api/github/acme-mesh/lighthouse/issues?state=open")
        .await;
    let own = app.get("/api/github/issues?state=open").await;
    let again = app
        .get("/api/github/acme-mesh/lighthouse/issues?state=open")
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()[0]["title"], "lighthouse issue");
    assert_eq!(response.x_cache(), "MISS");
    assert_eq!(own.json()[0]["title"], "wgmesh issue");
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.json()[0]["title"], "lighthouse issue");
    assert_eq!(app.github.requests_for(upstream), 1);
    assert_eq!(app.github.requests_for(configured), 1);
}

#[tokio::test]
async fn links_of_a_discovered_repo_point_back_at_its_prefix() {
    let app = spawn_org_app(serve_org).await;
    wait_for_discovery(&app, 3).await;
    let origin = app.github.origin().to_owned();
    let link = format!("<{origin}/repos/acme-mesh/chimney/pulls?state=open&page=2>; rel=\"next\"");
    app.github.set_resource(
        "/repos/acme-mesh/chimney/pulls?state=open",
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"pulls-1\""),
            ("Link", &link),
        ],
        "[]",
    );

    let response = app
        .get("/api/github/Acme-Mesh/Chimney/pulls?state=open")
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("link"),
        Some("</api/github/acme-mesh/chimney/pulls?state=open&page=2>; rel=\"next\"")
    );
}

#[tokio::test]
async fn an_undiscovered_owner_repo_path_is_a_path_of_the_configured_repo_and_not_proxied() {
    let app = spawn_org_app(serve_org).await;
    wait_for_discovery(&app, 3).await;

    let response = app.get("/api/github/evil/repo/issues").await;
    let excluded = app.get("/api/github/acme-mesh/secrets/issues").await;

    // As paths of the configured repository, `/evil/repo/issues` and
    // `/acme-mesh/secrets/issues` match no proxy_paths pattern.
    for response in [&response, &excluded] {
        response.assert_problem(403);
        assert!(
            response.json()["type"]
                .as_str()
                .unwrap()
                .ends_with("/path-not-proxied")
        );
    }
    let asked: Vec<String> = app
        .github
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .filter(|p| p.starts_with("/repos/"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

#[tokio::test]
async fn in_org_mode_the_path_policy_applies_below_the_discovered_repo() {
    let app = spawn_org_app(serve_org).await;
    wait_for_discovery(&app, 3).await;
    app.github.set_json(
        "/repos/acme-mesh/lighthouse/hooks",
        &json!([{"config": {"secret": "s"}}]),
    );

    let refused = app.get("/api/github/acme-mesh/lighthouse/hooks").await;

    refused.assert_problem(403);
    assert_eq!(
        app.github.requests_for("/repos/acme-mesh/lighthouse/hooks"),
        0
    );
}

#[tokio::test]
async fn plain_paths_still_reach_the_configured_repo_in_org_mode() {
    let app = spawn_org_app(serve_org).await;
    wait_for_discovery(&app, 3).await;
    let upstream = "/repos/acme-mesh/wgmesh/pulls";
    app.github.set_json(upstream, &json!([{"number": 12}]));

    let response = app.get("/api/github/pulls").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.json()[0]["number"], 12);
    assert_eq!(app.github.requests_for(upstream), 1);
}

#[tokio::test]
async fn discovery_does_not_block_start_up() {
    let app = spawn_org_app(|app| app.github.hang(FIRST_PAGE)).await;
    app.github
        .set_json("/repos/acme-mesh/wgmesh/pulls", &json!([]));

    let started = Instant::now();
    let health = app.get("/healthz").await;
    let listing = app.get("/api/github/org/repos").await;
    let pulls = app.get("/api/github/pulls").await;

    assert_eq!(health.status, 200);
    assert_eq!(listing.status, 200);
    assert_eq!(listing.json()["mode"], "org");
    assert_eq!(listing.json()["repos"], json!([]));
    assert_eq!(pulls.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn single_repo_mode_lists_the_configured_repo_as_github_describes_it() {
    let app = spawn_app().await;
    let recorded: Value =
        serde_json::from_slice(&app.github.body(&format!("/repos/{HELLO_WORLD}"))).expect("JSON");

    let response = app.get("/api/github/org/repos").await;

    assert_eq!(response.status, 200, "{}", response.text());
    let listing = response.json();
    assert_eq!(listing["mode"], "single-repo");
    assert_eq!(listing["org"], "octokit-fixture-org");
    let repos = listing["repos"].as_array().expect("repos");
    assert_eq!(repos.len(), 1);
    let repo = &repos[0];
    assert_eq!(repo["full_name"], HELLO_WORLD);
    assert_eq!(repo["name"], "hello-world");
    for field in [
        "description",
        "language",
        "open_issues_count",
        "updated_at",
        "html_url",
    ] {
        assert_eq!(repo[field], recorded[field], "{field}");
    }
    let again = app.get_github("/").await;
    assert_eq!(
        again.x_cache(),
        "HIT",
        "the description came through the cache"
    );
}

#[tokio::test]
async fn single_repo_mode_falls_back_to_names_when_github_fails() {
    let app = spawn_app().await;
    app.github.fail_with(ALL, 503);

    let response = app.get("/api/github/org/repos").await;

    assert_eq!(response.status, 200, "{}", response.text());
    let repo = &response.json()["repos"][0];
    assert_eq!(repo["full_name"], HELLO_WORLD);
    assert_eq!(repo["name"], "hello-world");
    assert_eq!(
        repo["html_url"],
        format!("https://github.com/{HELLO_WORLD}")
    );
    assert_eq!(repo["description"], Value::Null);
}

#[tokio::test]
async fn a_webhook_for_a_discovered_repo_evicts_only_that_repos_keys() {
    let app = spawn_app_with(|s| {
        s.org = Some(ORG.to_owned());
        s.repo = chimney::domain::RepoName::parse(CONFIGURED).expect("repo");
        s.repos_exclude = vec!["secrets".to_owned(), "ACME-MESH/Infra".to_owned()];
        crate::live_client::with_webhook(s);
    })
    .await;
    serve_org(&app);
    wait_for_discovery(&app, 3).await;
    let theirs = "/repos/acme-mesh/lighthouse/issues?state=open";
    let ours = "/repos/acme-mesh/wgmesh/issues?state=open";
    app.github.set_json(theirs, &json!([{"number": 7}]));
    app.github.set_json(ours, &json!([{"number": 1}]));
    let local = "/api/github/acme-mesh/lighthouse/issues?state=open";
    assert_eq!(app.get(local).await.x_cache(), "MISS");
    assert_eq!(
        app.get("/api/github/issues?state=open").await.x_cache(),
        "MISS"
    );

    app.github.set_json(theirs, &json!([{"number": 8}]));
    let id = crate::live_client::delivery_id();
    let answer = app
        .deliver(
            "issues",
            &id,
            &crate::live_client::payload("ACME-MESH/Lighthouse"),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(answer["prefixes"], json!(["/acme-mesh/lighthouse/issues"]));
    assert_eq!(answer["evicted"], 1);
    // The configured repository's keys (and summary) are untouched.
    assert_eq!(
        app.get("/api/github/issues?state=open").await.x_cache(),
        "HIT"
    );
    // The discovered repository's key is fetched again in the background.
    app.github
        .wait_for_requests(theirs, 2, Duration::from_secs(5))
        .await;
    let again = app.get(local).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.json()[0]["number"], 8);

    // An excluded (undiscovered) repository of the org is not served.
    let excluded = app
        .deliver(
            "issues",
            &crate::live_client::delivery_id(),
            &crate::live_client::payload("acme-mesh/secrets"),
        )
        .await;
    assert_eq!(excluded.status, 202);
    assert_eq!(excluded.json()["evicted"], 0);
    assert_eq!(excluded.json()["prefixes"], json!([]));
}
