//! Where each setting's value came from, and the start-up report built on
//! it: the mode, the repo or org, and the origin of every setting a source
//! set. The report carries names and origins only, never a value, so it
//! cannot leak a token.

use std::fmt;
use std::path::PathBuf;

use crate::domain::RepoName;

/// The source a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No source set it.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This flag, without its dashes.
    Flag(&'static str),
}

/// Displays as the refusal messages name an origin: `default`,
/// `config file ./chimney.toml`, `CHIMNEY_REPO` or `--repo`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "config file {}", path.display()),
            Self::Env(name) => f.write_str(name),
            Self::Flag(long) => write!(f, "--{long}"),
        }
    }
}

/// The origin of every setting a source set, in declaration order; any
/// other setting has its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance(Vec<(&'static str, Origin)>);

impl Provenance {
    /// Records that a source set `key`.
    pub(super) fn record(&mut self, key: &'static str, origin: Origin) {
        self.0.push((key, origin));
    }

    /// Where `key` (as the declaration names it: `repo`, `otel.endpoint`)
    /// came from.
    #[must_use]
    pub fn origin(&self, key: &str) -> &Origin {
        self.0
            .iter()
            .find(|(set, _)| *set == key)
            .map_or(&Origin::Default, |(_, origin)| origin)
    }

    /// The settings a source set, with their origins.
    pub fn non_default(&self) -> impl Iterator<Item = (&'static str, &Origin)> {
        self.0.iter().map(|(key, origin)| (*key, origin))
    }
}

/// Lists the set settings as `repo from CHIMNEY_REPO, addr from --addr`,
/// or `none`.
impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (key, origin)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key} from {origin}")?;
        }
        Ok(())
    }
}

/// What start-up logs about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupReport<'a> {
    /// Single-repo or org mode, with the repo or org.
    pub mode: Mode<'a>,
    /// Where each setting not at its default came from.
    pub provenance: &'a Provenance,
    /// GitHub will be called unauthenticated (60 requests an hour).
    pub github_token_unset: bool,
}

/// Which GitHub data chimney serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode<'a> {
    /// One repository.
    SingleRepo(&'a RepoName),
    /// Every repository of an organisation.
    Org(&'a str),
}

impl Mode<'_> {
    /// `single-repo` or `org`, as the log line spells it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::SingleRepo(_) => "single-repo",
            Self::Org(_) => "org",
        }
    }

    /// The repository, in single-repo mode.
    #[must_use]
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Self::SingleRepo(repo) => Some(repo),
            Self::Org(_) => None,
        }
    }

    /// The organisation, in org mode.
    #[must_use]
    pub fn org(&self) -> Option<&str> {
        match self {
            Self::SingleRepo(_) => None,
            Self::Org(org) => Some(org),
        }
    }
}
