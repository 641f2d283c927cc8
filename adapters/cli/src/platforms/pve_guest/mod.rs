//! Proxmox guest hookscripts: hookrun-pve-guest as a snippet (`<storage>:snippets/...`)
//! named by each guest's `hookscript`. How Proxmox calls a hookscript (argv, which
//! phase may fail) is the adapter's: `adapters/pve-guest/`.

mod doctor;
mod host;
mod install;

use std::path::{Path, PathBuf};

use hookrun_core::OnError;
use hookrun_core::config::Config;

use super::Platform;
use crate::cli::InstallArgs;
use crate::doctor::{Doctor, Section};
use crate::host::Host;
use crate::install::Out;

pub const ADAPTER: &str = "hookrun-pve-guest";

pub struct PveGuest;

impl Platform for PveGuest {
    fn name(&self) -> &str {
        hookrun_pve_guest::PLATFORM
    }

    fn adapter(&self) -> Option<&'static str> {
        Some(ADAPTER)
    }

    fn phases(&self) -> Option<&'static [&'static str]> {
        Some(hookrun_pve_guest::PHASES)
    }

    fn default_hooks_dir(&self, _host: &Host) -> PathBuf {
        PathBuf::from(hookrun_pve_guest::DEFAULT_HOOKS_DIR)
    }

    fn default_on_error(&self, phase: &str) -> OnError {
        hookrun_pve_guest::default_on_error(phase)
    }

    fn caller(&self) -> Option<&'static str> {
        Some("Proxmox")
    }

    fn doctor(&self, d: &mut Doctor<'_>) -> Section {
        doctor::doctor(self, d)
    }

    fn install_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new(hookrun_pve_guest::PLATFORM)
                .help("Proxmox guest hookscripts: a snippet, then qm set / pct set"),
        )
    }

    fn install_usage(&self, args: &InstallArgs, _host: &Host, selected: bool) -> Option<String> {
        if selected {
            None
        } else if !args.vmids.is_empty() {
            Some("--vmid is for 'hookrun install pve-guest'".into())
        } else if args.storage.is_some() {
            Some("--storage is for 'hookrun install pve-guest'".into())
        } else {
            None
        }
    }

    fn install(
        &self,
        out: &mut Out<'_>,
        config: &Config,
        bin: &Path,
        args: &InstallArgs,
    ) -> anyhow::Result<()> {
        install::install(self, out, config, bin, args)
    }
}
