//! `hookrun doctor`: is this host wired to hookrun, and will the hooks run?
//!
//! For every platform (or the one asked for) it reports the wiring as the platform
//! sees it (each platform's folder under `platforms/` says how), the hooks directory
//! and its permissions, and every hook's state — the same judgement a dispatch makes
//! (discovery, header, permission checks) plus `hookrun lint`'s. Then what all
//! platforms share: the configuration file, the adapter binaries, the log and lock
//! directories (records readable, async runs lost), the Checkmk job directory and `gpg`
//! when hooks need them.
//!
//! Each finding has a severity — ok, note, warning, error — and warnings and errors
//! carry the command that fixes them. Exit 1 when there is an error (something is
//! broken: a platform's job, a start or a hook will fail), else 0. Every host path is
//! resolved under `--root` (see `host.rs`), so the test suite runs it against fake host
//! trees.

mod hooks;
mod report;
mod shared;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hookrun_core::Settings;
use hookrun_core::config::{Config, MkJobMode};

pub(crate) use report::{Section, Severity};

use crate::cli::DoctorArgs;
use crate::host::{Host, Target, TargetKind, sh};
use crate::platforms::{self, Platform};

/// A hook with `# mk-job` that would run, and the settings it runs with.
struct MkJobUse {
    hook: PathBuf,
    mode: MkJobMode,
    dir: PathBuf,
}

/// A hook that runs a contrib tool.
struct ContribUse {
    hook: PathBuf,
    program: String,
    needs_gpg: bool,
}

/// What the platforms' checks share: the host, the configuration, and what the hooks
/// they found need (checked once, in the `hookrun` section).
pub(crate) struct Doctor<'a> {
    pub host: &'a Host,
    /// The defaults when the configuration file does not parse (reported first).
    pub config: Config,
    config_ok: bool,
    mk_jobs: Vec<MkJobUse>,
    contrib: Vec<ContribUse>,
    /// Log and lock directories of the platforms in use.
    pub dirs: BTreeSet<(PathBuf, PathBuf)>,
}

pub fn main(args: &DoctorArgs) -> anyhow::Result<i32> {
    let host = Host::new(&args.host)?;
    let wanted = selection(&host, args.platform.as_deref())?;
    let (config, config_error) = match host.load_config() {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e)),
    };
    let mut doc = Doctor {
        host: &host,
        config,
        config_ok: config_error.is_none(),
        mk_jobs: Vec::new(),
        contrib: Vec::new(),
        dirs: BTreeSet::new(),
    };
    let mut sections = Vec::new();
    for p in &wanted {
        sections.push(p.doctor(&mut doc));
    }
    let general = doc.general(config_error.as_ref(), args.platform.is_none());
    sections.insert(0, general);

    let errors = count(&sections, Severity::Error);
    let warnings = count(&sections, Severity::Warning);
    if args.json {
        println!("{}", report::json(&host, &sections, errors, warnings));
    } else {
        print!("{}", report::text(&host, &sections, errors, warnings));
    }
    Ok(i32::from(errors > 0))
}

fn count(sections: &[Section], sev: Severity) -> usize {
    sections
        .iter()
        .flat_map(|s| &s.findings)
        .filter(|f| f.severity == sev)
        .count()
}

/// The platforms to check, in report order.
fn selection(host: &Host, platform: Option<&str>) -> anyhow::Result<Vec<Box<dyn Platform>>> {
    match platform {
        Some(p) => platforms::select(p),
        None => {
            let mut all = platforms::all();
            all.extend(platforms::discovered(host));
            Ok(all)
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

pub(crate) fn install_d(dir: &Path) -> String {
    format!("install -d -m 0755 {}", sh(dir))
}

pub(crate) fn editor(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("editor +{l} {}", sh(path)),
        None => format!("editor {}", sh(path)),
    }
}

pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}

impl Doctor<'_> {
    pub(crate) fn settings(&self, platform: &str) -> Settings {
        self.host.settings(&self.config, platform)
    }

    pub(crate) fn defaults_note(&self, s: &mut Section) {
        if !self.config_ok {
            s.note(
                "config",
                "the configuration file does not parse (see above): the defaults are assumed below",
            );
        }
    }

    /// What to print for a wiring that resolves to `target`.
    pub(crate) fn describe_target(&self, t: &Target, adapter: &str) -> String {
        let installed = shown(&self.host.adapter(adapter));
        match &t.kind {
            TargetKind::Installed => format!("the installed {adapter} ({installed})"),
            TargetKind::Copy => format!("a copy of the installed {adapter} ({installed})"),
            TargetKind::OtherHookrun => format!(
                "{}, a {adapter} that is not the installed one ({installed})",
                t.resolved.as_deref().map(shown).unwrap_or_default()
            ),
            TargetKind::Foreign => format!(
                "{}, which is not hookrun",
                t.resolved.as_deref().map(shown).unwrap_or_default()
            ),
            TargetKind::Missing => "nothing: it does not exist".into(),
            TargetKind::Broken(why) => format!("nothing usable: {why}"),
        }
    }

    /// Why a wiring that leads nowhere is broken.
    pub(crate) fn problem(t: &Target) -> String {
        match &t.kind {
            TargetKind::Broken(why) => format!("is unusable ({why})"),
            _ => "does not exist".into(),
        }
    }

    /// The hooks directory a dispatch through `invoked` (a host path) uses: `hooks.d`
    /// beside it when that exists, else `hooks_dir` from the config, else `default`.
    pub(crate) fn hooks_dir_beside(
        &self,
        invoked: Option<&Path>,
        settings: &Settings,
        default: &Path,
    ) -> PathBuf {
        platforms::hooks_dir_beside(self.host, settings, invoked, default)
    }

    /// `hookrun install <family> --apply`, for this host.
    pub(crate) fn install_cmd(&self, platform: &str, force: bool) -> String {
        let mut cmd = format!("hookrun install {platform} --apply");
        if force {
            cmd.push_str(" --force");
        }
        if !self.host.is_real() {
            let _ = write!(cmd, " --root {}", sh(&self.host.root));
        }
        cmd
    }

    /// ` --root DIR` when not checking the real host.
    pub(crate) fn root_arg(&self) -> String {
        if self.host.is_real() {
            String::new()
        } else {
            format!(" --root {}", sh(&self.host.root))
        }
    }

    pub(super) fn general(
        &mut self,
        config_error: Option<&hookrun_core::ConfigError>,
        all: bool,
    ) -> Section {
        let mut s = Section::new("hookrun");
        let path = self.host.config_path();
        match config_error {
            Some(e) => s.fix(
                Severity::Error,
                "config",
                format!(
                    "{e}: every dispatch stops at this and runs no hooks (exit 78; 0 where the platform ignores failures)"
                ),
                editor(&e.path, e.line),
            ),
            None if path.exists() => s.ok("config", format!("{} parses", shown(&path))),
            None => s.ok(
                "config",
                format!("{} does not exist: the defaults apply", shown(&path)),
            ),
        }
        for var in ["HOOKRUN_CONFIG", "HOOKRUN_HOOKS_DIR"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                s.note(
                    "environment",
                    format!(
                        "{var}={} is set here, but {} do not pass it to hookrun: doctor ignores it and checks what they use",
                        v.to_string_lossy(),
                        and_list(&platforms::callers())
                    ),
                );
            }
        }
        let bin = self.host.path(&self.host.bin_dir);
        let adapters = platforms::adapters();
        let (present, absent): (Vec<&str>, Vec<&str>) = adapters.iter().partition(|a| {
            self.host
                .resolve(&self.host.adapter(a))
                .is_ok_and(|p| hookrun_core::discover::is_executable(&p))
        });
        if !present.is_empty() {
            s.ok(
                "binaries",
                format!("in {}: {}", shown(&bin), present.join(", ")),
            );
        }
        if !absent.is_empty() {
            s.note(
                "binaries",
                format!(
                    "not in {}: {} (install the package of each platform you use, e.g. apt install ./{}_*.deb)",
                    shown(&bin),
                    absent.join(", "),
                    absent[0]
                ),
            );
        }
        // The log and lock directories: the top level's, and every platform's in use.
        let top = self.settings("-");
        let mut dirs = std::mem::take(&mut self.dirs);
        if all || dirs.is_empty() {
            dirs.insert((top.log_dir.clone(), top.lock_dir.clone()));
        }
        let logs: BTreeSet<PathBuf> = dirs.iter().map(|d| d.0.clone()).collect();
        let locks: BTreeSet<PathBuf> = dirs.iter().map(|d| d.1.clone()).collect();
        for d in &logs {
            shared::check_log_dir(&mut s, d);
        }
        for d in &locks {
            shared::check_lock_dir(&mut s, d);
        }
        self.checkmk(&mut s);
        self.gpg(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_prose() {
        assert_eq!(and_list(&[]), "");
        assert_eq!(and_list(&["a"]), "a");
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    }
}
