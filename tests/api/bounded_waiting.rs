//! Bounded waiting for an outbound slot (CONTRACT 3, v2): at most
//! `upstream_queue` fetches wait, none longer than `upstream_queue_timeout`;
//! past either the stale entry answers, else 503 `upstream-busy`; and a
//! queued fetch nobody waits for any more is never sent.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::helpers::{TestApp, TestResponse, spawn_app_with, stale_immediately};

const README: &str = "/contents/README.md";

/// How long the request holding the only slot keeps it.
const SLOW: Duration = Duration::from_millis(1500);

/// Serves `/issues/{i}` for every `i` in `ids`.
fn issues(app: &TestApp, ids: std::ops::Range<usize>) -> Vec<String> {
    ids.map(|i| {
        let rel = format!("/issues/{i}");
        app.github
            .set_json(&app.upstream(&rel), &serde_json::json!({ "id": i }));
        rel
    })
    .collect()
}

/// Starts a request for `rel` that holds the only outbound slot for
/// [`SLOW`], and returns once GitHub has it.
async fn hold_the_slot(app: &TestApp, rel: &str) -> tokio::task::JoinHandle<TestResponse> {
    let upstream = app.upstream(rel);
    app.github.delay(&upstream, SLOW);
    let holder = {
        let client = app.client.clone();
        let url = format!("{}{}", app.address, app.github_path(rel));
        tokio::spawn(
            async move { read(client.get(url).send().await.expect("holder answered")).await },
        )
    };
    app.github
        .wait_for_requests(&upstream, 1, Duration::from_secs(5))
        .await;
    holder
}

async fn read(response: reqwest::Response) -> TestResponse {
    TestResponse {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body"),
    }
}

fn assert_upstream_busy(response: &TestResponse) {
    response.assert_problem(503);
    let problem = response.json();
    let kind = problem["type"].as_str().unwrap_or("");
    assert!(kind.ends_with("/upstream-busy"), "{problem}");
    assert_eq!(response.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn a_full_queue_answers_503_upstream_busy_at_once() {
    let app = spawn_app_with(|s| {
        s.upstream_concurrency = 1;
        s.upstream_queue = 1;
        s.upstream_queue_timeout = Duration::from_secs(10);
    })
    .await;
    let rels = issues(&app, 0..3);
    let holder = hold_the_slot(&app, &rels[0]).await;
    let queued = {
        let client = app.client.clone();
        let url = format!("{}{}", app.address, app.github_path(&rels[1]));
        tokio::spawn(async move { read(client.get(url).send().await.expect("answered")).await })
    };
    // Give the second request time to take the one place in the queue.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let refused = app.get_github(&rels[2]).await;
    assert_upstream_busy(&refused);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "refused after {:?}",
        started.elapsed()
    );
    assert_eq!(app.github.requests_for(&app.upstream(&rels[2])), 0);

    // The queued request gets its turn once the slot is free.
    let (held, queued) = (holder.await.unwrap(), queued.await.unwrap());
    assert_eq!(held.status, 200, "{}", held.text());
    assert_eq!(queued.status, 200, "{}", queued.text());
    assert_eq!(queued.json()["id"], 1);
}

#[tokio::test]
async fn a_fetch_waits_no_longer_than_the_queue_timeout() {
    let app = spawn_app_with(|s| {
        s.upstream_concurrency = 1;
        s.upstream_queue = 8;
        s.upstream_queue_timeout = Duration::from_millis(200);
    })
    .await;
    let rels = issues(&app, 0..2);
    let holder = hold_the_slot(&app, &rels[0]).await;

    let started = Instant::now();
    let refused = app.get_github(&rels[1]).await;
    let waited = started.elapsed();
    assert_upstream_busy(&refused);
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1200),
        "refused after {waited:?}"
    );
    assert_eq!(holder.await.unwrap().status, 200);
    assert_eq!(app.github.requests_for(&app.upstream(&rels[1])), 0);
}

#[tokio::test]
async fn a_stale_entry_answers_when_no_slot_can_be_had() {
    let app = spawn_app_with(|s| {
        s.upstream_concurrency = 1;
        s.upstream_queue = 0;
        s.ttl = stale_immediately(README);
    })
    .await;
    let first = app.get_github(README).await;
    assert_eq!(first.x_cache(), "MISS", "{}", first.text());
    let rels = issues(&app, 0..1);
    let holder = hold_the_slot(&app, &rels[0]).await;

    let stale = app.get_github(README).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.body, first.body);
    assert_eq!(app.github.requests_for(&app.upstream(README)), 1);
    assert_eq!(holder.await.unwrap().status, 200);
}

#[tokio::test]
async fn queued_fetches_whose_clients_left_are_never_sent() {
    let app = spawn_app_with(|s| {
        s.upstream_concurrency = 1;
        s.upstream_queue = 64;
        s.upstream_queue_timeout = Duration::from_secs(10);
    })
    .await;
    let rels = issues(&app, 0..21);
    let holder = hold_the_slot(&app, &rels[0]).await;

    // Twenty clients ask for twenty keys and hang up while queued.
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let gave_up = join_all(rels[1..].iter().map(|rel| {
        impatient
            .get(format!("{}{}", app.address, app.github_path(rel)))
            .send()
    }))
    .await;
    assert!(
        gave_up.iter().all(Result::is_err),
        "a queued request was answered"
    );

    // The slot comes free; the abandoned fetches must not take it.
    assert_eq!(holder.await.unwrap().status, 200);
    let dashboard = app.get_github(README).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.text());
    assert_eq!(dashboard.x_cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<&String> = rels[1..]
        .iter()
        .filter(|rel| app.github.requests_for(&app.upstream(rel)) > 0)
        .collect();
    assert!(
        sent.is_empty(),
        "abandoned fetches reached GitHub: {sent:?}"
    );
    // A later request for one of them is fetched afresh.
    let again = app.get_github(&rels[1]).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.x_cache(), "MISS");
}
