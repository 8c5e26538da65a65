//! Test clients for the live surface: signed webhook deliveries
//! (`POST /api/github/webhook`) and a Server-Sent Events reader for
//! `GET /api/events`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use secrecy::SecretString;
use sha2::Sha256;

use crate::helpers::{TestApp, spawn_app_with};
use chimney::bootstrap::config::Settings;

/// The webhook secret of the test apps.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
/// The receiver's path.
pub const WEBHOOK: &str = "/api/github/webhook";

/// Sets the webhook secret (and a short heartbeat) on `settings`.
pub fn with_webhook(settings: &mut Settings) {
    settings.github_webhook_secret = Some(SecretString::from(WEBHOOK_SECRET));
}

/// A chimney with the webhook secret set, after `configure`.
pub async fn spawn_webhook_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        with_webhook(s);
        configure(s);
    })
    .await
}

/// `sha256=…` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A unique delivery id.
pub fn delivery_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The usual payload of `event` for repository `full_name`.
pub fn payload(full_name: &str) -> serde_json::Value {
    serde_json::json!({
        "action": "opened",
        "repository": { "full_name": full_name, "name": full_name.split('/').nth(1) },
        "sender": { "login": "octocat" }
    })
}

impl TestApp {
    /// Posts `body` as delivery `delivery` of `event`, signed with the test
    /// secret.
    pub async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: &serde_json::Value,
    ) -> crate::helpers::TestResponse {
        let body = body.to_string();
        let signature = sign(WEBHOOK_SECRET, body.as_bytes());
        self.send(
            Method::POST,
            WEBHOOK,
            &[
                ("content-type", "application/json"),
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &signature),
            ],
            body,
        )
        .await
    }

    /// Posts a fresh delivery of `event` for this app's repository and
    /// asserts it was accepted (202); returns the answer.
    pub async fn deliver_event(&self, event: &str) -> serde_json::Value {
        let response = self
            .deliver(event, &delivery_id(), &payload(self.repo.as_str()))
            .await;
        assert_eq!(response.status, 202, "{event}: {}", response.text());
        response.json()
    }

    /// Opens `GET /api/events`.
    pub async fn events(&self) -> SseReader {
        let response = self
            .client
            .get(format!("{}/api/events", self.address))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("GET /api/events");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let mut reader = SseReader {
            response,
            buffer: String::new(),
        };
        // The preamble proves the subscription is in place.
        let first = reader.next_frame(Duration::from_secs(5)).await;
        assert!(
            first.as_deref().is_some_and(|f| f.contains(": connected")),
            "no preamble: {first:?}"
        );
        reader
    }
}

/// One event read from the stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `event:`.
    pub name: String,
    /// `data:` lines joined.
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("{} data is not JSON ({e}): {}", self.name, self.data))
    }
}

/// Reads frames from an open event stream.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// The next frame's text (up to the blank line), or `None` when the
    /// stream ended or nothing arrived within `deadline`.
    pub async fn next_frame(&mut self, deadline: Duration) -> Option<String> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `name` within `deadline`, skipping others and
    /// comments.
    pub async fn next_named(&mut self, name: &str, deadline: Duration) -> Option<SseEvent> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if let Some(event) = parse(&frame)
                && event.name == name
            {
                return Some(event);
            }
        }
    }
}

fn parse(frame: &str) -> Option<SseEvent> {
    let mut name = None;
    let mut data = Vec::new();
    for line in frame.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            name = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value);
        }
    }
    Some(SseEvent {
        name: name?,
        data: data.join("\n"),
    })
}
