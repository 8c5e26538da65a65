//! Test support: the shared server from the environment, and private
//! `redis-server` processes for tests that must own one.

use std::net::TcpListener;
use std::time::Duration;

use chimney_testkit::redis::RedisServer;
use deadpool_redis::Pool;
use deadpool_redis::redis;
use url::Url;

use super::super::{DragonflyCache, build_pool};
use crate::domain::{CacheNamespace, RepoName};

/// The variable naming the server the integration tests may use.
pub const URL_VAR: &str = "CHIMNEY_TEST_DRAGONFLY_URL";

/// The production command timeout.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// The shared test server, or `None` after printing why the test skips.
pub fn shared_url() -> Option<Url> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => {
            Some(Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL"))
        }
        _ => {
            println!("skipping: {URL_VAR} not set");
            None
        }
    }
}

/// The namespace the adapter's tests cache in.
pub fn test_namespace() -> CacheNamespace {
    CacheNamespace::of_deployment(None, &RepoName::parse("adapter-test/cache").expect("valid"))
}

/// The Redis key prefix of [`test_namespace`]'s entries.
pub const TEST_PREFIX: &str = "chimney:adapter-test/cache:";

/// The invalidation channel of [`test_namespace`].
pub const TEST_CHANNEL: &str = "chimney:adapter-test/cache:invalidate";

/// A pool and a cache over `url` with the production timeout.
pub fn cache_at(url: &Url) -> (Pool, DragonflyCache) {
    let pool = build_pool(url, TIMEOUT).expect("pool builds");
    (
        pool.clone(),
        DragonflyCache::new(pool, TIMEOUT, &test_namespace()),
    )
}

/// Runs one raw command, for arranging and inspecting server state.
pub async fn raw<T: redis::FromRedisValue>(pool: &Pool, cmd: &redis::Cmd) -> T {
    let mut conn = pool.get().await.expect("connection");
    cmd.query_async(&mut conn).await.expect("raw command")
}

/// A loopback address nothing listens on.
pub fn closed_port_url() -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    Url::parse(&format!("redis://127.0.0.1:{port}")).expect("URL")
}

/// A private `redis-server` (the suite's shared spawner, from the test
/// doubles crate) on a free loopback port, or `None` (after printing why)
/// when integration tests are not enabled.
pub fn private_server() -> Option<RedisServer> {
    shared_url()?;
    let binary =
        std::env::var("CHIMNEY_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    Some(RedisServer::start(&binary))
}
