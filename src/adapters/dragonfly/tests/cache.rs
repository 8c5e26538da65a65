//! `DragonflyCache` behaviour specific to Dragonfly: expiries, corrupt
//! values, outages, paging and counting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use deadpool_redis::redis;

use super::server::{
    TEST_PREFIX, TIMEOUT, cache_at, closed_port_url, private_server, raw, shared_url,
    test_namespace,
};
use crate::adapters::dragonfly::DragonflyCache;
use crate::domain::{
    CacheKey, CachedResponse, HeaderList, InvalidationScope, PIPELINE_SUMMARY_KEY,
};
use crate::ports::{CacheError, CacheStore, CacheTier};

fn entry(body: &'static [u8]) -> Arc<CachedResponse> {
    Arc::new(CachedResponse {
        status: 200,
        headers: [("etag", "\"v1\""), ("content-type", "application/json")]
            .into_iter()
            .collect::<HeaderList>(),
        body: Bytes::from_static(body),
        fetched_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
    })
}

fn key(text: &str) -> CacheKey {
    CacheKey::from_stored(text.to_owned())
}

fn assert_unavailable(err: CacheError) {
    let CacheError::Unavailable { store, .. } = err else {
        panic!("expected unavailable: {err:?}");
    };
    assert_eq!(store, "dragonfly");
}

#[tokio::test]
async fn put_sets_an_expiry_of_retain_for() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let key = key("/dragonfly-ttl/pulls?state=open");
    let retain = Duration::from_secs(90);
    cache.put(&key, entry(b"[]"), retain).await.expect("put");

    let pttl: i64 = raw(
        &pool,
        redis::cmd("PTTL").arg(format!("{TEST_PREFIX}/dragonfly-ttl/pulls?state=open")),
    )
    .await;
    // Only the time between SET and PTTL is lost; a few seconds of slack
    // keeps a loaded CI machine from failing the test.
    assert!((85_000..=90_000).contains(&pttl), "PTTL was {pttl}");
}

#[tokio::test]
async fn a_hit_comes_from_the_dragonfly_tier() {
    let Some(url) = shared_url() else { return };
    let (_, cache) = cache_at(&url);
    let key = key("/dragonfly-tier/issues");
    cache
        .put(&key, entry(b"{}"), Duration::from_secs(60))
        .await
        .expect("put");
    let hit = cache.get(&key).await.expect("get").expect("hit");
    assert_eq!(hit.tier, CacheTier::Dragonfly);
}

#[tokio::test]
async fn a_corrupted_value_reads_as_a_miss_and_is_removed() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let redis_key = &format!("{TEST_PREFIX}/dragonfly-corrupt/pulls");
    let () = raw(
        &pool,
        redis::cmd("SET")
            .arg(redis_key)
            .arg("garbage, not an entry"),
    )
    .await;

    let read = cache
        .get(&key("/dragonfly-corrupt/pulls"))
        .await
        .expect("a corrupt value is no error");
    assert!(read.is_none());
    let left: Option<Vec<u8>> = raw(&pool, redis::cmd("GET").arg(redis_key)).await;
    assert_eq!(left, None, "the corrupt value was deleted");
}

#[tokio::test]
async fn a_value_of_the_wrong_type_reads_as_a_miss_and_is_removed() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let redis_key = &format!("{TEST_PREFIX}/dragonfly-wrongtype/pulls");
    let _: i64 = raw(&pool, redis::cmd("DEL").arg(redis_key)).await;
    let _: i64 = raw(&pool, redis::cmd("RPUSH").arg(redis_key).arg("x")).await;

    let read = cache
        .get(&key("/dragonfly-wrongtype/pulls"))
        .await
        .expect("no error");
    assert!(read.is_none());
    let left: i64 = raw(&pool, redis::cmd("EXISTS").arg(redis_key)).await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_the_timeout() {
    let cache = DragonflyCache::new(
        super::super::build_pool(&closed_port_url(), TIMEOUT).expect("pool builds"),
        TIMEOUT,
        &test_namespace(),
    );
    let started = Instant::now();
    assert_unavailable(cache.get(&key("/dead")).await.expect_err("get fails"));
    assert_unavailable(
        cache
            .put(&key("/dead"), entry(b"{}"), Duration::from_secs(1))
            .await
            .expect_err("put fails"),
    );
    assert_unavailable(cache.ping().await.expect_err("ping fails"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_timeout() {
    // Accepts connections and never says a word: the case only a timeout
    // can catch, unlike a refused connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = url::Url::parse(&format!("redis://127.0.0.1:{port}")).expect("URL");
    let (_, cache) = cache_at(&url);

    for op in ["get", "put"] {
        let started = Instant::now();
        let result = match op {
            "get" => cache.get(&key("/silent")).await.map(|_| ()),
            _ => {
                cache
                    .put(&key("/silent"), entry(b"{}"), Duration::from_secs(1))
                    .await
            }
        };
        assert_unavailable(result.expect_err("fails"));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{op} took {took:?}");
        assert!(
            took >= TIMEOUT / 2,
            "{op} gave up suspiciously early: {took:?}"
        );
    }
    silent.abort();
}

#[tokio::test]
async fn ping_answers_when_the_server_is_up() {
    let Some(url) = shared_url() else { return };
    let (_, cache) = cache_at(&url);
    cache.ping().await.expect("PING");
}

#[tokio::test]
async fn invalidation_returns_exactly_the_removed_keys() {
    let Some(url) = shared_url() else { return };
    let (_, cache) = cache_at(&url);
    for k in [
        "/dragonfly-inv/pulls",
        "/dragonfly-inv/pulls?page=2",
        "/dragonfly-inv/issues",
    ] {
        cache
            .put(&key(k), entry(b"[]"), Duration::from_secs(60))
            .await
            .expect("put");
    }
    let mut removed = cache
        .invalidate(&InvalidationScope::prefix("/dragonfly-inv/pulls"))
        .await
        .expect("invalidate");
    removed.sort();
    assert_eq!(
        removed,
        [
            key("/dragonfly-inv/pulls"),
            key("/dragonfly-inv/pulls?page=2")
        ]
    );
    let again = cache
        .invalidate(&InvalidationScope::prefix("/dragonfly-inv/pulls"))
        .await
        .expect("invalidate");
    assert!(again.is_empty(), "nothing left to remove: {again:?}");
}

#[tokio::test]
async fn invalidation_walks_more_keys_than_one_scan_batch() {
    let Some(server) = private_server() else {
        return;
    };
    let (_, cache) = cache_at(&server.url());
    for i in 0..1_200 {
        cache
            .put(
                &key(&format!("/many/{i}")),
                entry(b"{}"),
                Duration::from_secs(60),
            )
            .await
            .expect("put");
    }
    let removed = cache
        .invalidate(&InvalidationScope::prefix("/many/"))
        .await
        .expect("invalidate");
    assert_eq!(removed.len(), 1_200);
    assert_eq!(cache.usage().await.expect("usage").entries, 0);
}

#[tokio::test]
async fn full_invalidation_spares_keys_outside_the_cache_namespace() {
    let Some(server) = private_server() else {
        return;
    };
    let (pool, cache) = cache_at(&server.url());
    let () = raw(
        &pool,
        redis::cmd("SET").arg("chimney-deploys:events").arg("[]"),
    )
    .await;
    cache
        .put(&key("/pulls"), entry(b"[]"), Duration::from_secs(60))
        .await
        .expect("put");
    cache
        .put(
            &key(PIPELINE_SUMMARY_KEY),
            entry(b"{}"),
            Duration::from_secs(60),
        )
        .await
        .expect("put");

    let mut removed = cache
        .invalidate(&InvalidationScope::All)
        .await
        .expect("invalidate");
    removed.sort();
    assert_eq!(removed, [key("/pulls"), key(PIPELINE_SUMMARY_KEY)]);
    let deploys: Option<String> = raw(&pool, redis::cmd("GET").arg("chimney-deploys:events")).await;
    assert_eq!(deploys.as_deref(), Some("[]"));
}

#[tokio::test]
async fn usage_counts_only_cache_entries_and_reports_no_bytes() {
    let Some(server) = private_server() else {
        return;
    };
    let (pool, cache) = cache_at(&server.url());
    let () = raw(&pool, redis::cmd("SET").arg("unrelated").arg("x")).await;
    for k in ["/a", "/b", "/c?page=2"] {
        cache
            .put(&key(k), entry(b"[]"), Duration::from_secs(60))
            .await
            .expect("put");
    }
    let usage = cache.usage().await.expect("usage");
    assert_eq!(usage.entries, 3);
    assert_eq!(usage.bytes, 0);
}

#[tokio::test]
async fn list_keys_pages_through_every_key_with_its_ttl() {
    let Some(server) = private_server() else {
        return;
    };
    let (pool, cache) = cache_at(&server.url());
    for i in 0..25 {
        cache
            .put(
                &key(&format!("/list/{i}")),
                entry(b"{}"),
                Duration::from_secs(120),
            )
            .await
            .expect("put");
    }
    let () = raw(
        &pool,
        redis::cmd("SET")
            .arg(format!("{TEST_PREFIX}/list/forever"))
            .arg("x"),
    )
    .await;
    let () = raw(&pool, redis::cmd("SET").arg("elsewhere").arg("x")).await;

    let mut seen = BTreeMap::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let (next, page) = cache.list_keys(cursor, 10).await.expect("list");
        pages += 1;
        assert!(pages < 100, "SCAN did not finish");
        seen.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 26, "{seen:?}");
    assert_eq!(seen.get(&key("/list/forever")), Some(&None));
    for i in 0..25 {
        let ttl = seen[&key(&format!("/list/{i}"))].expect("has a TTL");
        assert!((100_000..=120_000).contains(&ttl), "TTL {ttl}");
    }
}

#[tokio::test]
async fn the_cache_recovers_when_the_server_comes_back() {
    let Some(mut server) = private_server() else {
        return;
    };
    let (_, cache) = cache_at(&server.url());
    cache
        .put(&key("/before"), entry(b"[]"), Duration::from_secs(60))
        .await
        .expect("put");

    server.kill();
    assert_unavailable(cache.get(&key("/before")).await.expect_err("down"));

    server.start_again();
    // The pool drops the broken connection on its next checkout; bounded
    // retries cover a connection that breaks only on first use.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cache
            .put(&key("/after"), entry(b"[]"), Duration::from_secs(60))
            .await
        {
            Ok(()) => break,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cache never recovered: {err:?}"),
        }
    }
    assert!(cache.get(&key("/after")).await.expect("get").is_some());
}

/// Writes `entry`, encoded as chimney would, straight under `key` of the
/// test namespace, then reads it through the cache and says whether the
/// value is still there afterwards.
async fn read_planted(
    pool: &deadpool_redis::Pool,
    cache: &DragonflyCache,
    key_text: &str,
    value: Vec<u8>,
) -> (Option<crate::ports::CacheHit>, bool) {
    let redis_key = format!("{TEST_PREFIX}{key_text}");
    let () = raw(pool, redis::cmd("SET").arg(&redis_key).arg(value)).await;
    let read = cache.get(&key(key_text)).await.expect("no error");
    let left: i64 = raw(pool, redis::cmd("EXISTS").arg(&redis_key)).await;
    (read, left == 1)
}

#[tokio::test]
async fn a_well_framed_entry_failing_the_upstream_checks_is_a_miss_and_is_removed() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let now = SystemTime::now();
    let planted = |status: u16, headers: &[(&str, &str)], body: &'static [u8]| {
        crate::adapters::dragonfly::wire::encode(&CachedResponse {
            status,
            headers: headers.iter().copied().collect(),
            body: Bytes::from_static(body),
            fetched_at: now,
        })
    };
    for (name, value) in [
        (
            "cookie",
            planted(200, &[("set-cookie", "session=stolen")], b"{}"),
        ),
        (
            "html",
            planted(
                200,
                &[("content-type", "text/html")],
                b"<script>alert(1)</script>",
            ),
        ),
        (
            "redirect",
            planted(302, &[("location", "https://evil.example")], b""),
        ),
        ("server-error", planted(500, &[], b"{}")),
    ] {
        let (read, left) =
            read_planted(&pool, &cache, &format!("/dragonfly-hostile/{name}"), value).await;
        assert!(read.is_none(), "{name} was served");
        assert!(!left, "{name} was not deleted");
    }
}

#[tokio::test]
async fn a_value_larger_than_any_entry_is_a_miss_and_is_removed() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let mut value = vec![1u8];
    value.resize(
        crate::adapters::dragonfly::wire::MAX_ENCODED_LEN + 100,
        b' ',
    );
    let (read, left) = read_planted(&pool, &cache, "/dragonfly-hostile/huge", value).await;
    assert!(read.is_none());
    assert!(!left);
}

#[tokio::test]
async fn an_expired_negative_entry_is_a_miss_and_is_removed() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let cache = cache.with_negative_ttl(Duration::from_secs(30));
    let value = |age: u64| {
        crate::adapters::dragonfly::wire::encode(&CachedResponse {
            status: 404,
            headers: [("content-type", "application/json")].into_iter().collect(),
            body: Bytes::from_static(b"{\"message\":\"Not Found\"}"),
            fetched_at: SystemTime::now() - Duration::from_secs(age),
        })
    };
    let (read, left) = read_planted(&pool, &cache, "/dragonfly-negative/young", value(5)).await;
    assert_eq!(read.expect("a young 404 is served").entry.status, 404);
    assert!(left);
    let (read, left) = read_planted(&pool, &cache, "/dragonfly-negative/old", value(90)).await;
    assert!(read.is_none());
    assert!(!left);
}

#[tokio::test]
async fn namespaces_never_see_each_others_entries() {
    let Some(url) = shared_url() else { return };
    let (pool, ours) = cache_at(&url);
    let theirs = DragonflyCache::new(
        pool.clone(),
        TIMEOUT,
        &crate::domain::CacheNamespace::of_deployment(
            None,
            &crate::domain::RepoName::parse("adapter-test/other").expect("valid"),
        ),
    );
    let key = key("/dragonfly-namespaces/pulls");
    ours.put(&key, entry(b"[1]"), Duration::from_secs(60))
        .await
        .expect("put");
    assert!(theirs.get(&key).await.expect("get").is_none());
    theirs
        .put(&key, entry(b"[2]"), Duration::from_secs(60))
        .await
        .expect("put");
    let hit = ours.get(&key).await.expect("get").expect("still ours");
    assert_eq!(&hit.entry.body[..], b"[1]");
    let removed = theirs
        .invalidate(&InvalidationScope::prefix("/dragonfly-namespaces"))
        .await
        .expect("invalidate");
    assert_eq!(removed, std::slice::from_ref(&key));
    assert!(ours.get(&key).await.expect("get").is_some());
}

#[tokio::test]
async fn a_pool_with_every_connection_busy_is_congested_not_down() {
    let Some(url) = shared_url() else { return };
    let (pool, cache) = cache_at(&url);
    let key = key("/dragonfly-congestion/pulls");
    cache
        .put(&key, entry(b"[1]"), Duration::from_secs(60))
        .await
        .expect("put");

    // Every connection the pool may open, checked out and kept busy.
    let mut held = Vec::new();
    for _ in 0..pool.status().max_size {
        held.push(pool.get().await.expect("a connection"));
    }
    let started = Instant::now();
    let err = cache.get(&key).await.expect_err("no connection is free");
    assert!(
        matches!(err, CacheError::Congested { store: "dragonfly" }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < TIMEOUT * 3,
        "waited {:?}",
        started.elapsed()
    );

    drop(held);
    let hit = cache
        .get(&key)
        .await
        .expect("a free connection")
        .expect("stored");
    assert_eq!(hit.entry.body, Bytes::from_static(b"[1]"));
}
