//! Request helpers for the admin endpoints (deploy events, cache control)
//! and the tokens the tests configure; used by `deploys`, `cache_admin`,
//! `deploy_hook` and `openapi_spec`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chimney::bootstrap::config::Settings;
use reqwest::Method;
use secrecy::SecretString;

use crate::helpers::{TestApp, TestResponse, spawn_app_with};

/// The `DEPLOY_TOKEN` of [`spawn_admin_app`].
pub const DEPLOY_TOKEN: &str = "test-deploy-token-3f9c1e";
/// The `INVALIDATE_TOKEN` of [`spawn_admin_app`].
pub const INVALIDATE_TOKEN: &str = "test-invalidate-token-8a2d4b";

/// Both admin tokens configured, then `configure`.
pub fn with_tokens(settings: &mut Settings) {
    settings.deploy_token = Some(SecretString::from(DEPLOY_TOKEN));
    settings.invalidate_token = Some(SecretString::from(INVALIDATE_TOKEN));
}

/// Spawns chimney with both admin tokens configured.
pub async fn spawn_admin_app() -> TestApp {
    spawn_app_with(with_tokens).await
}

/// Spawns chimney with both admin tokens configured, then `configure`.
pub async fn spawn_admin_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        with_tokens(s);
        configure(s);
    })
    .await
}

/// `Authorization: Bearer {token}`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl TestApp {
    /// `{method} {path}` with `headers` and a body, read to the end.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.address))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"));
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// `POST {path}` with a JSON body and, when given, a bearer token.
    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> TestResponse {
        self.post_raw(path, token, body.to_string()).await
    }

    /// `POST {path}` with `body` sent as is, labelled JSON.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> TestResponse {
        let auth = token.map(bearer);
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        self.send(Method::POST, path, &headers, body).await
    }

    /// `POST /api/deploy/events` with the right token.
    pub async fn post_deploy(&self, body: &serde_json::Value) -> TestResponse {
        self.post_json("/api/deploy/events", Some(DEPLOY_TOKEN), body)
            .await
    }

    /// `POST /api/deploy/events` with the right token, asserting a 200.
    pub async fn record_deploy(&self, body: &serde_json::Value) -> serde_json::Value {
        let response = self.post_deploy(body).await;
        assert_eq!(
            response.status,
            200,
            "deploy event refused: {}",
            response.text()
        );
        response.json()
    }

    /// `GET /api/deploy/status`.
    pub async fn deploy_status(&self) -> TestResponse {
        self.get("/api/deploy/status").await
    }

    /// `GET /api/deploy/status`, asserting a 200, as JSON.
    pub async fn deploy_status_json(&self) -> serde_json::Value {
        let response = self.deploy_status().await;
        assert_eq!(response.status, 200, "status: {}", response.text());
        response.json()
    }

    /// `POST /api/cache/invalidate` with the right token.
    pub async fn invalidate(&self, body: &serde_json::Value) -> TestResponse {
        self.post_json("/api/cache/invalidate", Some(INVALIDATE_TOKEN), body)
            .await
    }

    /// `POST /api/cache/invalidate` of `path`, asserting a 200, as JSON.
    pub async fn invalidate_path(&self, path: &str) -> serde_json::Value {
        let response = self
            .invalidate(&serde_json::json!({ "path": path, "reason": "test" }))
            .await;
        assert_eq!(response.status, 200, "invalidate: {}", response.text());
        response.json()
    }

    /// `POST /api/cache/warm` with the right token and no body.
    pub async fn warm(&self) -> TestResponse {
        let auth = bearer(INVALIDATE_TOKEN);
        self.send(
            Method::POST,
            "/api/cache/warm",
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await
    }

    /// A CORS preflight for `method` on `path` from `origin`, asking for
    /// `Authorization` and `Content-Type`.
    pub async fn preflight(&self, path: &str, origin: &str, method: &str) -> TestResponse {
        self.send(
            Method::OPTIONS,
            path,
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            Bytes::new(),
        )
        .await
    }
}

/// Polls `check` every 20 ms until it holds or `deadline` passes; returns
/// whether it held.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that nothing in `response` (body or headers) contains `secret`.
pub fn assert_no_secret(response: &TestResponse, secret: &str) {
    assert!(
        !response.text().contains(secret),
        "the body repeats a token: {}",
        response.text()
    );
    for (name, value) in &response.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(secret), "header {name} repeats a token");
    }
}
