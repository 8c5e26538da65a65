//! Deploy status (CONTRACT 5): ingestion with its auth, size and
//! validation rules, the status derived from the history, the 50-event
//! ring, and the history shared through Dragonfly.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_client::{
    DEPLOY_TOKEN, INVALIDATE_TOKEN, assert_no_secret, bearer, spawn_admin_app, spawn_admin_app_with,
};
use crate::helpers::{Backend, spawn_app, spawn_app_with};

const EVENTS: &str = "/api/deploy/events";

fn rfc3339_ago(secs: u64) -> String {
    let at = SystemTime::now() - Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn shas(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["sha"].as_str().unwrap_or_default())
        .collect()
}

// ---- ingestion ----------------------------------------------------------

#[tokio::test]
async fn a_deploy_event_is_stored_and_returned() {
    // Arrange
    let app = spawn_admin_app().await;
    let event = json!({
        "sha": "3051037",
        "pr_number": 321,
        "pr_title": "blue/green deploy rewrite",
        "slot": "blue",
        "outcome": "success",
        "duration_s": 47,
        "deployed_at": "2026-02-21T10:13:00Z",
        "origin_ips": ["1.2.3.4", "5.6.7.8"]
    });

    // Act
    let response = app.post_deploy(&event).await;

    // Assert
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let mut answer = response.json();
    let stored = answer
        .as_object_mut()
        .and_then(|fields| fields.remove("stored"));
    let expected = match app.backend {
        Backend::Memory => "local",
        Backend::Redis(_) => "shared",
    };
    assert_eq!(stored, Some(json!(expected)));
    assert_eq!(answer, event);
}

#[tokio::test]
async fn deployed_at_defaults_to_the_time_of_receipt() {
    let app = spawn_admin_app().await;
    let before = SystemTime::now() - Duration::from_secs(1);

    let stored = app
        .record_deploy(&json!({"sha": "abc", "outcome": "failure"}))
        .await;

    let at = humantime::parse_rfc3339_weak(stored["deployed_at"].as_str().expect("a string"))
        .expect("RFC 3339");
    assert!(at >= before && at <= SystemTime::now() + Duration::from_secs(1));
    let status = app.deploy_status_json().await;
    assert!(status["last_deploy"]["age_s"].as_u64().expect("age") <= 2);
}

#[tokio::test]
async fn timestamp_is_accepted_as_an_alias_of_deployed_at() {
    let app = spawn_admin_app().await;

    let stored = app
        .record_deploy(&json!({
            "sha": "abc", "outcome": "success", "timestamp": "2026-02-21T12:13:00+02:00"
        }))
        .await;

    assert_eq!(stored["deployed_at"], "2026-02-21T10:13:00Z");
    assert!(stored.get("timestamp").is_none(), "{stored}");
}

#[tokio::test]
async fn giving_both_deployed_at_and_timestamp_is_a_400() {
    let app = spawn_admin_app().await;

    let response = app
        .post_deploy(&json!({
            "sha": "abc", "outcome": "success",
            "deployed_at": "2026-02-21T10:13:00Z", "timestamp": "2026-02-21T10:13:00Z"
        }))
        .await;

    response.assert_problem(400);
    let detail = response.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("deployed_at") && detail.contains("timestamp"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_pr_title_with_quotes_and_shell_syntax_round_trips() {
    let app = spawn_admin_app().await;
    let title = "fix: \"quoted\" $(rm -rf /) `tick` 'single' \\ back\nslash ünïcode";

    let stored = app
        .record_deploy(&json!({"sha": "abc", "outcome": "success", "pr_title": title}))
        .await;

    assert_eq!(stored["pr_title"], title);
    assert_eq!(
        app.deploy_status_json().await["last_deploy"]["pr_title"],
        title
    );
}

// ---- authentication --------------------------------------------------------

#[tokio::test]
async fn posting_without_a_token_is_a_401_problem() {
    let app = spawn_admin_app().await;
    let event = json!({"sha": "abc", "outcome": "success"});

    let response = app.post_json(EVENTS, None, &event).await;

    response.assert_problem(401);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_eq!(app.deploy_status().await.status, 204, "nothing was stored");
}

#[tokio::test]
async fn posting_with_a_wrong_token_is_a_401_that_reveals_nothing() {
    let app = spawn_admin_app().await;
    let event = json!({"sha": "abc", "outcome": "success"});

    for wrong in [
        "wrong",
        &DEPLOY_TOKEN[..DEPLOY_TOKEN.len() - 1],
        &format!("{DEPLOY_TOKEN}x"),
        &DEPLOY_TOKEN.to_uppercase(),
    ] {
        let response = app.post_json(EVENTS, Some(wrong), &event).await;
        response.assert_problem(401);
        assert_no_secret(&response, DEPLOY_TOKEN);
        assert_eq!(
            response.json()["detail"],
            "missing or invalid bearer token",
            "the same answer whatever was wrong"
        );
    }
    assert_eq!(app.deploy_status().await.status, 204);
}

#[tokio::test]
async fn a_non_bearer_authorization_is_a_401() {
    let app = spawn_admin_app().await;
    let basic = format!("Basic {DEPLOY_TOKEN}");

    let response = app
        .send(
            Method::POST,
            EVENTS,
            &[
                ("content-type", "application/json"),
                ("authorization", basic.as_str()),
            ],
            json!({"sha": "abc", "outcome": "success"}).to_string(),
        )
        .await;

    response.assert_problem(401);
}

#[tokio::test]
async fn the_invalidate_token_does_not_authorise_deploy_events() {
    let app = spawn_admin_app().await;

    let response = app
        .post_json(
            EVENTS,
            Some(INVALIDATE_TOKEN),
            &json!({"sha": "abc", "outcome": "success"}),
        )
        .await;

    response.assert_problem(401);
}

#[tokio::test]
async fn without_a_deploy_token_configured_ingestion_is_a_503() {
    let app = spawn_app().await;
    let event = json!({"sha": "abc", "outcome": "success"});

    for token in [None, Some("anything")] {
        let response = app.post_json(EVENTS, token, &event).await;
        response.assert_problem(503);
        assert!(
            response.json()["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("DEPLOY_TOKEN"),
            "{}",
            response.text()
        );
    }
}

#[tokio::test]
async fn the_status_needs_no_token_even_when_none_is_configured() {
    let app = spawn_app().await;
    assert_eq!(app.deploy_status().await.status, 204);
}

// ---- size ------------------------------------------------------------------

#[tokio::test]
async fn a_body_over_64_kib_is_a_413() {
    let app = spawn_admin_app().await;
    let title = "x".repeat(64 * 1024);

    let response = app
        .post_deploy(&json!({"sha": "abc", "outcome": "success", "pr_title": title}))
        .await;

    response.assert_problem(413);
    assert_eq!(app.deploy_status().await.status, 204);
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_without_content_length_is_a_413() {
    let app = spawn_admin_app().await;
    // Valid JSON that only turns out too big while streaming.
    let head = Bytes::from_static(br#"{"sha":"abc","outcome":"success","pr_title":""#);
    let filler = Bytes::from(vec![b'x'; 8 * 1024]);
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(head)];
    chunks.extend((0..10).map(|_| Ok(filler.clone())));
    chunks.push(Ok(Bytes::from_static(br#""}"#)));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let auth = bearer(DEPLOY_TOKEN);

    let response = app
        .send(
            Method::POST,
            EVENTS,
            &[
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
            ],
            body,
        )
        .await;

    response.assert_problem(413);
    assert_eq!(app.deploy_status().await.status, 204);
}

#[tokio::test]
async fn a_body_just_under_64_kib_is_read() {
    let app = spawn_admin_app().await;
    // Well-formed but with a title over the domain's limit: the 400 shows
    // the body was read and parsed, not refused for size.
    let title = "x".repeat(60 * 1024);

    let response = app
        .post_deploy(&json!({"sha": "abc", "outcome": "success", "pr_title": title}))
        .await;

    response.assert_problem(400);
    assert!(response.text().contains("pr_title"), "{}", response.text());
}

// ---- validation -------------------------------------------------------------

/// Posts `body` (raw) and returns the problem's detail after asserting 400.
async fn bad_request_detail(app: &crate::helpers::TestApp, body: &str) -> String {
    let response = app
        .post_raw(EVENTS, Some(DEPLOY_TOKEN), body.to_owned())
        .await;
    response.assert_problem(400);
    response.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn malformed_json_is_a_400_saying_so() {
    let app = spawn_admin_app().await;

    let detail = bad_request_detail(&app, r#"{"sha": "abc", "outcome": "success""#).await;

    assert!(detail.contains("not valid JSON"), "{detail}");
}

#[tokio::test]
async fn an_empty_body_or_a_non_object_is_a_400() {
    let app = spawn_admin_app().await;

    assert!(bad_request_detail(&app, "").await.contains("empty"));
    assert!(
        bad_request_detail(&app, r#"["sha"]"#)
            .await
            .contains("JSON object")
    );
}

#[tokio::test]
async fn each_missing_required_field_is_named() {
    let app = spawn_admin_app().await;

    assert_eq!(
        bad_request_detail(&app, r#"{"outcome": "success"}"#).await,
        "sha is required"
    );
    assert_eq!(
        bad_request_detail(&app, r#"{"sha": "abc"}"#).await,
        "outcome is required"
    );
    assert!(
        bad_request_detail(&app, r#"{"sha": "  ", "outcome": "success"}"#)
            .await
            .starts_with("sha is required")
    );
}

#[tokio::test]
async fn an_unknown_outcome_is_a_400_naming_outcome() {
    let app = spawn_admin_app().await;

    for outcome in ["\"succeeded\"", "\"SUCCESS\"", "\"\"", "1", "true"] {
        let body = format!(r#"{{"sha": "abc", "outcome": {outcome}}}"#);
        let detail = bad_request_detail(&app, &body).await;
        assert!(detail.starts_with("outcome must be"), "{outcome}: {detail}");
    }
}

#[tokio::test]
async fn wrong_types_are_a_400_naming_the_field() {
    let app = spawn_admin_app().await;

    for (field, value) in [
        ("sha", "123"),
        ("slot", "[\"blue\"]"),
        ("duration_s", "\"47\""),
        ("duration_s", "-1"),
        ("duration_s", "4.5"),
        ("pr_number", "\"321\""),
        ("pr_title", "{}"),
        ("origin_ips", "\"1.2.3.4\""),
        ("origin_ips", "[1]"),
        ("deployed_at", "1771668780"),
    ] {
        let mut body = json!({"sha": "abc", "outcome": "success"});
        body[field] = serde_json::from_str(value).expect("test value is JSON");
        let detail = bad_request_detail(&app, &body.to_string()).await;
        assert!(
            detail.starts_with(&format!("{field} must be")),
            "{field}={value}: {detail}"
        );
    }
}

#[tokio::test]
async fn an_invalid_deployed_at_is_a_400_naming_it() {
    let app = spawn_admin_app().await;

    for value in ["yesterday", "2026-02-30T00:00:00Z", "2026-02-21 10:13"] {
        let body = json!({"sha": "abc", "outcome": "success", "deployed_at": value});
        let detail = bad_request_detail(&app, &body.to_string()).await;
        assert!(
            detail.starts_with("deployed_at must be"),
            "{value}: {detail}"
        );
    }
}

#[tokio::test]
async fn a_content_type_other_than_json_is_a_400() {
    let app = spawn_admin_app().await;
    let auth = bearer(DEPLOY_TOKEN);

    let response = app
        .send(
            Method::POST,
            EVENTS,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", auth.as_str()),
            ],
            "sha=abc&outcome=success",
        )
        .await;

    response.assert_problem(400);
    assert!(
        response.text().contains("Content-Type"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_admin_app().await;

    let stored = app
        .record_deploy(&json!({"sha": "abc", "outcome": "success", "runner": "gha"}))
        .await;

    assert!(stored.get("runner").is_none());
}

// ---- status -------------------------------------------------------------------

#[tokio::test]
async fn the_status_is_204_with_an_empty_body_before_any_event() {
    let app = spawn_admin_app().await;

    let response = app.deploy_status().await;

    assert_eq!(response.status, 204);
    assert!(response.body.is_empty(), "{}", response.text());
}

#[tokio::test]
async fn age_s_is_computed_from_deployed_at_at_request_time() {
    let app = spawn_admin_app().await;
    app.record_deploy(&json!({
        "sha": "abc", "outcome": "success", "deployed_at": rfc3339_ago(3720)
    }))
    .await;

    let status = app.deploy_status_json().await;

    let age = status["last_deploy"]["age_s"].as_u64().expect("age_s");
    assert!((3720..=3725).contains(&age), "age_s was {age}");
    assert_eq!(status["last_deploy"]["sha"], "abc");
}

#[tokio::test]
async fn last_deploy_is_the_newest_by_arrival_not_by_deployed_at() {
    let app = spawn_admin_app().await;
    app.record_deploy(&json!({
        "sha": "newer-deploy", "outcome": "success", "deployed_at": rfc3339_ago(10)
    }))
    .await;
    // Arrives later but describes an older deploy.
    app.record_deploy(&json!({
        "sha": "late-report", "outcome": "failure", "deployed_at": rfc3339_ago(7200)
    }))
    .await;

    let status = app.deploy_status_json().await;

    assert_eq!(status["last_deploy"]["sha"], "late-report");
    assert_eq!(
        shas(&status["recent_deploys"]),
        ["late-report", "newer-deploy"]
    );
}

#[tokio::test]
async fn recent_deploys_lists_ten_newest_first_and_totals_count_all() {
    let app = spawn_admin_app().await;
    for i in 0..12 {
        app.record_deploy(&json!({"sha": format!("sha{i}"), "outcome": "success"}))
            .await;
    }

    let status = app.deploy_status_json().await;

    let expected: Vec<String> = (2..12).rev().map(|i| format!("sha{i}")).collect();
    assert_eq!(shas(&status["recent_deploys"]), expected);
    assert_eq!(status["total_deploys"], 12);
    for entry in status["recent_deploys"].as_array().expect("list") {
        assert!(entry["age_s"].is_u64(), "{entry}");
    }
}

#[tokio::test]
async fn the_success_rate_is_over_retained_events_to_one_decimal() {
    let app = spawn_admin_app().await;
    for i in 0..12 {
        let outcome = if i == 5 { "failure" } else { "success" };
        app.record_deploy(&json!({"sha": format!("s{i}"), "outcome": outcome}))
            .await;
    }

    let status = app.deploy_status_json().await;

    assert_eq!(status["success_rate_pct"], 91.7);
    assert_eq!(status["total_deploys"], 12);
}

#[tokio::test]
async fn only_the_last_50_events_are_retained_and_counted() {
    let app = spawn_admin_app().await;
    // Five early failures, then fifty successes push them out of the ring.
    for i in 0..55 {
        let outcome = if i < 5 { "failure" } else { "success" };
        app.record_deploy(&json!({"sha": format!("e{i}"), "outcome": outcome}))
            .await;
    }

    let status = app.deploy_status_json().await;

    assert_eq!(status["total_deploys"], 50);
    assert_eq!(status["success_rate_pct"], 100.0);
    assert_eq!(status["last_deploy"]["sha"], "e54");
    assert_eq!(status["recent_deploys"].as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn the_status_needs_no_token_and_carries_the_full_event() {
    let app = spawn_admin_app().await;
    app.record_deploy(&json!({
        "sha": "3051037", "slot": "green", "outcome": "failure", "duration_s": 12,
        "pr_number": 7, "pr_title": "t", "origin_ips": ["10.0.0.1"],
        "deployed_at": "2026-02-21T10:13:00Z"
    }))
    .await;

    let last = &app.deploy_status_json().await["last_deploy"];

    assert_eq!(last["slot"], "green");
    assert_eq!(last["outcome"], "failure");
    assert_eq!(last["duration_s"], 12);
    assert_eq!(last["pr_number"], 7);
    assert_eq!(last["origin_ips"], json!(["10.0.0.1"]));
    assert_eq!(last["deployed_at"], "2026-02-21T10:13:00Z");
}

// ---- CORS ----------------------------------------------------------------------

#[tokio::test]
async fn deploy_events_answer_a_cors_preflight_for_any_origin_by_default() {
    let app = spawn_admin_app().await;

    let response = app
        .preflight(EVENTS, "https://table.beerpub.dev", "POST")
        .await;

    assert!(
        response.status < 300,
        "{} {}",
        response.status,
        response.text()
    );
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://table.beerpub.dev")
    );
    let headers = response
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
}

#[tokio::test]
async fn a_preflight_from_an_origin_not_configured_is_refused() {
    let app = spawn_admin_app_with(|s| {
        s.cors_origins = vec!["https://table.beerpub.dev".to_owned()];
    })
    .await;

    let allowed = app
        .preflight(EVENTS, "https://table.beerpub.dev", "POST")
        .await;
    let refused = app.preflight(EVENTS, "https://evil.example", "POST").await;

    assert!(allowed.status < 300, "{}", allowed.status);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://table.beerpub.dev")
    );
    refused.assert_problem(403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn an_actual_cross_origin_post_carries_the_allow_origin_header() {
    let app = spawn_admin_app().await;
    let auth = bearer(DEPLOY_TOKEN);

    let response = app
        .send(
            Method::POST,
            EVENTS,
            &[
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
                ("origin", "https://table.beerpub.dev"),
            ],
            json!({"sha": "abc", "outcome": "success"}).to_string(),
        )
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://table.beerpub.dev")
    );
}

#[tokio::test]
async fn other_methods_on_the_events_endpoint_are_a_405_problem() {
    let app = spawn_admin_app().await;

    let response = app.get(EVENTS).await;

    response.assert_problem(405);
}

// ---- Dragonfly ----------------------------------------------------------------

#[tokio::test]
async fn with_dragonfly_both_slots_report_the_same_history() {
    let blue = spawn_admin_app().await;
    let Backend::Redis(_) = blue.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    let shared = blue.redis.clone();
    let green = spawn_admin_app_with(move |s| s.redis = shared).await;

    blue.record_deploy(&json!({"sha": "from-blue", "slot": "blue", "outcome": "success"}))
        .await;
    green
        .record_deploy(&json!({"sha": "from-green", "slot": "green", "outcome": "failure"}))
        .await;

    for slot in [&blue, &green] {
        let status = slot.deploy_status_json().await;
        assert_eq!(shas(&status["recent_deploys"]), ["from-green", "from-blue"]);
        assert_eq!(status["success_rate_pct"], 50.0);
    }
}

#[tokio::test]
async fn with_dragonfly_the_history_survives_a_restart() {
    let first = spawn_admin_app().await;
    let Backend::Redis(_) = first.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    first
        .record_deploy(&json!({"sha": "before-restart", "outcome": "success"}))
        .await;
    let shared = first.redis.clone();
    drop(first);

    let second = spawn_admin_app_with(move |s| s.redis = shared).await;

    let status = second.deploy_status_json().await;
    assert_eq!(status["last_deploy"]["sha"], "before-restart");
}

#[tokio::test]
async fn with_dragonfly_unreachable_events_are_still_accepted_and_reported() {
    // Nothing listens on this port: every Dragonfly command fails.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let app = spawn_app_with(|s| {
        crate::admin_client::with_tokens(s);
        s.redis = Some(url::Url::parse(&format!("redis://127.0.0.1:{port}")).expect("URL"));
    })
    .await;

    let started = std::time::Instant::now();
    app.record_deploy(&json!({"sha": "during-outage", "outcome": "success"}))
        .await;
    let status = app.deploy_status_json().await;

    assert_eq!(status["last_deploy"]["sha"], "during-outage");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the outage cost {:?}",
        started.elapsed()
    );
}
