//! Container and cron workers: `hookrun-worker run <worker> -- <cmd>` from a cron line
//! or a container's command, with the hooks in `/etc/hookrun/worker.d` or mounted at
//! `/hooks`. How the worker runs its hooks around the command is the adapter's:
//! `adapters/worker/`.

mod doctor;
mod install;

use std::path::{Path, PathBuf};

use hookrun_core::OnError;
use hookrun_core::config::Config;
use hookrun_core::discover::ImplicitHooks;

use super::Platform;
use crate::cli::InstallArgs;
use crate::doctor::{Doctor, Section};
use crate::host::Host;
use crate::install::Out;

pub const ADAPTER: &str = "hookrun-worker";

pub struct Worker;

impl Platform for Worker {
    fn name(&self) -> &str {
        hookrun_worker::PLATFORM
    }

    fn adapter(&self) -> Option<&'static str> {
        Some(ADAPTER)
    }

    fn phases(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The container's `/hooks` where it is mounted, else the host's directory.
    fn default_hooks_dir(&self, host: &Host) -> PathBuf {
        PathBuf::from(if host.path(hookrun_worker::CONTAINER_HOOKS_DIR).is_dir() {
            hookrun_worker::CONTAINER_HOOKS_DIR
        } else {
            hookrun_worker::DEFAULT_HOOKS_DIR
        })
    }

    fn default_on_error(&self, _phase: &str) -> OnError {
        OnError::Warn
    }

    fn implicit(&self) -> Option<ImplicitHooks> {
        Some(hookrun_worker::IMPLICIT)
    }

    /// A worker runs as whoever runs the command (a container's user, a cron user).
    fn hooks_run_as_caller(&self) -> bool {
        true
    }

    fn claims_dir(&self, dir: &Path) -> bool {
        dir == Path::new(hookrun_worker::CONTAINER_HOOKS_DIR)
    }

    fn doctor(&self, d: &mut Doctor<'_>) -> Section {
        doctor::doctor(self, d)
    }

    fn install_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new(hookrun_worker::PLATFORM)
                .help("Container and cron workers"),
        )
    }

    /// Its install steps are mostly for containers, which need no adapter on this host.
    fn install_needs_adapter(&self) -> bool {
        false
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
}
