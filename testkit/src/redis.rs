//! `RedisServer`: a private `redis-server` process on a free loopback port,
//! with a working directory of its own, for tests that must kill or restart
//! the shared tier (a crash, an outage) rather than share the suite's
//! server. It saves nothing, so a restarted server comes back empty, and it
//! is killed when the handle is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use url::Url;

/// Names the `redis-server` binary tests run (a path, or a name on `PATH`).
pub const REDIS_SERVER_ENV: &str = "CHIMNEY_TEST_REDIS_SERVER";

/// How long a server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// A `redis-server` owned by one test; killed (SIGKILL) when dropped.
pub struct RedisServer {
    binary: String,
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts the binary [`REDIS_SERVER_ENV`] names, or returns `None`
    /// (after printing why the test skips) when it is unset.
    pub fn from_env() -> Option<Self> {
        let Ok(binary) = std::env::var(REDIS_SERVER_ENV) else {
            println!("skipping: {REDIS_SERVER_ENV} not set");
            return None;
        };
        Some(Self::start(&binary))
    }

    /// Starts `binary` on a free loopback port and waits until it accepts
    /// connections.
    ///
    /// # Panics
    /// When `binary` cannot be run, or no server came up.
    pub fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary Redis dir");
        // Another process may take the port between the probe and the
        // server's bind; a few attempts make that race harmless.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|probe| probe.local_addr())
                .expect("free port")
                .port();
            if let Some(child) = spawn_server(binary, port, &dir) {
                return Self {
                    binary: binary.to_owned(),
                    child,
                    port,
                    dir,
                };
            }
        }
        panic!("could not start a private {binary}");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("redis://127.0.0.1:{}", self.port)).expect("Redis URL")
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    ///
    /// # Panics
    /// When it does not come up again.
    pub fn start_again(&mut self) {
        self.kill();
        self.child = spawn_server(&self.binary, self.port, &self.dir)
            .expect("redis-server restarts on the same port");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `binary` on `port` and waits until it accepts connections; `None`
/// when it exits first (port taken) or is not up within [`READY_WITHIN`].
fn spawn_server(binary: &str, port: u16, dir: &TempDir) -> Option<Child> {
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {binary} ({e}); install redis-server or set {REDIS_SERVER_ENV}")
        });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return None;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Sends `PING` in RESP and returns the reply line.
    fn ping(port: u16) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0u8; 16];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    #[test]
    fn a_private_server_answers_dies_when_killed_and_comes_back_on_its_port() {
        let Some(mut server) = RedisServer::from_env() else {
            return;
        };
        let port = server.port();
        assert_eq!(server.url().as_str(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(ping(port).expect("PING"), "+PONG\r\n");

        server.kill();
        assert!(ping(port).is_err(), "still answering after the kill");

        server.start_again();
        assert_eq!(server.port(), port);
        assert_eq!(ping(port).expect("PING after the restart"), "+PONG\r\n");
    }
}
