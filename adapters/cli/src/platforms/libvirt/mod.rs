//! libvirt: one module for its six hook drivers (`hookrun_libvirt::DRIVERS`), each a
//! platform `libvirt-<driver>` wired as `/etc/libvirt/hooks/<driver>`. How libvirt
//! calls a hook (argv, the XML on stdin, which ops may fail) is the adapter's:
//! `adapters/libvirt/`.

mod doctor;
mod host;
mod install;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hookrun_core::OnError;
use hookrun_core::config::Config;

use super::{Callback, Platform};
use crate::cli::InstallArgs;
use crate::doctor::{Doctor, Section};
use crate::host::Host;
use crate::install::Out;

pub const ADAPTER: &str = "hookrun-libvirt";

/// The drivers in report order (doctor's sections, `install --driver`'s values): the
/// guest drivers most hosts use first, then the daemon's own hook, then the rarer
/// hypervisors. The same set as `hookrun_libvirt::DRIVERS` (a test holds it so).
pub const REPORT_ORDER: &[&str] = &["qemu", "lxc", "network", "daemon", "libxl", "bhyve"];

/// The running libvirt daemons, looked up once for all drivers (`None`: `ROOT/proc`
/// unreadable).
type Daemons = Rc<OnceCell<Option<Vec<host::Daemon>>>>;

pub struct Libvirt {
    driver: &'static str,
    name: String,
    daemons: Daemons,
}

/// One platform per driver, sharing the look-up of the daemons.
pub fn drivers() -> Vec<Box<dyn Platform>> {
    let daemons = Daemons::default();
    REPORT_ORDER
        .iter()
        .map(|d| {
            Box::new(Libvirt {
                driver: d,
                name: hookrun_libvirt::platform(d),
                daemons: Rc::clone(&daemons),
            }) as Box<dyn Platform>
        })
        .collect()
}

/// Refuses `libvirt-<driver>` for a driver libvirt has no hook for.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if let Some(d) = name.strip_prefix("libvirt-")
        && !hookrun_libvirt::DRIVERS.contains(&d)
    {
        return Err(crate::Exit::error(
            crate::EXIT_USAGE,
            format!(
                "unknown libvirt driver '{d}'; libvirt has hooks for: {}",
                hookrun_libvirt::DRIVERS.join(", ")
            ),
        ));
    }
    Ok(())
}

impl Libvirt {
    fn daemons(&self, host: &Host) -> Option<&[host::Daemon]> {
        self.daemons
            .get_or_init(|| host::libvirt_daemons(host))
            .as_deref()
    }
}

impl Platform for Libvirt {
    fn name(&self) -> &str {
        &self.name
    }

    fn family(&self) -> &str {
        "libvirt"
    }

    fn adapter(&self) -> Option<&'static str> {
        Some(ADAPTER)
    }

    fn phases(&self) -> Option<&'static [&'static str]> {
        Some(hookrun_libvirt::phases(self.driver))
    }

    fn default_hooks_dir(&self, _host: &Host) -> PathBuf {
        PathBuf::from(hookrun_libvirt::default_hooks_dir(self.driver))
    }

    fn default_on_error(&self, phase: &str) -> OnError {
        hookrun_libvirt::default_on_error(self.driver, phase)
    }

    fn caller(&self) -> Option<&'static str> {
        Some("libvirt")
    }

    fn sync_callback(&self, path: &Path) -> Option<Callback> {
        calls_libvirt(path).map(|line| Callback {
            line,
            lint: "a sync libvirt hook calls back into libvirt (virsh): libvirt waits for this hook while it holds the domain's lock, so this deadlocks; use the XML on stdin, or make the hook '# mode: async'",
            doctor: "a sync libvirt hook calls back into libvirt (virsh): this deadlocks; use the XML on stdin, or make it '# mode: async'",
        })
    }

    fn doctor(&self, d: &mut Doctor<'_>) -> Section {
        doctor::doctor(self, d)
    }

    fn install_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new("libvirt")
                .help("libvirt: /etc/libvirt/hooks/DRIVER symlinks"),
        )
    }

    fn install_usage(&self, args: &InstallArgs, host: &Host, selected: bool) -> Option<String> {
        if !args.drivers.is_empty() && !selected {
            return Some("--driver is for 'hookrun install libvirt'".into());
        }
        if args.restart_daemon && (!selected || !args.apply) {
            return Some("--restart-daemon goes with 'hookrun install libvirt --apply'".into());
        }
        if args.restart_daemon && !host.is_real() {
            return Some("--restart-daemon cannot restart a daemon of another --root".into());
        }
        None
    }

    fn install(
        &self,
        out: &mut Out<'_>,
        config: &Config,
        bin: &Path,
        args: &InstallArgs,
    ) -> anyhow::Result<()> {
        install::install(out, config, bin, args)
    }
}

/// The first line (1-based) of a script that runs `virsh` or another libvirt client,
/// ignoring comment lines. Reads at most 1 MiB.
fn calls_libvirt(path: &std::path::Path) -> Option<usize> {
    let text = crate::lint::script_text(path)?;
    text.lines().enumerate().skip(1).find_map(|(i, line)| {
        let code = line.trim_start();
        if code.starts_with('#') {
            return None;
        }
        let words = code.split(|c: char| {
            !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/' || c == '.')
        });
        words
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .any(|w| {
                matches!(w, "virsh" | "virt-xml" | "virt-install" | "virt-clone")
                    || w == "libvirt" && code.contains("import")
            })
            .then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_order_has_every_driver_once() {
        let mut order = REPORT_ORDER.to_vec();
        let mut drivers = hookrun_libvirt::DRIVERS.to_vec();
        order.sort_unstable();
        drivers.sort_unstable();
        assert_eq!(order, drivers);
    }
}
