//! The JSON message announcing a finished fetch on the
//! `chimney:{namespace}:fetched` channel (fleet single flight), e.g.
//! `{"v":1,"key":"/pulls?state=open","outcome":"stored","origin":"7f3a","db":0}`.
//!
//! Like the invalidation notice it names its publisher's database, because
//! channels are server-wide while locks and entries live in one database.
//! A notice only wakes a waiter, which then reads the shared tier (checked
//! as any Dragonfly entry is) or decides for itself; nothing in it is shown
//! to a client, so a forged one can at worst make a waiter give up early.

use serde::{Deserialize, Serialize};

use crate::domain::CacheKey;
use crate::ports::{FlightNotice, FlightOutcome};

/// The message version this build writes and reads.
const VERSION_1: u8 = 1;

/// Longest key a notice may name: well above any cache key (paths are
/// capped at 2 KiB), far below what could cost a listener anything.
const MAX_KEY_LEN: usize = 8 * 1024;

/// The longest rate-limit wait passed on, as `Retry-After` is capped.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// A flight notice as published: the port's notice plus where it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PublishedFlight {
    pub(super) notice: FlightNotice,
    /// The publishing instance (informational).
    pub(super) origin: String,
    /// The database the publisher caches in; `None` applies to every one.
    pub(super) database: Option<i64>,
}

/// Why a message on the channel was ignored.
#[derive(Debug, thiserror::Error)]
pub(super) enum FlightNoticeError {
    #[error("malformed fetch notice")]
    Malformed(#[from] serde_json::Error),
    #[error("unknown fetch notice version {0}")]
    UnknownVersion(u8),
    #[error("fetch notice names no usable cache key")]
    BadKey,
    #[error("unknown fetch outcome {0:?}")]
    UnknownOutcome(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    v: u8,
    key: String,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(default)]
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    db: Option<i64>,
}

impl PublishedFlight {
    pub(super) fn encode(&self) -> String {
        let (outcome, retry_after) = match self.notice.outcome {
            FlightOutcome::Stored => ("stored", None),
            FlightOutcome::NotStored => ("not-stored", None),
            FlightOutcome::Failed => ("failed", None),
            FlightOutcome::RateLimited { retry_after_secs } => {
                ("rate-limited", Some(retry_after_secs))
            }
        };
        let body = Body {
            v: VERSION_1,
            key: self.notice.key.as_str().to_owned(),
            outcome: outcome.to_owned(),
            retry_after,
            origin: self.origin.clone(),
            db: self.database,
        };
        // A struct of strings and scalars always serialises.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Reads a payload, refusing anything no chimney would publish.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, FlightNoticeError> {
        let body: Body = serde_json::from_slice(payload)?;
        if body.v != VERSION_1 {
            return Err(FlightNoticeError::UnknownVersion(body.v));
        }
        let key_ok = body.key.len() <= MAX_KEY_LEN
            && body.key.starts_with(['/', '_'])
            && !body.key.chars().any(char::is_control);
        if !key_ok {
            return Err(FlightNoticeError::BadKey);
        }
        let outcome = match body.outcome.as_str() {
            "stored" => FlightOutcome::Stored,
            "not-stored" => FlightOutcome::NotStored,
            "failed" => FlightOutcome::Failed,
            "rate-limited" => FlightOutcome::RateLimited {
                retry_after_secs: body
                    .retry_after
                    .unwrap_or(60)
                    .clamp(1, MAX_RETRY_AFTER_SECS),
            },
            _ => return Err(FlightNoticeError::UnknownOutcome(body.outcome)),
        };
        Ok(Self {
            notice: FlightNotice {
                key: CacheKey::from_stored(body.key),
                outcome,
            },
            origin: body.origin,
            database: body.db,
        })
    }

    /// Whether an instance caching in `database` must hear this notice.
    pub(super) fn applies_to(&self, database: i64) -> bool {
        self.database.is_none_or(|db| db == database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(outcome: FlightOutcome) -> PublishedFlight {
        PublishedFlight {
            notice: FlightNotice {
                key: CacheKey::from_stored("/pulls?state=open".to_owned()),
                outcome,
            },
            origin: "blue-1".to_owned(),
            database: Some(3),
        }
    }

    #[test]
    fn a_notice_has_the_documented_shape_and_round_trips() {
        let original = published(FlightOutcome::Stored);
        let payload = original.encode();
        assert_eq!(
            payload,
            r#"{"v":1,"key":"/pulls?state=open","outcome":"stored","origin":"blue-1","db":3}"#
        );
        assert_eq!(
            PublishedFlight::decode(payload.as_bytes()).expect("decodes"),
            original
        );
    }

    #[test]
    fn every_outcome_round_trips() {
        for outcome in [
            FlightOutcome::Stored,
            FlightOutcome::NotStored,
            FlightOutcome::Failed,
            FlightOutcome::RateLimited {
                retry_after_secs: 42,
            },
        ] {
            let original = published(outcome);
            let decoded = PublishedFlight::decode(original.encode().as_bytes()).expect("decodes");
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn a_notice_applies_to_its_own_database_or_to_all_without_one() {
        let notice = published(FlightOutcome::Failed);
        assert!(notice.applies_to(3));
        assert!(!notice.applies_to(4));
        let by_hand =
            PublishedFlight::decode(br#"{"v":1,"key":"/x","outcome":"failed"}"#).expect("decodes");
        assert!(by_hand.applies_to(9999));
    }

    #[test]
    fn hostile_retry_afters_are_clamped() {
        let decode = |text: &str| PublishedFlight::decode(text.as_bytes()).expect("decodes");
        let huge = decode(r#"{"v":1,"key":"/x","outcome":"rate-limited","retry_after":99999999}"#);
        assert_eq!(
            huge.notice.outcome,
            FlightOutcome::RateLimited {
                retry_after_secs: 3600
            }
        );
        let zero = decode(r#"{"v":1,"key":"/x","outcome":"rate-limited","retry_after":0}"#);
        assert_eq!(
            zero.notice.outcome,
            FlightOutcome::RateLimited {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn bad_messages_are_refused() {
        let refused = |text: &[u8]| PublishedFlight::decode(text).is_err();
        assert!(refused(b"not json"));
        assert!(refused(br#"{"v":2,"key":"/x","outcome":"stored"}"#));
        assert!(refused(br#"{"v":1,"key":"lock:/x","outcome":"stored"}"#));
        assert!(refused(br#"{"v":1,"key":"","outcome":"stored"}"#));
        assert!(refused(br#"{"v":1,"key":"/x\n","outcome":"stored"}"#));
        assert!(refused(br#"{"v":1,"key":"/x","outcome":"exploded"}"#));
        assert!(refused(br#"{"v":1,"outcome":"stored"}"#));
        let long = format!(
            r#"{{"v":1,"key":"/{}","outcome":"stored"}}"#,
            "a".repeat(9000)
        );
        assert!(refused(long.as_bytes()));
    }
}
