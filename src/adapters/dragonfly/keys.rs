//! How cache keys are named in Dragonfly and how a literal prefix becomes a
//! SCAN MATCH pattern. Pure string work; no I/O here.
//!
//! Every cache entry lives at `chimney:{cache key}`. Anything else chimney
//! stores in Dragonfly (deploy history, …) must live outside `chimney:`,
//! because a full invalidation deletes every key under it.

use crate::domain::CacheKey;

/// The namespace of cache entries.
pub(super) const KEY_PREFIX: &str = "chimney:";

/// The Redis key of a cache entry.
pub(super) fn redis_key(key: &CacheKey) -> String {
    format!("{KEY_PREFIX}{}", key.as_str())
}

/// The cache key text of a Redis key, or `None` when the key is not a
/// cache entry (outside the namespace, or not UTF-8 and so not written by
/// chimney).
pub(super) fn cache_key_text(redis_key: &[u8]) -> Option<&str> {
    std::str::from_utf8(redis_key)
        .ok()?
        .strip_prefix(KEY_PREFIX)
}

/// A SCAN MATCH pattern for every entry whose cache key starts with the
/// literal `prefix`.
///
/// Glob metacharacters in the prefix are backslash-escaped, so a prefix of
/// `"*"` matches keys starting with a star, not every key. Callers still
/// filter what SCAN returns with the domain's matcher: MATCH only narrows
/// the traffic, it is never what decides a deletion.
pub(super) fn match_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(KEY_PREFIX.len() + prefix.len() * 2 + 1);
    pattern.push_str(KEY_PREFIX);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_under_the_chimney_namespace() {
        let key = CacheKey::from_stored("/pulls?state=open".to_owned());
        assert_eq!(redis_key(&key), "chimney:/pulls?state=open");
        assert_eq!(
            cache_key_text(b"chimney:/pulls?state=open"),
            Some("/pulls?state=open")
        );
    }

    #[test]
    fn keys_outside_the_namespace_are_not_cache_keys() {
        assert_eq!(cache_key_text(b"deploys:events"), None);
        assert_eq!(cache_key_text(b"chimney"), None);
        assert_eq!(cache_key_text(b"chimney:\xff"), None);
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(match_pattern(""), "chimney:*");
        assert_eq!(match_pattern("/pulls"), "chimney:/pulls*");
        assert_eq!(match_pattern("*"), r"chimney:\**");
        assert_eq!(match_pattern("/pull?"), r"chimney:/pull\?*");
        assert_eq!(match_pattern("/[pi]"), r"chimney:/\[pi\]*");
        assert_eq!(match_pattern(r"a\b"), r"chimney:a\\b*");
    }

    #[test]
    fn non_ascii_prefixes_pass_through() {
        assert_eq!(match_pattern("/ž"), "chimney:/ž*");
    }
}
