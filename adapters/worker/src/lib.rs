//! Container and cron workers (DESIGN §6, seed 001): hooks before and after a command.
//!
//! `hookrun-worker run <worker> -- <cmd...>` takes the lock `worker-<worker>`, runs
//! phase `pre-<worker>`, runs the command with the terminal's stdio and signals passed
//! on, runs `post-<worker>` with the command's exit code as `$1` and
//! `HOOKRUN_EXIT_CODE`, and exits with the command's code. Hooks never change that
//! code — a failed hook must not turn a good backup into a failed one — except that a
//! pre-hook with `on-error: abort` cancels the command (exit 75, EX_TEMPFAIL).
//!
//! `hookrun-worker hook <phase> [args...]` dispatches one phase, a drop-in for the
//! seed's `/hooks/pre-backup.sh` in workers that call their hooks themselves.
//!
//! This crate is the calling convention only; what the admin CLI knows about wiring
//! workers on a host (doctor, install) is in `adapters/cli/src/platforms/worker/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use hookrun_core::discover::ImplicitHooks;
use hookrun_core::wrap::{HookSetup, Wrap};
use hookrun_core::{OnError, Request};

pub const PLATFORM: &str = "worker";
/// The container convention: hooks are mounted at /hooks.
pub const CONTAINER_HOOKS_DIR: &str = "/hooks";
pub const DEFAULT_HOOKS_DIR: &str = "/etc/hookrun/worker.d";
/// Exit code when a pre-hook cancels the command (sysexits EX_TEMPFAIL: try later).
pub const EXIT_CANCELLED: i32 = hookrun_core::wrap::EXIT_CANCELLED;

/// `pre-backup.sh` without a header is a sync hook of phase `pre-backup`.
pub const IMPLICIT: ImplicitHooks = ImplicitHooks {
    prefixes: &["pre-", "post-"],
    suffix: ".sh",
};

#[derive(Debug, Parser)]
#[command(
    name = "hookrun-worker",
    version,
    about = "Run hooks before and after a container or cron worker",
    long_about = "Runs the hooks of phase pre-WORKER, then the command, then the hooks of phase \
post-WORKER with the command's exit code as $1 and HOOKRUN_EXIT_CODE, and exits with the \
command's code. Hooks live in $HOOKRUN_HOOKS_DIR, /hooks (when it exists) or \
/etc/hookrun/worker.d; a header-less pre-WORKER.sh / post-WORKER.sh there runs as a sync hook \
of that phase. HOOK_TIMEOUT (seconds) sets the default timeout of hooks."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND between the pre-WORKER and post-WORKER hooks, under the lock worker-WORKER
    Run {
        /// Do not wait for a previous run of this worker: print a line and exit 0
        #[arg(long)]
        no_wait: bool,
        /// The worker's name (backup, check, prune, ...): phases pre-NAME and post-NAME
        worker: String,
        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Dispatch one phase, for workers that call their hooks themselves
    Hook {
        /// The phase, e.g. pre-backup or post-backup
        phase: String,
        /// Arguments passed to every hook (e.g. the exit code for a post phase)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Worker names become lock and job names.
pub fn validate_worker(name: &str) -> Result<(), String> {
    hookrun_core::header::validate_lock_name(name).map_err(|m| format!("worker name {name:?}: {m}"))
}

/// `HOOK_TIMEOUT` in seconds; 0 or empty means "no timeout from here".
pub fn hook_timeout(value: Option<&str>) -> Result<Option<Duration>, String> {
    match value.map(str::trim) {
        None | Some("" | "0") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(|n| Some(Duration::from_secs(n)))
            .map_err(|_| format!("HOOK_TIMEOUT={v:?} is not a number of seconds; hooks run without a default timeout")),
    }
}

/// The worker whose phase this is (`pre-backup` → `backup`), used as the object.
pub fn worker_of(phase: &str) -> Option<&str> {
    phase
        .strip_prefix("pre-")
        .or_else(|| phase.strip_prefix("post-"))
        .filter(|w| !w.is_empty())
}

pub fn request(
    phase: &str,
    worker: Option<&str>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
) -> Request {
    Request {
        platform: PLATFORM.to_owned(),
        phase: phase.to_owned(),
        object: worker.map(str::to_owned),
        args,
        env,
        stdin: None,
        default_on_error: OnError::Warn,
        may_fail: true,
        implicit: Some(IMPLICIT),
        filter: false,
        platform_grace: None,
    }
}

fn setup(invoked: Option<&Path>) -> Option<HookSetup> {
    let default = if Path::new(CONTAINER_HOOKS_DIR).is_dir() {
        CONTAINER_HOOKS_DIR
    } else {
        DEFAULT_HOOKS_DIR
    };
    HookSetup::load(
        PLATFORM,
        invoked,
        Path::new(default),
        |settings| match hook_timeout(std::env::var("HOOK_TIMEOUT").ok().as_deref()) {
            Ok(Some(t)) => settings.default_timeout = Some(t),
            Ok(None) => {}
            Err(m) => tracing::warn!("{m}"),
        },
    )
}

fn run_worker(no_wait: bool, worker: &str, command: &[OsString], invoked: Option<&Path>) -> i32 {
    if let Err(m) = validate_worker(worker) {
        tracing::error!("{m}");
        return 2;
    }
    let setup = setup(invoked);
    let post_phase = format!("post-{worker}");
    let wrap = Wrap {
        platform: PLATFORM,
        name: worker,
        lock: format!("worker-{worker}"),
        no_wait,
        pre: request(
            &format!("pre-{worker}"),
            Some(worker),
            Vec::new(),
            Vec::new(),
        ),
        post: Box::new(|code: i32| {
            let env = vec![(
                OsString::from("HOOKRUN_EXIT_CODE"),
                OsString::from(code.to_string()),
            )];
            request(
                &post_phase,
                Some(worker),
                vec![OsString::from(code.to_string())],
                env,
            )
        }),
        command,
    };
    hookrun_core::wrap::run(&wrap, setup.as_ref())
}

fn run_hook(phase: &str, args: Vec<OsString>, invoked: Option<&Path>) -> i32 {
    let Some(setup) = setup(invoked) else {
        return 0;
    };
    let req = request(phase, worker_of(phase), args, Vec::new());
    setup.dispatch(&req).map_or(0, |report| report.exit_code)
}

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    if let Some(code) = hookrun_core::entry::supervisor() {
        return code;
    }
    let invoked = std::env::args_os().next().map(PathBuf::from);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // Container logs have no timestamps of their own.
    hookrun_core::logging::init_with("hookrun-worker", false, true);
    match cli.command {
        Command::Run {
            no_wait,
            worker,
            command,
        } => run_worker(no_wait, &worker, &command, invoked.as_deref()),
        Command::Hook { phase, args } => run_hook(&phase, args, invoked.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_from_the_environment() {
        assert_eq!(hook_timeout(None), Ok(None));
        assert_eq!(hook_timeout(Some("0")), Ok(None));
        assert_eq!(
            hook_timeout(Some(" 300 ")),
            Ok(Some(Duration::from_secs(300)))
        );
        assert!(hook_timeout(Some("5m")).is_err());
    }

    #[test]
    fn workers_and_phases() {
        assert_eq!(worker_of("pre-backup"), Some("backup"));
        assert_eq!(worker_of("post-snapshot-export"), Some("snapshot-export"));
        assert_eq!(worker_of("pre-"), None);
        assert_eq!(worker_of("backup"), None);
        assert!(validate_worker("backup").is_ok());
        assert!(validate_worker("../x").is_err());
        assert_eq!(IMPLICIT.phase_of("pre-backup.sh"), Some("pre-backup"));
        assert_eq!(IMPLICIT.phase_of("backup.sh"), None);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
