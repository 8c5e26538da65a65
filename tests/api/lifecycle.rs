//! Start-up and shutdown (CONTRACT 2): serving before and without
//! Dragonfly, a Dragonfly that never answers, and graceful shutdown.

use std::time::{Duration, Instant};

use url::Url;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const README: &str = "/contents/README.md";

/// Generous bound for one request when Dragonfly misbehaves: the contract
/// allows its 200 ms timeout on top of normal work.
const SLOW_REQUEST: Duration = Duration::from_secs(1);

/// A `redis://` URL nobody listens on.
fn refused_redis_url() -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Url::parse(&format!("redis://{addr}")).unwrap()
}

/// A `redis://` URL of a server that accepts connections and never answers.
async fn silent_redis_url() -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Url::parse(&format!("redis://{addr}")).unwrap()
}

/// MISS then HIT from memory, each answered within [`SLOW_REQUEST`], and
/// `/healthz` answering promptly with a non-connected Dragonfly state.
async fn assert_serves_from_memory_promptly(app: &TestApp) {
    let upstream = app.upstream(README);
    for expected in ["MISS", "HIT"] {
        let started = Instant::now();
        let response = app.get_github(README).await;
        let took = started.elapsed();

        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.x_cache(), expected);
        assert_eq!(response.body, app.github.body(&upstream));
        assert!(took < SLOW_REQUEST, "{expected} took {took:?}");
    }
    assert_eq!(app.github.requests_for(&upstream), 1);

    let started = Instant::now();
    let health = app.healthz().await;
    assert!(started.elapsed() < SLOW_REQUEST, "healthz was slow");
    let dragonfly = health["dragonfly"].as_str().unwrap_or_default();
    assert!(
        ["connecting", "unavailable", "error"].contains(&dragonfly),
        "dragonfly is {dragonfly:?} although it cannot be used"
    );
}

#[tokio::test]
async fn unreachable_dragonfly_never_stops_chimney_serving_from_memory() {
    let app = spawn_app_with(|s| s.redis = Some(refused_redis_url())).await;

    assert_serves_from_memory_promptly(&app).await;
}

#[tokio::test]
async fn dragonfly_that_never_answers_adds_at_most_its_timeout_to_requests() {
    let url = silent_redis_url().await;
    let app = spawn_app_with(|s| s.redis = Some(url)).await;

    assert_serves_from_memory_promptly(&app).await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_stops_accepting() {
    let mut app = spawn_app().await;
    let upstream = app.upstream(README);
    app.github.delay(&upstream, Duration::from_millis(500));
    let request = app
        .client
        .get(format!("{}{}", app.address, app.github_path(README)));
    let in_flight = tokio::spawn(async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    app.github
        .wait_for_requests(&upstream, 1, Duration::from_secs(5))
        .await;

    app.signal_shutdown();

    let (status, body) = tokio::time::timeout(Duration::from_secs(7), in_flight)
        .await
        .expect("the in-flight request finished")
        .expect("request task")
        .expect("the in-flight request was answered");
    assert_eq!(status, 200);
    assert_eq!(body, app.github.body(&upstream));
    assert!(
        app.stopped_within(Duration::from_secs(7)).await,
        "the server did not stop within the grace period"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .is_err(),
        "still accepting connections after shutdown"
    );
}

#[tokio::test]
async fn healthz_answers_as_soon_as_the_app_is_spawned() {
    let app = spawn_app().await;

    let started = Instant::now();
    let health = app.healthz().await;

    assert_eq!(health["status"], "ok");
    assert!(started.elapsed() < SLOW_REQUEST);
}
