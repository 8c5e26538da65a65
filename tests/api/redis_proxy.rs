//! A TCP proxy in front of the test Redis that a test can make slow or
//! unreachable, for itself alone: the suite's Redis is shared by tests
//! running in parallel, so pausing the server itself (`CLIENT PAUSE`,
//! `DEBUG SLEEP`) would slow every other test too.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways at once.
    Pass,
    /// Holds every chunk from the client this long before forwarding it:
    /// commands reach Redis late (and still run), answers come late.
    Delay(Duration),
    /// Drops every connection, open ones included: Redis is unreachable.
    Refuse,
}

/// The proxy; stops when dropped.
pub struct RedisProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl RedisProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (a
    /// `redis://` URL; its host and port are used).
    pub async fn start(upstream: &Url) -> Self {
        let target = format!(
            "{}:{}",
            upstream.host_str().expect("a host"),
            upstream.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (mode, watching) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() == Mode::Refuse {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, watching.clone()));
            }
        });
        Self { addr, mode, accept }
    }

    /// `upstream` with the proxy's address in place of the server's (the
    /// database path kept).
    pub fn url(&self, upstream: &Url) -> Url {
        let mut url = upstream.clone();
        url.set_port(Some(self.addr.port())).expect("a port");
        url
    }

    /// Switches what the proxy does, for connections open and new.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(Mode::Refuse);
    }
}

/// Forwards between `client` and `server` until either closes or the mode
/// turns to [`Mode::Refuse`].
async fn relay(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = {
        let mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let current = *mode.borrow();
                if let Mode::Delay(delay) = current {
                    tokio::time::sleep(delay).await;
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let answers = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    let refused = async move {
        while mode.changed().await.is_ok() {
            if *mode.borrow() == Mode::Refuse {
                return;
            }
        }
        // The proxy is gone.
    };
    tokio::select! {
        () = async { tokio::join!(requests, answers); } => {}
        () = refused => {}
    }
}
