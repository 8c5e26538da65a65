//! The command line, made from the declaration: a flag for each setting
//! that has one, `--config`, `--version`, and a `--help` that lists every
//! setting, environment-only ones included.
//!
//! Flag values are plain strings so that a bad one is refused by the same
//! parser, in the same words, as a bad one from the environment or the
//! file. Environment names are written into the help rather than given to
//! clap's `env`, which would read the real process environment that
//! `Settings::load_from` promises not to touch.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::builder::StyledStr;
use clap::builder::styling::Style;
use clap::{Arg, Command, value_parser};

use super::ConfigError;
use super::declaration::SPECS;
use super::spec::{Reach, SettingSpec};
use crate::bootstrap::version::CHIMNEY_VERSION;

/// The id of `--config`, which picks the file rather than setting anything.
const CONFIG: &str = "config";

/// What the command line gave.
#[derive(Debug)]
pub(super) struct Flags {
    /// `--config PATH`.
    pub(super) config: Option<PathBuf>,
    /// Each setting's flag value, by setting key.
    values: HashMap<&'static str, String>,
}

impl Flags {
    /// The text the flag of setting `key` was given, if it was.
    pub(super) fn text(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// Parses the command line; the first item is the program name.
pub(super) fn parse_flags(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Flags, ConfigError> {
    let matches = command()
        .try_get_matches_from(args)
        .map_err(ConfigError::Args)?;
    let values = SPECS
        .iter()
        .filter(|spec| spec.flag().is_some())
        .filter_map(|spec| Some((spec.key, matches.get_one::<String>(spec.key)?.clone())))
        .collect();
    Ok(Flags {
        config: matches.get_one::<PathBuf>(CONFIG).cloned(),
        values,
    })
}

/// chimney's command line.
pub(super) fn command() -> Command {
    let config = Arg::new(CONFIG)
        .long(CONFIG)
        .value_name("PATH")
        .value_parser(value_parser!(PathBuf))
        .help("Config file (TOML) [default: ./chimney.toml when present]");
    let flags = SPECS.iter().filter_map(|spec| {
        let flag = spec.flag()?;
        Some(
            Arg::new(spec.key)
                .long(flag.long)
                .value_name(flag.value_name)
                .value_parser(value_parser!(String))
                .help(format!("{}{}", spec.help, tags(spec, ""))),
        )
    });
    let command = Command::new("chimney")
        .version(CHIMNEY_VERSION)
        .about("Caching GitHub API proxy and origin server for the project dashboard")
        // Name above meaning, as in the sections listing the other settings.
        .next_line_help(true)
        .arg(config)
        .args(flags);
    let header = *command.get_styles().get_header();
    command.after_help(settings_without_flags(header))
}

/// The sections `--help` lists after Options, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    WithoutFlag,
    EnvOnly,
    FileOnly,
}

impl Section {
    const ALL: [Self; 3] = [Self::WithoutFlag, Self::EnvOnly, Self::FileOnly];

    fn title(self) -> &'static str {
        match self {
            Self::WithoutFlag => "Settings without a flag (config file or environment)",
            Self::EnvOnly => "Environment only",
            Self::FileOnly => "Config file only",
        }
    }

    /// The section listing a setting; none for one Options shows.
    fn of(reach: &Reach) -> Option<Self> {
        match reach {
            Reach::Layered { flag: Some(_), .. } => None,
            Reach::Layered { flag: None, .. } => Some(Self::WithoutFlag),
            Reach::EnvOnly { .. } | Reach::Secret { .. } | Reach::Elsewhere { .. } => {
                Some(Self::EnvOnly)
            }
            Reach::FileRules { .. } => Some(Self::FileOnly),
        }
    }
}

/// The settings the Options section cannot show, by section, laid out as
/// clap lays out Options: the name the setting is set by, then its meaning.
fn settings_without_flags(header: Style) -> StyledStr {
    let mut text = String::new();
    for section in Section::ALL {
        let _ = writeln!(text, "{header}{}:{header:#}", section.title());
        for spec in SPECS
            .iter()
            .filter(|spec| Section::of(&spec.reach) == Some(section))
        {
            let name = match section {
                Section::EnvOnly => spec.env().unwrap_or(spec.key),
                Section::WithoutFlag | Section::FileOnly => spec.key,
            };
            let _ = writeln!(
                text,
                "  {name}\n          {}{}",
                spec.help,
                tags(spec, name)
            );
        }
        text.push('\n');
    }
    text.push_str(
        "Precedence, lowest to highest: defaults < config file < environment < flags. \
         Lists are comma-separated in the environment.",
    );
    StyledStr::from(text)
}

/// ` [file: key] [env: NAME] [secret] [default: value]`, as far as each
/// applies, leaving out the name the entry is already listed under.
fn tags(spec: &SettingSpec, listed_as: &str) -> String {
    let mut tags = String::new();
    if spec.file_shape().is_some() && spec.key != listed_as {
        let _ = write!(tags, " [file: {}]", spec.key);
    }
    if let Some(env) = spec.env().filter(|env| *env != listed_as) {
        let _ = write!(tags, " [env: {env}]");
    }
    if spec.is_secret() {
        tags.push_str(" [secret]");
    }
    let _ = write!(tags, " [default: {}]", spec.default);
    tags
}
