//! Dragonfly over TLS (`rediss://`), against a real `redis-server` serving
//! TLS only, with a CA and server certificate made by each test.
//!
//! Covered: the cache tier and the invalidation channel over TLS with the
//! CA trusted; an untrusted certificate costing no more than a refused
//! connection and reported as a TLS failure without the password; and the
//! binary trusting the bundle `SSL_CERT_FILE` names, or serving from
//! memory when that bundle does not match.
//!
//! The CA reaches the adapter as an explicit [`TlsTrust`], so no test sets
//! a process-wide variable; the binary gets `SSL_CERT_FILE` in its own
//! environment.
//!
//! Tests skip, saying so, unless `CHIMNEY_TEST_REDIS_SERVER` names a
//! `redis-server` built with TLS (Debian's is).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chimney::adapters::dragonfly::{
    DragonflyCache, InvalidationNotice, TlsTrust, build_pool_with_trust, database_of,
    invalidation_channel, publish_invalidation, run_invalidation_listener_with_trust,
};
use chimney::domain::{
    CacheKey, CacheNamespace, CachedResponse, HeaderList, InvalidationScope, RepoName,
};
use chimney::ports::{CacheError, CacheStore, CacheTier};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;
use tokio::io::AsyncReadExt as _;
use url::Url;

/// The production command timeout.
const TIMEOUT: Duration = Duration::from_millis(200);

/// In the URLs, to prove it never reaches an error or a log line.
const PASSWORD: &str = "hunter2-tls-secret";

/// A loaded machine's slack over [`TIMEOUT`] for a failure to surface.
const FAILS_WITHIN: Duration = Duration::from_secs(1);

// ----- certificates -----

/// A CA and a server certificate it signed for 127.0.0.1 and localhost,
/// plus an unrelated CA, as PEM files in a directory of their own.
struct Certificates {
    dir: TempDir,
}

impl Certificates {
    fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, issuer) = certificate_authority("chimney test CA");
        let (other_pem, _) = certificate_authority("some other CA");
        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server names");
        server
            .distinguished_name
            .push(DnType::CommonName, "redis-server");
        server.use_authority_key_identifier_extension = true;
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        for (name, text) in [
            ("ca.pem", ca_pem),
            ("other-ca.pem", other_pem),
            ("server.pem", server_cert.pem()),
            ("server.key", server_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        }
        Self { dir }
    }

    /// The CA that signed the server's certificate.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing the server has.
    fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

// ----- the server -----

/// A `redis-server` accepting TLS only, killed when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
    certs: Certificates,
}

impl TlsRedis {
    /// Starts one with fresh certificates and a password, or `None` (after
    /// printing why) when `CHIMNEY_TEST_REDIS_SERVER` is unset.
    fn start() -> Option<Self> {
        let Some(binary) = std::env::var_os("CHIMNEY_TEST_REDIS_SERVER").filter(|b| !b.is_empty())
        else {
            println!("skipping: CHIMNEY_TEST_REDIS_SERVER not set");
            return None;
        };
        // Another process may take the port between the probe and the
        // server's bind; a few attempts make that race harmless.
        let mut last_log = String::new();
        for _ in 0..5 {
            let certs = Certificates::generate();
            let port = free_port();
            // Both streams: a redis-server without TLS support says so on
            // stderr before its log is set up.
            let log = certs.file("redis.log");
            let out = std::fs::File::create(&log).expect("redis log");
            let err = out.try_clone().expect("redis log");
            let child = Command::new(&binary)
                .args(["--port", "0", "--bind", "127.0.0.1"])
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(certs.file("server.pem"))
                .arg("--tls-key-file")
                .arg(certs.file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(certs.ca())
                .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(certs.dir.path())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot run {binary:?}: {err}"));
            let mut server = Self { child, port, certs };
            if server.wait_until_ready() {
                return Some(server);
            }
            server.kill();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!(
            "redis-server did not start with TLS (is it built with TLS support?); its log:\n{last_log}"
        );
    }

    /// True once the TLS port accepts connections; false if the server
    /// exited (port taken, no TLS support) or took over five seconds.
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

    /// The server's `rediss://` URL, password included.
    fn url(&self) -> Url {
        Url::parse(&format!("rediss://:{PASSWORD}@127.0.0.1:{}/0", self.port)).expect("URL")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

// ----- helpers -----

fn key(text: &str) -> CacheKey {
    CacheKey::from_stored(text.to_owned())
}

fn entry(body: &'static str) -> Arc<CachedResponse> {
    Arc::new(CachedResponse {
        status: 200,
        headers: [("etag", "\"tls\""), ("content-type", "application/json")]
            .into_iter()
            .collect::<HeaderList>(),
        body: Bytes::from_static(body.as_bytes()),
        fetched_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_717_000_000_123),
    })
}

/// The namespace the TLS tests cache and announce in.
fn namespace() -> CacheNamespace {
    CacheNamespace::of_deployment(None, &RepoName::parse("tls-test/cache").expect("valid"))
}

fn cache(url: &Url, trust: &TlsTrust) -> DragonflyCache {
    let pool = build_pool_with_trust(url, TIMEOUT, trust).expect("pool builds");
    DragonflyCache::new(pool, TIMEOUT, &namespace())
}

/// The error's whole chain, one cause per line.
fn chain(err: &CacheError) -> String {
    let mut text = err.to_string();
    let mut next = std::error::Error::source(err);
    while let Some(cause) = next {
        text.push('\n');
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

// ----- the adapter -----

#[tokio::test]
async fn put_then_get_round_trips_over_tls() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    let url = server.url();
    assert_eq!(database_of(&url).expect("database"), 0);
    let cache = cache(&url, &TlsTrust::system_and(server.certs.ca()));

    cache.ping().await.expect("PING over TLS");
    let stored = entry(r#"[{"number":1,"title":"žąsis ✓"}]"#);
    cache
        .put(&key("/tls/pulls?state=open"), stored.clone(), TIMEOUT * 100)
        .await
        .expect("put");
    let hit = cache
        .get(&key("/tls/pulls?state=open"))
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(*hit.entry, *stored);
    assert_eq!(hit.tier, CacheTier::Dragonfly);
}

#[tokio::test]
async fn localhost_is_verified_by_name_too() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    let url = Url::parse(&format!("rediss://:{PASSWORD}@localhost:{}", server.port)).expect("URL");
    let cache = cache(&url, &TlsTrust::system_and(server.certs.ca()));
    cache.ping().await.expect("PING over TLS to localhost");
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_within_the_timeout() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    // The system's roots and a CA of its own: none signed the server's.
    let cache = cache(
        &server.url(),
        &TlsTrust::system_and(server.certs.other_ca()),
    );

    for op in ["ping", "get", "put", "invalidate"] {
        let started = Instant::now();
        let err = match op {
            "ping" => cache.ping().await.err(),
            "get" => cache.get(&key("/tls/untrusted")).await.err(),
            "put" => cache
                .put(&key("/tls/untrusted"), entry("{}"), TIMEOUT * 100)
                .await
                .err(),
            _ => cache
                .invalidate(&InvalidationScope::prefix("/tls/"))
                .await
                .err(),
        }
        .unwrap_or_else(|| panic!("{op} succeeded against an untrusted certificate"));
        let took = started.elapsed();
        assert!(took < FAILS_WITHIN, "{op} took {took:?}");
        assert_reported_as_tls_failure(&err);
    }
}

/// Unavailable, saying the handshake failed and why, without the password.
fn assert_reported_as_tls_failure(err: &CacheError) {
    let CacheError::Unavailable { store, .. } = err else {
        panic!("expected unavailable: {err:?}");
    };
    assert_eq!(*store, "dragonfly");
    let text = chain(err);
    assert!(
        text.contains("Dragonfly TLS handshake failed") && text.contains("UnknownIssuer"),
        "not reported as a TLS failure:\n{text}"
    );
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
}

#[tokio::test]
async fn a_server_without_tls_is_a_tls_failure_not_a_hang() {
    // A plain (non-TLS) listener that answers garbage to the ClientHello.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let plain = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt as _;
            let _ = socket.write_all(b"-ERR plain text here\r\n").await;
        }
    });
    let certs = Certificates::generate();
    let url = Url::parse(&format!("rediss://127.0.0.1:{port}")).expect("URL");
    let cache = cache(&url, &TlsTrust::system_and(certs.ca()));

    let started = Instant::now();
    let err = cache.ping().await.expect_err("PING fails");
    assert!(
        started.elapsed() < FAILS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    let text = chain(&err);
    assert!(text.contains("Dragonfly TLS handshake failed"), "{text}");
    plain.abort();
}

#[tokio::test]
async fn invalidations_are_announced_and_heard_over_tls() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    let url = server.url();
    let trust = TlsTrust::system_and(server.certs.ca());
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let channel = invalidation_channel(&namespace());
    let listener = tokio::spawn(run_invalidation_listener_with_trust(
        url.clone(),
        trust.clone(),
        channel.clone(),
        move |notice: InvalidationNotice| {
            let _ = heard_tx.send(notice);
        },
        stopped,
    ));

    let pool = build_pool_with_trust(&url, TIMEOUT, &trust).expect("pool builds");
    let notice = InvalidationNotice {
        scope: InvalidationScope::prefix("/tls/pulls"),
        origin: "another-instance".to_owned(),
        database: Some(0),
    };
    // Pub/sub drops what is published before the subscription exists, so
    // publish until the server has delivered it to one subscriber.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match publish_invalidation(&pool, TIMEOUT, &channel, &notice).await {
            Ok(receivers) if receivers > 0 => break,
            outcome => assert!(
                Instant::now() < deadline,
                "the listener never heard a PUBLISH over TLS: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("notice heard in time")
        .expect("listener alive");
    assert_eq!(got, notice);

    stop.send(true).expect("listener running");
    tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("listener stops")
        .expect("listener did not panic");
}

// ----- the binary -----

/// chimney on a free port with `CHIMNEY_REDIS` and `SSL_CERT_FILE` in its
/// own environment (and nothing else of ours), killed when dropped.
struct Chimney {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Chimney {
    async fn start(redis: &Url, ssl_cert_file: &Path) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chimney"))
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--github-api-url", "http://127.0.0.1:9"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OTEL_SDK_DISABLED", "true")
            .env("CHIMNEY_REDIS", redis.as_str())
            .env("SSL_CERT_FILE", ssl_cert_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chimney starts");
        // reqwest is built without a bundled provider; plain HTTP needs
        // none, but building the client asks for one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http,
        }
    }

    /// Polls `/healthz` until its `dragonfly` field reads `state`; panics
    /// after ten seconds, or if chimney exits.
    async fn wait_for_dragonfly(&mut self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::from("(no answer)");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let (out, err) = self.output().await;
                panic!("chimney exited ({status}) instead of serving:\n{out}\n{err}");
            }
            if let Ok(response) = self.http.get(format!("{}/healthz", self.base)).send().await {
                assert_eq!(response.status(), 200, "/healthz always answers 200");
                let bytes = response.bytes().await.expect("health body");
                let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON health");
                if body["dragonfly"] == state {
                    return;
                }
                last = body.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dragonfly never became {state:?}; last /healthz: {last}");
    }

    /// Stops chimney and returns what it wrote to stdout and stderr.
    async fn output(&mut self) -> (String, String) {
        let _ = self.child.start_kill();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out).await;
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err).await;
        }
        let _ = self.child.wait().await;
        (out, err)
    }
}

#[tokio::test]
async fn the_binary_trusts_the_bundle_ssl_cert_file_names() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    let mut chimney = Chimney::start(&server.url(), &server.certs.ca()).await;
    chimney.wait_for_dragonfly("connected").await;
    let (out, err) = chimney.output().await;
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "the password leaked"
    );
}

#[tokio::test]
async fn the_binary_serves_from_memory_when_the_bundle_does_not_match() {
    let Some(server) = TlsRedis::start() else {
        return;
    };
    let mut chimney = Chimney::start(&server.url(), &server.certs.other_ca()).await;
    chimney.wait_for_dragonfly("unavailable").await;
    let version = chimney
        .http
        .get(format!("{}/api/version", chimney.base))
        .send()
        .await
        .expect("still serving");
    assert_eq!(version.status(), 200);
    let (out, err) = chimney.output().await;
    assert!(
        out.contains("Dragonfly TLS handshake failed"),
        "the log does not say why:\n{out}\n{err}"
    );
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "the password leaked:\n{out}\n{err}"
    );
}
