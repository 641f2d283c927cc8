//! Wrapping a command in hooks (DESIGN §6, the worker): take the command's lock, run the
//! `pre` phase, run the command with signals passed on, run the `post` phase with the
//! command's exit code, and exit with that code. Hooks never change it — a failed hook
//! must not turn a good backup into a failed one — except that a pre hook with
//! `on-error: abort` cancels the command ([`EXIT_CANCELLED`]).
//!
//! Process handling (the guard, the lock, signals, the command's unit) lives here, in
//! core, like every other; an adapter only names the phases and the lock.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Settings;
use crate::dispatch::{Report, Request};
use crate::header::OnError;
use crate::lock::{self, LockWait};
use crate::process::{self, Ending, Exit, Output, SyncCommand};
use crate::record::{OutcomeKind, RecordLog, RunRecord};
use crate::signals::SignalWatch;

/// Exit code when a pre hook cancels the command (sysexits EX_TEMPFAIL: try later).
pub const EXIT_CANCELLED: i32 = 75;

/// Where a wrapped command's hooks are, as the adapter resolved it.
#[derive(Debug, Clone)]
pub struct HookSetup {
    pub settings: Settings,
    pub dir: PathBuf,
    /// The directory was asked for (`HOOKRUN_HOOKS_DIR`, `hooks_dir`): missing, it is
    /// worth a warning; a default that does not exist just means no hooks.
    pub explicit: bool,
}

impl HookSetup {
    /// What [`crate::dispatch::dispatch_for_platform`] does before it dispatches, for a
    /// wrapped command: the configuration, the platform's settings (then `adjust`, for
    /// what the calling convention overrides) and the hooks directory. A configuration
    /// that cannot be loaded is logged and gives `None`: the command then runs without
    /// hooks, rather than a backup not at all.
    pub fn load(
        platform: &str,
        invoked: Option<&Path>,
        default_dir: &Path,
        adjust: impl FnOnce(&mut Settings),
    ) -> Option<HookSetup> {
        let config = match crate::config::Config::load() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}; running without hooks (fix the configuration file)");
                return None;
            }
        };
        let mut settings = config.settings_for(platform);
        adjust(&mut settings);
        let explicit = std::env::var_os("HOOKRUN_HOOKS_DIR").is_some_and(|d| !d.is_empty())
            || settings.hooks_dir.is_some();
        let dir = crate::dispatch::resolve_hooks_dir(&settings, invoked, default_dir);
        Some(HookSetup {
            settings,
            dir,
            explicit,
        })
    }

    /// Runs one phase; never fails the caller.
    pub fn dispatch(&self, req: &Request) -> Option<Report> {
        if !self.dir.exists() && !self.explicit {
            tracing::debug!(
                "no hooks directory ({}); no hooks for {}",
                self.dir.display(),
                req.phase
            );
            return None;
        }
        match crate::dispatch::dispatch(&self.settings, &self.dir, req) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("{e}; no {} hooks were run", req.phase);
                None
            }
        }
    }
}

/// One wrapped run.
pub struct Wrap<'a> {
    pub platform: &'a str,
    /// The wrapped thing's name (the worker): the records' object.
    pub name: &'a str,
    pub lock: String,
    /// Don't wait for a run that holds the lock: skip (loudly, with a record).
    pub no_wait: bool,
    pub pre: Request,
    /// The post phase's request for the command's exit code.
    pub post: Box<dyn Fn(i32) -> Request + 'a>,
    pub command: &'a [OsString],
}

/// Runs `wrap`; returns the exit code: the command's (128+N when it died by signal N),
/// 75 when a pre hook cancelled it or its lock wait timed out, 128+N when this process
/// got signal N.
pub fn run(wrap: &Wrap<'_>, hooks: Option<&HookSetup>) -> i32 {
    let mut signals = match SignalWatch::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot set up signal handling: {e}");
            return 70;
        }
    };
    let defaults = Settings::default();
    let settings = hooks.map_or(&defaults, |h| &h.settings);
    let name = wrap.name;
    // Before the lock: if this process is killed, its guard stops the command and the
    // hooks before the lock can be taken by the next run.
    crate::contain::guard();
    let lock_name = wrap.lock.as_str();
    let _lock = if wrap.no_wait {
        match lock::try_acquire(&settings.lock_dir, lock_name) {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                let holder = lock::holder(&settings.lock_dir, lock_name);
                let why = format!(
                    "skipped: previous run still active (lock {lock_name} is held{})",
                    holder.map(|h| format!(" by {h}")).unwrap_or_default()
                );
                tracing::warn!("{why}; {name} was not run");
                record(settings, wrap, OutcomeKind::Skipped, None, &why);
                return 0;
            }
            Err(why) => {
                tracing::error!("{why}; running without the lock");
                None
            }
        }
    } else {
        match lock::acquire(
            &settings.lock_dir,
            lock_name,
            &mut signals,
            settings.lock_timeout,
        ) {
            LockWait::Acquired(g) => Some(g),
            LockWait::Interrupted(sig) => {
                tracing::warn!(
                    "signal {sig} while waiting for lock {lock_name}; {name} was not run"
                );
                return 128 + sig;
            }
            LockWait::TimedOut { waited, holder } => {
                let why =
                    crate::dispatch::lock_timeout_message(lock_name, waited, holder.as_deref());
                tracing::error!("{name}: {why} (exit {EXIT_CANCELLED})");
                record(
                    settings,
                    wrap,
                    OutcomeKind::LockTimeout,
                    Some(EXIT_CANCELLED),
                    &why,
                );
                return EXIT_CANCELLED;
            }
            LockWait::Failed(why) => {
                tracing::error!("{why}; running without the lock");
                None
            }
        }
    };

    let mut cancelled = false;
    if let Some(report) = hooks.and_then(|h| h.dispatch(&wrap.pre)) {
        if let Some(sig) = report.stopped_by {
            tracing::warn!(
                "signal {sig} during the {} hooks; {name} was not run",
                wrap.pre.phase
            );
            return 128 + sig;
        }
        if let Some(h) = report
            .hooks
            .iter()
            .find(|h| h.failed() && h.on_error == OnError::Abort)
        {
            tracing::error!(
                "{}: failed with on-error abort, so {name} is cancelled (exit {EXIT_CANCELLED})",
                h.name
            );
            cancelled = true;
        }
    }

    let (code, signalled) = if cancelled {
        (EXIT_CANCELLED, None)
    } else {
        run_command(wrap.command, &mut signals, settings.kill_grace)
    };

    // Hooks never change the code, but this process being told to stop does.
    let post_stopped_by = hooks
        .and_then(|h| h.dispatch(&(wrap.post)(code)))
        .and_then(|r| r.stopped_by);
    match signalled.or(post_stopped_by) {
        Some(sig) => 128 + sig,
        None => code,
    }
}

/// Runs the command in its own process group with the caller's stdio and descriptors;
/// returns its exit code (128+N when killed by signal N) and the signal this process
/// itself received, if any.
fn run_command(
    command: &[OsString],
    signals: &mut SignalWatch,
    kill_grace: std::time::Duration,
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
    let result = crate::contain::with_inherited(|| process::run_sync(&cmd, signals));
    let code_of = |exit: Exit| match exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => 128 + s,
        Exit::Abandoned => 128 + 9,
    };
    match result.ending {
        Ending::Exited(exit) | Ending::TimedOut(exit) => (code_of(exit), None),
        Ending::Interrupted { signal, exit } => (code_of(exit), Some(signal)),
        Ending::CallerGone(exit) => (code_of(exit), Some(nix::libc::SIGPIPE)),
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

/// A record of the wrapped run itself when it did not happen (skipped, lock timeout), so
/// `hookrun log` and monitoring see it.
fn record(
    settings: &Settings,
    wrap: &Wrap<'_>,
    outcome: OutcomeKind,
    exit_code: Option<i32>,
    why: &str,
) {
    let mut records = RecordLog::new(Path::new(&settings.log_dir));
    records.append(&RunRecord {
        time: crate::time::rfc3339(SystemTime::now()),
        run_id: crate::dispatch::new_run_id(),
        platform: wrap.platform.to_owned(),
        phase: "run".to_owned(),
        object: Some(wrap.name.to_owned()),
        hook: wrap.name.to_owned(),
        mode: "sync".to_owned(),
        outcome,
        exit_code,
        signal: None,
        duration_ms: 0,
        job: format!("{}-{}", wrap.platform, wrap.name),
        message: Some(why.to_owned()),
    });
}
