//! CORS for the public reads (CONTRACT 7 v2): every `GET`/`HEAD` that needs
//! no token (health, readiness, version, summary, org repos, deploy status,
//! cache stats, metrics, the proxy) answers a request carrying `Origin`
//! with `Access-Control-Allow-Origin: *`, and a preflight for such a read
//! is answered here. The token-guarded admin endpoints keep their own CORS
//! with the configured origins (`http::admin`); their preflights pass
//! through untouched.

use poem::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use super::routes;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// The middleware; apply it around the whole route tree.
pub struct PublicCors;

impl<E: Endpoint> Middleware<E> for PublicCors {
    type Output = PublicCorsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        PublicCorsEndpoint { inner }
    }
}

/// The endpoint [`PublicCors`] produces.
pub struct PublicCorsEndpoint<E> {
    inner: E,
}

/// Paths whose CORS is the admin endpoints' own.
fn is_admin(path: &str) -> bool {
    routes::ADMIN.contains(&path)
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl<E: Endpoint> Endpoint for PublicCorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let has_origin = req.headers().contains_key(ORIGIN);
        let path = req.uri().path();
        if !has_origin || is_admin(path) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if req.method() == Method::OPTIONS {
            let asks_for_read = req
                .headers()
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .is_some_and(|m| is_read(&m));
            if asks_for_read {
                return Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .header(ACCESS_CONTROL_ALLOW_ORIGIN, "*")
                    .header(ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD")
                    .header(ACCESS_CONTROL_ALLOW_HEADERS, "If-None-Match")
                    .header(ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_S)
                    .finish());
            }
        }
        let read = is_read(req.method());
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        if read && !response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            response
                .headers_mut()
                .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        Ok(response)
    }
}
