//! `admin_response!`: the answers every token-guarded endpoint shares (400,
//! 401 with its challenge, 403, 413 and 503 problems) and the mapping of a
//! [`RequestFault`](super::body::RequestFault) onto them, declared once.
//! Each endpoint supplies its success answers, any extra answers, and the
//! texts the OpenAPI document shows for each status.

/// Declares an admin operation's `ApiResponse` enum and its
/// `bad_request_handler`. The variants come out in the order success, 400,
/// 401, 403, 413, extra, 503, so the generated document lists them so.
macro_rules! admin_response {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident handled by $handler_name:literal as $handler:ident {
            $($success:tt)*
        }
        bad_request: $(#[doc = $bad_request:literal])*
        unauthorized: $(#[doc = $unauthorized:literal])*
        forbidden: $(#[doc = $forbidden:literal])*
        too_large: $(#[doc = $too_large:literal])*
        extra: { $($extra:tt)* }
        disabled: $(#[doc = $disabled:literal])*
    ) => {
        $(#[doc = $doc])*
        #[derive(poem_openapi::ApiResponse)]
        #[oai(bad_request_handler = $handler_name)]
        pub enum $name {
            $($success)*
            $(#[doc = $bad_request])*
            #[oai(status = 400, content_type = "application/problem+json")]
            BadRequest(poem_openapi::payload::Json<$crate::http::problem::Problem>),
            $(#[doc = $unauthorized])*
            #[oai(status = 401, content_type = "application/problem+json")]
            Unauthorized(
                poem_openapi::payload::Json<$crate::http::problem::Problem>,
                /// Always `Bearer`.
                #[oai(header = "WWW-Authenticate")]
                String,
            ),
            $(#[doc = $forbidden])*
            #[oai(status = 403, content_type = "application/problem+json")]
            Forbidden(poem_openapi::payload::Json<$crate::http::problem::Problem>),
            $(#[doc = $too_large])*
            #[oai(status = 413, content_type = "application/problem+json")]
            PayloadTooLarge(poem_openapi::payload::Json<$crate::http::problem::Problem>),
            $($extra)*
            $(#[doc = $disabled])*
            #[oai(status = 503, content_type = "application/problem+json")]
            Disabled(poem_openapi::payload::Json<$crate::http::problem::Problem>),
        }

        fn $handler(err: poem::Error) -> $name {
            use $crate::http::body::RequestFault;
            let fault = RequestFault::classify(&err);
            let problem = poem_openapi::payload::Json(fault.problem());
            match fault {
                RequestFault::BadRequest(_) => $name::BadRequest(problem),
                RequestFault::Unauthorized => $name::Unauthorized(
                    problem,
                    $crate::http::auth::BEARER_CHALLENGE.to_owned(),
                ),
                RequestFault::TooLarge => $name::PayloadTooLarge(problem),
                RequestFault::NotConfigured(_) => $name::Disabled(problem),
            }
        }
    };
}

pub(crate) use admin_response;
