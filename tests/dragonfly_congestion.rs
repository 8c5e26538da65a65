//! A Dragonfly pool with every connection busy is this process's own
//! congestion, not an outage (CONTRACT 2): the request that could not get a
//! connection goes without Dragonfly, but the shared tier stays in use for
//! everyone else. Needs `CHIMNEY_TEST_DRAGONFLY_URL`; skips without it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chimney::adapters::dragonfly::{
    DragonflyCache, DragonflyInvalidationBus, build_pool, database_of, invalidation_channel,
};
use chimney::adapters::memory::MemoryCache;
use chimney::domain::{CacheKey, CacheNamespace, CachedResponse, HeaderList, RepoName};
use chimney::ports::{CacheStore, CacheTier};
use chimney::service::health::DragonflyState;
use chimney::service::tiered::{RemoteTier, TieredCache};

const TIMEOUT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_pool_wait_timeout_is_a_miss_but_dragonfly_stays_connected() {
    let Ok(url) = std::env::var("CHIMNEY_TEST_DRAGONFLY_URL") else {
        println!("skipping: CHIMNEY_TEST_DRAGONFLY_URL not set");
        return;
    };
    let url = url::Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL");
    let namespace = CacheNamespace::of_deployment(
        None,
        &RepoName::parse("congestion-test/suite").expect("valid"),
    );
    let pool = build_pool(&url, TIMEOUT).expect("pool builds");
    let dragonfly = DragonflyCache::new(pool.clone(), TIMEOUT, &namespace);
    let remote = RemoteTier {
        store: Arc::new(dragonfly.clone()),
        bus: Arc::new(DragonflyInvalidationBus::new(
            pool.clone(),
            TIMEOUT,
            invalidation_channel(&namespace),
            "congestion-test",
            database_of(&url).expect("a database number"),
        )),
    };
    let tiered = TieredCache::with_remote(Arc::new(MemoryCache::new(1 << 20)), remote);
    assert!(tiered.probe_once().await, "the test server answers a ping");

    // Only in Dragonfly, so a read must ask it.
    let key = CacheKey::from_stored("/congestion/pulls".to_owned());
    let headers: HeaderList = [("content-type", "application/json")].into_iter().collect();
    let entry = CachedResponse::new(200, headers, Bytes::from_static(b"[7]"), SystemTime::now());
    dragonfly
        .put(&key, Arc::new(entry), Duration::from_secs(60))
        .await
        .expect("put");

    // Every connection the pool may open, checked out and kept busy.
    let mut held = Vec::new();
    for _ in 0..pool.status().max_size {
        held.push(pool.get().await.expect("a connection"));
    }
    let miss = tiered.get(&key).await.expect("never an error");
    assert!(miss.is_none(), "no connection was free, so no hit");
    assert_eq!(tiered.dragonfly_state(), DragonflyState::Connected);
    drop(held);

    let hit = tiered
        .get(&key)
        .await
        .expect("never an error")
        .expect("the next read uses Dragonfly");
    assert_eq!(hit.tier, CacheTier::Dragonfly);
    assert_eq!(hit.entry.body, Bytes::from_static(b"[7]"));
}
