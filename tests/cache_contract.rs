//! The `CacheStore` conformance suite: backend-independent behaviour every
//! cache tier must show, written once as functions over `&dyn CacheStore`
//! and run against each backend (the object_store `integration.rs` model).
//!
//! The memory backend always runs. The Dragonfly backend runs only when
//! `CHIMNEY_TEST_DRAGONFLY_URL` names a server (Debian's `redis-server`
//! stands in for Dragonfly); otherwise its tests print that they skip.
//!
//! The Dragonfly tests share one server and one cache namespace of their
//! own (`chimney:cache-contract/suite:`), so each contract function uses
//! keys and prefixes no other one touches.
//! The one that must see the whole namespace (full invalidation) takes an
//! exclusive lock; the rest share it.
//!
//! The tiered cache (memory in front of Dragonfly) is a `CacheStore` too,
//! and runs the same suite: memory-only, and with a Dragonfly tier.
//!
//! To add a backend, add a module like `memory` below: one line per
//! contract function.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chimney::domain::{
    CacheKey, CachedResponse, HeaderList, InvalidationScope, PIPELINE_SUMMARY_KEY,
};
use chimney::ports::CacheStore;

const RETAIN: Duration = Duration::from_secs(120);

fn key(text: &str) -> CacheKey {
    CacheKey::from_stored(text.to_owned())
}

/// An entry whose every field is checked by a round trip. The fetch time
/// is whole milliseconds, the resolution a shared store keeps.
fn entry(body: &str) -> Arc<CachedResponse> {
    let headers: HeaderList = [
        ("content-type", "application/json; charset=utf-8"),
        ("etag", "W/\"0123abcd\""),
        ("link", "</api/github/pulls?page=2>; rel=\"next\""),
        ("link", "</api/github/pulls?page=9>; rel=\"last\""),
        ("x-ratelimit-remaining", "4999"),
    ]
    .into_iter()
    .collect();
    Arc::new(CachedResponse {
        status: 200,
        headers,
        body: Bytes::from(body.to_owned()),
        fetched_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_717_000_000_123),
    })
}

async fn put(store: &dyn CacheStore, k: &str, body: &str) {
    store.put(&key(k), entry(body), RETAIN).await.expect("put");
}

async fn is_present(store: &dyn CacheStore, k: &str) -> bool {
    store.get(&key(k)).await.expect("get").is_some()
}

async fn invalidate(store: &dyn CacheStore, scope: InvalidationScope) -> Vec<CacheKey> {
    let mut removed = store.invalidate(&scope).await.expect("invalidate");
    removed.sort();
    removed
}

fn keys(texts: &[&str]) -> Vec<CacheKey> {
    let mut keys: Vec<CacheKey> = texts.iter().copied().map(key).collect();
    keys.sort();
    keys
}

// ----- the contract -----

async fn put_then_get_round_trips(store: &dyn CacheStore) {
    let stored = entry(r#"[{"number":1,"title":"žąsis ✓"}]"#);
    store
        .put(
            &key("/contract/round-trip/pulls?state=open"),
            stored.clone(),
            RETAIN,
        )
        .await
        .expect("put");
    let hit = store
        .get(&key("/contract/round-trip/pulls?state=open"))
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(*hit.entry, *stored);

    let empty = Arc::new(CachedResponse {
        status: 204,
        headers: HeaderList::new(),
        body: Bytes::new(),
        fetched_at: SystemTime::UNIX_EPOCH,
    });
    store
        .put(&key("/contract/round-trip/empty"), empty.clone(), RETAIN)
        .await
        .expect("put");
    let hit = store
        .get(&key("/contract/round-trip/empty"))
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(*hit.entry, *empty);
}

async fn get_of_missing_key_is_none(store: &dyn CacheStore) {
    let read = store
        .get(&key("/contract/missing/never-stored?page=1"))
        .await
        .expect("a miss is not an error");
    assert!(read.is_none());
}

async fn put_overwrites(store: &dyn CacheStore) {
    put(store, "/contract/overwrite/issues", "[1]").await;
    put(store, "/contract/overwrite/issues", "[2]").await;
    let hit = store
        .get(&key("/contract/overwrite/issues"))
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(hit.entry.body, Bytes::from_static(b"[2]"));
}

async fn invalidate_prefix_removes_only_matching_keys(store: &dyn CacheStore) {
    for k in [
        "/contract/prefix/pulls",
        "/contract/prefix/pulls?state=open",
        "/contract/prefix/pulls/12",
        "/contract/prefix/issues?state=open",
        "/contract/prefix/pul",
    ] {
        put(store, k, "[]").await;
    }
    let removed = invalidate(store, InvalidationScope::prefix("/contract/prefix/pulls")).await;
    assert_eq!(
        removed,
        keys(&[
            "/contract/prefix/pulls",
            "/contract/prefix/pulls?state=open",
            "/contract/prefix/pulls/12",
        ])
    );
    assert!(!is_present(store, "/contract/prefix/pulls?state=open").await);
    assert!(is_present(store, "/contract/prefix/issues?state=open").await);
    assert!(is_present(store, "/contract/prefix/pul").await);

    let again = invalidate(store, InvalidationScope::prefix("/contract/prefix/pulls")).await;
    assert!(again.is_empty(), "removed twice: {again:?}");
}

async fn invalidate_treats_glob_characters_literally(store: &dyn CacheStore) {
    let all = [
        "/contract/glob/a",
        "/contract/glob/b",
        "/contract/glob/*star",
        "/contract/glob/?query",
        "/contract/glob/[ab]",
        "/contract/glob/\\back",
        "*contract-glob",
    ];
    for k in all {
        put(store, k, "[]").await;
    }

    let cases = [
        ("*", "*contract-glob"),
        ("/contract/glob/*", "/contract/glob/*star"),
        ("/contract/glob/?", "/contract/glob/?query"),
        ("/contract/glob/[ab]", "/contract/glob/[ab]"),
        ("/contract/glob/\\", "/contract/glob/\\back"),
    ];
    for (prefix, only) in cases {
        let removed = invalidate(store, InvalidationScope::prefix(prefix)).await;
        assert_eq!(removed, keys(&[only]), "prefix {prefix:?}");
    }
    assert!(is_present(store, "/contract/glob/a").await);
    assert!(is_present(store, "/contract/glob/b").await);
}

async fn pipeline_summary_survives_prefix_invalidation_but_not_all(store: &dyn CacheStore) {
    put(store, PIPELINE_SUMMARY_KEY, "{}").await;
    put(store, "/contract/summary/pulls", "[]").await;

    for prefix in ["", "/", "_", "__"] {
        let removed = invalidate(store, InvalidationScope::prefix(prefix)).await;
        assert!(
            !removed.contains(&key(PIPELINE_SUMMARY_KEY)),
            "prefix {prefix:?} removed the summary"
        );
        assert!(is_present(store, PIPELINE_SUMMARY_KEY).await);
    }
    assert!(!is_present(store, "/contract/summary/pulls").await);

    let removed = invalidate(store, InvalidationScope::prefix("/__pipeline_summary__")).await;
    assert_eq!(removed, keys(&[PIPELINE_SUMMARY_KEY]));

    put(store, PIPELINE_SUMMARY_KEY, "{}").await;
    put(store, "/contract/summary/issues", "[]").await;
    let removed = invalidate(store, InvalidationScope::All).await;
    assert!(removed.contains(&key(PIPELINE_SUMMARY_KEY)));
    assert!(removed.contains(&key("/contract/summary/issues")));
    assert!(!is_present(store, PIPELINE_SUMMARY_KEY).await);
    assert!(!is_present(store, "/contract/summary/issues").await);
}

async fn ping_answers(store: &dyn CacheStore) {
    store.ping().await.expect("ping");
}

async fn list_keys_shows_stored_keys_with_their_ttl(store: &dyn CacheStore) {
    put(store, "/contract/list/pulls", "[]").await;
    put(store, "/contract/list/issues", "[]").await;

    let mut seen = BTreeMap::new();
    let mut cursor = 0;
    for _ in 0..10_000 {
        let page = store.list_keys(cursor, 1000).await.expect("list");
        seen.extend(page.keys);
        cursor = page.next_cursor;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "listing never finished");
    for k in ["/contract/list/pulls", "/contract/list/issues"] {
        let ttl = seen
            .get(&key(k))
            .unwrap_or_else(|| panic!("{k} listed"))
            .unwrap_or_else(|| panic!("{k} has a TTL"));
        let retain = RETAIN.as_millis() as i64;
        assert!((retain - 15_000..=retain).contains(&ttl), "{k}: TTL {ttl}");
    }
}

// ----- backends -----
//
// Each backend module lists every contract function once; a new contract
// function is one more name in each list.

mod memory {
    use chimney::adapters::memory::MemoryCache;

    fn store() -> MemoryCache {
        MemoryCache::new(16 * 1024 * 1024)
    }

    /// One test per contract function, each on a fresh store.
    macro_rules! on_memory {
        ($($contract:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $contract() {
                super::$contract(&store()).await;
            }
        )*};
    }

    on_memory!(
        put_then_get_round_trips,
        get_of_missing_key_is_none,
        put_overwrites,
        invalidate_prefix_removes_only_matching_keys,
        invalidate_treats_glob_characters_literally,
        pipeline_summary_survives_prefix_invalidation_but_not_all,
        ping_answers,
        list_keys_shows_stored_keys_with_their_ttl,
    );
}

mod dragonfly {
    use std::time::Duration;

    use chimney::adapters::dragonfly::{DragonflyCache, build_pool};
    use chimney::domain::{CacheNamespace, RepoName};
    use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

    /// The namespace this suite caches in on the shared server.
    pub(super) fn namespace() -> CacheNamespace {
        CacheNamespace::of_deployment(
            None,
            &RepoName::parse("cache-contract/suite").expect("valid"),
        )
    }

    /// Serialises the tests that need the whole shared namespace against
    /// the rest of this binary.
    static NAMESPACE: RwLock<()> = RwLock::const_new(());

    /// Held for the duration of a test; only its lifetime matters.
    pub(super) enum Guard {
        Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
        Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
    }

    /// A cache on the shared test server and the namespace lock, or `None`
    /// after printing why the test skips.
    pub(super) async fn store(exclusive: bool) -> Option<(DragonflyCache, Guard)> {
        let Ok(url) = std::env::var("CHIMNEY_TEST_DRAGONFLY_URL") else {
            println!("skipping: CHIMNEY_TEST_DRAGONFLY_URL not set");
            return None;
        };
        let url = url::Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL");
        let timeout = Duration::from_millis(200);
        let pool = build_pool(&url, timeout).expect("pool builds");
        let guard = if exclusive {
            Guard::Exclusive(NAMESPACE.write().await)
        } else {
            Guard::Shared(NAMESPACE.read().await)
        };
        Some((DragonflyCache::new(pool, timeout, &namespace()), guard))
    }

    /// One test per contract function; `exclusive` ones run alone.
    macro_rules! on_dragonfly {
        ($exclusive:literal: $($contract:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $contract() {
                if let Some((store, _guard)) = store($exclusive).await {
                    super::$contract(&store).await;
                }
            }
        )*};
    }

    on_dragonfly!(false:
        put_then_get_round_trips,
        get_of_missing_key_is_none,
        put_overwrites,
        invalidate_prefix_removes_only_matching_keys,
        invalidate_treats_glob_characters_literally,
        ping_answers,
        list_keys_shows_stored_keys_with_their_ttl,
    );
    on_dragonfly!(true: pipeline_summary_survives_prefix_invalidation_but_not_all);
}

mod tiered {
    use std::sync::Arc;
    use std::time::Duration;

    use chimney::adapters::dragonfly::{
        DragonflyCache, DragonflyInvalidationBus, build_pool, database_of, invalidation_channel,
    };
    use chimney::adapters::memory::MemoryCache;
    use chimney::service::tiered::{RemoteTier, TieredCache};

    fn memory() -> Arc<MemoryCache> {
        Arc::new(MemoryCache::new(16 * 1024 * 1024))
    }

    /// One test per contract function on a memory-only tiered cache.
    macro_rules! on_memory_only {
        ($($contract:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $contract() {
                super::$contract(&TieredCache::memory_only(memory())).await;
            }
        )*};
    }

    on_memory_only!(
        put_then_get_round_trips,
        get_of_missing_key_is_none,
        put_overwrites,
        invalidate_prefix_removes_only_matching_keys,
        invalidate_treats_glob_characters_literally,
        pipeline_summary_survives_prefix_invalidation_but_not_all,
        ping_answers,
        list_keys_shows_stored_keys_with_their_ttl,
    );

    mod with_dragonfly {
        use super::*;

        /// A tiered cache over the shared test server, its Dragonfly tier
        /// in use, plus the namespace lock; `None` after printing why the
        /// test skips.
        async fn store(exclusive: bool) -> Option<(TieredCache, super::super::dragonfly::Guard)> {
            let (_, guard) = super::super::dragonfly::store(exclusive).await?;
            let url = std::env::var("CHIMNEY_TEST_DRAGONFLY_URL").ok()?;
            let url = url::Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL");
            let timeout = Duration::from_millis(200);
            let pool = build_pool(&url, timeout).expect("pool builds");
            let database = database_of(&url).expect("a database number");
            let remote = RemoteTier {
                store: Arc::new(DragonflyCache::new(
                    pool.clone(),
                    timeout,
                    &super::super::dragonfly::namespace(),
                )),
                bus: Arc::new(DragonflyInvalidationBus::new(
                    pool,
                    timeout,
                    invalidation_channel(&super::super::dragonfly::namespace()),
                    "cache-contract",
                    database,
                )),
            };
            let tiered = TieredCache::with_remote(memory(), remote);
            assert!(tiered.probe_once().await, "the test server answers a ping");
            Some((tiered, guard))
        }

        macro_rules! on_tiered_dragonfly {
            ($exclusive:literal: $($contract:ident),* $(,)?) => {$(
                #[tokio::test]
                async fn $contract() {
                    if let Some((store, _guard)) = store($exclusive).await {
                        super::super::$contract(&store).await;
                    }
                }
            )*};
        }

        on_tiered_dragonfly!(false:
            put_then_get_round_trips,
            get_of_missing_key_is_none,
            put_overwrites,
            invalidate_prefix_removes_only_matching_keys,
            invalidate_treats_glob_characters_literally,
            ping_answers,
            list_keys_shows_stored_keys_with_their_ttl,
        );
        on_tiered_dragonfly!(true: pipeline_summary_survives_prefix_invalidation_but_not_all);
    }
}
