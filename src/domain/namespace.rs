//! Whose data a shared store holds (CONTRACT 4, v2 namespacing): every key,
//! channel and list chimney keeps in Dragonfly is scoped by the deployment
//! it serves, so deployments for different repositories sharing one
//! database never see each other's entries, deploy history or
//! invalidations, while the blue and green slots of one deployment share
//! theirs.

use std::fmt;

use super::request::RepoName;

/// The scope of one deployment's shared data: the served repository
/// (`owner/name`) in single-repo mode, the organisation in org mode.
///
/// Lower-cased, as GitHub compares names: two slots configured as
/// `Acme/Tool` and `acme/tool` serve the same repository and must share.
/// It never contains `:`, so `chimney:{namespace}:` is an unambiguous
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheNamespace(String);

impl CacheNamespace {
    /// The namespace of a deployment: its organisation when it runs in org
    /// mode, else its repository.
    pub fn of_deployment(org: Option<&str>, repo: &RepoName) -> Self {
        match org {
            Some(org) => Self(org.to_ascii_lowercase().replace(':', "_")),
            None => Self(repo.as_str().to_ascii_lowercase()),
        }
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_repo_mode_is_scoped_by_the_repository_in_lower_case() {
        let repo = RepoName::parse("Acme/Tool").unwrap();
        assert_eq!(
            CacheNamespace::of_deployment(None, &repo).as_str(),
            "acme/tool"
        );
    }

    #[test]
    fn org_mode_is_scoped_by_the_organisation() {
        let repo = RepoName::parse("acme/tool").unwrap();
        assert_eq!(
            CacheNamespace::of_deployment(Some("Acme"), &repo).as_str(),
            "acme"
        );
    }

    #[test]
    fn a_namespace_never_holds_the_separator() {
        let repo = RepoName::parse("a/b").unwrap();
        assert!(
            !CacheNamespace::of_deployment(Some("x:y"), &repo)
                .as_str()
                .contains(':')
        );
    }
}
