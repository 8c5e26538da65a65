//! Cross-instance invalidation over pub/sub: delivery to every listener,
//! survival across a server restart, and prompt shutdown.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_redis::{Pool, redis};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;

use super::server::{
    TEST_CHANNEL, TIMEOUT, cache_at, closed_port_url, private_server, raw, shared_url,
};
use crate::adapters::dragonfly::{
    InvalidationNotice, publish_invalidation, run_invalidation_listener,
};
use crate::domain::InvalidationScope;

/// The scope published until a listener proves it is subscribed.
const PROBE: &str = "/probe";

/// A notice from `origin` for the database `database`.
fn notice(origin: &str, scope: &InvalidationScope, database: Option<i64>) -> InvalidationNotice {
    InvalidationNotice {
        scope: scope.clone(),
        origin: origin.to_owned(),
        database,
    }
}

/// A listener task whose notices arrive on a channel.
struct Listener {
    notices: mpsc::UnboundedReceiver<InvalidationNotice>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn spawn_listener(url: &Url) -> Listener {
    let (tx, notices) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_invalidation_listener(
        url.clone(),
        TEST_CHANNEL.to_owned(),
        move |notice| {
            let _ = tx.send(notice);
        },
        shutdown,
    ));
    Listener {
        notices,
        stop,
        task,
    }
}

/// An origin no other test run shares, so a shared server's other traffic
/// on the channel cannot be mistaken for ours.
fn unique_origin(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Publishes `scope` from `origin` until every listener has received it,
/// within `deadline`. Publishing repeatedly is what makes this free of
/// sleeps: a listener still (re)subscribing misses earlier publishes, and
/// pub/sub keeps no backlog.
async fn publish_until_received(
    pool: &Pool,
    origin: &str,
    scope: &InvalidationScope,
    listeners: &mut [&mut Listener],
    deadline: Duration,
) {
    let until = Instant::now() + deadline;
    let mut received = vec![false; listeners.len()];
    while Instant::now() < until {
        // The server may be down or just restarting: failures are retried.
        let _ =
            publish_invalidation(pool, TIMEOUT, TEST_CHANNEL, &notice(origin, scope, None)).await;
        let round = Instant::now() + Duration::from_millis(50);
        for (listener, done) in listeners.iter_mut().zip(received.iter_mut()) {
            while !*done {
                match tokio::time::timeout_at(round.into(), listener.notices.recv()).await {
                    Ok(Some(notice)) if notice.origin == origin && &notice.scope == scope => {
                        *done = true;
                    }
                    // Someone else's, or a repeat of an earlier round's.
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("listener stopped"),
                    Err(_) => break,
                }
            }
        }
        if received.iter().all(|done| *done) {
            return;
        }
    }
    panic!("not every listener received {scope:?} within {deadline:?}: {received:?}");
}

/// The next notice from `origin` that is not a leftover readiness probe,
/// within five seconds.
async fn next_notice_from(listener: &mut Listener, origin: &str) -> InvalidationNotice {
    let probe = InvalidationScope::prefix(PROBE);
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let notice = listener.notices.recv().await.expect("listener alive");
            if notice.origin == origin && notice.scope != probe {
                return notice;
            }
        }
    })
    .await
    .expect("a notice arrives")
}

async fn stop(listener: Listener) {
    let _ = listener.stop.send(true);
    tokio::time::timeout(Duration::from_secs(1), listener.task)
        .await
        .expect("listener stops within a second")
        .expect("listener task did not panic");
}

#[tokio::test]
async fn every_listener_receives_a_published_invalidation() {
    let Some(url) = shared_url() else { return };
    let (pool, _) = cache_at(&url);
    let mut first = spawn_listener(&url);
    let mut second = spawn_listener(&url);
    let origin = unique_origin("two-listeners");

    let scope = InvalidationScope::prefix("/pulls");
    publish_until_received(
        &pool,
        &origin,
        &scope,
        &mut [&mut first, &mut second],
        Duration::from_secs(10),
    )
    .await;
    publish_until_received(
        &pool,
        &origin,
        &InvalidationScope::All,
        &mut [&mut first, &mut second],
        Duration::from_secs(10),
    )
    .await;
    stop(first).await;
    stop(second).await;
}

#[tokio::test]
async fn the_subscription_survives_a_server_restart() {
    let Some(mut server) = private_server() else {
        return;
    };
    let url = server.url();
    let (pool, _) = cache_at(&url);
    let mut listener = spawn_listener(&url);
    let origin = unique_origin("restart");

    let before = InvalidationScope::prefix("/before");
    publish_until_received(
        &pool,
        &origin,
        &before,
        &mut [&mut listener],
        Duration::from_secs(10),
    )
    .await;

    server.start_again();

    // Backoff after the drop is 100 ms, 200 ms, 400 ms, …: the listener is
    // back well within this deadline once the server is.
    let after = InvalidationScope::prefix("/after");
    publish_until_received(
        &pool,
        &origin,
        &after,
        &mut [&mut listener],
        Duration::from_secs(15),
    )
    .await;
    stop(listener).await;
}

#[tokio::test]
async fn messages_that_are_not_notices_are_skipped() {
    let Some(server) = private_server() else {
        return;
    };
    let url = server.url();
    let (pool, _) = cache_at(&url);
    let mut listener = spawn_listener(&url);
    let origin = unique_origin("garbage");

    // Wait until subscribed, then send garbage followed by a good notice.
    publish_until_received(
        &pool,
        &origin,
        &InvalidationScope::prefix(PROBE),
        &mut [&mut listener],
        Duration::from_secs(10),
    )
    .await;
    let _: i64 = raw(
        &pool,
        redis::cmd("PUBLISH").arg(TEST_CHANNEL).arg("not json"),
    )
    .await;
    let _: i64 = raw(
        &pool,
        redis::cmd("PUBLISH")
            .arg(TEST_CHANNEL)
            .arg(r#"{"v":1,"prefix":"/issues","origin":"by-hand"}"#),
    )
    .await;
    let notice = next_notice_from(&mut listener, "by-hand").await;
    assert_eq!(notice.scope, InvalidationScope::prefix("/issues"));
    stop(listener).await;
}

#[tokio::test]
async fn the_listener_stops_promptly_even_while_the_server_is_down() {
    let listener = spawn_listener(&closed_port_url());
    // Long enough to fail a few connection attempts and be asleep in its
    // backoff (100 ms, then 200 ms) when shutdown arrives.
    tokio::time::sleep(Duration::from_millis(250)).await;
    stop(listener).await;
}

#[tokio::test]
async fn the_listener_stops_when_its_shutdown_sender_is_dropped() {
    let Listener {
        notices,
        stop,
        task,
    } = spawn_listener(&closed_port_url());
    drop(stop);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("listener stops")
        .expect("no panic");
    drop(notices);
}

#[tokio::test]
async fn publishing_to_a_dead_server_is_unavailable_within_the_timeout() {
    let (pool, _) = cache_at(&closed_port_url());
    let started = Instant::now();
    let err = publish_invalidation(
        &pool,
        TIMEOUT,
        TEST_CHANNEL,
        &notice("me", &InvalidationScope::All, None),
    )
    .await
    .expect_err("no server");
    let crate::ports::CacheError::Unavailable { store, .. } = err else {
        panic!("expected unavailable: {err:?}");
    };
    assert_eq!(store, "dragonfly");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_bus_publishes_notices_carrying_its_origin() {
    use crate::adapters::dragonfly::DragonflyInvalidationBus;
    use crate::ports::InvalidationBus;

    let Some(server) = private_server() else {
        return;
    };
    let url = server.url();
    let (pool, _) = cache_at(&url);
    let mut listener = spawn_listener(&url);
    let bus =
        DragonflyInvalidationBus::new(pool.clone(), TIMEOUT, TEST_CHANNEL, unique_origin("bus"), 0);

    // Subscribed once a probe gets through; then the bus's own notice.
    publish_until_received(
        &pool,
        bus.origin(),
        &InvalidationScope::prefix(PROBE),
        &mut [&mut listener],
        Duration::from_secs(10),
    )
    .await;
    bus.publish(&InvalidationScope::prefix("/issues"))
        .await
        .expect("publish");
    let notice = next_notice_from(&mut listener, bus.origin()).await;
    assert_eq!(notice.scope, InvalidationScope::prefix("/issues"));
    assert_eq!(notice.database, Some(0));
    stop(listener).await;
}

#[tokio::test]
async fn a_listener_ignores_notices_for_another_database() {
    let Some(server) = private_server() else {
        return;
    };
    let mut on_db_1 = server.url();
    on_db_1.set_path("/1");
    let (pool, _) = cache_at(&server.url());
    let mut listener = spawn_listener(&on_db_1);
    let origin = unique_origin("databases");

    // Subscribed once a probe for its database gets through.
    let probe = InvalidationScope::prefix(PROBE);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = publish_invalidation(
            &pool,
            TIMEOUT,
            TEST_CHANNEL,
            &notice(&origin, &probe, Some(1)),
        )
        .await;
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(50), listener.notices.recv()).await
        {
            break;
        }
        assert!(Instant::now() < until, "the listener never subscribed");
    }

    for (scope, database) in [
        ("/other-database", Some(0)),
        ("/own-database", Some(1)),
        ("/every-database", None),
    ] {
        let scope = InvalidationScope::prefix(scope);
        publish_invalidation(
            &pool,
            TIMEOUT,
            TEST_CHANNEL,
            &notice(&origin, &scope, database),
        )
        .await
        .expect("publish");
    }
    let first = next_notice_from(&mut listener, &origin).await;
    let second = next_notice_from(&mut listener, &origin).await;
    assert_eq!(first.scope, InvalidationScope::prefix("/own-database"));
    assert_eq!(second.scope, InvalidationScope::prefix("/every-database"));
    stop(listener).await;
}
