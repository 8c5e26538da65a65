//! Test support: the shared server from the environment, and private
//! `redis-server` processes for tests that must own one.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A `redis-server` owned by one test, killed when dropped.
pub struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    /// Starts a server on a free loopback port, or `None` (after printing
    /// why) when integration tests are not enabled.
    pub fn start() -> Option<Self> {
        shared_url()?;
        // Another process may take the port between our probe and the
        // server's bind; a few attempts make that race harmless.
        for _ in 0..5 {
            let port = {
                let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
                probe.local_addr().expect("addr").port()
            };
            if let Some(process) = Self::start_on(port) {
                return Some(process);
            }
        }
        panic!("could not start a private redis-server");
    }

    fn start_on(port: u16) -> Option<Self> {
        let binary = std::env::var("CHIMNEY_TEST_REDIS_SERVER")
            .unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {binary} ({err}); install redis-server or set CHIMNEY_TEST_REDIS_SERVER"));
        let mut process = Self { child, port };
        process.wait_until_ready().then_some(process)
    }

    /// True once the port accepts connections; false if the server exited
    /// (port taken) or did not come up within five seconds.
    fn wait_until_ready(&mut self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The server's URL.
    pub fn url(&self) -> Url {
        Url::parse(&format!("redis://127.0.0.1:{}", self.port)).expect("URL")
    }

    /// Kills the server, as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        let again = Self::start_on(self.port).expect("redis-server restarts on the same port");
        *self = again;
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
