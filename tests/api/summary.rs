//! `GET /api/pipeline/summary`: counts from GitHub-shaped fixture lists,
//! partial answers, coalesced cold builds, the 60 s cache and invalidation
//! by name.

use std::time::Duration;

use chimney::bootstrap::version::WGMESH_VERSION;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// The build workflow these tests configure (not the default, to prove the
/// setting is used).
const WORKFLOW: &str = "release-build.yml";

const OPEN_ISSUES: &str = "/issues?state=open&per_page=100";
const OPEN_PULLS: &str = "/pulls?state=open&per_page=100";
const CLOSED_PULLS: &str = "/pulls?state=closed&per_page=10&sort=updated&direction=desc";

fn runs_rel() -> String {
    format!("/actions/workflows/{WORKFLOW}/runs?per_page=10&status=completed")
}

/// The four upstream paths the summary reads, as the fake counts them.
fn part_paths(app: &TestApp) -> [String; 4] {
    [
        app.upstream(OPEN_ISSUES),
        app.upstream(OPEN_PULLS),
        app.upstream(CLOSED_PULLS),
        app.upstream(&runs_rel()),
    ]
}

async fn spawn_summary_app() -> TestApp {
    spawn_app_with(|s| {
        s.summary_workflow = WORKFLOW.to_owned();
    })
    .await
}

fn user(login: &str, id: u64) -> Value {
    json!({
        "login": login,
        "id": id,
        "type": "User",
        "site_admin": false,
        "html_url": format!("https://github.com/{login}"),
    })
}

fn issue(repo: &str, number: u64, title: &str, is_pr: bool) -> Value {
    let mut issue = json!({
        "url": format!("https://api.github.com/repos/{repo}/issues/{number}"),
        "html_url": format!("https://github.com/{repo}/issues/{number}"),
        "id": 1_000_000 + number,
        "number": number,
        "title": title,
        "user": user("octocat", 583_231),
        "labels": [],
        "state": "open",
        "locked": false,
        "comments": 0,
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-02T10:00:00Z",
        "closed_at": null,
        "author_association": "MEMBER",
        "body": null,
    });
    if is_pr {
        issue["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
            "html_url": format!("https://github.com/{repo}/pull/{number}"),
            "merged_at": null,
        });
    }
    issue
}

fn pull(repo: &str, number: u64, title: &str, state: &str, merged_at: Option<&str>) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
        "id": 2_000_000 + number,
        "html_url": format!("https://github.com/{repo}/pull/{number}"),
        "number": number,
        "state": state,
        "locked": false,
        "title": title,
        "user": user("hubot", 2_000),
        "body": "",
        "created_at": "2024-05-01T08:00:00Z",
        "updated_at": "2024-05-03T08:00:00Z",
        "closed_at": if state == "closed" { json!("2024-05-03T08:00:00Z") } else { Value::Null },
        "merged_at": merged_at,
        "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
        "draft": false,
        "head": {"ref": format!("feature-{number}"), "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
        "base": {"ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
    })
}

fn run(repo: &str, id: u64, conclusion: &str) -> Value {
    json!({
        "id": id,
        "name": "goose build",
        "node_id": format!("WFR_{id}"),
        "head_branch": "main",
        "head_sha": format!("{id:040x}"),
        "path": format!(".github/workflows/{WORKFLOW}"),
        "run_number": id - 30_000,
        "event": "push",
        "status": "completed",
        "conclusion": conclusion,
        "workflow_id": 159_038,
        "html_url": format!("https://github.com/{repo}/actions/runs/{id}"),
        "created_at": "2024-05-03T09:00:00Z",
        "updated_at": "2024-05-03T09:05:00Z",
        "run_attempt": 1,
        "run_started_at": "2024-05-03T09:00:00Z",
    })
}

/// Serves a realistic set of lists for the app's repository: 5 open issues
/// of which 2 are pull requests, 3 open PRs, closed PRs whose first is
/// unmerged, and 10 completed runs of which 7 succeeded.
fn serve_fixture(app: &TestApp) {
    let repo = app.repo.to_string();
    let r = repo.as_str();
    app.github.set_json(
        &app.upstream(OPEN_ISSUES),
        &json!([
            issue(r, 41, "Mesh peers drop after rekey", false),
            issue(r, 40, "Add IPv6 endpoints", true),
            issue(r, 39, "Document relay mode", false),
            issue(r, 38, "Bump wireguard-go", true),
            issue(r, 37, "Flaky handshake test", false),
        ]),
    );
    app.github.set_json(
        &app.upstream(OPEN_PULLS),
        &json!([
            pull(r, 40, "Add IPv6 endpoints", "open", None),
            pull(r, 38, "Bump wireguard-go", "open", None),
            pull(r, 36, "Refactor peer store", "open", None),
        ]),
    );
    app.github.set_json(
        &app.upstream(CLOSED_PULLS),
        &json!([
            pull(r, 35, "Abandoned experiment", "closed", None),
            pull(
                r,
                34,
                "Faster key rotation",
                "closed",
                Some("2024-05-03T08:00:00Z")
            ),
            pull(r, 33, "Older merge", "closed", Some("2024-05-01T08:00:00Z")),
        ]),
    );
    let conclusions = [
        "success",
        "failure",
        "success",
        "success",
        "cancelled",
        "success",
        "success",
        "failure",
        "success",
        "success",
    ];
    let runs: Vec<Value> = conclusions
        .iter()
        .enumerate()
        .map(|(i, c)| run(r, 31_010 - i as u64, c))
        .collect();
    app.github.set_json(
        &app.upstream(&runs_rel()),
        &json!({"total_count": 57, "workflow_runs": runs}),
    );
}

async fn get_summary(app: &TestApp) -> (Value, String) {
    let response = app.get("/api/pipeline/summary").await;
    assert_eq!(response.status, 200, "summary: {}", response.text());
    (response.json(), response.x_cache().to_owned())
}

#[tokio::test]
async fn summary_counts_match_the_fixture_data() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);

    let (summary, x_cache) = get_summary(&app).await;

    assert_eq!(x_cache, "MISS");
    assert_eq!(summary["wgmesh_version"], WGMESH_VERSION);
    assert_eq!(summary["open_issues"], 3, "{summary}");
    assert_eq!(summary["open_prs"], 3, "{summary}");
    let merged = &summary["last_merged_pr"];
    assert_eq!(merged["number"], 34, "{summary}");
    assert_eq!(merged["title"], "Faster key rotation");
    assert_eq!(merged["merged_at"], "2024-05-03T08:00:00Z");
    assert_eq!(merged["user"], "hubot");
    assert_eq!(
        merged["html_url"],
        format!("https://github.com/{}/pull/34", app.repo)
    );
    let runs = summary["recent_workflow_runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 10);
    assert_eq!(runs[0]["id"], 31_010);
    assert_eq!(runs[1]["conclusion"], "failure");
    // The original chimney's field names, for its readers (CONTRACT 7 v2).
    assert_eq!(merged["sha"], "e5bd3914e2e596debea16f433f57875b5b90bcd6");
    assert_eq!(runs[0]["workflow_name"], "goose build");
    assert_eq!(runs[0]["run_at"], "2024-05-03T09:00:00Z");
    assert_eq!(
        runs[0]["url"],
        format!("https://github.com/{}/actions/runs/31010", app.repo)
    );
    assert_eq!(summary["goose_success_rate_pct"], 70.0);
    assert_eq!(summary["missing"], json!([]));
    let fetched_at = summary["fetched_at"].as_str().expect("fetched_at");
    assert!(
        humantime::parse_rfc3339(fetched_at).is_ok(),
        "fetched_at {fetched_at:?} is not RFC 3339"
    );
    for path in part_paths(&app) {
        assert_eq!(app.github.requests_for(&path), 1, "{path}");
    }
}

#[tokio::test]
async fn summary_lists_are_shared_with_the_proxy_cache() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);
    get_summary(&app).await;

    let issues = app.get_github(OPEN_ISSUES).await;

    assert_eq!(issues.status, 200);
    assert_eq!(issues.x_cache(), "HIT");
    assert_eq!(app.github.requests_for(&app.upstream(OPEN_ISSUES)), 1);
}

#[tokio::test]
async fn a_failing_part_gives_a_partial_summary_naming_it() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);
    app.github.fail_with(&app.upstream(OPEN_PULLS), 502);

    let (summary, _) = get_summary(&app).await;

    assert_eq!(summary["missing"], json!(["open_prs"]), "{summary}");
    assert_eq!(summary["open_prs"], Value::Null);
    assert_eq!(summary["open_issues"], 3);
    assert_eq!(summary["last_merged_pr"]["number"], 34);
    assert_eq!(summary["goose_success_rate_pct"], 70.0);
}

#[tokio::test]
async fn a_summary_with_every_part_failing_is_still_an_answer() {
    let app = spawn_summary_app().await;
    app.github.fail_with(chimney_testkit::github::ALL, 500);

    let (summary, _) = get_summary(&app).await;

    assert_eq!(
        summary["missing"],
        json!([
            "open_issues",
            "open_prs",
            "last_merged_pr",
            "recent_workflow_runs"
        ])
    );
    assert_eq!(summary["goose_success_rate_pct"], Value::Null);
    assert_eq!(summary["recent_workflow_runs"], Value::Null);
    assert_eq!(summary["wgmesh_version"], WGMESH_VERSION);
}

#[tokio::test]
async fn concurrent_cold_requests_build_the_summary_once() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);
    for path in part_paths(&app) {
        app.github.delay(&path, Duration::from_millis(300));
    }

    let requests = (0..12).map(|_| app.get("/api/pipeline/summary"));
    let responses = futures::future::join_all(requests).await;

    let mut misses = 0;
    for response in &responses {
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["open_issues"], 3);
        assert!(
            matches!(response.x_cache(), "MISS" | "COALESCED" | "HIT"),
            "{}",
            response.x_cache()
        );
        misses += usize::from(response.x_cache() == "MISS");
    }
    assert_eq!(misses, 1, "exactly one request builds the summary");
    for path in part_paths(&app) {
        assert_eq!(app.github.requests_for(&path), 1, "{path}");
    }
    assert_eq!(app.github.total_requests(), 4);
}

#[tokio::test]
async fn a_second_request_within_a_minute_makes_no_upstream_call() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);
    let (first, _) = get_summary(&app).await;
    let before = app.github.total_requests();

    let response = app.get("/api/pipeline/summary").await;

    assert_eq!(response.x_cache(), "HIT");
    assert_eq!(response.json(), first);
    assert_eq!(app.github.total_requests(), before);
    let age: u64 = response
        .header("x-cache-age")
        .and_then(|v| v.parse().ok())
        .expect("X-Cache-Age");
    assert!(age < 60);
}

#[tokio::test]
async fn a_partial_summary_is_also_cached_briefly() {
    let app = spawn_summary_app().await;
    serve_fixture(&app);
    app.github.fail_with(&app.upstream(OPEN_PULLS), 500);
    get_summary(&app).await;
    let before = app.github.total_requests();

    let (again, x_cache) = get_summary(&app).await;

    assert_eq!(x_cache, "HIT", "a dashboard burst must not hammer GitHub");
    assert_eq!(again["missing"], json!(["open_prs"]));
    assert_eq!(app.github.total_requests(), before);
}

async fn invalidate(app: &TestApp, body: Value) -> u16 {
    let response = app
        .client
        .post(format!("{}/api/cache/invalidate", app.address))
        .bearer_auth(INVALIDATE_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("invalidate request");
    response.status().as_u16()
}

const INVALIDATE_TOKEN: &str = "summary-test-invalidate-token";

#[tokio::test]
async fn invalidating_the_summary_by_name_forces_a_rebuild() {
    let app = spawn_app_with(|s| {
        s.summary_workflow = WORKFLOW.to_owned();
        s.invalidate_token = Some(INVALIDATE_TOKEN.to_owned().into());
    })
    .await;
    serve_fixture(&app);
    get_summary(&app).await;

    let status = invalidate(&app, json!({"path": "/issues", "reason": "test"})).await;
    assert_eq!(status, 200);
    let (_, after_prefix) = get_summary(&app).await;
    assert_eq!(
        after_prefix, "HIT",
        "a path prefix never evicts the summary"
    );

    let status = invalidate(
        &app,
        json!({"path": "__pipeline_summary__", "reason": "test"}),
    )
    .await;
    assert_eq!(status, 200);
    let (rebuilt, after_name) = get_summary(&app).await;

    assert_eq!(after_name, "MISS", "the summary was rebuilt");
    assert_eq!(rebuilt["open_issues"], 3);
    assert_eq!(
        app.github.requests_for(&app.upstream(OPEN_ISSUES)),
        2,
        "the evicted /issues list was fetched again for the rebuild"
    );
    assert_eq!(app.github.requests_for(&app.upstream(OPEN_PULLS)), 1);
}
