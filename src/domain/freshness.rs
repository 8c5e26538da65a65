//! How long a cached response stays fresh, and what an old one is still
//! good for.

use std::time::Duration;

use super::request::CacheKey;

/// How long past its TTL a stale entry may still be served when GitHub
/// fails (stale-if-error), and how long stores keep it for free ETag
/// revalidation.
pub const STALE_IF_ERROR_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// How long past its TTL an entry is served at once while one background
/// fetch revalidates it (stale-while-revalidate), unless configured.
pub const DEFAULT_STALE_WHILE_REVALIDATE: Duration = Duration::from_secs(60);

/// TTL of a path that matches no rule.
const FALLBACK_TTL: Duration = Duration::from_secs(30);

/// One TTL rule: applies when the cache key's path contains `path` and, if
/// given, its normalised query contains `query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlRule {
    /// Substring of the GitHub path.
    pub path: String,
    /// Substring of the normalised query, when the rule depends on it.
    pub query: Option<String>,
    /// How long a matching response stays fresh.
    pub ttl: Duration,
}

impl TtlRule {
    fn matches(&self, key: &CacheKey) -> bool {
        key.path().contains(&self.path)
            && self
                .query
                .as_deref()
                .is_none_or(|q| key.query().contains(q))
    }
}

/// Ordered TTL rules; the first match wins, and a path matching none gets
/// 30 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlPolicy {
    rules: Vec<TtlRule>,
}

impl TtlPolicy {
    /// A policy from explicit rules, in priority order.
    pub fn new(rules: Vec<TtlRule>) -> Self {
        Self { rules }
    }

    /// The TTL for a cache key.
    pub fn ttl_for(&self, key: &CacheKey) -> Duration {
        self.rules
            .iter()
            .find(|r| r.matches(key))
            .map_or(FALLBACK_TTL, |r| r.ttl)
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[TtlRule] {
        &self.rules
    }
}

impl Default for TtlPolicy {
    /// Workflow runs change fast, closed PRs rarely, issues in between.
    fn default() -> Self {
        let rule = |path: &str, query: Option<&str>, secs| TtlRule {
            path: path.to_owned(),
            query: query.map(str::to_owned),
            ttl: Duration::from_secs(secs),
        };
        Self::new(vec![
            rule("/actions/runs", None, 30),
            rule("/pulls", Some("state=closed"), 5 * 60),
            rule("/issues", None, 2 * 60),
        ])
    }
}

/// What an entry of a given age is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Younger than its TTL: serve without asking GitHub.
    Fresh,
    /// Past its TTL but within the stale-if-error window: revalidate, and
    /// serve it if GitHub fails.
    Stale,
    /// Too old to serve; its ETag may still save a full download.
    TooOld,
}

impl Freshness {
    /// Classifies an entry of age `age` under `ttl`.
    pub fn at(age: Duration, ttl: Duration) -> Self {
        if age < ttl {
            Self::Fresh
        } else if age <= STALE_IF_ERROR_WINDOW {
            Self::Stale
        } else {
            Self::TooOld
        }
    }
}

/// How long a store should keep an entry with `ttl`: the TTL plus the stale
/// window, so stale entries stay available for revalidation.
pub fn retention(ttl: Duration) -> Duration {
    ttl + STALE_IF_ERROR_WINDOW
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GithubPath, NormalisedQuery};

    fn key(path: &str, query: &str) -> CacheKey {
        CacheKey::for_request(
            &GithubPath::parse(path).unwrap(),
            &NormalisedQuery::parse(query),
        )
    }

    #[test]
    fn default_policy_follows_the_contract() {
        let p = TtlPolicy::default();
        assert_eq!(
            p.ttl_for(&key("/actions/runs", "per_page=10")),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.ttl_for(&key("/pulls", "state=closed&per_page=10")),
            Duration::from_secs(300)
        );
        assert_eq!(
            p.ttl_for(&key("/pulls", "state=open")),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.ttl_for(&key("/issues", "state=open")),
            Duration::from_secs(120)
        );
        assert_eq!(p.ttl_for(&key("/releases", "")), Duration::from_secs(30));
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = TtlPolicy::new(vec![
            TtlRule {
                path: "/issues".into(),
                query: Some("state=closed".into()),
                ttl: Duration::from_secs(600),
            },
            TtlRule {
                path: "/issues".into(),
                query: None,
                ttl: Duration::from_secs(60),
            },
        ]);
        assert_eq!(
            p.ttl_for(&key("/issues", "state=closed")),
            Duration::from_secs(600)
        );
        assert_eq!(
            p.ttl_for(&key("/issues", "state=open")),
            Duration::from_secs(60)
        );
        assert_eq!(p.ttl_for(&key("/pulls", "")), Duration::from_secs(30));
    }

    #[test]
    fn query_rules_look_only_at_the_query() {
        let p = TtlPolicy::default();
        assert_eq!(
            p.ttl_for(&key("/contents/state=closed/pulls", "")),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn freshness_moves_from_fresh_to_stale_to_too_old() {
        let ttl = Duration::from_secs(30);
        assert_eq!(
            Freshness::at(Duration::from_secs(29), ttl),
            Freshness::Fresh
        );
        assert_eq!(
            Freshness::at(Duration::from_secs(30), ttl),
            Freshness::Stale
        );
        assert_eq!(Freshness::at(STALE_IF_ERROR_WINDOW, ttl), Freshness::Stale);
        assert_eq!(
            Freshness::at(STALE_IF_ERROR_WINDOW + Duration::from_secs(1), ttl),
            Freshness::TooOld
        );
    }

    #[test]
    fn retention_covers_the_stale_while_revalidate_window() {
        // A window longer than the stale-if-error window has no effect: an
        // entry that old is never served (`Freshness::TooOld`).
        let ttl = Duration::from_secs(30);
        assert!(retention(ttl) >= ttl + DEFAULT_STALE_WHILE_REVALIDATE);
        assert_eq!(
            Freshness::at(STALE_IF_ERROR_WINDOW + Duration::from_secs(1), ttl),
            Freshness::TooOld
        );
    }

    #[test]
    fn retention_covers_the_stale_window() {
        assert_eq!(
            retention(Duration::from_secs(30)),
            Duration::from_secs(30) + STALE_IF_ERROR_WINDOW
        );
    }
}
