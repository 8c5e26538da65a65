//! The declaration held to its own naming rules, and everything that
//! documents the settings held to the declaration: `--help`, `--version`,
//! the README's Configuration table and `chimney.example.toml`. A setting
//! added to the declaration but forgotten elsewhere fails here, by name.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::cli;
use super::declaration::SPECS;
use super::spec::{DefaultText, FileShape, Reach, SettingSpec};
use super::tests::load;
use super::{ConfigError, Provenance, Settings};
use crate::bootstrap::version::CHIMNEY_VERSION;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Settings compared by value: where the values came from is not part of it.
fn values_of(mut settings: Settings) -> String {
    settings.provenance = Provenance::default();
    format!("{settings:?}")
}

#[test]
fn names_are_unique_and_follow_the_contract_rules() {
    let mut keys = HashSet::new();
    let mut envs = HashSet::new();
    let mut flags: HashSet<&str> = ["config", "help", "version"].into();
    for spec in SPECS {
        let key = spec.key;
        assert!(keys.insert(key), "{key}: declared twice");
        if let Some(env) = spec.env() {
            assert!(envs.insert(env), "{env}: names two settings");
            assert!(
                env.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{env}: not an environment variable name"
            );
        }
        if let Some(flag) = spec.flag() {
            assert!(flags.insert(flag.long), "{flag}: taken");
            assert_eq!(
                flag.long,
                key.replace('_', "-"),
                "{key}: flag named after the key"
            );
        }
        if spec.file_shape().is_some() {
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{key}: file keys are lower-case TOML bare keys"
            );
        }
        // CONTRACT 1: a file key is its variable without `CHIMNEY_`, in lower case.
        if let (Some(env), Some(_)) = (spec.env(), spec.file_shape())
            && let Some(rest) = env.strip_prefix("CHIMNEY_")
        {
            assert_eq!(key, rest.to_lowercase(), "{env}: file key");
        }
        assert!(
            !spec.help.contains('\n') && !spec.help.ends_with('.'),
            "{key}: help is one line without a final full stop"
        );
    }
}

#[test]
fn each_declared_default_is_the_default() {
    let defaults = values_of(Settings::default());
    for spec in SPECS {
        let text = match (spec.default, &spec.reach) {
            (DefaultText::Value(text), _) => text,
            // "none": an empty value of a layered setting means unset.
            (DefaultText::Unset, Reach::Layered { .. }) => "",
            (DefaultText::Unset, _) | (DefaultText::Described(_), _) => continue,
        };
        let env = spec.env().expect("a default given as a value can be set");
        let set = load(&[], &[(env, text)], None).unwrap_or_else(|e| panic!("{env}={text:?}: {e}"));
        assert_eq!(
            values_of(set),
            defaults,
            "{env}={text:?} should change nothing"
        );
    }
}

#[test]
fn help_lists_every_setting_with_its_names_default_and_meaning() {
    // clap's own checks: no two arguments share an id or a flag.
    cli::command().debug_assert();
    let help = cli::command().render_help().to_string();
    for spec in SPECS {
        let key = spec.key;
        assert!(help.contains(spec.help), "--help lacks {key}'s meaning");
        let default = format!("[default: {}]", spec.default);
        assert!(help.contains(&default), "--help lacks {key}'s {default}");
        if let Some(env) = spec.env() {
            assert!(help.contains(env), "--help lacks {env}");
        }
        if let Some(flag) = spec.flag() {
            assert!(help.contains(&format!("{flag} <")), "--help lacks {flag}");
        }
        if spec.file_shape().is_some() {
            assert!(help.contains(key), "--help lacks the file key {key}");
        }
        if spec.is_secret() {
            assert!(
                help.contains("[secret]"),
                "--help does not mark {key} secret"
            );
        }
    }
    for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "RUST_LOG", "GITHUB_TOKEN"] {
        assert!(help.contains(name), "--help lacks {name}");
    }
}

#[test]
fn version_is_the_build_version_api_version_reports() {
    match load(&["--version"], &[], None) {
        Err(ConfigError::Args(e)) => {
            assert!(!e.use_stderr(), "a request, not a failure");
            assert_eq!(e.to_string(), format!("chimney {CHIMNEY_VERSION}\n"));
        }
        other => panic!("expected the version, got {other:?}"),
    }
}

/// One row of the README's Configuration table, cells without backticks.
#[derive(Debug, PartialEq, Eq)]
struct ReadmeRow {
    secret: bool,
    file_key: String,
    flag: String,
    env: String,
    default: String,
}

/// The rows of the first table under `## Configuration`, whose header is
/// `| setting | file key | flag | env | default |`.
fn readme_rows() -> Vec<ReadmeRow> {
    let readme = repo_file("README.md");
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Configuration\n"))
        .expect("README has a Configuration section");
    let mut lines = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_matches('|');
        inner
            .split('|')
            .map(|cell| cell.trim().replace('`', ""))
            .collect()
    };
    let header = cells(lines.next().expect("a table"));
    assert_eq!(header, ["setting", "file key", "flag", "env", "default"]);
    lines
        .skip(1)
        .map(|line| {
            let [setting, file_key, flag, env, default]: [String; 5] = cells(line)
                .try_into()
                .unwrap_or_else(|cells| panic!("README row with {cells:?}"));
            ReadmeRow {
                secret: setting.ends_with("(secret)"),
                file_key,
                flag,
                env,
                default,
            }
        })
        .collect()
}

/// The README row a setting should have.
fn expected_row(spec: &SettingSpec) -> ReadmeRow {
    ReadmeRow {
        secret: spec.is_secret(),
        file_key: match spec.file_shape() {
            Some(FileShape::Rules) => format!("[[{}]]", spec.key),
            Some(FileShape::Text | FileShape::List) => spec.key.to_owned(),
            None => String::new(),
        },
        flag: spec.flag().map(|flag| flag.to_string()).unwrap_or_default(),
        env: spec.env().unwrap_or_default().to_owned(),
        default: spec.default.to_string(),
    }
}

#[test]
fn the_readme_table_lists_every_setting_as_declared() {
    let rows = readme_rows();
    for spec in SPECS {
        let expected = expected_row(spec);
        let found = rows.iter().find(|row| {
            (!expected.env.is_empty() && row.env == expected.env)
                || (!expected.file_key.is_empty() && row.file_key == expected.file_key)
        });
        let Some(row) = found else {
            panic!(
                "README's Configuration table has no row for {}: add {expected:?}",
                spec.key
            );
        };
        assert_eq!(row, &expected, "README's row for {}", spec.key);
    }
    assert_eq!(
        rows.len(),
        SPECS.len(),
        "README's Configuration table has rows for undeclared settings"
    );
}

/// The example file's top-level keys and `[[tables]]`, commented out or
/// not, each with the comment lines just above it. A key after a table
/// header belongs to the table, except that a live key is not captured by
/// a commented-out header.
fn example_entries() -> Vec<(String, String)> {
    let example = repo_file("chimney.example.toml");
    let mut entries = Vec::new();
    let mut comment = String::new();
    let (mut in_table, mut in_commented_table) = (false, false);
    for line in example.lines() {
        let commented = line.starts_with('#');
        let bare = line.trim_start_matches('#').trim();
        let table = bare
            .strip_prefix("[[")
            .and_then(|rest| rest.strip_suffix("]]"));
        let key = bare
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if let Some(name) = table {
            if commented {
                in_commented_table = true;
            } else {
                in_table = true;
            }
            entries.push((format!("[[{name}]]"), std::mem::take(&mut comment)));
        } else if let Some(key) = key {
            let in_some_table = in_table || (commented && in_commented_table);
            if !in_some_table {
                entries.push((key.to_owned(), std::mem::take(&mut comment)));
            }
        } else if commented {
            comment.push_str(bare);
            comment.push('\n');
        } else {
            comment.clear();
        }
    }
    entries
}

#[test]
fn the_example_file_shows_every_file_setting_and_nothing_else() {
    let entries = example_entries();
    let shown: BTreeSet<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
    let mut declared = BTreeSet::new();
    for spec in SPECS {
        let expected = expected_row(spec);
        if expected.file_key.is_empty() {
            assert!(
                !shown.contains(spec.key),
                "chimney.example.toml shows {}, which the file cannot hold",
                spec.key
            );
            continue;
        }
        let (_, comment) = entries
            .iter()
            .find(|(key, _)| *key == expected.file_key)
            .unwrap_or_else(|| {
                panic!(
                    "chimney.example.toml lacks {} (commented out if it has no default)",
                    expected.file_key
                )
            });
        for name in [expected.env, expected.flag] {
            assert!(
                comment.contains(&name),
                "chimney.example.toml: the comment above {} should name {name}",
                spec.key
            );
        }
        declared.insert(expected.file_key);
    }
    let declared: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    assert_eq!(shown, declared, "chimney.example.toml's keys");
}
