//! What only the shared tier can do (CONTRACT 2 and 4): instances sharing
//! one Redis serve each other's entries and see each other's
//! invalidations, entries outlive an instance, and a Redis that dies or
//! comes back while chimney serves costs no request and needs no restart.
//!
//! The sharing tests use the suite's Redis (`CHIMNEY_TEST_DRAGONFLY_URL`)
//! and put both instances on one database; the outage tests start a
//! private `redis-server` (`CHIMNEY_TEST_REDIS_SERVER`) they can kill. Each
//! test prints why it skips when its variable is unset.

use std::time::{Duration, Instant};

use chimney_testkit::redis::RedisServer;
use deadpool_redis::redis;
use secrecy::SecretString;
use url::Url;

use crate::helpers::{
    Backend, DRAGONFLY_URL_ENV, REDIS_DEADLINE, TestApp, TestResponse, fresh_database,
    spawn_app_with,
};

const README: &str = "/contents/README.md";

/// The invalidation token the sharing tests configure.
const INVALIDATE_TOKEN: &str = "shared-tier-test-token";

/// Longest a request may take while Redis misbehaves: the contract allows
/// the 200 ms Redis timeout on top of normal work.
const SLOW_REQUEST: Duration = Duration::from_secs(1);

/// Bound for Dragonfly state changes seen on `/healthz`. The probe retries
/// at most every 5 s while Redis is down, and pings every 2 s while up.
const STATE_CHANGE: Duration = Duration::from_secs(15);

/// An empty database of its own on the suite's Redis, for the instances
/// of one test to share; `None` after printing why the test skips.
async fn shared_database() -> Option<Url> {
    match Backend::from_env() {
        Backend::Redis(server) => Some(fresh_database(&server).await),
        Backend::Memory => {
            println!("skipping: {DRAGONFLY_URL_ENV} not set (memory-only run)");
            None
        }
    }
}

/// Spawns an app caching in `redis` that accepts [`INVALIDATE_TOKEN`], and
/// waits until it uses Redis.
async fn spawn_connected(redis: Url) -> TestApp {
    let app = spawn_app_with(move |s| {
        s.redis = Some(redis);
        s.invalidate_token = Some(SecretString::from(INVALIDATE_TOKEN));
    })
    .await;
    app.wait_for_dragonfly("connected", STATE_CHANGE).await;
    app
}

/// `POST /api/cache/invalidate` of `prefix` on `app`.
async fn invalidate(app: &TestApp, prefix: &str) -> serde_json::Value {
    let response = app
        .client
        .post(format!("{}/api/cache/invalidate", app.address))
        .bearer_auth(INVALIDATE_TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "path": prefix, "reason": "shared tier test" }).to_string())
        .send()
        .await
        .expect("invalidate request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("invalidate body");
    assert_eq!(status, 200, "invalidate answered {status}: {body}");
    serde_json::from_str(&body).expect("invalidate answers JSON")
}

/// `GET` of `rel` on `app`, asserting 200 within [`SLOW_REQUEST`].
async fn get_promptly(app: &TestApp, rel: &str) -> TestResponse {
    let started = Instant::now();
    let response = app.get_github(rel).await;
    let took = started.elapsed();
    assert_eq!(response.status, 200, "{rel}: {}", response.text());
    assert!(
        took < SLOW_REQUEST,
        "{rel} took {took:?} ({})",
        response.x_cache()
    );
    response
}

/// Whether Redis at `url` holds `key`, asked directly.
async fn redis_has(url: &Url, key: &str) -> bool {
    let ask = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<u64>(&mut conn)
            .await
    };
    tokio::time::timeout(REDIS_DEADLINE, ask)
        .await
        .expect("Redis answers in time")
        .expect("EXISTS succeeds")
        == 1
}

/// Publishes a resource the app has never fetched, so its next GET is a
/// miss; returns the path below the repository.
fn new_resource(app: &TestApp, n: usize) -> String {
    let rel = format!("/issues?page={n}");
    app.github.set_json(
        &app.upstream(&rel),
        &serde_json::json!([{ "number": n, "title": format!("issue {n}") }]),
    );
    rel
}

#[tokio::test]
async fn an_entry_fetched_by_one_instance_is_served_by_another_without_an_upstream_call() {
    let Some(database) = shared_database().await else {
        return;
    };
    let a = spawn_connected(database.clone()).await;
    let b = spawn_connected(database).await;
    let upstream = a.upstream(README);

    assert_eq!(a.get_github(README).await.x_cache(), "MISS");
    let from_b = b.get_github(README).await;

    assert_eq!(from_b.status, 200, "{}", from_b.text());
    assert_eq!(from_b.x_cache(), "HIT");
    assert_eq!(from_b.body, a.github.body(&upstream));
    assert_eq!(a.github.requests_for(&upstream), 1);
    assert_eq!(b.github.total_requests(), 0, "B went upstream");
}

#[tokio::test]
async fn an_invalidation_on_one_instance_clears_the_memory_tier_of_another() {
    let Some(database) = shared_database().await else {
        return;
    };
    let a = spawn_connected(database.clone()).await;
    let b = spawn_connected(database).await;
    let upstream = b.upstream(README);
    assert_eq!(a.get_github(README).await.x_cache(), "MISS");
    assert_eq!(b.get_github(README).await.x_cache(), "HIT");
    assert_eq!(b.github.requests_for(&upstream), 0);

    // Pub/sub keeps no backlog: until B's listener is subscribed an
    // announcement passes it by, so invalidate again until B drops it.
    let until = Instant::now() + Duration::from_secs(10);
    let after = loop {
        invalidate(&a, "/contents").await;
        let response = b.get_github(README).await;
        if response.x_cache() != "HIT" {
            break response;
        }
        assert!(
            Instant::now() < until,
            "B still serves the invalidated entry from memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(b.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn an_entry_in_redis_outlives_the_instance_that_fetched_it() {
    let Some(database) = shared_database().await else {
        return;
    };
    let mut first = spawn_connected(database.clone()).await;
    assert_eq!(first.get_github(README).await.x_cache(), "MISS");
    first.signal_shutdown();
    assert!(first.stopped_within(Duration::from_secs(7)).await);

    let second = spawn_connected(database).await;
    assert_eq!(second.healthz().await["mem_cache_entries"], 0);
    let response = second.get_github(README).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "HIT");
    assert_eq!(response.body, first.github.body(&first.upstream(README)));
    assert_eq!(second.github.total_requests(), 0, "went upstream");
}

#[tokio::test]
async fn redis_killed_while_serving_costs_no_request_and_slows_none() {
    let Some(mut server) = RedisServer::from_env() else {
        return;
    };
    let app = spawn_connected(server.url()).await;
    get_promptly(&app, README).await;
    assert_eq!(get_promptly(&app, README).await.x_cache(), "HIT");

    server.kill();

    for n in 1..=5 {
        assert_eq!(get_promptly(&app, README).await.x_cache(), "HIT");
        let rel = new_resource(&app, n);
        assert_eq!(get_promptly(&app, &rel).await.x_cache(), "MISS");
        assert_eq!(get_promptly(&app, &rel).await.x_cache(), "HIT");
    }
    app.wait_for_dragonfly("unavailable", STATE_CHANGE).await;
    assert_eq!(app.github.requests_for(&app.upstream(README)), 1);
}

#[tokio::test]
async fn redis_restarted_is_used_again_without_restarting_chimney() {
    let Some(mut server) = RedisServer::from_env() else {
        return;
    };
    let app = spawn_connected(server.url()).await;
    let before = new_resource(&app, 1);
    get_promptly(&app, &before).await;
    assert!(redis_has(&server.url(), &app.redis_key(&before)).await);

    server.kill();
    app.wait_for_dragonfly("unavailable", STATE_CHANGE).await;
    server.start_again();
    app.wait_for_dragonfly("connected", STATE_CHANGE).await;

    let after = new_resource(&app, 2);
    assert_eq!(get_promptly(&app, &after).await.x_cache(), "MISS");
    assert!(
        redis_has(&server.url(), &app.redis_key(&after)).await,
        "the fetch after the restart was not written to Redis"
    );
}

/// Calls of `command` the server has answered, from `INFO commandstats`.
async fn command_calls(url: &Url, command: &str) -> u64 {
    let client = redis::Client::open(url.as_str()).expect("Redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn healthz_reports_dragonfly_memory_and_keys_without_scanning_per_call() {
    let Some(server) = RedisServer::from_env() else {
        return;
    };
    let app = spawn_connected(server.url()).await;
    // The probe's first refresh follows the first successful ping.
    let deadline = Instant::now() + STATE_CHANGE;
    let mut health = app.healthz().await;
    while health.get("dragonfly_memory").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = app.healthz().await;
    }
    let memory = health["dragonfly_memory"].as_str().unwrap_or_default();
    assert!(!memory.is_empty(), "no dragonfly_memory in {health}");
    assert!(health["dragonfly_keys"].is_u64(), "{health}");
    assert!(health.get("dragonfly_error").is_none(), "{health}");

    let scans_before = command_calls(&server.url(), "scan").await;
    for _ in 0..40 {
        assert_eq!(app.healthz().await["status"], "ok");
    }
    let scans = command_calls(&server.url(), "scan").await - scans_before;
    // At most the background refresh's walk may fall in the window.
    assert!(scans <= 2, "40 health checks ran {scans} SCANs");
}

#[tokio::test]
async fn healthz_names_the_last_dragonfly_error_without_the_password() {
    let Some(mut server) = RedisServer::from_env() else {
        return;
    };
    let password = "pw/with?odd#chars";
    {
        let client = redis::Client::open(server.url().as_str()).expect("Redis client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis connection");
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(password)
            .query_async(&mut conn)
            .await
            .expect("CONFIG SET requirepass");
    }
    let mut url = server.url();
    url.set_password(Some(password))
        .expect("a password in the URL");
    let app = spawn_connected(url).await;

    server.kill();
    app.wait_for_dragonfly("unavailable", STATE_CHANGE).await;

    let health = app.healthz().await;
    let error = health["dragonfly_error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "no dragonfly_error in {health}");
    let encoded = url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>();
    for secret in [password, "pw/with", "odd#chars", encoded.as_str()] {
        assert!(!health.to_string().contains(secret), "{health}");
    }
}
