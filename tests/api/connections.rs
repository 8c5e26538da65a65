//! Connection limits (CONTRACT 2 v2; issue "Bounded under load and
//! faults", item 6): a connection that has not sent complete request
//! headers within the header timeout of opening, or of its previous
//! response, is closed; HTTP/2 allows at most 100 concurrent streams per
//! connection; at most `max_connections` connections are open at once.
//! Spoken over raw sockets, since the point is what a client does between
//! bytes. The timeout is 10 s; these tests shorten it to 300 ms.
//!
//! That running out of file descriptors never spins the CPU is tested on
//! the real binary under a low `RLIMIT_NOFILE` (below), and on the accept
//! loop itself with the failure injected (`bootstrap::server::accept`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};
use crate::raw_http::{closed_within, connect, read_response, send};

/// The header timeout the tests configure.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// Slack for a loaded machine on top of the timeout; far below the 10 s
/// default, so a connection kept open by a missing rule still fails.
const CLOSE_SLACK: Duration = Duration::from_secs(3);

async fn spawn_with_header_timeout() -> TestApp {
    spawn_app_with(|s| s.header_read_timeout = HEADER_TIMEOUT).await
}

fn healthz(port: u16) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
}

/// Asserts the connection is closed by the server within the timeout
/// plus slack, and not before the timeout; returns when it was.
async fn assert_closed_by_the_header_timeout(stream: &mut TcpStream, what: &str) -> Duration {
    let after = closed_within(stream, HEADER_TIMEOUT + CLOSE_SLACK)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{what}: still open after {:?}",
                HEADER_TIMEOUT + CLOSE_SLACK
            )
        });
    // The clock started a little before this call did.
    assert!(
        after + Duration::from_millis(100) >= HEADER_TIMEOUT,
        "{what}: closed after only {after:?}"
    );
    after
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_with_header_timeout().await;
    let mut stream = connect(app.port).await;

    assert_closed_by_the_header_timeout(&mut stream, "a silent connection").await;
}

#[tokio::test]
async fn a_connection_stalling_in_its_request_line_is_closed_after_the_header_timeout() {
    let app = spawn_with_header_timeout().await;
    let mut stream = connect(app.port).await;
    send(&mut stream, b"GET /heal").await;

    assert_closed_by_the_header_timeout(&mut stream, "a stalled request line").await;
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_closed_at_the_deadline_however_often_it_sends() {
    let app = spawn_with_header_timeout().await;
    let stream = connect(app.port).await;
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 50 ms: the whole head would take seconds, and no gap
    // is ever as long as the timeout.
    let head = healthz(app.port).into_bytes();
    let trickle = tokio::spawn(async move {
        for byte in head {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = Instant::now();

    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(HEADER_TIMEOUT + CLOSE_SLACK, reader.read(&mut buf)).await;
    let waited = started.elapsed();
    trickle.abort();

    match outcome {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "the trickled request was answered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("still open after {waited:?}"),
    }
    assert!(
        waited < Duration::from_millis(2_000),
        "closed only after {waited:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_with_header_timeout().await;
    let mut stream = connect(app.port).await;

    // Two requests on one connection, the second well within the timeout
    // of the first response: keep-alive works.
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(HEADER_TIMEOUT / 2).await;
        }
        send(&mut stream, healthz(app.port).as_bytes()).await;
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer on the kept-alive connection");
        assert_eq!(response.status, 200);
    }

    assert_closed_by_the_header_timeout(&mut stream, "an idle keep-alive connection").await;
}

#[tokio::test]
async fn a_response_that_takes_longer_than_the_header_timeout_is_not_cut() {
    let app = spawn_with_header_timeout().await;
    let readme = "/contents/README.md";
    app.github.delay(&app.upstream(readme), HEADER_TIMEOUT * 4);
    let mut stream = connect(app.port).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        app.github_path(readme),
        app.port
    );
    send(&mut stream, request.as_bytes()).await;

    let response = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("the slow response arrives whole");

    assert_eq!(response.status, 200);
    assert_eq!(
        response.body.as_bytes(),
        &app.github.body(&app.upstream(readme))[..]
    );
}

#[tokio::test]
async fn beyond_max_connections_a_connection_waits_until_one_closes() {
    let app = spawn_app_with(|s| s.max_connections = 2).await;
    let mut first = connect(app.port).await;
    let mut second = connect(app.port).await;
    for stream in [&mut first, &mut second] {
        send(stream, healthz(app.port).as_bytes()).await;
        let response = read_response(stream, Duration::from_secs(5))
            .await
            .expect("one of the first two is served");
        assert_eq!(response.status, 200);
    }

    // The third connects (the kernel queues it) but is not served…
    let mut third = connect(app.port).await;
    send(&mut third, healthz(app.port).as_bytes()).await;
    assert!(
        read_response(&mut third, Duration::from_millis(700))
            .await
            .is_none(),
        "a third connection was served while two were open"
    );
    // …while the two open ones still are.
    send(&mut second, healthz(app.port).as_bytes()).await;
    let again = read_response(&mut second, Duration::from_secs(5))
        .await
        .expect("an open connection is still served");
    assert_eq!(again.status, 200);

    // One closes: the third is served.
    drop(first);
    let served = read_response(&mut third, Duration::from_secs(5))
        .await
        .expect("the third is served once a connection closes");
    assert_eq!(served.status, 200);
}

// ---- HTTP/2 ---------------------------------------------------------------

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// One frame: type, flags, stream, payload.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let app = spawn_app_with(|_| {}).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an h2c client");
    let requests = (0..20).map(|_| client.get(format!("{}/healthz", app.address)).send());

    for response in futures::future::join_all(requests).await {
        let response = response.expect("an answer over h2c");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn http2_allows_at_most_100_concurrent_streams_per_connection() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = connect(app.port).await;
    let exchange = async {
        // h2c with prior knowledge: the preface and empty SETTINGS.
        stream.write_all(PREFACE).await.expect("preface");
        stream
            .write_all(&frame(SETTINGS, 0, 0, &[]))
            .await
            .expect("settings");
        // The server's SETTINGS announce the limit.
        let mut limit = None;
        loop {
            let (kind, flags, _, payload) = read_frame(&mut stream).await.expect("a frame");
            if kind == SETTINGS && flags & ACK == 0 {
                for setting in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    if id == SETTINGS_MAX_CONCURRENT_STREAMS {
                        limit = Some(u32::from_be_bytes([
                            setting[2], setting[3], setting[4], setting[5],
                        ]));
                    }
                }
                break;
            }
        }
        assert_eq!(limit, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
        // Acknowledged, the limit is in force. 101 requests whose streams
        // stay open (no END_STREAM: the body never ends): GET /healthz,
        // http, by the static table (RFC 7541 appendix A), then the path
        // as a literal.
        stream
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .expect("ack");
        let mut block = vec![0x82, 0x86, 0x04, 8];
        block.extend_from_slice(b"/healthz");
        let mut burst = Vec::new();
        for n in 0..101u32 {
            burst.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &block));
        }
        stream.write_all(&burst).await.expect("headers");
        // The 101st stream is refused; none before it is.
        loop {
            let (kind, _, id, payload) = read_frame(&mut stream).await.expect("a frame");
            if kind == RST_STREAM {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                assert_eq!(code, REFUSED_STREAM, "stream {id} reset with {code}");
                return id;
            }
            assert_ne!(kind, GOAWAY, "the connection was closed instead");
        }
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s");
    assert_eq!(refused, 201, "the first stream over the limit is the 101st");
}

// ---- file descriptors -----------------------------------------------------

/// The CPU time (user + system) `pid` has used, from `/proc`.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf with a valid name has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// The chimney binary, killed when dropped.
#[cfg(target_os = "linux")]
struct Child(std::process::Child);

#[cfg(target_os = "linux")]
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn running_out_of_file_descriptors_does_not_spin_the_cpu() {
    use std::os::unix::process::CommandExt as _;

    crate::helpers::init_test_process();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chimney"));
    command
        .args(["--addr", &format!("127.0.0.1:{port}"), "--redis", ""])
        .args(["--github-api-url", "http://127.0.0.1:9"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setrlimit(2) is async-signal-safe, and the closure touches
    // nothing else between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Enough to start and serve (about a dozen are open when idle),
            // little enough for 100 connections to exhaust.
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let chimney = Child(command.spawn().expect("chimney starts"));
    let pid = chimney.0.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while client.get(&healthz).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chimney did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // More connections than descriptors: the kernel queues the rest, and
    // every accept fails with EMFILE until some close.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(connect(port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_time(pid);
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let used = cpu_time(pid) - before;

    // A loop retrying at once burns the whole window; backing off, next
    // to nothing.
    assert!(
        used < window / 4,
        "chimney used {used:?} of CPU in {window:?} while out of descriptors"
    );

    // Once connections close, it accepts again.
    drop(held);
    let recovered = async {
        loop {
            if let Ok(response) = client.get(&healthz).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), recovered)
        .await
        .expect("chimney serves again once descriptors are free");
}
