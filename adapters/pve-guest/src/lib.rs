//! How Proxmox VE calls a guest hookscript (`PVE::GuestHelpers::exec_hookscript`), and
//! what each phase's exit code means (`../shared/reference/proxmox.md` §2).
//!
//! - argv: `vmid phase` — the opposite order to vzdump; the object is the vmid;
//! - environment: inherited as Proxmox leaves it (plus `LC_ALL=C`, and
//!   `PVE_MIGRATED_FROM` in QEMU's `pre-start`, empty unless this is a migration target);
//! - stdin: EOF; stdout and stderr go to the task log;
//! - only `pre-start` is called with `stop_on_error`: a failure there aborts the start.
//!   For the other phases Proxmox only warns, so hookrun reports failures and exits 0.
//!
//! This crate is the calling convention only; what the admin CLI knows about wiring
//! guest hookscripts on a host (doctor, install) is in `adapters/cli/src/platforms/pve_guest/`.

use std::ffi::OsString;
use std::path::Path;

use hookrun_core::{OnError, Request};

pub const PLATFORM: &str = "pve-guest";
pub const DEFAULT_HOOKS_DIR: &str = "/etc/hookrun/pve-guest.d";

/// Every phase Proxmox calls a guest hookscript with.
pub const PHASES: &[&str] = &["pre-start", "post-start", "pre-stop", "post-stop"];

/// Only a failing `pre-start` stops anything (the guest does not start).
pub fn may_fail(phase: &str) -> bool {
    phase == "pre-start"
}

pub fn default_on_error(phase: &str) -> OnError {
    if may_fail(phase) {
        OnError::Fail
    } else {
        OnError::Warn
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ArgvError {
    Missing,
    Extra(usize),
}

/// The request for Proxmox's argv (without argv[0]).
pub fn request(args: Vec<OsString>) -> Result<Request, ArgvError> {
    match args.len() {
        0 | 1 => return Err(ArgvError::Missing),
        2 => {}
        n => return Err(ArgvError::Extra(n)),
    }
    let vmid = args[0].to_string_lossy().into_owned();
    let phase = args[1].to_string_lossy().into_owned();
    if vmid.is_empty() || phase.is_empty() {
        return Err(ArgvError::Missing);
    }
    Ok(Request {
        platform: PLATFORM.to_owned(),
        default_on_error: default_on_error(&phase),
        may_fail: may_fail(&phase),
        phase,
        object: Some(vmid),
        args,
        env: Vec::new(),
        stdin: None,
        implicit: None,
        filter: false,
        // Guest hookscripts run inside qm/pct tasks, stopped like vzdump tasks: SIGTERM
        // to the task's process group, SIGKILL 5 s later.
        platform_grace: Some(std::time::Duration::from_secs(5)),
    })
}

pub const HELP: &str = "\
hookrun-pve-guest - run a directory of hooks as a Proxmox VE guest hookscript

Usage: hookrun-pve-guest VMID PHASE

Proxmox calls a guest's hookscript with the guest's VMID and one of the phases
pre-start, post-start, pre-stop, post-stop. Every executable hook in the hooks
directory whose header asks for the phase (and, with '# objects:', for the VMID) runs,
in file-name order, with the same two arguments. Only pre-start can stop anything: a
failing hook there (on-error fail or abort, the default for pre-start) makes Proxmox
refuse to start the guest. Failures in the other phases are reported and exit 0.

Wiring: the hookscript must be a snippet on a storage with the 'snippets' content type:
    ln -s /usr/bin/hookrun-pve-guest /var/lib/vz/snippets/hookrun
    qm set 100 --hookscript local:snippets/hookrun     (pct set for containers)

Hooks directory, first that applies: $HOOKRUN_HOOKS_DIR; hooks.d beside the snippet
(e.g. /var/lib/vz/snippets/hooks.d); hooks_dir in the [pve-guest] table of
/etc/hookrun/hookrun.toml; /etc/hookrun/pve-guest.d.
";

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    let program = hookrun_core::entry::Program {
        name: "hookrun-pve-guest",
        version: env!("CARGO_PKG_VERSION"),
        help: HELP,
    };
    let (invoked, args) = match program.start(hookrun_core::entry::Flags::First) {
        Ok(a) => (a.invoked, a.args),
        Err(code) => return code,
    };
    hookrun_core::logging::init("hookrun", false);
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => {
            let what = match e {
                ArgvError::Missing => "expected two arguments, VMID and PHASE".to_string(),
                ArgvError::Extra(n) => format!("expected two arguments, VMID and PHASE, got {n}"),
            };
            tracing::error!(
                "{what} (Proxmox calls it as: hookrun-pve-guest 100 pre-start); see --help"
            );
            return 2;
        }
    };
    let dir = Path::new(DEFAULT_HOOKS_DIR);
    hookrun_core::dispatch::dispatch_for_platform(&req, invoked.as_deref(), dir)
        .map_or_else(|code| code, |report| report.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv_is_vmid_then_phase() {
        let r = request(os(&["101", "pre-start"])).unwrap();
        assert_eq!(
            (r.phase.as_str(), r.object.as_deref()),
            ("pre-start", Some("101"))
        );
        assert_eq!(r.args, os(&["101", "pre-start"]));
        assert!(r.may_fail);
        assert_eq!(r.default_on_error, OnError::Fail);
        for phase in ["post-start", "pre-stop", "post-stop", "some-future-phase"] {
            let r = request(os(&["101", phase])).unwrap();
            assert!(!r.may_fail, "{phase}");
            assert_eq!(r.default_on_error, OnError::Warn, "{phase}");
        }
    }

    #[test]
    fn garbage_argv() {
        assert_eq!(request(os(&[])).unwrap_err(), ArgvError::Missing);
        assert_eq!(request(os(&["101"])).unwrap_err(), ArgvError::Missing);
        assert_eq!(request(os(&["101", ""])).unwrap_err(), ArgvError::Missing);
        assert_eq!(
            request(os(&["101", "pre-start", "x"])).unwrap_err(),
            ArgvError::Extra(3)
        );
    }
}
