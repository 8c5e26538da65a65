//! The admin endpoints' body cap: 64 KiB, enforced before anything parses,
//! chunked bodies included; and the body's deadline: a body that has not
//! arrived in whole within 10 s of the request's headers is refused, so a
//! caller trickling (or never sending) the body it announced cannot hold a
//! request open. Runs after the token check (`auth.rs`).

use std::time::Duration;

use poem::error::ReadBodyError;
use poem::http::header::{CONNECTION, CONTENT_LENGTH};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::http::problem::{Problem, ProblemType};

/// Largest request body the admin endpoints read (CONTRACT 5 and 6).
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// How long an admin request's body may take to arrive, in whole.
pub const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `413 Content Too Large`.
pub fn payload_too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProblemType::PayloadTooLarge,
        format!("the request body exceeds {MAX_ADMIN_BODY_BYTES} bytes"),
    )
}

/// `400 Bad Request`: the body did not arrive in time. With
/// `Connection: close`, since the rest of it may still be coming.
fn body_too_slow(deadline: Duration) -> Response {
    let mut response = Problem::bad_request(format!(
        "the request body did not arrive within {} ms",
        deadline.as_millis()
    ))
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Middleware capping request bodies: answers 413 from `Content-Length`
/// alone when it is over the cap, and otherwise reads the body (however it
/// is framed, chunked included) up to the cap, within the deadline, before
/// the endpoint sees it.
pub struct BodyLimit {
    max_bytes: usize,
    deadline: Duration,
}

impl BodyLimit {
    /// A cap of `max_bytes`, read within `deadline`.
    pub fn new(max_bytes: usize, deadline: Duration) -> Self {
        Self {
            max_bytes,
            deadline,
        }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
            deadline: self.deadline,
        }
    }
}

/// The endpoint [`BodyLimit`] produces.
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
    deadline: Duration,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Ok(payload_too_large().into_response());
        }
        let read = req.take_body().into_bytes_limit(self.max_bytes);
        let Ok(read) = tokio::time::timeout(self.deadline, read).await else {
            tracing::debug!(deadline = ?self.deadline, "an admin request body did not arrive in time");
            return Ok(body_too_slow(self.deadline));
        };
        match read {
            Ok(bytes) => req.set_body(bytes),
            Err(ReadBodyError::PayloadTooLarge) => {
                return Ok(payload_too_large().into_response());
            }
            Err(error) => {
                tracing::debug!(%error, "could not read an admin request body");
                return Ok(
                    Problem::bad_request("the request body could not be read").into_response()
                );
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
