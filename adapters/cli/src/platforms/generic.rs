//! Any other name (backrest, borgmatic, a cron job, ...): a tool that calls
//! `hookrun run --platform NAME` from its own configuration, with the hooks in
//! `/etc/hookrun/NAME.d`. No adapter, no fixed phases.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hookrun_core::OnError;

use super::Platform;
use crate::doctor::{Doctor, Section, Severity, shown};
use crate::host::Host;

/// Where the hooks directories of `hookrun run` platforms are.
const HOOKS_DIRS: &str = "/etc/hookrun";

pub struct Generic {
    name: String,
}

impl Generic {
    pub fn new(name: &str) -> Generic {
        Generic {
            name: name.to_owned(),
        }
    }
}

/// Names of `[name]` tables of the configuration and of `/etc/hookrun/<name>.d`
/// directories, sorted (the registry drops those of platforms with an adapter).
pub fn discovered(host: &Host) -> Vec<String> {
    let mut names = BTreeSet::new();
    if let Ok(c) = host.load_config() {
        names.extend(c.platform_names().map(str::to_owned));
    }
    if let Ok(rd) = std::fs::read_dir(host.path(HOOKS_DIRS)) {
        for item in rd.flatten() {
            if let Some(n) = item.file_name().to_str().and_then(|n| n.strip_suffix(".d"))
                && item.path().is_dir()
            {
                names.insert(n.to_owned());
            }
        }
    }
    names.into_iter().collect()
}

impl Platform for Generic {
    fn name(&self) -> &str {
        &self.name
    }

    fn adapter(&self) -> Option<&'static str> {
        None
    }

    fn phases(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn default_hooks_dir(&self, _host: &Host) -> PathBuf {
        PathBuf::from(format!("{HOOKS_DIRS}/{}.d", self.name))
    }

    fn default_on_error(&self, _phase: &str) -> OnError {
        OnError::Fail
    }

    fn doctor(&self, d: &mut Doctor<'_>) -> Section {
        let name = self.name.as_str();
        let mut s = Section::new(name);
        let settings = d.settings(name);
        let dir = settings
            .hooks_dir
            .clone()
            .unwrap_or_else(|| d.host.path(self.default_hooks_dir(d.host)));
        let has_table = d.config.platform_names().any(|p| p == name);
        s.in_use = dir.exists() || has_table;
        if !s.in_use {
            s.not_in_use(
                format!(
                    "no hooks directory {} and no [{name}] table in the configuration",
                    shown(&dir)
                ),
                None,
            );
            return s;
        }
        s.note(
            "wiring",
            format!("dispatched by 'hookrun run --platform {name} --phase ...' from the tool's own configuration; doctor cannot see that"),
        );
        d.defaults_note(&mut s);
        let missing = has_table.then(|| {
            (
                Severity::Warning,
                format!("'hookrun run --platform {name}' exits 78 and runs no hooks"),
            )
        });
        d.check_hooks_dir(&mut s, self, &dir, &settings, missing);
        d.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }
}
