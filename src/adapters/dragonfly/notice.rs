//! `NoticeBody`: the JSON message announcing an invalidation on the
//! `chimney:invalidate` channel, e.g.
//! `{"v":1,"all":false,"prefix":"/pulls","origin":"blue-7f3a","db":0}`.
//!
//! JSON rather than the binary entry format because the messages are tiny
//! and an operator can publish one by hand with `redis-cli PUBLISH`.
//!
//! Pub/sub channels are server-wide, not per database, so a notice names the
//! database its publisher caches in: deployments sharing one Dragonfly on
//! different databases must not evict each other's entries.

use serde::{Deserialize, Serialize};

use crate::domain::InvalidationScope;

/// The message version this build writes and reads.
const VERSION_1: u8 = 1;

/// An invalidation announced by some chimney instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationNotice {
    /// What to evict.
    pub scope: InvalidationScope,
    /// The announcing instance's id, so an instance can skip its own
    /// announcements. Empty when the message was published by hand.
    pub origin: String,
    /// The database the announcing instance caches in. `None` (a message
    /// published by hand without `db`) applies to every database: evicting
    /// too much only costs an upstream call, evicting too little serves
    /// invalidated data.
    pub database: Option<i64>,
}

/// Why a message on the channel was ignored.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoticeError {
    /// Not JSON of the expected shape.
    #[error("malformed invalidation message")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not know.
    #[error("unknown invalidation message version {0}")]
    UnknownVersion(u8),
    /// `all` is false and there is no prefix, so the scope is unknown.
    #[error("invalidation message has neither a prefix nor all: true")]
    NoScope,
}

#[derive(Debug, Serialize, Deserialize)]
struct NoticeBody {
    v: u8,
    #[serde(default)]
    all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// The prefix names one key exactly. An older reader ignores it and
    /// evicts the whole prefix: too much, never too little.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    exact: bool,
    #[serde(default)]
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    db: Option<i64>,
}

impl InvalidationNotice {
    /// The message payload.
    pub(super) fn encode(&self) -> String {
        let body = NoticeBody {
            v: VERSION_1,
            all: self.scope == InvalidationScope::All,
            prefix: match &self.scope {
                InvalidationScope::All => None,
                InvalidationScope::Prefix(prefix) | InvalidationScope::Exact(prefix) => {
                    Some(prefix.clone())
                }
            },
            exact: matches!(self.scope, InvalidationScope::Exact(_)),
            origin: self.origin.clone(),
            db: self.database,
        };
        // A struct of strings and scalars always serialises.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Reads a payload written by [`InvalidationNotice::encode`] or by hand.
    /// Unknown fields are ignored so a newer writer can add some.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, NoticeError> {
        let body: NoticeBody = serde_json::from_slice(payload)?;
        if body.v != VERSION_1 {
            return Err(NoticeError::UnknownVersion(body.v));
        }
        let scope = match (body.all, body.prefix) {
            (true, _) => InvalidationScope::All,
            (false, Some(key)) if body.exact => InvalidationScope::Exact(key),
            (false, Some(prefix)) => InvalidationScope::prefix(&prefix),
            (false, None) => return Err(NoticeError::NoScope),
        };
        Ok(Self {
            scope,
            origin: body.origin,
            database: body.db,
        })
    }

    /// Whether an instance caching in `database` must apply this notice.
    pub fn applies_to(&self, database: i64) -> bool {
        self.database.is_none_or(|db| db == database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(scope: InvalidationScope) -> InvalidationNotice {
        InvalidationNotice {
            scope,
            origin: "blue-1".to_owned(),
            database: Some(3),
        }
    }

    #[test]
    fn a_prefix_notice_has_the_documented_shape_and_round_trips() {
        let original = notice(InvalidationScope::prefix("/pulls"));
        let payload = original.encode();
        assert_eq!(
            payload,
            r#"{"v":1,"all":false,"prefix":"/pulls","origin":"blue-1","db":3}"#
        );
        let decoded = InvalidationNotice::decode(payload.as_bytes()).expect("decodes");
        assert_eq!(decoded, original);
    }

    #[test]
    fn an_all_notice_round_trips() {
        let original = notice(InvalidationScope::All);
        let decoded = InvalidationNotice::decode(original.encode().as_bytes()).expect("decodes");
        assert_eq!(decoded, original);
    }

    #[test]
    fn an_exact_notice_round_trips() {
        let original = notice(InvalidationScope::Exact("/".to_owned()));
        let payload = original.encode();
        assert!(payload.contains(r#""exact":true"#), "{payload}");
        let decoded = InvalidationNotice::decode(payload.as_bytes()).expect("decodes");
        assert_eq!(decoded, original);
    }

    #[test]
    fn glob_characters_survive_literally() {
        let original = notice(InvalidationScope::prefix("*"));
        let decoded = InvalidationNotice::decode(original.encode().as_bytes()).expect("decodes");
        assert_eq!(decoded.scope, InvalidationScope::Prefix("*".to_owned()));
    }

    #[test]
    fn a_hand_written_message_without_origin_is_accepted() {
        let decoded = InvalidationNotice::decode(br#"{"v":1,"prefix":"/issues","extra":1}"#)
            .expect("decodes");
        assert_eq!(decoded.scope, InvalidationScope::prefix("/issues"));
        assert_eq!(decoded.origin, "");
        assert_eq!(decoded.database, None);
    }

    #[test]
    fn a_notice_applies_only_to_its_own_database() {
        let notice = notice(InvalidationScope::All);
        assert!(notice.applies_to(3));
        assert!(!notice.applies_to(0));
        assert!(!notice.applies_to(4));
    }

    #[test]
    fn a_notice_without_a_database_applies_to_every_database() {
        let decoded = InvalidationNotice::decode(br#"{"v":1,"all":true}"#).expect("decodes");
        assert!(decoded.applies_to(0));
        assert!(decoded.applies_to(9999));
    }

    #[test]
    fn bad_messages_are_refused() {
        assert!(matches!(
            InvalidationNotice::decode(b"not json"),
            Err(NoticeError::Malformed(_))
        ));
        assert!(matches!(
            InvalidationNotice::decode(br#"{"v":2,"all":true}"#),
            Err(NoticeError::UnknownVersion(2))
        ));
        assert!(matches!(
            InvalidationNotice::decode(br#"{"v":1,"all":false}"#),
            Err(NoticeError::NoScope)
        ));
    }
}
