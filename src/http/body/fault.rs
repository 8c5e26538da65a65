//! The mapping of poem-openapi's extraction errors (a rejected token, an
//! unreadable body, a bad query parameter) onto problem responses.

use poem::http::StatusCode;
use poem_openapi::error::{AuthorizationError, ParseRequestPayloadError};

use super::limit::payload_too_large;
use crate::http::auth::{TokenRejected, unauthorized};
use crate::http::problem::{Problem, ProblemType};

/// What went wrong before an operation ran, as the operations report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFault {
    /// 400: the request is malformed; the text says how.
    BadRequest(String),
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 413: the body is over the cap.
    TooLarge,
    /// 503: the endpoint's token is not configured.
    NotConfigured(String),
}

impl RequestFault {
    /// Classifies an extraction error from poem-openapi (security scheme,
    /// body or query parameter). Only texts chimney wrote are passed on:
    /// the detail of an unexpected error is logged, not returned.
    pub fn classify(err: &poem::Error) -> Self {
        if let Some(rejected) = err.downcast_ref::<TokenRejected>() {
            return match rejected {
                TokenRejected::Mismatch => Self::Unauthorized,
                TokenRejected::NotConfigured(_) => Self::NotConfigured(rejected.to_string()),
            };
        }
        if err.is::<AuthorizationError>() {
            return Self::Unauthorized;
        }
        if let Some(parse) = err.downcast_ref::<ParseRequestPayloadError>() {
            return Self::BadRequest(parse.reason.clone());
        }
        if let Some(param) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
            return Self::BadRequest(format!("query parameter {}: {}", param.name, param.reason));
        }
        match err.status() {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            status => {
                tracing::debug!(error = %err, %status, "request refused before the operation ran");
                Self::BadRequest(
                    "the request could not be read; see the OpenAPI document at /api/openapi.json"
                        .to_owned(),
                )
            }
        }
    }

    /// The problem body for this fault.
    pub fn problem(&self) -> Problem {
        match self {
            Self::BadRequest(detail) => Problem::bad_request(detail.clone()),
            Self::Unauthorized => unauthorized(),
            Self::TooLarge => payload_too_large(),
            Self::NotConfigured(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::EndpointDisabled,
                detail.clone(),
            ),
        }
    }
}
