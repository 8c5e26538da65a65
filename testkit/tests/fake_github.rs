//! The fake GitHub from the outside, as the tools that share it use it:
//! without recordings, resources set by pattern, made-up rate-limit
//! figures, and the control endpoints under `/__`.

use chimney_testkit::github::{FakeGithub, Options};
use serde_json::{Value, json};

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("GET")
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.expect("body")).expect("JSON")
}

async fn without_recordings() -> FakeGithub {
    FakeGithub::start_with(Options {
        recordings: false,
        ..Options::default()
    })
    .await
    .expect("start the fake")
}

#[tokio::test]
async fn the_recordings_are_served_unless_left_out() {
    let with = FakeGithub::start().await;
    let root = get(&format!("{}/", with.origin()), &[]).await;
    assert_eq!(root.status(), 200);
    assert_eq!(
        root.headers()["etag"].to_str().expect("ASCII"),
        with.etag("/")
    );

    let without = without_recordings().await;
    assert_eq!(
        get(&format!("{}/", without.origin()), &[]).await.status(),
        404
    );
}

#[tokio::test]
async fn a_pattern_answers_every_matching_path_after_exact_resources() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/pulls", &json!([{"number": 7}]));
    let exact = github.set_json("/repos/o/special/pulls", &json!([{"number": 8}]));
    let origin = github.origin();

    let any = get(&format!("{origin}/repos/a/b/pulls?state=open"), &[]).await;
    assert_eq!(any.status(), 200);
    assert_eq!(json_of(any).await, json!([{"number": 7}]));
    let special = get(&format!("{origin}/repos/o/special/pulls"), &[]).await;
    assert_eq!(special.headers()["etag"].to_str().expect("ASCII"), exact);
    assert_eq!(
        get(&format!("{origin}/repos/a/b/issues"), &[])
            .await
            .status(),
        404
    );

    let etag = github.etag("/repos/a/b/pulls");
    let again = get(
        &format!("{origin}/repos/a/b/pulls"),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn made_up_answers_report_the_rate_limit_remaining_that_was_set() {
    let github = without_recordings().await;
    github.set_rate_limit_remaining(4987);
    github.set_json("/repos/o/r", &json!({"id": 1}));
    let origin = github.origin();
    for path in ["/repos/o/r", "/repos/o/r/unknown"] {
        let response = get(&format!("{origin}{path}"), &[]).await;
        assert_eq!(
            response.headers()["x-ratelimit-remaining"],
            "4987",
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_control_endpoints_report_and_forget_requests_without_being_recorded() {
    let github = without_recordings().await;
    github.set_json("/repos/*/*/**", &json!([]));
    let origin = github.origin();
    get(
        &format!("{origin}/repos/o/r/pulls?state=open"),
        &[("authorization", "Bearer t0ken")],
    )
    .await;
    get(&format!("{origin}/repos/o/r/pulls?state=open"), &[]).await;
    get(&format!("{origin}/nowhere"), &[]).await;

    let requests = json_of(get(&format!("{origin}/__requests"), &[]).await).await;
    assert_eq!(requests.as_array().expect("a list").len(), 3);
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], "/repos/o/r/pulls?state=open");
    assert_eq!(requests[0]["headers"]["authorization"], "Bearer t0ken");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[2]["status"], 404);

    let counts = json_of(get(&format!("{origin}/__count"), &[]).await).await;
    assert_eq!(
        counts,
        json!({"/repos/o/r/pulls?state=open": 2, "/nowhere": 1})
    );
    assert_eq!(github.total_requests(), 3, "control requests were recorded");

    let reset = reqwest::Client::new()
        .post(format!("{origin}/__reset"))
        .send()
        .await
        .expect("POST");
    assert_eq!(reset.status(), 204);
    assert_eq!(github.total_requests(), 0);
    assert_eq!(
        json_of(get(&format!("{origin}/__count"), &[]).await).await,
        json!({})
    );
}
