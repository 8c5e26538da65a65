//! The sources stacked by precedence: for each setting, the value of the
//! highest source that sets it (flags, then the environment, then the
//! config file) and where it came from. Defaults are not a layer: a
//! setting no source sets keeps its `Settings::default()` value.

use std::collections::HashMap;

use super::cli::Flags;
use super::provenance::Origin;
use super::sources::{self, ConfigFile, FileValue, RawTtlRule};
use super::spec::SettingSpec;

/// The command line, the environment and the config file of one load.
pub(super) struct Layers<'a> {
    pub(super) flags: Flags,
    pub(super) env: &'a HashMap<String, String>,
    pub(super) file: Option<ConfigFile>,
}

impl Layers<'_> {
    /// A one-value setting's text.
    pub(super) fn text(&mut self, spec: &SettingSpec) -> Option<(String, Origin)> {
        self.flag_or_env(spec).or_else(|| {
            let file = self.file.as_mut()?;
            match file.take(spec.key)? {
                FileValue::Text(text) => Some((text, Origin::File(file.path.clone()))),
                FileValue::List(_) | FileValue::Rules(_) => None,
            }
        })
    }

    /// A list setting's items, trimmed and without empty ones when they
    /// come from a comma list, with the text to show if the list is
    /// refused as a whole.
    pub(super) fn list(&mut self, spec: &SettingSpec) -> Option<(Vec<String>, String, Origin)> {
        if let Some((text, origin)) = self.flag_or_env(spec) {
            let items = sources::split_list(&text).map(str::to_owned).collect();
            return Some((items, text, origin));
        }
        let file = self.file.as_mut()?;
        match file.take(spec.key)? {
            FileValue::List(items) => {
                let shown = items.join(",");
                Some((items, shown, Origin::File(file.path.clone())))
            }
            FileValue::Text(_) | FileValue::Rules(_) => None,
        }
    }

    /// A file-only setting's `[[key]]` tables.
    pub(super) fn rules(&mut self, spec: &SettingSpec) -> Option<(Vec<RawTtlRule>, Origin)> {
        let file = self.file.as_mut()?;
        match file.take(spec.key)? {
            FileValue::Rules(rules) => Some((rules, Origin::File(file.path.clone()))),
            FileValue::Text(_) | FileValue::List(_) => None,
        }
    }

    /// An environment-only setting's text: blank counts as unset.
    pub(super) fn env_only(&self, spec: &SettingSpec) -> Option<(&str, Origin)> {
        let name = spec.env()?;
        let text = self.env.get(name)?.trim();
        (!text.is_empty()).then_some((text, Origin::Env(name)))
    }

    /// The flag's text, else the variable's (a blank one included: it is a
    /// value for a setting the file may hold too).
    fn flag_or_env(&self, spec: &SettingSpec) -> Option<(String, Origin)> {
        if let (Some(flag), Some(text)) = (spec.flag(), self.flags.text(spec.key)) {
            return Some((text.to_owned(), Origin::Flag(flag.long)));
        }
        let name = spec.env()?;
        let text = self.env.get(name)?;
        Some((text.clone(), Origin::Env(name)))
    }
}
