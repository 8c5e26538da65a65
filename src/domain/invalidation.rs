//! Which cache keys an invalidation removes.
//!
//! Matching is a plain string prefix test: glob characters such as `*` or
//! `?` in the prefix are literal, never patterns (the original passed them to
//! SCAN MATCH, so `"*"` wiped everything past the `all` guard).

use super::request::CacheKey;

/// The cache key of the aggregated pipeline summary. Only evicted when
/// named explicitly or by a full invalidation.
pub const PIPELINE_SUMMARY_KEY: &str = "__pipeline_summary__";

/// What an invalidation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationScope {
    /// Every cache key starting with this literal prefix.
    Prefix(String),
    /// Exactly this one cache key (a webhook's "the repository itself",
    /// `/`, which as a prefix would cover everything).
    Exact(String),
    /// Every cache key, the pipeline summary included.
    All,
}

impl InvalidationScope {
    /// The scope for a requested path prefix. `/__pipeline_summary__` and
    /// `__pipeline_summary__` both name the summary key.
    pub fn prefix(path: &str) -> Self {
        let summary_alias = path.strip_prefix('/') == Some(PIPELINE_SUMMARY_KEY);
        if summary_alias {
            Self::Prefix(PIPELINE_SUMMARY_KEY.to_owned())
        } else {
            Self::Prefix(path.to_owned())
        }
    }

    /// True when `key` is covered.
    pub fn matches(&self, key: &CacheKey) -> bool {
        self.matches_str(key.as_str())
    }

    /// True when the key text `key` is covered.
    pub fn matches_str(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix) if key == PIPELINE_SUMMARY_KEY => prefix == PIPELINE_SUMMARY_KEY,
            Self::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Self::Exact(exact) => key == exact,
        }
    }

    /// The literal prefix every covered key starts with (empty for `All`,
    /// the key itself for `Exact`).
    pub fn literal_prefix(&self) -> &str {
        match self {
            Self::All => "",
            Self::Prefix(prefix) | Self::Exact(prefix) => prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CacheKey {
        CacheKey::from_stored(s.to_owned())
    }

    #[test]
    fn a_prefix_covers_every_query_variant() {
        let scope = InvalidationScope::prefix("/pulls");
        assert!(scope.matches(&key("/pulls")));
        assert!(scope.matches(&key("/pulls?state=open")));
        assert!(scope.matches(&key("/pulls/12")));
        assert!(!scope.matches(&key("/issues?state=open")));
    }

    #[test]
    fn glob_characters_are_literal() {
        let star = InvalidationScope::prefix("*");
        assert!(!star.matches(&key("/pulls")));
        assert!(star.matches(&key("*weird")));
        let question = InvalidationScope::prefix("/pull?");
        assert!(!question.matches(&key("/pulls")));
        let class = InvalidationScope::prefix("/[pi]");
        assert!(!class.matches(&key("/pulls")));
    }

    #[test]
    fn the_pipeline_summary_is_only_evicted_by_name_or_all() {
        let summary = key(PIPELINE_SUMMARY_KEY);
        assert!(!InvalidationScope::prefix("/").matches(&summary));
        assert!(!InvalidationScope::prefix("").matches(&summary));
        assert!(!InvalidationScope::prefix("__").matches(&summary));
        assert!(InvalidationScope::prefix("/__pipeline_summary__").matches(&summary));
        assert!(InvalidationScope::prefix("__pipeline_summary__").matches(&summary));
        assert!(InvalidationScope::All.matches(&summary));
    }

    #[test]
    fn an_exact_scope_covers_one_key() {
        let root = InvalidationScope::Exact("/".to_owned());
        assert!(root.matches(&key("/")));
        assert!(!root.matches(&key("/pulls")));
        assert!(!root.matches(&key("/?x=1")));
        assert_eq!(root.literal_prefix(), "/");
    }

    #[test]
    fn all_covers_everything() {
        assert!(InvalidationScope::All.matches(&key("/anything?x=1")));
        assert_eq!(InvalidationScope::All.literal_prefix(), "");
    }
}
