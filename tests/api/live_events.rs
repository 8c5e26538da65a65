//! `GET /api/events` (CONTRACT 6, v2): deploy, invalidate and summary
//! events, fleet-wide through a shared Dragonfly, the heartbeat, CORS, and
//! clients that are slow or vanish.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::admin_client::{INVALIDATE_TOKEN, with_tokens};
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::live_client::{spawn_webhook_app_with, with_webhook};

const WAIT: Duration = Duration::from_secs(5);

async fn live_app() -> TestApp {
    spawn_webhook_app_with(with_tokens).await
}

async fn dragonfly_ready(app: &TestApp) {
    if let Backend::Redis(_) = app.backend {
        app.wait_for_dragonfly("connected", WAIT).await;
    }
}

#[tokio::test]
async fn a_stored_deploy_event_is_streamed() {
    let app = live_app().await;
    let mut stream = app.events().await;
    app.record_deploy(&json!({"sha": "abc123", "slot": "blue", "outcome": "success", "id": "d-1"}))
        .await;
    let event = stream
        .next_named("deploy", WAIT)
        .await
        .expect("a deploy event");
    let data = event.json();
    assert_eq!(data["sha"], "abc123");
    assert_eq!(data["slot"], "blue");
    assert_eq!(data["outcome"], "success");

    // A repeat is not stored again, so not announced again.
    app.record_deploy(&json!({"sha": "abc123", "slot": "blue", "outcome": "success", "id": "d-1"}))
        .await;
    app.record_deploy(&json!({"sha": "def456", "outcome": "failure"}))
        .await;
    let next = stream
        .next_named("deploy", WAIT)
        .await
        .expect("the next event");
    assert_eq!(next.json()["sha"], "def456");
}

#[tokio::test]
async fn invalidations_are_streamed_with_their_source() {
    let app = live_app().await;
    dragonfly_ready(&app).await;
    let mut stream = app.events().await;
    app.github.set_json(&app.upstream("/pulls"), &json!([1]));
    let _ = app.get_github("/pulls").await;

    let answer = app
        .post_json(
            "/api/cache/invalidate",
            Some(INVALIDATE_TOKEN),
            &json!({"path": "/pulls"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let event = stream
        .next_named("invalidate", WAIT)
        .await
        .expect("invalidate");
    assert_eq!(
        event.json(),
        json!({"prefixes": ["/pulls"], "evicted": 1, "source": "api"})
    );

    app.deliver_event("release").await;
    let event = stream
        .next_named("invalidate", WAIT)
        .await
        .expect("invalidate");
    assert_eq!(
        event.json(),
        json!({"prefixes": ["/releases", "/tags"], "evicted": 0, "source": "webhook"})
    );
}

#[tokio::test]
async fn a_changed_summary_is_streamed_after_a_webhook() {
    let app = live_app().await;
    dragonfly_ready(&app).await;
    let issues = app.upstream("/issues?state=open&per_page=100");
    app.github.set_json(&issues, &json!([]));
    let mut stream = app.events().await;
    let first = app.get("/api/pipeline/summary").await;
    assert_eq!(first.status, 200);
    let event = stream
        .next_named("summary", WAIT)
        .await
        .expect("first summary");
    assert_eq!(event.json()["open_issues"], 0);
    assert!(event.json()["fetched_at"].is_string());

    app.github.set_json(
        &issues,
        &json!([{"number": 1, "title": "a", "state": "open"}, {"number": 2, "title": "b", "state": "open"}]),
    );
    app.deliver_event("issues").await;
    // Rebuilt in the background with the new list: no client asked.
    let event = stream
        .next_named("summary", WAIT)
        .await
        .expect("changed summary");
    assert_eq!(event.json()["open_issues"], 2, "{}", event.data);
    // And served as a HIT from now on.
    let after = app.get("/api/pipeline/summary").await;
    assert_eq!(after.header("x-cache"), Some("HIT"));
    assert_eq!(after.json()["open_issues"], 2);
}

#[tokio::test]
async fn events_reach_the_clients_of_every_instance_sharing_dragonfly() {
    let blue = live_app().await;
    let Backend::Redis(_) = blue.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    let shared = blue.redis.clone();
    let green = spawn_app_with(move |s| {
        with_tokens(s);
        with_webhook(s);
        s.redis = shared;
    })
    .await;
    dragonfly_ready(&blue).await;
    dragonfly_ready(&green).await;
    let mut on_green = green.events().await;
    let mut on_blue = blue.events().await;

    // The listener subscribes in the background: retry until it hears.
    let mut heard = None;
    for attempt in 0..20 {
        blue.record_deploy(&json!({"sha": format!("from-blue-{attempt}"), "outcome": "success"}))
            .await;
        if let Some(event) = on_green
            .next_named("deploy", Duration::from_millis(500))
            .await
        {
            heard = Some(event);
            break;
        }
    }
    let heard = heard.expect("green's client hears blue's deploy");
    assert!(
        heard.json()["sha"]
            .as_str()
            .unwrap_or("")
            .starts_with("from-blue")
    );

    green.deliver_event("push").await;
    let event = on_blue
        .next_named("invalidate", WAIT)
        .await
        .expect("blue hears green's webhook");
    assert_eq!(event.json()["source"], "webhook");
    // Each instance announces its own events once, not twice.
    let own = on_green
        .next_named("invalidate", WAIT)
        .await
        .expect("green's own");
    assert_eq!(own.json()["source"], "webhook");
    assert!(
        on_green
            .next_named("invalidate", Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_heartbeat_comment_keeps_the_stream_open() {
    let app = spawn_app_with(|s| s.sse_heartbeat = Duration::from_millis(200)).await;
    let mut stream = app.events().await;
    for _ in 0..3 {
        let frame = stream
            .next_frame(Duration::from_secs(2))
            .await
            .expect("a heartbeat");
        assert_eq!(frame, ": heartbeat");
    }
}

#[tokio::test]
async fn the_stream_is_public_to_any_origin() {
    let app = live_app().await;
    let response = app
        .client
        .get(format!("{}/api/events", app.address))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    let head = app.head("/api/events").await;
    assert_eq!(head.status, 200);
    let post = app.post_json("/api/events", None, &json!({})).await;
    post.assert_problem(405);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_others_carry_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Memory-only in both runs: the buffering is the stream's, and 1,500
    // invalidations each scanning Dragonfly under the full suite's load
    // would only test Dragonfly's timeout.
    let app = spawn_webhook_app_with(|s| {
        with_tokens(s);
        s.redis = None;
    })
    .await;
    // A raw client that subscribes and then reads nothing, with a small
    // receive buffer so the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut slow = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .expect("connect");
    slow.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut fast = app.events().await;
    // Give the slow client's subscription time to start.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Far more than the socket buffers and the 64-event ring hold.
    let long = format!("/{}", "p".repeat(2000));
    let sent = 1500;
    let posts = (0..sent).map(|n| {
        let app = &app;
        let path = format!("{long}{n}");
        async move {
            let r = app
                .post_json(
                    "/api/cache/invalidate",
                    Some(INVALIDATE_TOKEN),
                    &json!({"path": path}),
                )
                .await;
            assert_eq!(r.status, 200);
        }
    });
    futures::stream::iter(posts)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    // The reading client still gets events (at least the latest ones).
    assert!(fast.next_named("invalidate", WAIT).await.is_some());

    // The slow one was disconnected: reading it now ends, short of all.
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the slow client's stream ends");
    let events = received
        .windows(b"event: invalidate".len())
        .filter(|w| *w == b"event: invalidate")
        .count();
    assert!(events < sent, "the slow client got all {events} events");

    // The server serves new subscribers as before.
    let mut fresh = app.events().await;
    app.record_deploy(&json!({"sha": "after", "outcome": "success"}))
        .await;
    assert!(fresh.next_named("deploy", WAIT).await.is_some());
}

#[tokio::test]
async fn clients_that_vanish_leave_nothing_behind() {
    let app = live_app().await;
    for _ in 0..50 {
        let stream = app.events().await;
        drop(stream);
    }
    // Events still flow to a new client, and the server answers as usual.
    let mut stream = app.events().await;
    app.record_deploy(&json!({"sha": "still", "outcome": "success"}))
        .await;
    assert!(stream.next_named("deploy", WAIT).await.is_some());
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn open_streams_end_at_shutdown_and_do_not_hold_it_up() {
    let mut app = live_app().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(app.events().await);
    }
    let started = std::time::Instant::now();
    app.signal_shutdown();
    for stream in &mut streams {
        // The stream ends (no frame, no heartbeat) rather than hanging.
        assert!(stream.next_frame(Duration::from_secs(3)).await.is_none());
    }
    assert!(app.stopped_within(Duration::from_secs(4)).await);
    // Well inside the 5 s the server gives in-flight requests.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
