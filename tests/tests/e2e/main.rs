//! End-to-end tests of the built adapters, each run as its platform runs it.
//!
//! - `vzdump`: whole simulated vzdump jobs (every mode, both guest types, dir and PBS
//!   storages) and their failure paths, called exactly as `PVE::VZDump::run_hook_script`
//!   calls its script, checking which hooks ran with which argv and environment, what
//!   hookrun recorded and what vzdump would conclude;
//! - `process`: real process behaviour — timeouts, signals, pipes held by background
//!   children, permission refusals, spawn errors, output prefixing, stdin, ordering;
//! - `seed`: the seed's bash dispatcher and hookrun-vzdump side by side on the same hooks;
//! - `pve_guest`: `hookrun-pve-guest` as a guest hookscript snippet, called the way
//!   `PVE::GuestHelpers::exec_hookscript` calls it ([`hookrun_tests::pve`]): VM and
//!   container starts and stops, a migration-target start, pre-start aborts, failures in
//!   the other phases, `# objects:` by VMID, where the hooks directory is found;
//! - `worker`: `hookrun-worker run|hook` for container and cron workers: the command's
//!   exit code, on-error abort (75), `--no-wait` and waiting on the worker's lock,
//!   signals, `HOOK_TIMEOUT`, the seed's header-less `pre-<worker>.sh`, `/hooks` in a
//!   private mount namespace, and a real worker (restic) end to end.
//!
//! Every test builds its own tree with [`hookrun_tests::TestEnv`]; tests run in parallel.

mod asyncmode;
mod backrest;
mod borgmatic;
mod cli;
mod containment;
mod entries;
mod hardening;
mod libvirt;
mod libvirtd;
mod mkjob;
mod monitoring;
mod privilege;
mod process;
mod pve_guest;
mod reliability;
mod seed;
mod static_build;
mod task_log;
mod vzdump;
mod worker;

use hookrun_tests::{Run, TestEnv};

/// A dispatch of hookrun-vzdump outside a simulated job: the entry point with vzdump's
/// fixed variables (`LC_ALL=C`, `LVM_SUPPRESS_FD_WARNINGS=1`) and the test's
/// `HOOKRUN_CONFIG`; add the phase arguments.
pub(crate) fn vzdump_call(env: &TestEnv) -> Run {
    env.run_entry()
        .env("LC_ALL", "C")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

/// The run records as `(hook, phase, outcome, exit_code)`, for compact assertions.
pub(crate) fn record_summary(env: &TestEnv) -> Vec<(String, String, String, Option<i64>)> {
    env.records()
        .iter()
        .map(|r| {
            r.assert_well_formed();
            (
                r.hook().to_owned(),
                r.str("phase").unwrap_or_default().to_owned(),
                r.outcome().to_owned(),
                r.int("exit_code"),
            )
        })
        .collect()
}

/// `(hook, phase, outcome, exit_code)` built from string literals.
pub(crate) fn rec(
    hook: &str,
    phase: &str,
    outcome: &str,
    exit_code: Option<i64>,
) -> (String, String, String, Option<i64>) {
    (
        hook.to_owned(),
        phase.to_owned(),
        outcome.to_owned(),
        exit_code,
    )
}
mod admin;
