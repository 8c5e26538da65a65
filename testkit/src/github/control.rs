//! Faults set over HTTP: the body of `POST /__faults`, for scripts that
//! run the fake as a process (`bench/soak.sh`) and switch its behaviour
//! while it serves. Each form maps onto one of the handle's methods, so a
//! script and a test inject exactly the same misbehaviour.

use std::time::Duration;

use serde::Deserialize;

use super::{ALL, FakeGithub, RateLimit};

/// One fault, as JSON: `{"fault": "<kind>", "path": "<path or *>", ...}`.
/// `path` defaults to every path ([`ALL`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FaultSpec {
    /// A path, a path and query, a pattern, or `*`.
    #[serde(default = "all")]
    pub path: String,
    /// What goes wrong.
    #[serde(flatten)]
    pub fault: FaultKind,
}

fn all() -> String {
    ALL.to_owned()
}

/// The kinds of fault, tagged by `fault`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// `{"fault": "status", "status": 503}`: a GitHub-shaped error.
    Status {
        /// The status answered (100–999).
        status: u16,
    },
    /// `{"fault": "delay", "ms": 2500}`: the normal answer, late.
    Delay {
        /// Milliseconds before the answer starts.
        ms: u64,
    },
    /// `{"fault": "hang"}`: no answer (for an hour).
    Hang,
    /// `{"fault": "rate_limit", "reset_in_secs": 20}`: `403` with
    /// `X-RateLimit-Remaining: 0` and the reset that far ahead.
    RateLimit {
        /// Seconds until the reset.
        reset_in_secs: u64,
    },
    /// `{"fault": "too_many_requests", "retry_after_secs": 20}`: `429`
    /// with `Retry-After`.
    TooManyRequests {
        /// The `Retry-After` in seconds.
        retry_after_secs: u64,
    },
    /// `{"fault": "secondary_forbidden", "retry_after_secs": 20}`: `403`
    /// with `Retry-After`, requests left.
    SecondaryForbidden {
        /// The `Retry-After` in seconds.
        retry_after_secs: u64,
    },
    /// `{"fault": "break_connection"}`: a 200 whose body breaks off and
    /// whose connection is closed.
    BreakConnection,
}

impl FaultSpec {
    /// Reads a `POST /__faults` body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let spec: Self = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if let FaultKind::Status { status } = spec.fault
            && !(100..=999).contains(&status)
        {
            return Err(format!("status {status} is not an HTTP status"));
        }
        Ok(spec)
    }

    /// Applies the fault to `github`, on top of those already set.
    pub fn apply(&self, github: &FakeGithub) {
        let path = self.path.as_str();
        match self.fault {
            FaultKind::Status { status } => github.fail_with(path, status),
            FaultKind::Delay { ms } => github.delay(path, Duration::from_millis(ms)),
            FaultKind::Hang => github.hang(path),
            FaultKind::RateLimit { reset_in_secs } => {
                github.rate_limit(path, RateLimit::Forbidden { reset_in_secs });
            }
            FaultKind::TooManyRequests { retry_after_secs } => {
                github.rate_limit(path, RateLimit::TooManyRequests { retry_after_secs });
            }
            FaultKind::SecondaryForbidden { retry_after_secs } => {
                github.rate_limit(path, RateLimit::SecondaryForbidden { retry_after_secs });
            }
            FaultKind::BreakConnection => github.break_connection(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_the_path_defaults_to_all() {
        let cases = [
            (
                r#"{"fault":"status","status":503}"#,
                FaultKind::Status { status: 503 },
            ),
            (
                r#"{"fault":"delay","ms":2500}"#,
                FaultKind::Delay { ms: 2500 },
            ),
            (r#"{"fault":"hang"}"#, FaultKind::Hang),
            (
                r#"{"fault":"rate_limit","reset_in_secs":20}"#,
                FaultKind::RateLimit { reset_in_secs: 20 },
            ),
            (
                r#"{"fault":"too_many_requests","retry_after_secs":9}"#,
                FaultKind::TooManyRequests {
                    retry_after_secs: 9,
                },
            ),
            (
                r#"{"fault":"secondary_forbidden","retry_after_secs":9}"#,
                FaultKind::SecondaryForbidden {
                    retry_after_secs: 9,
                },
            ),
            (
                r#"{"fault":"break_connection"}"#,
                FaultKind::BreakConnection,
            ),
        ];
        for (body, fault) in cases {
            let spec = FaultSpec::parse(body.as_bytes()).expect(body);
            assert_eq!(spec.fault, fault, "{body}");
            assert_eq!(spec.path, ALL, "{body}");
        }
        let scoped = FaultSpec::parse(br#"{"fault":"hang","path":"/repos/*/*/pulls"}"#)
            .expect("a scoped fault");
        assert_eq!(scoped.path, "/repos/*/*/pulls");
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for body in [
            &br#"{"fault":"status","status":42}"#[..],
            br#"{"fault":"flood"}"#,
            br#"{"fault":"delay"}"#,
            br#"{"fault":"delay","ms":-1}"#,
            b"not json",
        ] {
            let error = FaultSpec::parse(body).expect_err("refused");
            assert!(!error.is_empty());
        }
    }
}
