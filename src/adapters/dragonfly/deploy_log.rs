//! `DragonflyDeployLog`: the deploy history shared by every instance (both
//! blue/green slots) and kept across restarts, as a capped Redis list of
//! JSON events, newest at the head.
//!
//! The list lives at `chimney-deploys:v1:{namespace}` (see `keys.rs`), one
//! per deployment, outside the `chimney:` cache prefix: invalidation SCANs
//! `chimney:{namespace}:*` (and a full invalidation deletes everything
//! there), and `chimney-deploys:…` can never match that pattern because the
//! character after `chimney` is `-`, not `:`.
//!
//! An event is stored once: beside the list, a sorted set
//! (`{key}:seen`) holds the [`DeployKey`]s of the last
//! [`DEPLOY_DEDUP_WINDOW`] events stored, scored by arrival. One Lua script
//! checks the set, pushes what is new and trims both, so no two instances
//! (and no retry of a command whose answer was lost to a timeout) can push
//! an event twice, and a batch of events goes in, in order, in one round
//! trip.
//!
//! Commands used: EVAL (with ZSCORE, ZREVRANGE, ZADD, LPUSH, LTRIM and
//! ZREMRANGEBYRANK on the keys it is given) and LRANGE, all of which
//! Dragonfly implements; the script declares every key it touches, as
//! Dragonfly requires.

use std::future::Future;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::{self, RedisError};
use serde::{Deserialize, Serialize};

use super::command;
use super::error::{Error, STORE};
use super::keys::deploy_log_key;
use crate::domain::{
    CacheNamespace, DEPLOY_DEDUP_WINDOW, DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft,
    DeployKey,
};
use crate::ports::{Appended, DeployLog, DeployLogError, Placement};

/// Version tag written into every stored event. `id` was added without a
/// new version: it is optional, and readers ignore fields they do not know.
const FORMAT_VERSION: u8 = 1;

/// The append script. KEYS: the list, the set of seen keys. ARGV: the
/// history limit, the dedup window, then a (key, JSON) pair per event,
/// oldest first. Answers 1 (stored) or 0 (a repeat) per event.
///
/// The set is scored by arrival (one more than the highest score), so
/// trimming it by rank forgets the oldest keys first.
const APPEND_SCRIPT: &str = r"
local list, seen = KEYS[1], KEYS[2]
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local top = redis.call('ZREVRANGE', seen, 0, 0, 'WITHSCORES')
local score = 0
if top[2] then score = tonumber(top[2]) end
local stored = {}
for i = 3, #ARGV, 2 do
  if redis.call('ZSCORE', seen, ARGV[i]) then
    stored[#stored + 1] = 0
  else
    score = score + 1
    redis.call('ZADD', seen, score, ARGV[i])
    redis.call('LPUSH', list, ARGV[i + 1])
    stored[#stored + 1] = 1
  end
end
redis.call('LTRIM', list, 0, limit - 1)
redis.call('ZREMRANGEBYRANK', seen, 0, -(window + 1))
return stored
";

/// One event as stored in the list.
#[derive(Debug, Serialize, Deserialize)]
struct StoredDeployEvent {
    v: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    sha: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_s: Option<u64>,
    /// RFC 3339 in UTC with nanoseconds, so a round trip is exact.
    deployed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pr_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pr_title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    origin_ips: Vec<String>,
}

impl StoredDeployEvent {
    fn from_event(event: &DeployEvent) -> Self {
        Self {
            v: FORMAT_VERSION,
            id: event.id().map(str::to_owned),
            sha: event.sha().to_owned(),
            slot: event.slot().map(str::to_owned),
            outcome: event.outcome().as_str().to_owned(),
            duration_s: event.duration_s(),
            deployed_at: humantime::format_rfc3339_nanos(event.deployed_at()).to_string(),
            pr_number: event.pr_number(),
            pr_title: event.pr_title().map(str::to_owned),
            origin_ips: event.origin_ips().to_vec(),
        }
    }

    /// Back to a domain event, through the same validation as a request:
    /// a value another version wrote that today's rules refuse is skipped.
    fn into_event(self) -> Option<DeployEvent> {
        if self.v != FORMAT_VERSION {
            return None;
        }
        let draft = DeployEventDraft {
            id: self.id,
            sha: self.sha,
            slot: self.slot,
            outcome: self.outcome,
            duration_s: self.duration_s,
            deployed_at: Some(self.deployed_at),
            pr_number: self.pr_number,
            pr_title: self.pr_title,
            origin_ips: self.origin_ips,
        };
        // `deployed_at` is always present, so the clock is never consulted.
        DeployEvent::parse(draft, SystemTime::UNIX_EPOCH).ok()
    }
}

/// The shared deploy history. Cloning is cheap: the pool is a shared handle.
///
/// Every command, connection checkout included, runs under the command
/// timeout, so a dead server costs a deploy request or a status read at
/// most that long.
#[derive(Debug, Clone)]
pub struct DragonflyDeployLog {
    pool: Pool,
    key: String,
    /// `{key}:seen`, the keys of the events stored lately.
    seen_key: String,
    command_timeout: Duration,
}

impl DragonflyDeployLog {
    /// `namespace`'s history over `pool` (see
    /// [`build_pool`](super::build_pool)). The `v1` in its key names the
    /// JSON format of a stored event; a breaking change gets a new key.
    pub fn new(pool: Pool, namespace: &CacheNamespace, command_timeout: Duration) -> Self {
        Self::with_key(pool, deploy_log_key(namespace), command_timeout)
    }

    /// The history at `key`, which must not start with `chimney:` (that
    /// namespace belongs to the cache and is wiped by invalidation). Tests
    /// sharing one server use distinct keys.
    ///
    /// # Panics
    /// When `key` is inside the cache namespace: a programming error that
    /// would let invalidation delete deploy history.
    pub fn with_key(pool: Pool, key: impl Into<String>, command_timeout: Duration) -> Self {
        let key = key.into();
        assert!(
            !key.starts_with(super::keys::KEY_PREFIX),
            "deploy history must live outside the cache namespace"
        );
        Self {
            pool,
            seen_key: format!("{key}:seen"),
            key,
            command_timeout,
        }
    }

    async fn run<T, F, Fut>(&self, operation: &'static str, command: F) -> Result<T, Error>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        command::single(&self.pool, self.command_timeout, operation, command).await
    }
}

fn unavailable(err: Error) -> DeployLogError {
    DeployLogError::Unavailable {
        store: STORE,
        source: Box::new(err),
    }
}

/// An answer that does not fit the question (a server that is not what
/// it claims to be).
fn garbled(what: &'static str) -> DeployLogError {
    DeployLogError::Unavailable {
        store: STORE,
        source: what.into(),
    }
}

#[async_trait]
impl DeployLog for DragonflyDeployLog {
    async fn append(&self, event: DeployEvent) -> Result<Appended, DeployLogError> {
        let mut appended = self.append_all(vec![event]).await?;
        appended
            .pop()
            .ok_or_else(|| garbled("the append script answered nothing"))
    }

    async fn append_all(&self, events: Vec<DeployEvent>) -> Result<Vec<Appended>, DeployLogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut pairs: Vec<(DeployKey, String)> = Vec::with_capacity(events.len());
        for event in &events {
            let json =
                serde_json::to_string(&StoredDeployEvent::from_event(event)).map_err(|source| {
                    DeployLogError::Unavailable {
                        store: STORE,
                        source: Box::new(source),
                    }
                })?;
            pairs.push((event.key(), json));
        }
        let stored: Vec<i64> = self
            .run("EVAL", |mut conn| {
                let mut eval = redis::cmd("EVAL");
                eval.arg(APPEND_SCRIPT)
                    .arg(2)
                    .arg(&self.key)
                    .arg(&self.seen_key)
                    .arg(DEPLOY_HISTORY_LIMIT)
                    .arg(DEPLOY_DEDUP_WINDOW);
                for (key, json) in &pairs {
                    eval.arg(key.as_str()).arg(json);
                }
                async move { eval.query_async(&mut conn).await }
            })
            .await
            .map_err(unavailable)?;
        if stored.len() != events.len() {
            return Err(garbled(
                "the append script answered for a different number of events",
            ));
        }
        Ok(stored
            .into_iter()
            .map(|flag| Appended {
                placement: Placement::Shared,
                duplicate: flag == 0,
            })
            .collect())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = limit.min(DEPLOY_HISTORY_LIMIT) as isize - 1;
        let raw: Vec<Vec<u8>> = self
            .run("LRANGE", |mut conn| {
                let key = &self.key;
                async move {
                    redis::cmd("LRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(last)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await
            .map_err(unavailable)?;
        Ok(raw
            .into_iter()
            .filter_map(|value| {
                let event = serde_json::from_slice::<StoredDeployEvent>(&value)
                    .ok()
                    .and_then(StoredDeployEvent::into_event);
                if event.is_none() {
                    tracing::warn!(redis.key = %self.key, "skipping an unreadable deploy event");
                }
                event
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::adapters::dragonfly::build_pool;

    const TIMEOUT: Duration = Duration::from_millis(500);
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

    /// A log on the shared test server under a key of its own, or `None`
    /// (after saying so) when `CHIMNEY_TEST_DRAGONFLY_URL` is unset.
    fn shared_log() -> Option<(Pool, DragonflyDeployLog)> {
        let Ok(url) = std::env::var("CHIMNEY_TEST_DRAGONFLY_URL") else {
            println!("skipping: CHIMNEY_TEST_DRAGONFLY_URL not set");
            return None;
        };
        let url = url::Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL");
        let pool = build_pool(&url, TIMEOUT).expect("pool builds");
        let key = format!(
            "chimney-deploys-test:{}:{}:{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            NEXT_KEY.fetch_add(1, Ordering::SeqCst)
        );
        let log = DragonflyDeployLog::with_key(pool.clone(), key, TIMEOUT);
        Some((pool, log))
    }

    fn event(sha: &str, outcome: &str) -> DeployEvent {
        DeployEvent::parse(
            DeployEventDraft {
                sha: sha.to_owned(),
                outcome: outcome.to_owned(),
                ..DeployEventDraft::default()
            },
            UNIX_EPOCH + Duration::from_nanos(1_771_668_780_123_456_789),
        )
        .expect("valid event")
    }

    fn full_event() -> DeployEvent {
        DeployEvent::parse(
            DeployEventDraft {
                id: Some("run 42 \"quoted\"".to_owned()),
                sha: "3051037".to_owned(),
                slot: Some("green".to_owned()),
                outcome: "failure".to_owned(),
                duration_s: Some(47),
                deployed_at: Some("2026-02-21T12:13:00.5+02:00".to_owned()),
                pr_number: Some(321),
                pr_title: Some("quotes \" and \\ and\nnewlines".to_owned()),
                origin_ips: vec!["1.2.3.4".to_owned(), "5.6.7.8".to_owned()],
            },
            UNIX_EPOCH,
        )
        .expect("valid event")
    }

    #[test]
    fn the_history_key_is_per_deployment_and_outside_the_cache_prefix() {
        let repo = crate::domain::RepoName::parse("octo/hello").unwrap();
        let ns = CacheNamespace::of_deployment(None, &repo);
        let key = deploy_log_key(&ns);
        assert!(!key.starts_with(super::super::keys::KEY_PREFIX));
        // Even the widest pattern any build ever scanned, `chimney:*`,
        // cannot match it: the byte after `chimney` differs.
        assert_ne!(key.as_bytes()[7], b':');
        let other = CacheNamespace::of_deployment(Some("octo"), &repo);
        assert_ne!(deploy_log_key(&other), key);
    }

    #[test]
    fn the_stored_format_round_trips_every_field_exactly() {
        for original in [full_event(), event("abc", "success")] {
            let json =
                serde_json::to_string(&StoredDeployEvent::from_event(&original)).expect("encodes");
            let stored: StoredDeployEvent = serde_json::from_str(&json).expect("decodes");
            assert_eq!(stored.into_event(), Some(original), "{json}");
        }
    }

    #[test]
    fn an_unknown_format_version_is_not_read() {
        let json =
            r#"{"v":2,"sha":"abc","outcome":"success","deployed_at":"2026-02-21T10:13:00Z"}"#;
        let stored: StoredDeployEvent = serde_json::from_str(json).expect("decodes");
        assert_eq!(stored.into_event(), None);
    }

    #[test]
    #[should_panic(expected = "outside the cache namespace")]
    fn a_key_inside_the_cache_namespace_is_refused() {
        let url = url::Url::parse("redis://127.0.0.1:1").expect("URL");
        let pool = build_pool(&url, TIMEOUT).expect("pool builds");
        let _ = DragonflyDeployLog::with_key(pool, "chimney:deploys", TIMEOUT);
    }

    #[tokio::test]
    async fn a_dead_server_is_unavailable_within_the_timeout() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let url = url::Url::parse(&format!("redis://127.0.0.1:{port}")).expect("URL");
        let pool = build_pool(&url, Duration::from_millis(200)).expect("pool builds");
        let repo = crate::domain::RepoName::parse("octo/hello").expect("valid");
        let namespace = CacheNamespace::of_deployment(None, &repo);
        let log = DragonflyDeployLog::new(pool, &namespace, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let DeployLogError::Unavailable { store, .. } = log
            .append(event("abc", "success"))
            .await
            .expect_err("nothing listens");
        assert_eq!(store, "dragonfly");
        assert!(log.recent(10).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn events_come_back_newest_first() {
        let Some((_, log)) = shared_log() else { return };
        assert!(log.recent(10).await.expect("recent").is_empty());
        log.append(event("one", "success")).await.expect("append");
        log.append(full_event()).await.expect("append");
        let recent = log.recent(10).await.expect("recent");
        assert_eq!(recent, [full_event(), event("one", "success")]);
        assert_eq!(log.recent(1).await.expect("recent"), [full_event()]);
    }

    #[tokio::test]
    async fn the_list_is_capped_at_fifty() {
        let Some((pool, log)) = shared_log() else {
            return;
        };
        for i in 0..55 {
            log.append(event(&format!("sha{i}"), "success"))
                .await
                .expect("append");
        }
        let mut conn = pool.get().await.expect("connection");
        let len: usize = redis::cmd("LLEN")
            .arg(&log.key)
            .query_async(&mut conn)
            .await
            .expect("LLEN");
        assert_eq!(len, DEPLOY_HISTORY_LIMIT);
        let recent = log.recent(100).await.expect("recent");
        assert_eq!(recent.len(), DEPLOY_HISTORY_LIMIT);
        assert_eq!(recent[0].sha(), "sha54");
        assert_eq!(recent[49].sha(), "sha5");
    }

    #[tokio::test]
    async fn unreadable_entries_are_skipped() {
        let Some((pool, log)) = shared_log() else {
            return;
        };
        log.append(event("good", "success")).await.expect("append");
        let mut conn = pool.get().await.expect("connection");
        let _: i64 = redis::cmd("LPUSH")
            .arg(&log.key)
            .arg("not json")
            .query_async(&mut conn)
            .await
            .expect("LPUSH");
        let recent = log.recent(10).await.expect("recent");
        assert_eq!(recent, [event("good", "success")]);
    }

    #[tokio::test]
    async fn a_repeat_is_pushed_once_and_the_seen_set_is_bounded() {
        let Some((pool, log)) = shared_log() else {
            return;
        };
        let first = log.append(full_event()).await.expect("append");
        assert_eq!(
            first,
            Appended {
                placement: Placement::Shared,
                duplicate: false
            }
        );
        assert!(log.append(full_event()).await.expect("append").duplicate);
        let batch = log
            .append_all(vec![
                event("one", "success"),
                full_event(),
                event("two", "failure"),
                event("one", "success"),
            ])
            .await
            .expect("append_all");
        let duplicates: Vec<bool> = batch.iter().map(|a| a.duplicate).collect();
        assert_eq!(duplicates, [false, true, false, true]);
        assert_eq!(
            log.recent(10).await.expect("recent"),
            [
                event("two", "failure"),
                event("one", "success"),
                full_event()
            ]
        );
        let mut conn = pool.get().await.expect("connection");
        let seen: usize = redis::cmd("ZCARD")
            .arg(&log.seen_key)
            .query_async(&mut conn)
            .await
            .expect("ZCARD");
        assert_eq!(seen, 3);
        assert!(!log.seen_key.starts_with(super::super::keys::KEY_PREFIX));
    }

    #[tokio::test]
    async fn two_logs_on_one_key_share_the_history() {
        let Some((pool, blue)) = shared_log() else {
            return;
        };
        let green = DragonflyDeployLog::with_key(pool, blue.key.clone(), TIMEOUT);
        blue.append(event("from-blue", "success"))
            .await
            .expect("append");
        green
            .append(event("from-green", "failure"))
            .await
            .expect("append");
        let shas: Vec<String> = blue
            .recent(10)
            .await
            .expect("recent")
            .iter()
            .map(|e| e.sha().to_owned())
            .collect();
        assert_eq!(shas, ["from-green", "from-blue"]);
    }
}
