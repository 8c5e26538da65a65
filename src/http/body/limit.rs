//! The admin endpoints' body cap: 64 KiB, enforced before anything parses,
//! chunked bodies included.

use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::http::header::CONTENT_LENGTH;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::http::problem::{Problem, ProblemType};

/// Largest request body the admin endpoints read (CONTRACT 5 and 6).
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// `413 Content Too Large`.
pub fn payload_too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProblemType::PayloadTooLarge,
        format!("the request body exceeds {MAX_ADMIN_BODY_BYTES} bytes"),
    )
}

/// Middleware capping request bodies: answers 413 from `Content-Length`
/// alone when it is over the cap, and otherwise reads the body (however it
/// is framed, chunked included) up to the cap before the endpoint sees it.
pub struct BodyLimit {
    max_bytes: usize,
}

impl BodyLimit {
    /// A cap of `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// The endpoint [`BodyLimit`] produces.
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
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
        match req.take_body().into_bytes_limit(self.max_bytes).await {
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
