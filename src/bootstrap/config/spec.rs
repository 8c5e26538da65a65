//! The shape of a setting's declaration: its names in each source, its
//! default and meaning as `--help` and the README show them, and the typed
//! code that stores a value in [`Settings`].
//!
//! Where a setting may be set and how its value is typed are one enum
//! ([`Reach`]), so a declaration cannot, say, give a secret a file key or a
//! flag to a setting the file holds as tables.

use secrecy::SecretString;

use super::Settings;
use super::sources::RawTtlRule;
use super::values::Refusal;

/// One setting, declared once; [`super::declaration::SPECS`] lists them all.
#[derive(Debug)]
pub(super) struct SettingSpec {
    /// The name in messages and the start-up report; for a setting the file
    /// may hold, also its file key (`addr`, `ttl`).
    pub(super) key: &'static str,
    /// One line for `--help`: what the setting does.
    pub(super) help: &'static str,
    /// The default, as `--help` and the README's table show it.
    pub(super) default: DefaultText,
    /// Where the setting may be set, and how its value is stored.
    pub(super) reach: Reach,
}

/// Where a setting may be set, lowest precedence first, and the function
/// that stores its value.
#[derive(Debug)]
pub(super) enum Reach {
    /// The config file, the environment and, when `flag` is given, the
    /// command line. A blank variable or flag is a value (`CHIMNEY_REDIS=""`
    /// means in-memory only), not "unset".
    Layered {
        env: &'static str,
        flag: Option<Flag>,
        apply: Layered,
    },
    /// The environment only. A blank variable counts as unset, as the
    /// OpenTelemetry spec requires of its own and as suits compose's
    /// `${VAR:-}`.
    EnvOnly {
        env: &'static str,
        apply: fn(&mut Settings, &str) -> Result<(), Refusal>,
    },
    /// A token: the environment only, trimmed (a secret file's trailing
    /// newline is never part of it), blank meaning none, and never shown.
    Secret {
        env: &'static str,
        apply: fn(&mut Settings, SecretString),
    },
    /// The config file only, as `[[key]]` tables; only the TTL rules, which
    /// have no sensible one-line spelling for a variable.
    FileRules {
        apply: fn(&mut Settings, Vec<RawTtlRule>) -> Result<(), Refusal>,
    },
    /// Read by another component straight from the process environment
    /// (the log filter reads `RUST_LOG`); declared so that `--help`, the
    /// README and the start-up report cover it.
    Elsewhere { env: &'static str },
}

/// How a layered setting's value is shaped and stored.
#[derive(Debug)]
pub(super) enum Layered {
    /// One value; the file may write it as a string or a number.
    Text(fn(&mut Settings, &str) -> Result<(), Refusal>),
    /// A list: an array of strings in the file, comma-separated in the
    /// environment and on the command line.
    List(fn(&mut Settings, Vec<String>) -> Result<(), Refusal>),
}

/// How the config file writes a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileShape {
    /// `key = "text"` or `key = 42`.
    Text,
    /// `key = ["a", "b"]`.
    List,
    /// `[[key]]` tables.
    Rules,
}

/// A command-line flag.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flag {
    /// The long name without its dashes: `github-api-url`.
    pub(super) long: &'static str,
    /// The placeholder in `--help`: `URL`.
    pub(super) value_name: &'static str,
}

/// A default as shown to people.
#[derive(Debug, Clone, Copy)]
pub(super) enum DefaultText {
    /// Exactly what a user would write to get the default; a test checks
    /// that setting it changes nothing.
    Value(&'static str),
    /// No value: the feature is off, or the setting is empty.
    Unset,
    /// A description, for defaults no one-line value spells.
    Described(&'static str),
}

impl SettingSpec {
    /// The environment variable that sets it, if any.
    pub(super) fn env(&self) -> Option<&'static str> {
        match self.reach {
            Reach::Layered { env, .. }
            | Reach::EnvOnly { env, .. }
            | Reach::Secret { env, .. }
            | Reach::Elsewhere { env } => Some(env),
            Reach::FileRules { .. } => None,
        }
    }

    /// Its command-line flag, if any.
    pub(super) fn flag(&self) -> Option<Flag> {
        match self.reach {
            Reach::Layered { flag, .. } => flag,
            _ => None,
        }
    }

    /// How the config file holds it (under [`SettingSpec::key`]), if the
    /// file may set it at all.
    pub(super) fn file_shape(&self) -> Option<FileShape> {
        match self.reach {
            Reach::Layered {
                apply: Layered::Text(_),
                ..
            } => Some(FileShape::Text),
            Reach::Layered {
                apply: Layered::List(_),
                ..
            } => Some(FileShape::List),
            Reach::FileRules { .. } => Some(FileShape::Rules),
            Reach::EnvOnly { .. } | Reach::Secret { .. } | Reach::Elsewhere { .. } => None,
        }
    }

    /// Whether its value is a secret.
    pub(super) fn is_secret(&self) -> bool {
        matches!(self.reach, Reach::Secret { .. })
    }
}

impl std::fmt::Display for DefaultText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(text) | Self::Described(text) => f.write_str(text),
            Self::Unset => f.write_str("none"),
        }
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.long)
    }
}
