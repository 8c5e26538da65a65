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

#[tokio::test]
async fn readyz_answers_200_while_taking_traffic() {
    let app = spawn_app().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
}

/// A deploy replaces a slot while traffic keeps flowing (CONTRACT 2 v2):
/// a client that, like Caddy, polls `/readyz` and sends its requests to a
/// slot that said it was ready never sees a failed request when that slot
/// is told to stop, because the slot keeps serving through its grace.
#[tokio::test]
async fn a_slot_told_to_stop_drops_no_request_of_a_balancer_polling_readyz() {
    const GRACE: Duration = Duration::from_millis(800);
    const POLL_EVERY: Duration = Duration::from_millis(100);
    let grace = |s: &mut chimney::bootstrap::config::Settings| s.shutdown_grace = GRACE;
    let mut blue = spawn_app_with(grace).await;
    let green = spawn_app_with(grace).await;
    // Warm both, so every request below is a cache hit on its slot.
    for slot in [&blue, &green] {
        assert_eq!(slot.get_github(README).await.status, 200);
    }

    let started = Instant::now();
    let mut on_blue = true;
    let mut stop_sent = false;
    let mut served_by_blue_after_stop = 0;
    let mut last_poll = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(3) {
        if !stop_sent && started.elapsed() > Duration::from_millis(300) {
            blue.signal_shutdown();
            stop_sent = true;
        }
        let slot = if on_blue { &blue } else { &green };
        let response = slot.get_github(README).await;
        assert_eq!(
            response.status,
            200,
            "request {requests} to {} failed after {:?}",
            if on_blue { "blue" } else { "green" },
            started.elapsed()
        );
        requests += 1;
        if on_blue && stop_sent {
            served_by_blue_after_stop += 1;
        }
        if on_blue && last_poll.elapsed() >= POLL_EVERY {
            last_poll = Instant::now();
            if blue.get("/readyz").await.status == 503 {
                on_blue = false;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert!(!on_blue, "the balancer never saw blue become not ready");
    assert!(
        served_by_blue_after_stop > 0,
        "blue served nothing during its grace"
    );
    assert!(requests > 50, "only {requests} requests ran");
    assert!(
        blue.stopped_within(GRACE + Duration::from_secs(6)).await,
        "blue did not stop after its grace"
    );
}
