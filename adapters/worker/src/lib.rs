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

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use hookrun_core::discover::ImplicitHooks;
use hookrun_core::process::{Ending, Exit, Output, SyncCommand};
use hookrun_core::signals::SignalWatch;
use hookrun_core::{Config, OnError, Request, Settings};

pub const PLATFORM: &str = "worker";
/// The container convention: hooks are mounted at /hooks.
pub const CONTAINER_HOOKS_DIR: &str = "/hooks";
pub const DEFAULT_HOOKS_DIR: &str = "/etc/hookrun/worker.d";
/// Exit code when a pre-hook cancels the command (sysexits EX_TEMPFAIL: try later).
pub const EXIT_CANCELLED: i32 = 75;

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
    }
}

/// Settings, hooks directory and whether that directory was asked for explicitly.
struct Setup {
    settings: Settings,
    dir: PathBuf,
    explicit: bool,
}

fn setup(invoked: Option<&Path>) -> Option<Setup> {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}; running without hooks (fix the configuration file)");
            return None;
        }
    };
    let mut settings = config.settings_for(PLATFORM);
    match hook_timeout(std::env::var("HOOK_TIMEOUT").ok().as_deref()) {
        Ok(Some(t)) => settings.default_timeout = Some(t),
        Ok(None) => {}
        Err(m) => tracing::warn!("{m}"),
    }
    let explicit = std::env::var_os("HOOKRUN_HOOKS_DIR").is_some_and(|d| !d.is_empty())
        || settings.hooks_dir.is_some();
    let default = if Path::new(CONTAINER_HOOKS_DIR).is_dir() {
        CONTAINER_HOOKS_DIR
    } else {
        DEFAULT_HOOKS_DIR
    };
    let dir = hookrun_core::resolve_hooks_dir(&settings, invoked, Path::new(default));
    Some(Setup {
        settings,
        dir,
        explicit,
    })
}

/// Runs one phase. A worker without a hooks directory simply has no hooks; one that was
/// named explicitly and is missing is worth a warning. Never fails the worker.
fn dispatch(setup: &Setup, req: &Request) -> Option<hookrun_core::Report> {
    if !setup.dir.exists() && !setup.explicit {
        tracing::debug!(
            "no hooks directory ({}); no hooks for {}",
            setup.dir.display(),
            req.phase
        );
        return None;
    }
    match hookrun_core::dispatch(&setup.settings, &setup.dir, req) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("{e}; no {} hooks were run", req.phase);
            None
        }
    }
}

fn run_worker(no_wait: bool, worker: &str, command: &[OsString], invoked: Option<&Path>) -> i32 {
    if let Err(m) = validate_worker(worker) {
        tracing::error!("{m}");
        return 2;
    }
    let setup = setup(invoked);
    let mut signals = match SignalWatch::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot set up signal handling: {e}");
            return 70;
        }
    };
    let lock_dir = setup.as_ref().map_or_else(
        || Settings::default().lock_dir,
        |s| s.settings.lock_dir.clone(),
    );
    let lock_name = format!("worker-{worker}");
    let _lock = if no_wait {
        match hookrun_core::lock::try_acquire(&lock_dir, &lock_name) {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                tracing::info!("skipped: previous run still active (lock {lock_name} is held)");
                return 0;
            }
            Err(why) => {
                tracing::warn!("{why}; running without the lock");
                None
            }
        }
    } else {
        match hookrun_core::lock::acquire(&lock_dir, &lock_name, &mut signals) {
            hookrun_core::lock::LockWait::Acquired(g) => Some(g),
            hookrun_core::lock::LockWait::Interrupted(sig) => {
                tracing::warn!(
                    "signal {sig} while waiting for lock {lock_name}; {worker} was not run"
                );
                return 128 + sig;
            }
            hookrun_core::lock::LockWait::Failed(why) => {
                tracing::warn!("{why}; running without the lock");
                None
            }
        }
    };

    let pre_phase = format!("pre-{worker}");
    let post_phase = format!("post-{worker}");
    let mut cancelled = false;
    if let Some(setup) = &setup
        && let Some(report) = dispatch(
            setup,
            &request(&pre_phase, Some(worker), Vec::new(), Vec::new()),
        )
    {
        if let Some(sig) = report.stopped_by {
            tracing::warn!("signal {sig} during the {pre_phase} hooks; {worker} was not run");
            return 128 + sig;
        }
        if let Some(h) = report
            .hooks
            .iter()
            .find(|h| h.failed() && h.on_error == OnError::Abort)
        {
            tracing::error!(
                "{}: failed with on-error abort, so {worker} is cancelled (exit {EXIT_CANCELLED})",
                h.name
            );
            cancelled = true;
        }
    }

    let (code, signalled) = if cancelled {
        (EXIT_CANCELLED, None)
    } else {
        run_command(
            command,
            &mut signals,
            setup
                .as_ref()
                .map_or(Duration::from_secs(5), |s| s.settings.kill_grace),
        )
    };

    let mut post_stopped_by = None;
    if let Some(setup) = &setup {
        let env = vec![(
            OsString::from("HOOKRUN_EXIT_CODE"),
            OsString::from(code.to_string()),
        )];
        let req = request(
            &post_phase,
            Some(worker),
            vec![OsString::from(code.to_string())],
            env,
        );
        // Hooks never change the code, but the adapter being told to stop does.
        post_stopped_by = dispatch(setup, &req).and_then(|r| r.stopped_by);
    }
    match signalled.or(post_stopped_by) {
        Some(sig) => 128 + sig,
        None => code,
    }
}

/// Runs the worker's command in its own process group with the terminal's stdio;
/// returns its exit code (128+N when killed by signal N) and the signal the adapter
/// itself received, if any.
fn run_command(
    command: &[OsString],
    signals: &mut SignalWatch,
    kill_grace: Duration,
) -> (i32, Option<i32>) {
    let Some((program, args)) = command.split_first() else {
        return (2, None);
    };
    let program = PathBuf::from(program);
    let cmd = SyncCommand {
        program: &program,
        args,
        env: &[],
        stdin: None,
        timeout: None,
        kill_grace,
        output: Output::Inherit,
        privilege: None,
    };
    let result = hookrun_core::process::run_sync(&cmd, signals);
    let code_of = |exit: Exit| match exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => 128 + s,
        Exit::Abandoned => 128 + 9,
    };
    match result.ending {
        Ending::Exited(exit) | Ending::TimedOut(exit) => (code_of(exit), None),
        Ending::Interrupted { signal, exit } => (code_of(exit), Some(signal)),
        Ending::SpawnFailed(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            tracing::error!("cannot run {}: {e}", program.display());
            (code, None)
        }
    }
}

fn run_hook(phase: &str, args: Vec<OsString>, invoked: Option<&Path>) -> i32 {
    let Some(setup) = setup(invoked) else {
        return 0;
    };
    let req = request(phase, worker_of(phase), args, Vec::new());
    dispatch(&setup, &req).map_or(0, |report| report.exit_code)
}

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    if let Some(code) = hookrun_core::supervise::supervisor_entry() {
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
