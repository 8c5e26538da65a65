//! The fetch lock of fleet single flight against a real server: one
//! holder at a time, only the holder releases, expiry frees it, and a
//! release is announced to listeners.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis;
use tokio::sync::{mpsc, watch};
use url::Url;

use super::server::{TIMEOUT, closed_port_url, raw, shared_url};
use crate::adapters::dragonfly::{
    DragonflyFleetLock, Subscription, build_pool, database_of, flight_channel, run_listener,
};
use crate::domain::{CacheKey, CacheNamespace, RepoName};
use crate::ports::{FleetLock, FlightNotice, FlightOutcome};

const HOLD: Duration = Duration::from_secs(30);

/// A namespace no other test run shares.
fn unique_namespace(test: &str) -> CacheNamespace {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let repo = format!("flight-{}/{test}-{nanos}", std::process::id());
    CacheNamespace::of_deployment(None, &RepoName::parse(&repo).expect("valid repo"))
}

fn key(text: &str) -> CacheKey {
    CacheKey::from_stored(text.to_owned())
}

/// Two instances' locks on one namespace.
fn two_instances(
    url: &Url,
    test: &str,
) -> (DragonflyFleetLock, DragonflyFleetLock, CacheNamespace) {
    let namespace = unique_namespace(test);
    let pool = build_pool(url, TIMEOUT).expect("pool builds");
    let database = database_of(url).expect("database");
    let lock = |token: &str| {
        DragonflyFleetLock::new(
            pool.clone(),
            TIMEOUT,
            &namespace,
            flight_channel(&namespace),
            token,
            database,
        )
    };
    (lock("instance-a"), lock("instance-b"), namespace)
}

fn lock_key(namespace: &CacheNamespace, key: &str) -> String {
    format!("chimney:{namespace}:lock:{key}")
}

#[tokio::test]
async fn one_instance_at_a_time_holds_a_key() {
    let Some(url) = shared_url() else { return };
    let (a, b, _) = two_instances(&url, "one-holder");

    assert!(a.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
    assert!(!b.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
    assert!(
        !a.try_lock(&key("/pulls"), HOLD).await.expect("lock"),
        "not re-entrant"
    );
    assert!(
        b.try_lock(&key("/issues"), HOLD).await.expect("lock"),
        "another key is free"
    );
}

#[tokio::test]
async fn only_the_holder_releases_the_lock() {
    let Some(url) = shared_url() else { return };
    let (a, b, namespace) = two_instances(&url, "holder-releases");
    let pool = build_pool(&url, TIMEOUT).expect("pool");

    assert!(a.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
    b.release(&key("/pulls"), FlightOutcome::Stored)
        .await
        .expect("release");
    let holder: Option<String> =
        raw(&pool, redis::cmd("GET").arg(lock_key(&namespace, "/pulls"))).await;
    assert_eq!(holder.as_deref(), Some("instance-a"), "B freed A's lock");
    assert!(!b.try_lock(&key("/pulls"), HOLD).await.expect("lock"));

    a.release(&key("/pulls"), FlightOutcome::Stored)
        .await
        .expect("release");
    assert!(b.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
}

#[tokio::test]
async fn a_lock_expires_by_itself() {
    let Some(url) = shared_url() else { return };
    let (a, b, namespace) = two_instances(&url, "expiry");
    let pool = build_pool(&url, TIMEOUT).expect("pool");

    assert!(
        a.try_lock(&key("/pulls"), Duration::from_millis(150))
            .await
            .expect("lock")
    );
    let ttl: i64 = raw(
        &pool,
        redis::cmd("PTTL").arg(lock_key(&namespace, "/pulls")),
    )
    .await;
    assert!((1..=150).contains(&ttl), "PTTL {ttl}");
    assert!(!b.try_lock(&key("/pulls"), HOLD).await.expect("lock"));

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.try_lock(&key("/pulls"), HOLD).await.expect("lock"),
        "a dead holder's lock outlived its expiry"
    );
    // A's late release leaves B's lock alone.
    a.release(&key("/pulls"), FlightOutcome::Failed)
        .await
        .expect("release");
    assert!(!a.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
}

#[tokio::test]
async fn a_release_is_announced_to_listeners() {
    let Some(url) = shared_url() else { return };
    let (a, _b, namespace) = two_instances(&url, "announce");
    let (tx, mut heard) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let listener = tokio::spawn(run_listener(
        url.clone(),
        vec![Subscription::flights(
            flight_channel(&namespace),
            move |notice| {
                let _ = tx.send(notice);
            },
        )],
        shutdown,
    ));

    // Pub/sub keeps no backlog: release until the listener has subscribed.
    let outcome = FlightOutcome::RateLimited {
        retry_after_secs: 42,
    };
    let notice = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            assert!(a.try_lock(&key("/pulls"), HOLD).await.expect("lock"));
            a.release(&key("/pulls"), outcome).await.expect("release");
            if let Ok(Some(notice)) =
                tokio::time::timeout(Duration::from_millis(100), heard.recv()).await
            {
                return notice;
            }
        }
    })
    .await
    .expect("the listener hears a release");
    assert_eq!(
        notice,
        FlightNotice {
            key: key("/pulls"),
            outcome
        }
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("the listener stops")
        .expect("no panic");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_within_the_timeout() {
    let url = closed_port_url();
    let (a, _b, _) = two_instances(&url, "unreachable");
    let started = std::time::Instant::now();
    assert!(a.try_lock(&key("/pulls"), HOLD).await.is_err());
    assert!(
        a.release(&key("/pulls"), FlightOutcome::Stored)
            .await
            .is_err()
    );
    assert!(
        started.elapsed() < TIMEOUT * 4,
        "took {:?}",
        started.elapsed()
    );
}
