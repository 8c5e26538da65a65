//! Bearer authentication of the admin endpoints: the two security schemes
//! in the OpenAPI document (`DeployToken`, `InvalidateToken`), the
//! constant-time check behind them, and the gate that answers 503 when the
//! relevant token is not configured.
//!
//! Order of checks on an admin request: CORS preflight, then "is this
//! endpoint enabled" (503), then the token (401), then the body size and
//! its deadline (413, 400, see `body/limit.rs`), then the body's content
//! (400). The token comes before the body so that a caller without it
//! costs one header check: no body is waited for or read on its behalf,
//! however large a body it announces. Tokens never appear in a response, a
//! log line or an error message; 401 bodies say only that the bearer token
//! is missing or wrong.

use std::sync::Arc;

use poem::http::header::{CONNECTION, WWW_AUTHENTICATE};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{Bearer, BearerAuthorization};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::problem::{Problem, ProblemType};

/// Which admin token guards an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminScope {
    /// `POST /api/deploy/events`, guarded by `DEPLOY_TOKEN`.
    Deploy,
    /// `POST /api/cache/invalidate` and `/api/cache/warm`, guarded by
    /// `INVALIDATE_TOKEN`.
    Invalidate,
}

impl AdminScope {
    /// The environment variable holding the token.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Deploy => "DEPLOY_TOKEN",
            Self::Invalidate => "INVALIDATE_TOKEN",
        }
    }
}

/// The configured admin tokens. `SecretString` keeps them out of `Debug`
/// output, and nothing here ever formats one.
#[derive(Debug, Clone, Default)]
pub struct AdminTokens {
    /// `DEPLOY_TOKEN`; `None` disables deploy ingestion (503).
    pub deploy: Option<SecretString>,
    /// `INVALIDATE_TOKEN`; `None` disables cache control (503).
    pub invalidate: Option<SecretString>,
}

impl AdminTokens {
    fn expected(&self, scope: AdminScope) -> Option<&SecretString> {
        match scope {
            AdminScope::Deploy => self.deploy.as_ref(),
            AdminScope::Invalidate => self.invalidate.as_ref(),
        }
    }

    /// Whether `scope`'s endpoints are enabled.
    pub fn is_configured(&self, scope: AdminScope) -> bool {
        self.expected(scope).is_some()
    }

    /// Checks a presented bearer token for `scope`.
    ///
    /// # Errors
    /// [`TokenRejected::NotConfigured`] when `scope` has no token;
    /// [`TokenRejected::Mismatch`] when `given` is not the token.
    pub fn verify(&self, scope: AdminScope, given: &str) -> Result<(), TokenRejected> {
        let expected = self
            .expected(scope)
            .ok_or(TokenRejected::NotConfigured(scope))?;
        if tokens_match(given.as_bytes(), expected.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(TokenRejected::Mismatch)
        }
    }
}

/// Why a bearer token was not accepted. Neither message mentions a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// The endpoint's token is not configured on this instance.
    #[error("this endpoint is disabled: {} is not set on this instance", .0.variable())]
    NotConfigured(AdminScope),
    /// The token presented is not the configured one.
    #[error("missing or invalid bearer token")]
    Mismatch,
}

impl poem::error::ResponseError for TokenRejected {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Mismatch => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Compares a presented token with the expected one in time that depends
/// only on the expected token's length, never on where the two differ (or
/// on the presented token's content), so response timing reveals nothing
/// about the secret beyond its length.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut equal = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, byte) in expected.iter().enumerate() {
        // Past the end of `given`, compare against 0: the lengths already
        // differ, so the result is false whatever this compares.
        let presented = given.get(i).copied().unwrap_or(0);
        equal &= presented.ct_eq(byte);
    }
    equal.into()
}

/// Proof that a request carried the right token for its scope.
#[derive(Debug, Clone, Copy)]
pub struct Authorized;

/// `Authorization: Bearer $DEPLOY_TOKEN`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_deploy_token")]
pub struct DeployToken(Authorized);

/// `Authorization: Bearer $INVALIDATE_TOKEN`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_invalidate_token")]
pub struct InvalidateToken(Authorized);

async fn check_deploy_token(req: &Request, bearer: Bearer) -> poem::Result<Authorized> {
    check(req, AdminScope::Deploy, &bearer)
}

async fn check_invalidate_token(req: &Request, bearer: Bearer) -> poem::Result<Authorized> {
    check(req, AdminScope::Invalidate, &bearer)
}

/// The tokens come from the request, put there by [`RequireToken`]. An
/// operation reached without the gate finds none and refuses (503): a
/// routing mistake fails closed, never open.
fn check(req: &Request, scope: AdminScope, bearer: &Bearer) -> poem::Result<Authorized> {
    let tokens = req
        .extensions()
        .get::<Arc<AdminTokens>>()
        .ok_or(TokenRejected::NotConfigured(scope))?;
    tokens.verify(scope, &bearer.token)?;
    Ok(Authorized)
}

/// Middleware in front of an admin operation: answers 503 when the scope's
/// token is not configured, 401 when the request does not carry it (both
/// before the body is looked at), and otherwise hands the tokens to the
/// security scheme's checker, which checks again for the operation (and
/// documents the scheme in the OpenAPI document).
pub struct RequireToken {
    scope: AdminScope,
    tokens: Arc<AdminTokens>,
}

impl RequireToken {
    /// A gate for `scope` over the configured `tokens`.
    pub fn new(scope: AdminScope, tokens: Arc<AdminTokens>) -> Self {
        Self { scope, tokens }
    }
}

impl<E: Endpoint> Middleware<E> for RequireToken {
    type Output = RequireTokenEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequireTokenEndpoint {
            inner,
            scope: self.scope,
            tokens: Arc::clone(&self.tokens),
        }
    }
}

/// The endpoint [`RequireToken`] produces.
pub struct RequireTokenEndpoint<E> {
    inner: E,
    scope: AdminScope,
    tokens: Arc<AdminTokens>,
}

impl<E: Endpoint> Endpoint for RequireTokenEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if !self.tokens.is_configured(self.scope) {
            return Ok(not_configured(self.scope).into_response());
        }
        // Every admin operation is a POST. Another method never reaches an
        // operation or has its body read: the route answers it 405, which
        // tells a caller more than a 401 would.
        if req.method() == Method::POST {
            // The same parsing as the security scheme's (`Bearer <token>`).
            let presented = Bearer::from_request(&req).ok();
            let verified = presented
                .as_ref()
                .is_some_and(|bearer| self.tokens.verify(self.scope, &bearer.token).is_ok());
            if !verified {
                return Ok(refused_before_the_body());
            }
        }
        req.extensions_mut().insert(Arc::clone(&self.tokens));
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// `401 Unauthorized`, the same whatever was wrong with the token.
pub fn unauthorized() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        ProblemType::Unauthorized,
        TokenRejected::Mismatch.to_string(),
    )
}

/// The 401 the gate answers without reading the body. `Connection: close`
/// because the body the request announced is still on its way (or never
/// coming): the connection cannot carry another request, and this way
/// the server does not wait for that body to drain.
fn refused_before_the_body() -> Response {
    let mut response = unauthorized().into_response();
    let headers = response.headers_mut();
    headers.insert(
        WWW_AUTHENTICATE,
        poem::http::HeaderValue::from_static(BEARER_CHALLENGE),
    );
    headers.insert(CONNECTION, poem::http::HeaderValue::from_static("close"));
    response
}

/// `503 Service Unavailable`: the scope's token is not configured.
pub fn not_configured(scope: AdminScope) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemType::EndpointDisabled,
        TokenRejected::NotConfigured(scope).to_string(),
    )
}

/// The `WWW-Authenticate` challenge sent with every 401.
pub const BEARER_CHALLENGE: &str = "Bearer";

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AdminTokens {
        AdminTokens {
            deploy: Some(SecretString::from("deploy-secret")),
            invalidate: None,
        }
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match(b"deploy-secret", b"deploy-secret"));
        for given in [
            &b""[..],
            b"deploy-secre",
            b"deploy-secret2",
            b"Deploy-secret",
            b"deploy-secreT",
            b"xxxxxxxxxxxxx",
        ] {
            assert!(!tokens_match(given, b"deploy-secret"), "{given:?}");
        }
        assert!(!tokens_match(b"", b"x"));
    }

    #[test]
    fn verification_is_per_scope() {
        let tokens = tokens();
        assert_eq!(tokens.verify(AdminScope::Deploy, "deploy-secret"), Ok(()));
        assert_eq!(
            tokens.verify(AdminScope::Deploy, "nope"),
            Err(TokenRejected::Mismatch)
        );
        assert_eq!(
            tokens.verify(AdminScope::Invalidate, "deploy-secret"),
            Err(TokenRejected::NotConfigured(AdminScope::Invalidate))
        );
    }

    #[test]
    fn no_message_or_debug_output_reveals_a_token() {
        let tokens = tokens();
        assert!(!format!("{tokens:?}").contains("deploy-secret"));
        for rejection in [
            TokenRejected::Mismatch,
            TokenRejected::NotConfigured(AdminScope::Deploy),
        ] {
            assert!(!rejection.to_string().contains("deploy-secret"));
        }
        assert_eq!(
            not_configured(AdminScope::Invalidate).detail,
            "this endpoint is disabled: INVALIDATE_TOKEN is not set on this instance"
        );
    }
}
