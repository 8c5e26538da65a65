//! Idempotent deploy events (CONTRACT 5 v2; issue "Bounded under load and
//! faults", item 2): a repeat (same `id`, or without one the same `sha`,
//! `slot`, `outcome` and `deployed_at`) is answered 200 and stored once;
//! the answer says whether the event is in Dragonfly (`shared`) or waits
//! in memory (`local`); events kept locally while Dragonfly is slow or
//! unreachable reach it later, in arrival order, once each.

use std::time::{Duration, Instant};

use chimney::adapters::dragonfly::deploy_log_key;
use chimney::domain::{CacheNamespace, RepoName};
use deadpool_redis::redis;
use serde_json::{Value, json};
use url::Url;

use crate::admin_client::{eventually, spawn_admin_app, spawn_admin_app_with};
use crate::helpers::{Backend, REDIS_DEADLINE, TestApp, fresh_database};
use crate::redis_proxy::{Mode, RedisProxy};

fn shas(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["sha"].as_str().unwrap_or_default())
        .collect()
}

/// What a backend answers for an event it could store.
fn stored_when_up(app: &TestApp) -> &'static str {
    match app.backend {
        Backend::Memory => "local",
        Backend::Redis(_) => "shared",
    }
}

#[tokio::test]
async fn an_event_posted_again_with_the_same_id_is_answered_200_and_stored_once() {
    let app = spawn_admin_app().await;
    let event = json!({"id": "deploy-run-17-1", "sha": "abc1234", "outcome": "success"});

    let first = app.record_deploy(&event).await;
    // A retry by CI: same id, even with the time it was sent.
    let mut retry = event.clone();
    retry["deployed_at"] = json!("2026-02-21T10:13:00Z");
    let second = app.post_deploy(&retry).await;

    assert_eq!(second.status, 200, "{}", second.text());
    for answer in [&first, &second.json()] {
        assert_eq!(answer["id"], "deploy-run-17-1");
        assert_eq!(answer["stored"], stored_when_up(&app), "{answer}");
    }
    let status = app.deploy_status_json().await;
    assert_eq!(shas(&status["recent_deploys"]), ["abc1234"]);
    assert_eq!(status["total_deploys"], 1);
    assert_eq!(status["last_deploy"]["id"], "deploy-run-17-1");
}

#[tokio::test]
async fn without_an_id_the_same_sha_slot_outcome_and_deployed_at_is_the_same_event() {
    let app = spawn_admin_app().await;
    let event = json!({
        "sha": "abc1234", "slot": "blue", "outcome": "success",
        "deployed_at": "2026-02-21T10:13:00Z", "duration_s": 40
    });
    app.record_deploy(&event).await;
    // Same four fields (the same instant written another way), another
    // duration: a repeat.
    let mut repeat = event.clone();
    repeat["deployed_at"] = json!("2026-02-21T12:13:00+02:00");
    repeat["duration_s"] = json!(41);
    app.record_deploy(&repeat).await;
    assert_eq!(app.deploy_status_json().await["total_deploys"], 1);

    // Each of the four makes another event.
    for (field, value) in [
        ("sha", json!("abc1235")),
        ("slot", json!("green")),
        ("outcome", json!("failure")),
        ("deployed_at", json!("2026-02-21T10:13:01Z")),
    ] {
        let mut other = event.clone();
        other[field] = value;
        app.record_deploy(&other).await;
    }
    // And so does an event without deployed_at: stamped on arrival.
    app.record_deploy(&json!({"sha": "abc1234", "slot": "blue", "outcome": "success"}))
        .await;
    app.record_deploy(&json!({"sha": "abc1234", "slot": "blue", "outcome": "success"}))
        .await;
    assert_eq!(app.deploy_status_json().await["total_deploys"], 7);
}

#[tokio::test]
async fn an_id_over_128_characters_is_a_400_naming_id() {
    let app = spawn_admin_app().await;
    let ok = app
        .post_deploy(&json!({"id": "é".repeat(128), "sha": "abc", "outcome": "success"}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    let response = app
        .post_deploy(&json!({"id": "x".repeat(129), "sha": "abd", "outcome": "success"}))
        .await;
    response.assert_problem(400);
    assert!(
        response.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("id ")
    );
    let wrong_type = app
        .post_deploy(&json!({"id": 7, "sha": "abd", "outcome": "success"}))
        .await;
    wrong_type.assert_problem(400);
    assert_eq!(app.deploy_status_json().await["total_deploys"], 1);
}

#[tokio::test]
async fn with_dragonfly_a_repeat_sent_to_the_other_slot_is_stored_once() {
    let blue = spawn_admin_app().await;
    let Backend::Redis(_) = blue.backend else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    let shared = blue.redis.clone();
    let green = spawn_admin_app_with(move |s| s.redis = shared).await;
    let event = json!({"id": "run-5", "sha": "abc1234", "outcome": "success"});

    assert_eq!(blue.record_deploy(&event).await["stored"], "shared");
    assert_eq!(green.record_deploy(&event).await["stored"], "shared");

    for slot in [&blue, &green] {
        assert_eq!(slot.deploy_status_json().await["total_deploys"], 1);
    }
}

/// The shas of the history as Dragonfly holds it, newest first, read
/// straight from the server (not through the proxy or chimney).
async fn history_in_redis(database: &Url) -> Vec<String> {
    let read = async {
        let client = redis::Client::open(database.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("LRANGE")
            .arg(deploy_log_key(&CacheNamespace::of_deployment(
                None,
                &RepoName::parse(crate::helpers::HELLO_WORLD).expect("valid repo"),
            )))
            .arg(0)
            .arg(-1)
            .query_async::<Vec<String>>(&mut conn)
            .await
    };
    let entries = tokio::time::timeout(REDIS_DEADLINE, read)
        .await
        .expect("Redis answers in time")
        .expect("LRANGE");
    entries
        .iter()
        .map(|entry| {
            let event: Value = serde_json::from_str(entry).expect("a JSON event");
            event["sha"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Posts while Dragonfly misbehaves as `fault`, then lets it recover and
/// checks that what was kept locally reached it once each, in arrival
/// order, with no further request to push it.
async fn local_events_reach_dragonfly_once_in_arrival_order(fault: Mode) {
    let Backend::Redis(server) = Backend::from_env() else {
        println!("skipping: needs the Redis backend (CHIMNEY_TEST_DRAGONFLY_URL)");
        return;
    };
    let database = fresh_database(&server).await;
    let proxy = RedisProxy::start(&database).await;
    let through_proxy = proxy.url(&database);
    let app = spawn_admin_app_with(move |s| s.redis = Some(through_proxy)).await;

    let first = app
        .record_deploy(&json!({"id": "one", "sha": "one", "outcome": "success"}))
        .await;
    assert_eq!(first["stored"], "shared", "{first}");

    proxy.set(fault);
    let during = [
        json!({"id": "two", "sha": "two", "outcome": "success"}),
        json!({"id": "two", "sha": "two", "outcome": "success"}),
        json!({"sha": "three", "outcome": "failure", "deployed_at": "2026-02-21T10:13:00Z"}),
        json!({"id": "two", "sha": "two", "outcome": "success"}),
        json!({"sha": "four", "outcome": "success", "deployed_at": "2026-02-21T10:14:00Z"}),
    ];
    for event in &during {
        let started = Instant::now();
        let answer = app.record_deploy(event).await;
        assert_eq!(answer["stored"], "local", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a post took {:?}",
            started.elapsed()
        );
    }
    // Meanwhile this instance reports what it received, each once.
    let status = app.deploy_status_json().await;
    assert_eq!(
        shas(&status["recent_deploys"]),
        ["four", "three", "two", "one"]
    );

    proxy.set(Mode::Pass);
    let expected = ["four", "three", "two", "one"];
    let arrived = eventually(Duration::from_secs(15), || async {
        history_in_redis(&database).await == expected
    })
    .await;
    assert!(
        arrived,
        "Dragonfly holds {:?}",
        history_in_redis(&database).await
    );
    // Nothing is pushed again later (a delayed command that ran, a retry).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(history_in_redis(&database).await, expected);

    let after = app
        .record_deploy(&json!({"sha": "five", "outcome": "success"}))
        .await;
    assert_eq!(after["stored"], "shared", "{after}");
    let status = app.deploy_status_json().await;
    assert_eq!(
        shas(&status["recent_deploys"]),
        ["five", "four", "three", "two", "one"]
    );
    assert_eq!(status["last_deploy"]["sha"], "five");
    assert_eq!(
        history_in_redis(&database).await,
        ["five", "four", "three", "two", "one"]
    );
}

#[tokio::test]
async fn with_dragonfly_slow_events_kept_locally_reach_it_once_in_arrival_order() {
    // Every command arrives 600 ms late: after chimney's 200 ms timeout,
    // but it still runs. A retry must not store the event a second time.
    local_events_reach_dragonfly_once_in_arrival_order(Mode::Delay(Duration::from_millis(600)))
        .await;
}

#[tokio::test]
async fn with_dragonfly_unreachable_events_kept_locally_reach_it_once_in_arrival_order() {
    local_events_reach_dragonfly_once_in_arrival_order(Mode::Refuse).await;
}
