//! Fleet single flight (CONTRACT 3.5): instances sharing one Dragonfly make
//! one upstream request per key at a time between them. An instance that
//! finds another's fetch in progress waits for its result, at most until
//! the lock expires or the upstream timeout, and a failed fetch releases
//! its waiters at once. Memory-only instances coalesce on their own.
//!
//! The fleet tests put two instances on one database of the suite's Redis
//! and in front of one fake GitHub, each pair serving a repository of its
//! own so that its channel is heard by nobody else; they skip, saying so,
//! without `CHIMNEY_TEST_DRAGONFLY_URL`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chimney::bootstrap::config::Settings;
use chimney::domain::RepoName;
use deadpool_redis::redis;
use futures::future::join_all;
use url::Url;

use crate::helpers::{
    Backend, DRAGONFLY_URL_ENV, REDIS_DEADLINE, TestApp, TestResponse, fresh_database,
    spawn_app_with,
};

/// How long GitHub takes to answer in the stampede tests.
const UPSTREAM_DELAY: Duration = Duration::from_millis(300);

/// Bound for an app to start using Redis and subscribing to its channels.
const CONNECTED_WITHIN: Duration = Duration::from_secs(15);

/// The resource every test asks for, below the repository.
const REL: &str = "/issues?state=open";

/// The Redis command timeout of the fleet tests. Each test runs both
/// instances on one thread of a machine shared with the rest of the suite,
/// where a cold pool opening connections for a stampede can overrun the
/// production 200 ms and rightly make an instance stop using Dragonfly.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A repository no other test serves, so its fetch channel is this
/// test's alone.
fn unique_repo(test: &str) -> RepoName {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    RepoName::parse(&format!("fleet-{}/{test}-{n}", std::process::id())).expect("valid repo")
}

/// A direct connection to the test Redis database `url`.
async fn redis_conn(url: &Url) -> redis::aio::MultiplexedConnection {
    let connect = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    };
    tokio::time::timeout(REDIS_DEADLINE, connect)
        .await
        .expect("Redis answers in time")
        .expect("Redis connection")
}

/// Two instances of one deployment (`repo`) sharing a fresh database and
/// the first one's fake GitHub, both using Redis and subscribed; `None`
/// after printing why the test skips.
async fn fleet_of_two(
    test: &str,
    configure: impl Fn(&mut Settings) + Clone,
) -> Option<(TestApp, TestApp)> {
    let Backend::Redis(server) = Backend::from_env() else {
        println!("skipping: {DRAGONFLY_URL_ENV} not set (memory-only run)");
        return None;
    };
    let database = fresh_database(&server).await;
    let repo = unique_repo(test);
    let (redis_a, repo_a, configure_a) = (database.clone(), repo.clone(), configure.clone());
    let a = spawn_app_with(move |s| {
        s.redis = Some(redis_a);
        s.redis_timeout = REDIS_TIMEOUT;
        s.repo = repo_a;
        configure_a(s);
    })
    .await;
    let github = a.github.base_url();
    let b = spawn_app_with(move |s| {
        s.redis = Some(database);
        s.redis_timeout = REDIS_TIMEOUT;
        s.repo = repo;
        s.github_api_url = github;
        configure(s);
    })
    .await;
    for app in [&a, &b] {
        app.wait_for_dragonfly("connected", CONNECTED_WITHIN).await;
    }
    wait_for_subscribers(&a, 2).await;
    Some((a, b))
}

/// `chimney:{namespace}:fetched`, the channel `app`'s fetches are
/// announced on.
fn fetch_channel(app: &TestApp) -> String {
    format!("chimney:{}:fetched", app.repo.as_str().to_ascii_lowercase())
}

/// Waits until `count` listeners are subscribed to `app`'s fetch channel,
/// so no notice of the test is sent before anyone can hear it.
async fn wait_for_subscribers(app: &TestApp, count: u64) {
    let url = app.redis.as_ref().expect("a Redis app");
    let mut conn = redis_conn(url).await;
    let channel = fetch_channel(app);
    let until = Instant::now() + CONNECTED_WITHIN;
    loop {
        let (_, subscribed): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async::<Vec<(String, u64)>>(&mut conn)
            .await
            .expect("PUBSUB NUMSUB")
            .pop()
            .expect("one channel asked about");
        if subscribed >= count {
            return;
        }
        assert!(
            Instant::now() < until,
            "{count} listeners did not subscribe to {channel} within {CONNECTED_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves a JSON list at [`REL`] on `app`'s fake GitHub; returns the
/// upstream path and query.
fn publish_issues(app: &TestApp) -> String {
    let upstream = app.upstream(REL);
    app.github.set_json(
        &upstream,
        &serde_json::json!([{ "number": 1, "title": "fleet" }]),
    );
    upstream
}

/// Holds the fetch lock of [`REL`] in `app`'s database as a dead instance
/// would have left it, for `ms` milliseconds.
async fn plant_dead_lock(app: &TestApp, ms: u64) {
    let url = app.redis.as_ref().expect("a Redis app");
    let key = format!(
        "chimney:{}:lock:{REL}",
        app.repo.as_str().to_ascii_lowercase()
    );
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg("an-instance-that-died")
        .arg("NX")
        .arg("PX")
        .arg(ms)
        .query_async(&mut redis_conn(url).await)
        .await
        .expect("SET the lock");
    assert!(set.is_some(), "the lock {key} was already taken");
}

fn count(responses: &[TestResponse], x_cache: &str) -> usize {
    responses.iter().filter(|r| r.x_cache() == x_cache).count()
}

#[tokio::test]
async fn a_stampede_across_two_instances_makes_one_upstream_request() {
    let Some((a, b)) = fleet_of_two("stampede", |_| {}).await else {
        return;
    };
    let upstream = publish_issues(&a);
    a.github.delay(&upstream, UPSTREAM_DELAY);

    let started = Instant::now();
    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        join_all((0..40).map(|i| if i % 2 == 0 { &a } else { &b }.get_github(REL))),
    )
    .await
    .expect("all 40 requests answered");
    let elapsed = started.elapsed();

    let expected = a.github.body(&upstream);
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, expected, "every client gets the same body");
    }
    assert_eq!(a.github.requests_for(&upstream), 1, "one upstream request");
    assert_eq!(count(&responses, "MISS"), 1, "exactly one request fetched");
    assert_eq!(count(&responses, "COALESCED"), 39, "the others shared it");
    assert!(
        elapsed < Duration::from_secs(3),
        "the stampede took {elapsed:?} for a {UPSTREAM_DELAY:?} upstream"
    );
}

#[tokio::test]
async fn the_instance_that_waited_serves_the_entry_from_its_memory_afterwards() {
    let Some((a, b)) = fleet_of_two("afterwards", |_| {}).await else {
        return;
    };
    let upstream = publish_issues(&a);
    a.github.delay(&upstream, UPSTREAM_DELAY);

    let first = tokio::spawn({
        let path = a.github_path(REL);
        let (client, address) = (a.client.clone(), a.address.clone());
        async move { client.get(format!("{address}{path}")).send().await }
    });
    a.github
        .wait_for_requests(&upstream, 1, Duration::from_secs(5))
        .await;
    let waited = b.get_github(REL).await;
    let fetched = first.await.expect("task").expect("A answers");

    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(waited.x_cache(), "COALESCED");
    let again = b.get_github(REL).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(a.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn a_lock_left_by_a_dead_instance_holds_a_fetch_back_only_until_it_expires() {
    let Some((a, _b)) = fleet_of_two("dead-holder", |_| {}).await else {
        return;
    };
    let upstream = publish_issues(&a);
    plant_dead_lock(&a, 1_500).await;

    let started = Instant::now();
    let response = a.get_github(REL).await;
    let took = started.elapsed();

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "MISS", "it fetched for itself");
    assert_eq!(a.github.requests_for(&upstream), 1);
    assert!(
        took >= Duration::from_millis(1_200),
        "it did not wait for the lock ({took:?})"
    );
    assert!(
        took < Duration::from_millis(3_500),
        "it waited {took:?} for a lock that expired after 1.5 s"
    );
}

#[tokio::test]
async fn a_lock_outliving_the_upstream_timeout_is_waited_for_no_longer_than_that() {
    let upstream_timeout = Duration::from_secs(1);
    let Some((a, _b)) = fleet_of_two("stuck-holder", move |s| {
        s.upstream_timeout = upstream_timeout
    })
    .await
    else {
        return;
    };
    let upstream = publish_issues(&a);
    plant_dead_lock(&a, 60_000).await;

    let started = Instant::now();
    let response = a.get_github(REL).await;
    let took = started.elapsed();

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "MISS");
    assert_eq!(a.github.requests_for(&upstream), 1);
    assert!(
        took >= Duration::from_millis(900),
        "it did not wait ({took:?})"
    );
    assert!(
        took < Duration::from_millis(2_500),
        "it waited {took:?} with a {upstream_timeout:?} upstream timeout"
    );
}

#[tokio::test]
async fn a_failed_fetch_releases_the_other_instances_waiters_at_once() {
    // The waiter's bound is the upstream timeout: 10 s by default.
    let Some((a, b)) = fleet_of_two("failed", |_| {}).await else {
        return;
    };
    let upstream = publish_issues(&a);
    a.github.fail_with(&upstream, 500);
    a.github.delay(&upstream, Duration::from_millis(500));

    let first = tokio::spawn({
        let path = a.github_path(REL);
        let (client, address) = (a.client.clone(), a.address.clone());
        async move { client.get(format!("{address}{path}")).send().await }
    });
    a.github
        .wait_for_requests(&upstream, 1, Duration::from_secs(5))
        .await;
    let started = Instant::now();
    let waiter = b.get_github(REL).await;
    let took = started.elapsed();
    let holder = first.await.expect("task").expect("A answers");

    assert_eq!(holder.status().as_u16(), 502);
    waiter.assert_problem(502);
    assert_eq!(
        a.github.requests_for(&upstream),
        1,
        "the waiter shared the failure instead of asking again"
    );
    assert!(
        took < Duration::from_secs(3),
        "the waiter took {took:?}: it waited for the timeout"
    );
}

#[tokio::test]
async fn a_fetch_notice_published_by_hand_cannot_break_a_waiter() {
    let Some((a, b)) = fleet_of_two("forged", |_| {}).await else {
        return;
    };
    let upstream = publish_issues(&a);
    a.github.delay(&upstream, UPSTREAM_DELAY);
    let mut conn = redis_conn(a.redis.as_ref().expect("a Redis app")).await;
    let channel = fetch_channel(&a);

    let first = tokio::spawn({
        let path = a.github_path(REL);
        let (client, address) = (a.client.clone(), a.address.clone());
        async move { client.get(format!("{address}{path}")).send().await }
    });
    a.github
        .wait_for_requests(&upstream, 1, Duration::from_secs(5))
        .await;
    let waiter = tokio::spawn({
        let path = b.github_path(REL);
        let (client, address) = (b.client.clone(), b.address.clone());
        async move { client.get(format!("{address}{path}")).send().await }
    });
    for junk in [
        "not json".to_owned(),
        format!(r#"{{"v":1,"key":"lock:{REL}","outcome":"failed"}}"#),
        format!(r#"{{"v":9,"key":"{REL}","outcome":"failed"}}"#),
        format!(r#"{{"v":1,"key":"{REL}","outcome":"exploded"}}"#),
        // "Stored" early: the waiter looks, finds nothing new, and waits on.
        format!(r#"{{"v":1,"key":"{REL}","outcome":"stored"}}"#),
    ] {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(junk)
            .query_async(&mut conn)
            .await
            .expect("PUBLISH");
    }
    let holder = first.await.expect("task").expect("A answers");
    let waited = waiter.await.expect("task").expect("B answers");

    assert_eq!(holder.status().as_u16(), 200);
    assert_eq!(waited.status().as_u16(), 200);
    assert_eq!(
        waited
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok()),
        Some("COALESCED")
    );
    assert_eq!(a.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn memory_only_instances_still_coalesce_each_on_its_own() {
    if Backend::from_env() != Backend::Memory {
        println!("skipping: memory-only behaviour, and {DRAGONFLY_URL_ENV} is set");
        return;
    }
    let a = spawn_app_with(|_| {}).await;
    let github = a.github.base_url();
    let b = spawn_app_with(move |s| s.github_api_url = github).await;
    let upstream = publish_issues(&a);
    a.github.delay(&upstream, UPSTREAM_DELAY);

    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        join_all((0..20).map(|i| if i % 2 == 0 { &a } else { &b }.get_github(REL))),
    )
    .await
    .expect("all 20 requests answered");

    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(a.github.requests_for(&upstream), 2, "one per instance");
    assert_eq!(count(&responses, "MISS"), 2);
    assert_eq!(count(&responses, "COALESCED"), 18);
}
