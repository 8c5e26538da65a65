//! HTTP/1.1 spoken byte by byte over a plain `TcpStream`, for the tests
//! about what a client does between bytes: stalling in the middle of a
//! request line, announcing a body and never sending it, holding a
//! connection open. A real client library would never let a test do that.
//! Every read is bounded by a deadline.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response: status, lower-cased headers, body (by
/// `Content-Length`).
#[derive(Debug)]
pub struct RawExchange {
    /// HTTP status.
    pub status: u16,
    /// Header pairs, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl RawExchange {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback connection to `port`.
pub async fn connect(port: u16) -> TcpStream {
    tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .expect("connect within 5 s")
    .expect("connect to chimney")
}

/// Writes `bytes`; a failure (the server already closed) is ignored, since
/// what the server answered is what the tests look at.
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// Reads one response (head, then `Content-Length` bytes of body) within
/// `deadline`; `None` when none arrives in time or the connection closes
/// first.
pub async fn read_response(stream: &mut TcpStream, deadline: Duration) -> Option<RawExchange> {
    tokio::time::timeout(deadline, read_one(stream))
        .await
        .ok()
        .flatten()
}

async fn read_one(stream: &mut TcpStream) -> Option<RawExchange> {
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(RawExchange {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// How long the server took to close the connection (end of stream or a
/// reset), discarding anything it sends; `None` when it is still open
/// after `deadline`.
pub async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    let until_closed = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, until_closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// `POST {path}` headers announcing a JSON body of `length` bytes, with
/// `Authorization: Bearer {token}` when a token is given.
pub fn post_head(port: u16, path: &str, token: Option<&str>, length: usize) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    )
}
