//! The middleware stack in front of the admin endpoints (deploy events,
//! cache invalidation and warming) and the CORS policy of the public reads
//! next to them (deploy status, cache stats). The operations themselves
//! live in `deploy.rs` and `cache.rs`; this file only decides what runs
//! before them, in which order.

use std::sync::Arc;
use std::time::Duration;

use poem::error::{CorsError, MethodNotAllowedError};
use poem::http::header::{AUTHORIZATION, CONTENT_TYPE};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, Response};

use super::auth::{AdminScope, AdminTokens, RequireToken};
use super::body::{ADMIN_BODY_TIMEOUT, BodyLimit, MAX_ADMIN_BODY_BYTES};
use super::problem::{Problem, ProblemType};

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE_S: i32 = 600;

/// Who may call the admin endpoints, and how long their bodies may take.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// The bearer tokens (`DEPLOY_TOKEN`, `INVALIDATE_TOKEN`).
    pub tokens: AdminTokens,
    /// Browser origins allowed by CORS (`CHIMNEY_CORS_ORIGINS`); `*` allows
    /// any.
    pub cors_origins: Vec<String>,
    /// How long an authorised request's body may take to arrive in whole
    /// ([`ADMIN_BODY_TIMEOUT`] unless a test shortens it).
    pub body_timeout: Duration,
}

impl Default for AdminAccess {
    fn default() -> Self {
        Self {
            tokens: AdminTokens::default(),
            cors_origins: Vec::new(),
            body_timeout: ADMIN_BODY_TIMEOUT,
        }
    }
}

/// Builds the guarded endpoints. Cloning the tokens once into an `Arc`
/// shares them between the three admin routes.
pub struct AdminGuard {
    tokens: Arc<AdminTokens>,
    cors_origins: Vec<HeaderValue>,
    any_origin: bool,
    body_timeout: Duration,
}

impl AdminGuard {
    /// A guard for `access`. Origins that are not valid header values are
    /// dropped with a warning (configuration validates them already).
    pub fn new(access: AdminAccess) -> Self {
        let any_origin = access.cors_origins.iter().any(|o| o.trim() == "*");
        let cors_origins = access
            .cors_origins
            .iter()
            .filter(|o| o.trim() != "*")
            .filter_map(|origin| match HeaderValue::from_str(origin.trim()) {
                Ok(value) => Some(value),
                Err(_) => {
                    tracing::warn!(origin = %origin, "ignoring an unusable CORS origin");
                    None
                }
            })
            .collect();
        Self {
            tokens: Arc::new(access.tokens),
            cors_origins,
            any_origin,
            body_timeout: access.body_timeout,
        }
    }

    /// `ep` behind, from the outside in: CORS (preflight answered here),
    /// the token gate (503 when none is configured, 401 when the request
    /// lacks it, both before any of the body is read), then the 64 KiB
    /// body cap (413) and the body's deadline (400). The body's content
    /// (400) is checked by the operation's payload.
    pub fn admin<E: Endpoint + 'static>(
        &self,
        scope: AdminScope,
        ep: E,
    ) -> impl Endpoint<Output = Response> + 'static {
        ep.with(BodyLimit::new(MAX_ADMIN_BODY_BYTES, self.body_timeout))
            .with(RequireToken::new(scope, Arc::clone(&self.tokens)))
            .with(self.cors(&[Method::POST, Method::OPTIONS]))
            .catch_error(cors_refused)
            .catch_error(method_not_allowed)
    }

    /// A public read (`GET`) on an admin path: any origin may read it
    /// (`http::public_cors`), and other methods answer 405.
    pub fn public_read<E: Endpoint + 'static>(
        &self,
        ep: E,
    ) -> impl Endpoint<Output = Response> + 'static {
        ep.catch_error(method_not_allowed).map_to_response()
    }

    fn cors(&self, methods: &[Method]) -> Cors {
        let cors = Cors::new()
            .allow_methods(methods.iter().cloned())
            .allow_headers([AUTHORIZATION, CONTENT_TYPE])
            .max_age(PREFLIGHT_MAX_AGE_S);
        // poem's Cors allows every origin when none is listed, so an empty
        // list has to be spelled as "refuse every origin".
        if self.any_origin {
            cors
        } else if self.cors_origins.is_empty() {
            cors.allow_origins_fn(|_| false)
        } else {
            cors.allow_origins(self.cors_origins.iter().cloned())
        }
    }
}

async fn cors_refused(err: CorsError) -> Response {
    let detail = match err {
        CorsError::OriginNotAllowed => "this origin is not allowed to call this endpoint",
        CorsError::MethodNotAllowed => "this method is not allowed from a browser here",
        CorsError::HeadersNotAllowed => {
            "only the Authorization and Content-Type headers are allowed"
        }
    };
    Problem::new(StatusCode::FORBIDDEN, ProblemType::CorsRefused, detail).into_response()
}

async fn method_not_allowed(_: MethodNotAllowedError) -> Response {
    Problem::method_not_allowed("this method is not allowed on this endpoint").into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use poem::http::Method;
    use poem::{Endpoint, IntoEndpoint, Request};
    use poem_openapi::OpenApiService;
    use secrecy::SecretString;

    use super::*;
    use crate::adapters::memory::MemoryDeployLog;
    use crate::http::DeployApi;
    use crate::service::deploys::DeployService;

    const SECRET: &str = "s3cret-deploy-token-value";

    /// Collects everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    #[tokio::test]
    async fn no_token_reaches_a_response_or_a_log_line() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let service = DeployService::new(Arc::new(MemoryDeployLog::new()));
        let api = OpenApiService::new(DeployApi::new(Arc::new(service)), "test", "1");
        let guard = AdminGuard::new(AdminAccess {
            tokens: AdminTokens {
                deploy: Some(SecretString::from(SECRET)),
                invalidate: None,
            },
            cors_origins: vec!["*".to_owned()],
            body_timeout: ADMIN_BODY_TIMEOUT,
        });
        let endpoint = guard.admin(AdminScope::Deploy, api.into_endpoint());
        let near_miss = format!("{SECRET}x");

        let mut statuses = Vec::new();
        for (token, body) in [
            (SECRET, r#"{"sha":"abc","outcome":"success"}"#),
            (SECRET, r#"{"sha":"abc","outcome":"maybe"}"#),
            (SECRET, "{not json"),
            (near_miss.as_str(), r#"{"sha":"abc","outcome":"success"}"#),
            ("", r#"{"sha":"abc","outcome":"success"}"#),
        ] {
            let request = Request::builder()
                .method(Method::POST)
                .uri_str("/api/deploy/events")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body);
            let response = endpoint.get_response(request).await;
            statuses.push(response.status().as_u16());
            let text = response.into_body().into_string().await.expect("a body");
            assert!(!text.contains(SECRET), "a response repeats a token: {text}");
        }

        assert_eq!(statuses, [200, 400, 400, 401, 401]);
        let logs = logs.text();
        assert!(logs.contains("deploy event recorded"), "nothing was logged");
        assert!(!logs.contains(SECRET), "a log line holds a token: {logs}");
    }
}
