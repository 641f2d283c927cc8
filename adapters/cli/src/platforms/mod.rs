//! The registry of the platforms hookrun's CLI knows, and the only place in this crate
//! that names them. Everything the CLI knows about one platform — its phases and
//! defaults (from its adapter crate's constants), where the host wires it, its doctor
//! checks, its install steps, its demo — is in that platform's folder here; `list`,
//! `lint`, `run`, `doctor`, `install` and `demo` are generic and ask the registry.
//!
//! The adapter crates (`adapters/<name>/`) hold only the calling convention: they are
//! the hot path the platform execs on every phase, so host knowledge stays out of them.

mod generic;
mod libvirt;
mod proxmox;
mod pve_guest;
mod vzdump;
mod worker;

use std::path::{Path, PathBuf};

use hookrun_core::OnError;
use hookrun_core::config::Config;
use hookrun_core::discover::ImplicitHooks;

use crate::cli::{DemoArgs, InstallArgs};
use crate::doctor::{Doctor, Section};
use crate::host::Host;
use crate::install::Out;

/// What the CLI knows about one platform (one dispatch name: `libvirt-qemu`, not
/// `libvirt`).
pub trait Platform {
    /// The name dispatches, records and the configuration's `[name]` table use.
    fn name(&self) -> &str;

    /// The name `install` and `doctor --platform` take for this platform and its
    /// siblings: the libvirt drivers are wired by one command.
    fn family(&self) -> &str {
        self.name()
    }

    /// The adapter binary the platform execs; `None` for tools that call `hookrun run`.
    fn adapter(&self) -> Option<&'static str>;

    /// The complete phase list, when the platform has a fixed one.
    fn phases(&self) -> Option<&'static [&'static str]>;

    /// The hooks directory when the configuration names none, as the host sees it.
    fn default_hooks_dir(&self, host: &Host) -> PathBuf;

    /// `on-error` for hooks that do not say; per phase where the platform distinguishes.
    fn default_on_error(&self, phase: &str) -> OnError;

    /// Header-less files that are hooks by name.
    fn implicit(&self) -> Option<ImplicitHooks> {
        None
    }

    /// Whether hooks may run as whoever starts the dispatch; the platforms that exec an
    /// adapter run hooks as root.
    fn hooks_run_as_caller(&self) -> bool {
        false
    }

    /// The program that execs the adapter with an environment of its own choosing
    /// (so `HOOKRUN_*` variables of a shell never reach the dispatch).
    fn caller(&self) -> Option<&'static str> {
        None
    }

    /// A sync hook that calls back into the platform while it waits for the hook: the
    /// line, and what `lint` and `doctor` say about it.
    fn sync_callback(&self, _path: &Path) -> Option<Callback> {
        None
    }

    /// Whether `dir` (canonical) is this platform's hooks directory by where it is, not
    /// by its `<name>.d` name (for `lint` without `--platform`).
    fn claims_dir(&self, _dir: &Path) -> bool {
        false
    }

    /// The doctor section of this platform.
    fn doctor(&self, d: &mut Doctor<'_>) -> Section;

    /// The value of `hookrun install <family>` with its help; `None`: not installable.
    fn install_value(&self) -> Option<clap::builder::PossibleValue> {
        None
    }

    /// A usage error for `args`: an option of this platform's install given to another
    /// platform's (`selected` is false), or one that does not fit this install.
    fn install_usage(&self, _args: &InstallArgs, _host: &Host, _selected: bool) -> Option<String> {
        None
    }

    /// Whether `install --apply` needs the adapter in place first.
    fn install_needs_adapter(&self) -> bool {
        true
    }

    /// The install steps (printed, and with `--apply` the host-side ones performed).
    fn install(
        &self,
        _out: &mut Out<'_>,
        _config: &Config,
        _bin: &Path,
        _args: &InstallArgs,
    ) -> anyhow::Result<()> {
        anyhow::bail!("{} has no install steps", self.name())
    }

    /// `hookrun demo`, for the platform that has one.
    fn demo(&self, _args: &DemoArgs) -> Option<anyhow::Result<i32>> {
        None
    }
}

/// A hook that calls back into its platform synchronously (see [`Platform::sync_callback`]).
pub struct Callback {
    pub line: usize,
    /// For `lint`: the whole story.
    pub lint: &'static str,
    /// For `doctor`: after `path:line: `.
    pub doctor: &'static str,
}

/// The platform `list` and `lint` assume when none is given.
pub const DEFAULT: &str = hookrun_vzdump::PLATFORM;

/// Every platform with an adapter, in report order (doctor's sections).
pub fn all() -> Vec<Box<dyn Platform>> {
    let mut out: Vec<Box<dyn Platform>> =
        vec![Box::new(vzdump::Vzdump), Box::new(pve_guest::PveGuest)];
    out.extend(libvirt::drivers());
    out.push(Box::new(worker::Worker));
    out
}

/// The platform `name`: one of [`all`], or a tool that calls `hookrun run`.
pub fn get(name: &str) -> Box<dyn Platform> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| Box::new(generic::Generic::new(name)))
}

/// Whether `name` is a platform with an adapter.
pub fn is_known(name: &str) -> bool {
    all().iter().any(|p| p.name() == name)
}

/// The platforms `doctor --platform NAME` checks: a family, one platform, or a tool
/// that calls `hookrun run`.
pub fn select(name: &str) -> anyhow::Result<Vec<Box<dyn Platform>>> {
    let family: Vec<Box<dyn Platform>> = all()
        .into_iter()
        .filter(|p| p.name() == name || p.family() == name)
        .collect();
    if !family.is_empty() {
        return Ok(family);
    }
    libvirt::check_name(name)?;
    validate_name(name)?;
    Ok(vec![Box::new(generic::Generic::new(name))])
}

/// The platforms of `hookrun run` this host has: `[name]` tables of the configuration
/// and hooks directories no adapter owns.
pub fn discovered(host: &Host) -> Vec<Box<dyn Platform>> {
    generic::discovered(host)
        .into_iter()
        .filter(|n| !is_known(n) && validate_name(n).is_ok())
        .map(|n| Box::new(generic::Generic::new(&n)) as Box<dyn Platform>)
        .collect()
}

/// The platform `hookrun install <family>` wires (the family's first member).
pub fn installer(family: &str) -> Option<Box<dyn Platform>> {
    all()
        .into_iter()
        .find(|p| p.family() == family && p.install_value().is_some())
}

/// One platform per family that can be installed, in report order.
pub fn installers() -> Vec<Box<dyn Platform>> {
    let mut out: Vec<Box<dyn Platform>> = Vec::new();
    for p in all() {
        if p.install_value().is_some() && !out.iter().any(|o| o.family() == p.family()) {
            out.push(p);
        }
    }
    out
}

/// The values of `hookrun install <PLATFORM>`, with their help.
pub fn install_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(installers().iter().filter_map(|p| p.install_value()))
}

/// The values of `hookrun install libvirt --driver D`.
pub fn driver_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(libvirt::REPORT_ORDER)
}

/// The adapter binaries, once each, in report order.
pub fn adapters() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for a in all().iter().filter_map(|p| p.adapter()) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// The programs that call adapters with an environment of their own, once each.
pub fn callers() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for c in all().iter().filter_map(|p| p.caller()) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The platform whose hooks directory `dir` (canonical) is: a directory named
/// `<platform>.d` for a platform with an adapter, wherever it is, or one a platform
/// claims by its place.
pub fn owning_dir(dir: &Path) -> Option<String> {
    if let Some(name) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".d"))
        .filter(|n| is_known(n))
    {
        return Some(name.to_owned());
    }
    all()
        .into_iter()
        .find(|p| p.claims_dir(dir))
        .map(|p| p.name().to_owned())
}

/// Platform names become directory and file names: keep them plain.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || name.starts_with('-')
    {
        return Err(crate::Exit::error(
            crate::EXIT_USAGE,
            format!(
                "platform name {name:?} must be lower-case letters, digits, '-' and '_' (e.g. backrest, borgmatic)"
            ),
        ));
    }
    Ok(())
}

/// `hooks.d` beside `invoked` (a host path) when it exists, else the configured
/// directory, else `default` (a host path): the one a dispatch through `invoked` uses.
pub(crate) fn hooks_dir_beside(
    host: &Host,
    settings: &hookrun_core::Settings,
    invoked: Option<&Path>,
    default: &Path,
) -> PathBuf {
    if let Some(parent) = invoked.and_then(Path::parent) {
        let beside = host.path(parent.join("hooks.d"));
        if beside.is_dir() {
            return beside;
        }
    }
    settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| host.path(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_again() {
        let names: Vec<String> = all().iter().map(|p| p.name().to_owned()).collect();
        for n in &names {
            assert_eq!(get(n).name(), n);
            assert!(validate_name(n).is_ok(), "{n}");
            assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "{n}");
        }
        assert_eq!(get("borgmatic").name(), "borgmatic");
        assert!(get("borgmatic").phases().is_none());
    }

    #[test]
    fn every_installable_family_has_an_installer() {
        for p in installers() {
            assert_eq!(
                installer(p.family()).map(|i| i.name().to_owned()),
                Some(p.name().to_owned())
            );
        }
    }
}
