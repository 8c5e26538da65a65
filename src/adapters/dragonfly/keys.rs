//! How chimney's data is named in Dragonfly, and how a literal prefix
//! becomes a SCAN MATCH pattern. Pure string work; no I/O here.
//!
//! Everything is scoped by the deployment's [`CacheNamespace`] (CONTRACT 4,
//! v2), so deployments for different repositories sharing one database
//! never meet:
//!
//! * cache entries: `chimney:{namespace}:{cache key}`;
//! * fleet single flight: the lock on fetching a key,
//!   `chimney:{namespace}:lock:{cache key}`, and the channel announcing
//!   finished fetches, `chimney:{namespace}:fetched`;
//! * the invalidation channel: `chimney:{namespace}:invalidate`, and the
//!   live-event channel `chimney:{namespace}:events`;
//! * handled webhook deliveries: `chimney-webhook:v1:{namespace}:{id}`;
//! * the deploy history: `chimney-deploys:v1:{namespace}`, outside
//!   `chimney:`, because a full invalidation deletes every key under its
//!   namespace's cache prefix.
//!
//! A namespace never contains `:`, and cache keys start with `/` or `_`,
//! so one namespace's prefix never matches another's keys, and a lock
//! (`lock:…` below the prefix) is never taken for a cache entry.

use crate::domain::{CacheKey, CacheNamespace};

/// The root of every cache key and channel name.
pub(super) const KEY_PREFIX: &str = "chimney:";

/// Where fetch locks live below a namespace's prefix. Proxied keys start
/// with `/` and chimney's own with `_`, so no cache key starts with it.
const LOCK_ROOT: &str = "lock:";

/// The root of deploy history keys; the `v1` names the stored JSON format.
const DEPLOY_LOG_ROOT: &str = "chimney-deploys:v1:";

/// The invalidation channel of `namespace`.
pub fn invalidation_channel(namespace: &CacheNamespace) -> String {
    format!("{KEY_PREFIX}{namespace}:invalidate")
}

/// The channel on which `namespace`'s instances announce finished fetches
/// (fleet single flight).
pub fn flight_channel(namespace: &CacheNamespace) -> String {
    format!("{KEY_PREFIX}{namespace}:fetched")
}

/// The live-event channel of `namespace`.
pub fn events_channel(namespace: &CacheNamespace) -> String {
    format!("{KEY_PREFIX}{namespace}:events")
}

/// The prefix of `namespace`'s handled webhook deliveries, outside
/// `chimney:` like the deploy history (a full invalidation must not forget
/// them).
pub fn webhook_delivery_prefix(namespace: &CacheNamespace) -> String {
    format!("chimney-webhook:v1:{namespace}:")
}

/// The Redis key of `namespace`'s deploy history.
pub fn deploy_log_key(namespace: &CacheNamespace) -> String {
    format!("{DEPLOY_LOG_ROOT}{namespace}")
}

/// The cache keys of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamespacedKeys {
    /// `chimney:{namespace}:`.
    prefix: String,
}

impl NamespacedKeys {
    pub(super) fn new(namespace: &CacheNamespace) -> Self {
        Self {
            prefix: format!("{KEY_PREFIX}{namespace}:"),
        }
    }

    /// The Redis key of a cache entry.
    pub(super) fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// The Redis key of the fleet-wide lock on fetching `key`.
    pub(super) fn lock_key(&self, key: &CacheKey) -> String {
        format!("{}{LOCK_ROOT}{}", self.prefix, key.as_str())
    }

    /// The cache key text of a Redis key, or `None` when the key is not an
    /// entry of this namespace (another namespace's, a fetch lock, or not
    /// UTF-8 and so not written by chimney).
    pub(super) fn cache_key_text<'k>(&self, redis_key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(redis_key)
            .ok()?
            .strip_prefix(self.prefix.as_str())
            .filter(|text| !text.starts_with(LOCK_ROOT))
    }

    /// A SCAN MATCH pattern for every entry of this namespace whose cache
    /// key starts with the literal `prefix`.
    ///
    /// Glob metacharacters are backslash-escaped, in the namespace too, so
    /// a prefix of `"*"` matches keys starting with a star, not every key.
    /// Callers still filter what SCAN returns with the domain's matcher:
    /// MATCH only narrows the traffic, it is never what decides a deletion.
    pub(super) fn match_pattern(&self, prefix: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() * 2 + prefix.len() * 2 + 1);
        for c in self.prefix.chars().chain(prefix.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RepoName;

    fn keys(repo: &str) -> NamespacedKeys {
        NamespacedKeys::new(&namespace(repo))
    }

    fn namespace(repo: &str) -> CacheNamespace {
        CacheNamespace::of_deployment(None, &RepoName::parse(repo).unwrap())
    }

    #[test]
    fn entries_live_under_their_namespace() {
        let keys = keys("Octo/Hello");
        let key = CacheKey::from_stored("/pulls?state=open".to_owned());
        assert_eq!(keys.redis_key(&key), "chimney:octo/hello:/pulls?state=open");
        assert_eq!(
            keys.cache_key_text(b"chimney:octo/hello:/pulls?state=open"),
            Some("/pulls?state=open")
        );
    }

    #[test]
    fn keys_outside_the_namespace_are_not_cache_keys() {
        let keys = keys("octo/hello");
        assert_eq!(keys.cache_key_text(b"chimney-deploys:v1:octo/hello"), None);
        assert_eq!(keys.cache_key_text(b"chimney:/pulls"), None);
        assert_eq!(keys.cache_key_text(b"chimney:octo/hello-2:/pulls"), None);
        assert_eq!(keys.cache_key_text(b"chimney:octo/hello:\xff"), None);
        assert_eq!(keys.cache_key_text(b"chimney:octo/hello:lock:/pulls"), None);
    }

    #[test]
    fn one_namespaces_pattern_never_matches_anothers_keys() {
        // A namespace that is a prefix of another must not match it.
        assert_eq!(keys("octo/hello").match_pattern(""), "chimney:octo/hello:*");
        let org = CacheNamespace::of_deployment(Some("octo"), &RepoName::parse("a/b").unwrap());
        assert_eq!(
            NamespacedKeys::new(&org).match_pattern(""),
            "chimney:octo:*"
        );
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        let keys = keys("o/r");
        assert_eq!(keys.match_pattern("/pulls"), "chimney:o/r:/pulls*");
        assert_eq!(keys.match_pattern("*"), r"chimney:o/r:\**");
        assert_eq!(keys.match_pattern("/pull?"), r"chimney:o/r:/pull\?*");
        assert_eq!(keys.match_pattern("/[pi]"), r"chimney:o/r:/\[pi\]*");
        assert_eq!(keys.match_pattern(r"a\b"), r"chimney:o/r:a\\b*");
        assert_eq!(keys.match_pattern("/ž"), "chimney:o/r:/ž*");
    }

    #[test]
    fn fetch_locks_and_their_channel_are_namespaced() {
        let ns = namespace("Octo/Hello");
        let key = CacheKey::from_stored("/pulls?state=open".to_owned());
        assert_eq!(
            NamespacedKeys::new(&ns).lock_key(&key),
            "chimney:octo/hello:lock:/pulls?state=open"
        );
        assert_eq!(flight_channel(&ns), "chimney:octo/hello:fetched");
    }

    #[test]
    fn the_channel_and_deploy_history_are_namespaced_outside_the_cache_prefix() {
        let ns = namespace("octo/hello");
        assert_eq!(invalidation_channel(&ns), "chimney:octo/hello:invalidate");
        let history = deploy_log_key(&ns);
        assert_eq!(history, "chimney-deploys:v1:octo/hello");
        assert!(!history.starts_with(KEY_PREFIX));
        assert_eq!(keys("octo/hello").cache_key_text(history.as_bytes()), None);
    }
}
