//! The admin endpoints check the token before they read a body, and read
//! a body within a deadline (CONTRACT 5 v2; issue "Bounded under load and
//! faults", item 5): a caller without the token is answered 401 at once,
//! whatever body it announces, and one with the token cannot hold a
//! request open by never sending the body it announced.

use std::time::{Duration, Instant};

use crate::admin_client::{DEPLOY_TOKEN, INVALIDATE_TOKEN, spawn_admin_app, spawn_admin_app_with};
use crate::raw_http::{closed_within, connect, post_head, read_response, send};

const EVENTS: &str = "/api/deploy/events";
const INVALIDATE: &str = "/api/cache/invalidate";

/// What "at once" means here: far below any body deadline, with room for
/// a loaded CI machine.
const AT_ONCE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_request_without_a_valid_token_is_a_401_before_its_announced_body_arrives() {
    let app = spawn_admin_app().await;
    let cases = [
        (EVENTS, None, 60_000),
        (EVENTS, Some("wrong-token"), 60_000),
        (EVENTS, Some(INVALIDATE_TOKEN), 60_000),
        (INVALIDATE, Some(DEPLOY_TOKEN), 60_000),
        // Over the 64 KiB cap: still the token first.
        (INVALIDATE, None, 10_000_000),
    ];
    for (path, token, length) in cases {
        let mut stream = connect(app.port).await;
        let started = Instant::now();
        // The headers only; the body never comes.
        send(
            &mut stream,
            post_head(app.port, path, token, length).as_bytes(),
        )
        .await;

        let response = read_response(&mut stream, AT_ONCE)
            .await
            .unwrap_or_else(|| panic!("{path} with {token:?}: no answer within {AT_ONCE:?}"));

        assert_eq!(response.status, 401, "{path} with {token:?}: {response:?}");
        assert!(started.elapsed() < AT_ONCE);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert!(
            response
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/problem+json")),
            "{response:?}"
        );
        assert!(!response.body.contains(DEPLOY_TOKEN) && !response.body.contains(INVALIDATE_TOKEN));
        // The announced body can never be read, so the connection ends.
        assert!(
            closed_within(&mut stream, AT_ONCE).await.is_some(),
            "{path}: the connection stayed open"
        );
    }
    assert_eq!(app.deploy_status().await.status, 204, "nothing was stored");
}

#[tokio::test]
async fn an_authorised_body_that_never_arrives_is_a_400_after_the_deadline() {
    let deadline = Duration::from_millis(300);
    let app = spawn_admin_app_with(|s| s.admin_body_timeout = deadline).await;
    for (path, token) in [(EVENTS, DEPLOY_TOKEN), (INVALIDATE, INVALIDATE_TOKEN)] {
        let mut stream = connect(app.port).await;
        let started = Instant::now();
        send(
            &mut stream,
            post_head(app.port, path, Some(token), 100).as_bytes(),
        )
        .await;
        // A start, then nothing.
        send(&mut stream, br#"{"sha":"#).await;

        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer within 5 s"));
        let waited = started.elapsed();

        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert!(waited >= deadline, "{path}: answered after {waited:?}");
        assert!(
            response.body.contains("did not arrive"),
            "{path}: {}",
            response.body
        );
        assert!(
            closed_within(&mut stream, Duration::from_secs(2))
                .await
                .is_some(),
            "{path}: the connection stayed open"
        );
    }
    assert_eq!(app.deploy_status().await.status, 204, "nothing was stored");
}

#[tokio::test]
async fn an_authorised_body_sent_in_pieces_within_the_deadline_is_read() {
    let app = spawn_admin_app_with(|s| s.admin_body_timeout = Duration::from_secs(5)).await;
    let body = br#"{"sha":"abc1234","outcome":"success"}"#;
    let mut stream = connect(app.port).await;
    send(
        &mut stream,
        post_head(app.port, EVENTS, Some(DEPLOY_TOKEN), body.len()).as_bytes(),
    )
    .await;
    let (first, rest) = body.split_at(10);
    send(&mut stream, first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut stream, rest).await;

    let response = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(response.status, 200, "{response:?}");
}
