//! Proxmox `vzdump`: hookrun-vzdump as the `script` of `/etc/vzdump.conf` and of backup
//! jobs in `/etc/pve/jobs.cfg`. How vzdump calls its hook script (argv, environment,
//! what each exit code means) is the adapter's: `adapters/vzdump/`.

mod demo;
mod doctor;
mod host;
mod install;

use std::path::{Path, PathBuf};

use hookrun_core::OnError;
use hookrun_core::config::Config;

use super::Platform;
use crate::cli::{DemoArgs, InstallArgs};
use crate::doctor::{Doctor, Section};
use crate::host::Host;
use crate::install::Out;

pub struct Vzdump;

pub const ADAPTER: &str = "hookrun-vzdump";

impl Platform for Vzdump {
    fn name(&self) -> &str {
        hookrun_vzdump::PLATFORM
    }

    fn adapter(&self) -> Option<&'static str> {
        Some(ADAPTER)
    }

    fn phases(&self) -> Option<&'static [&'static str]> {
        Some(hookrun_vzdump::PHASES)
    }

    fn default_hooks_dir(&self, _host: &Host) -> PathBuf {
        PathBuf::from(hookrun_vzdump::DEFAULT_HOOKS_DIR)
    }

    fn default_on_error(&self, _phase: &str) -> OnError {
        OnError::Fail
    }

    fn caller(&self) -> Option<&'static str> {
        Some("vzdump")
    }

    fn doctor(&self, d: &mut Doctor<'_>) -> Section {
        doctor::doctor(self, d)
    }

    fn install_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new(hookrun_vzdump::PLATFORM)
                .help("Proxmox vzdump: the script line of /etc/vzdump.conf"),
        )
    }

    fn install(
        &self,
        out: &mut Out<'_>,
        config: &Config,
        bin: &Path,
        _args: &InstallArgs,
    ) -> anyhow::Result<()> {
        install::install(self, out, config, bin)
    }

    fn demo(&self, args: &DemoArgs) -> Option<anyhow::Result<i32>> {
        Some(demo::main(args))
    }
}
