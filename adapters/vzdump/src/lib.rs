//! How Proxmox `vzdump` calls its hook script (`PVE::VZDump::run_hook_script`), and
//! what each phase's exit code means to it (`../shared/reference/proxmox.md` §1).
//!
//! - argv: `phase` for job phases, `phase mode vmid` for guest phases; the object is the
//!   vmid (the third argument, like the seed's `${3:-}`);
//! - environment: cleared by vzdump except STOREID, DUMPDIR, VMTYPE, HOSTNAME, TARGET,
//!   LOGFILE, LC_ALL and LVM_SUPPRESS_FD_WARNINGS; hooks get it unchanged;
//! - stdin: EOF;
//! - a failure fails the job (job-init, job-start, job-end), the guest (backup-start,
//!   pre-stop, post-restart, backup-end) or only warns (backup-abort, log-end,
//!   job-abort); a failing `pre-restart` leaves the guest stopped, so that phase never
//!   fails the dispatch.
//!
//! This crate is the calling convention only; what the admin CLI knows about wiring
//! vzdump on a host (doctor, install, demo) is in `adapters/cli/src/platforms/vzdump/`.

use std::ffi::OsString;
use std::path::Path;

use hookrun_core::{OnError, Request};

pub const PLATFORM: &str = "vzdump";
pub const DEFAULT_HOOKS_DIR: &str = "/etc/hookrun/vzdump.d";

/// Every phase vzdump has (pve-manager 9.x); unknown ones are still dispatched.
pub const PHASES: &[&str] = &[
    "job-init",
    "job-start",
    "job-end",
    "job-abort",
    "backup-start",
    "pre-stop",
    "pre-restart",
    "post-restart",
    "backup-end",
    "backup-abort",
    "log-end",
];

/// Job-level phases get only the phase as argument; the others get `phase mode vmid`.
pub const JOB_PHASES: &[&str] = &["job-init", "job-start", "job-end", "job-abort"];

/// Whether a failure in `phase` may be passed on to vzdump.
pub fn may_fail(phase: &str) -> bool {
    phase != "pre-restart"
}

/// The request for vzdump's argv (without argv[0]); `None` when no phase was given.
pub fn request(args: Vec<OsString>) -> Option<Request> {
    let phase = args.first()?.to_string_lossy().into_owned();
    if phase.is_empty() {
        return None;
    }
    let object = args
        .get(2)
        .map(|o| o.to_string_lossy().into_owned())
        .filter(|o| !o.is_empty());
    Some(Request {
        platform: PLATFORM.to_owned(),
        may_fail: may_fail(&phase),
        phase,
        object,
        args,
        env: Vec::new(),
        stdin: None,
        default_on_error: OnError::Fail,
        implicit: None,
        filter: false,
        // Stopping a vzdump task: SIGTERM to its process group, SIGKILL 5 s later
        // (PVE::RESTEnvironment::check_worker).
        platform_grace: Some(std::time::Duration::from_secs(5)),
    })
}

pub const HELP: &str = "\
hookrun-vzdump - run a directory of hooks as the Proxmox vzdump hook script

Usage: hookrun-vzdump PHASE [MODE VMID]

vzdump calls this program with the phase (and, for guest phases, the backup mode and
the guest's VMID). Every executable hook in the hooks directory whose header asks for
the phase runs, in file-name order, with the same arguments and environment.

Wire it up in /etc/vzdump.conf:   script: /usr/bin/hookrun-vzdump

Hooks directory, first that applies: $HOOKRUN_HOOKS_DIR; hooks.d beside the path this
program was invoked by (e.g. a symlink on shared storage); hooks_dir in the [vzdump]
table of /etc/hookrun/hookrun.toml; /etc/hookrun/vzdump.d.

Phases: job-init job-start job-end job-abort backup-start pre-stop pre-restart
        post-restart backup-end backup-abort log-end

Called without a phase it does nothing and exits 0. Use `hookrun list --phase PHASE`
to see what would run and `hookrun lint DIR` to check headers.
";

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    let program = hookrun_core::entry::Program {
        name: "hookrun-vzdump",
        version: env!("CARGO_PKG_VERSION"),
        help: HELP,
    };
    let argv = match program.start(hookrun_core::entry::Flags::First) {
        Ok(a) => a,
        Err(code) => return code,
    };
    hookrun_core::logging::init("hookrun", false);
    let Some(req) = request(argv.args) else {
        // The seed's dispatcher does the same; vzdump always passes a phase.
        return 0;
    };
    let dir = Path::new(DEFAULT_HOOKS_DIR);
    hookrun_core::dispatch::dispatch_for_platform(&req, argv.invoked.as_deref(), dir)
        .map_or_else(|code| code, |report| report.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv_forms() {
        assert!(request(vec![]).is_none());
        assert!(request(os(&[""])).is_none());
        let r = request(os(&["job-start"])).unwrap();
        assert_eq!((r.phase.as_str(), r.object), ("job-start", None));
        let r = request(os(&["backup-start", "snapshot", "101"])).unwrap();
        assert_eq!(
            (r.phase.as_str(), r.object.as_deref()),
            ("backup-start", Some("101"))
        );
        assert_eq!(r.args, os(&["backup-start", "snapshot", "101"]));
        assert_eq!(r.default_on_error, OnError::Fail);
        let r = request(os(&["some-future-phase", "x"])).unwrap();
        assert_eq!((r.phase.as_str(), r.object), ("some-future-phase", None));
    }

    #[test]
    fn pre_restart_never_fails() {
        for p in PHASES {
            assert_eq!(may_fail(p), *p != "pre-restart", "{p}");
        }
    }
}
