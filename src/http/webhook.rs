//! `POST /api/github/webhook` (CONTRACT 6, v2): GitHub's webhook
//! deliveries. Checks, in order: the secret is configured (503), a
//! well-formed `X-Hub-Signature-256` is present (401, before any body is
//! read), the body's size (413 from `Content-Length` alone, else read up to
//! 5 MiB within the deadline), the signature over the raw body (401,
//! constant-time), the event and delivery headers (400), then the JSON
//! (400). What the delivery does is `service::webhook`'s. Described in the
//! OpenAPI document by `http::raw_docs`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use poem::error::ReadBodyError;
use poem::http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::problem::{Problem, ProblemType};
use crate::domain::is_valid_delivery_id;
use crate::service::cache_admin::InvalidateError;
use crate::service::webhook::{WebhookDelivery, WebhookOutcome, WebhookService};

/// Largest delivery accepted (GitHub caps payloads at 25 MB, but the events
/// chimney reads are far smaller).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Longest `X-GitHub-Event` accepted; GitHub's names are short words.
const MAX_EVENT_NAME: usize = 64;

const SIGNATURE: &str = "x-hub-signature-256";
const EVENT: &str = "x-github-event";
const DELIVERY: &str = "x-github-delivery";

/// The receiver.
pub struct WebhookEndpoint {
    service: WebhookService,
    secret: Option<SecretString>,
    body_timeout: Duration,
}

impl WebhookEndpoint {
    /// A receiver verifying with `secret` (`GITHUB_WEBHOOK_SECRET`; `None`
    /// or blank answers 503), reading bodies within `body_timeout`.
    pub fn new(
        service: WebhookService,
        secret: Option<SecretString>,
        body_timeout: Duration,
    ) -> Self {
        Self {
            service,
            secret,
            body_timeout,
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
}

impl Endpoint for WebhookEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if req.method() != Method::POST {
            let mut response =
                Problem::method_not_allowed("webhook deliveries are POSTed").into_response();
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Ok(response);
        }
        let Some(secret) = self
            .secret
            .as_ref()
            .filter(|s| !s.expose_secret().trim().is_empty())
        else {
            return Ok(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::EndpointDisabled,
                "this endpoint is disabled: GITHUB_WEBHOOK_SECRET is not set on this instance",
            )
            .into_response());
        };
        let Some(signature) = header(&req, SIGNATURE).and_then(parse_signature) else {
            return Ok(unauthorized());
        };
        let declared =
            header(&req, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_WEBHOOK_BODY_BYTES as u64) {
            return Ok(too_large());
        }
        let read = req.take_body().into_bytes_limit(MAX_WEBHOOK_BODY_BYTES);
        let body = match tokio::time::timeout(self.body_timeout, read).await {
            Err(_) => {
                let mut response = Problem::bad_request(format!(
                    "the request body did not arrive within {} ms",
                    self.body_timeout.as_millis()
                ))
                .into_response();
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Ok(response);
            }
            Ok(Err(ReadBodyError::PayloadTooLarge)) => return Ok(too_large()),
            Ok(Err(_)) => {
                return Ok(
                    Problem::bad_request("the request body could not be read").into_response()
                );
            }
            Ok(Ok(body)) => body,
        };
        if !signature_matches(secret, &body, &signature) {
            return Ok(unauthorized());
        }
        let Some(event) = header(&req, EVENT).filter(|e| is_event_name(e)) else {
            return Ok(
                Problem::bad_request("X-GitHub-Event is missing or is not an event name")
                    .into_response(),
            );
        };
        let delivery = header(&req, DELIVERY);
        if delivery.is_some_and(|id| !is_valid_delivery_id(id)) {
            return Ok(Problem::bad_request(
                "X-GitHub-Delivery must be 1 to 128 letters, digits, '-' or '_'",
            )
            .into_response());
        }
        let repository = if event == "ping" {
            None
        } else {
            match serde_json::from_slice::<Payload>(&body) {
                Ok(payload) => payload.repository.and_then(|r| r.full_name),
                Err(_) => {
                    return Ok(Problem::bad_request(
                        "the payload is not JSON: configure the webhook with content type application/json",
                    )
                    .into_response());
                }
            }
        };
        let outcome = self
            .service
            .receive(WebhookDelivery {
                event,
                delivery,
                repository: repository.as_deref(),
            })
            .await;
        Ok(match outcome {
            Ok(WebhookOutcome::Pong) => {
                json(StatusCode::OK, serde_json::json!({ "event": "ping" }))
            }
            Ok(WebhookOutcome::Repeat) => json(
                StatusCode::OK,
                serde_json::json!({ "event": event, "duplicate": true }),
            ),
            Ok(WebhookOutcome::NotServed { event }) => json(
                StatusCode::ACCEPTED,
                serde_json::json!({ "event": event, "prefixes": [], "evicted": 0 }),
            ),
            Ok(WebhookOutcome::Invalidated {
                event,
                prefixes,
                evicted,
            }) => json(
                StatusCode::ACCEPTED,
                serde_json::json!({ "event": event, "prefixes": prefixes, "evicted": evicted }),
            ),
            Err(error @ InvalidateError::SharedTierUnavailable { .. }) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::SharedTierUnavailable,
                error.to_string(),
            )
            .into_response(),
            Err(error) => {
                tracing::error!(%error, "webhook invalidation refused");
                Problem::internal().into_response()
            }
        })
    }
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The 32 bytes of `sha256=<64 hex digits>`.
fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let hex_digits = value.trim().strip_prefix("sha256=")?;
    if hex_digits.len() != 64 {
        return None;
    }
    hex::decode(hex_digits).ok()
}

/// HMAC-SHA256 of `body` under `secret`, compared in constant time.
fn signature_matches(secret: &SecretString, body: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

fn is_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn unauthorized() -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        ProblemType::Unauthorized,
        "X-Hub-Signature-256 is missing or does not match the body signed with GITHUB_WEBHOOK_SECRET",
    )
    .into_response()
}

fn too_large() -> Response {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProblemType::PayloadTooLarge,
        format!("the request body exceeds {MAX_WEBHOOK_BODY_BYTES} bytes"),
    )
    .into_response()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_parsed_strictly() {
        assert!(parse_signature(&format!("sha256={}", "ab".repeat(32))).is_some());
        assert!(parse_signature(&"ab".repeat(32)).is_none());
        assert!(parse_signature("sha256=zz").is_none());
        assert!(parse_signature(&format!("sha1={}", "ab".repeat(20))).is_none());
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries" page.
        let secret = SecretString::from("It's a Secret to Everybody");
        let signature = parse_signature(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )
        .expect("well formed");
        assert!(signature_matches(&secret, b"Hello, World!", &signature));
        assert!(!signature_matches(&secret, b"Hello, World?", &signature));
    }
}
