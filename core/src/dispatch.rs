//! One dispatch: every hook of the directory that asked for this phase and object, in
//! order, with the `on-error` policy and exit-code rules of DESIGN §4.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{MkJobMode, Settings};
use crate::discover::{self, Entry, EntryState, Verdict};
use crate::error::DispatchError;
use crate::header::{Header, Mode, OnError};
use crate::job::job_name;
use crate::lock::{self, LockWait};
use crate::mkjob;
use crate::process::{self, Ending, Exit, Output, SyncCommand};
use crate::record::{OutcomeKind, RecordLog, RunRecord};
use crate::signals::SignalWatch;
use crate::supervise::{self, AsyncSpec, os_bytes, path_bytes};

/// The `PATH` hooks get when the platform gave none (vzdump clears the environment).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the platform asked for, as the adapter understood it.
#[derive(Debug, Clone)]
pub struct Request {
    pub platform: String,
    pub phase: String,
    pub object: Option<String>,
    /// Passed to every hook unchanged.
    pub args: Vec<OsString>,
    /// Extra environment for hooks, on top of the inherited one.
    pub env: Vec<(OsString, OsString)>,
    /// Given to every sync hook on stdin; `None` means EOF.
    pub stdin: Option<Vec<u8>>,
    /// `on-error` for hooks whose header does not say.
    pub default_on_error: OnError,
    /// A filter phase (libvirt `migrate`, `restore`): each sync hook's non-empty stdout
    /// becomes the next hook's stdin, and the result is [`Report::filtered`]. Output is
    /// not prefixed.
    pub filter: bool,
    /// Header-less files that are hooks by their name alone (the worker convention).
    pub implicit: Option<discover::ImplicitHooks>,
    /// Whether this phase's exit code matters to the platform. When it does not (vzdump
    /// `pre-restart`, where a failure would leave the guest stopped), failures are logged
    /// and the dispatch exits 0.
    pub may_fail: bool,
    /// How long the platform waits between SIGTERM and SIGKILL when it stops us (Proxmox
    /// tasks: 5 s). Hooks are given less than that to stop, so that hookrun still
    /// records them and exits before the platform's SIGKILL.
    pub platform_grace: Option<Duration>,
}

/// The share of a platform's grace that a hook gets to stop: the rest is hookrun's own,
/// to record and exit.
const GRACE_SHARE: f64 = 0.6;

/// The result of one matched hook.
#[derive(Debug, Clone)]
pub struct HookReport {
    pub name: String,
    pub mode: Mode,
    pub on_error: OnError,
    pub outcome: OutcomeKind,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    /// When the hook itself started (after any lock wait); `None` if it never did.
    pub started: Option<SystemTime>,
    /// Why it failed, in words, when it did.
    pub message: Option<String>,
}

impl HookReport {
    pub fn new(name: &str, mode: Mode, on_error: OnError) -> HookReport {
        HookReport {
            name: name.to_owned(),
            mode,
            on_error,
            outcome: OutcomeKind::Skipped,
            exit_code: None,
            signal: None,
            duration: Duration::ZERO,
            started: None,
            message: None,
        }
    }

    pub fn failed(&self) -> bool {
        !matches!(
            self.outcome,
            OutcomeKind::Ok | OutcomeKind::Skipped | OutcomeKind::Running
        )
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub run_id: String,
    pub hooks: Vec<HookReport>,
    /// What the dispatcher exits with.
    pub exit_code: i32,
    /// The terminating signal that stopped the dispatch.
    pub stopped_by: Option<i32>,
    /// For a filter phase: the input as the hooks changed it, when one did.
    pub filtered: Option<Vec<u8>>,
}

/// Picks the hooks directory (DESIGN §3): `HOOKRUN_HOOKS_DIR`; `hooks.d` beside the
/// invoked path when it has a `/` and that directory exists; `hooks_dir` from the
/// config; the platform's default.
pub fn resolve_hooks_dir(
    settings: &Settings,
    invoked_as: Option<&Path>,
    default: &Path,
) -> PathBuf {
    if let Some(dir) = std::env::var_os("HOOKRUN_HOOKS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(invoked) = invoked_as
        && invoked.as_os_str().as_encoded_bytes().contains(&b'/')
        && let Some(parent) = invoked.parent()
    {
        let beside = parent.join("hooks.d");
        if beside.is_dir() {
            return beside;
        }
    }
    settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| default.to_owned())
}

/// What every platform adapter does once it has its [`Request`]: load the
/// configuration, pick the hooks directory (with `hooks.d` beside `invoked_as` when that
/// is given), and dispatch. When no hook can run at all — a bad configuration file, a
/// missing hooks directory — the problem is logged, and the `Err` is the exit code:
/// 78 (`EX_CONFIG`) where the platform listens to it (`may_fail`), 0 where it does not.
pub fn dispatch_for_platform(
    req: &Request,
    invoked_as: Option<&Path>,
    default_dir: &Path,
) -> Result<Report, i32> {
    let no_hooks = if req.may_fail { 78 } else { 0 };
    // The guard is split off now, while this process is small: forking after the scan
    // made the worker pay copy-on-write for every page of it (docs/performance.md).
    crate::contain::guard();
    let config = crate::config::Config::load().map_err(|e| {
        tracing::error!("{e}; no hooks were run (fix the configuration file)");
        no_hooks
    })?;
    let settings = config.settings_for(&req.platform);
    let dir = resolve_hooks_dir(&settings, invoked_as, default_dir);
    dispatch(&settings, &dir, req).map_err(|e| {
        tracing::error!("{e}; no hooks were run");
        no_hooks
    })
}

/// A fresh id for one dispatch: time-sortable and unique per process.
pub fn new_run_id() -> String {
    let now = SystemTime::now();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:05x}",
        crate::time::compact(now),
        std::process::id(),
        nanos >> 12
    )
}

pub fn dispatch(
    settings: &Settings,
    hooks_dir: &Path,
    req: &Request,
) -> Result<Report, DispatchError> {
    let focus = discover::Focus {
        phase: &req.phase,
        object: req.object.as_deref(),
        implicit: req.implicit.as_ref(),
    };
    let entries = discover::scan_for_cached(
        hooks_dir,
        &focus,
        &settings.log_dir,
        nix::unistd::geteuid().as_raw(),
    )?;
    Ok(Dispatcher::new(settings, req).run(&entries))
}

struct Dispatcher<'a> {
    settings: &'a Settings,
    req: &'a Request,
    run_id: String,
    records: RecordLog,
    signals: Option<SignalWatch>,
    euid: u32,
    /// A filter's current input: the output of the last successful hook that printed
    /// one. A failed hook contributes nothing and the chain goes on from here.
    filtered: Option<Vec<u8>>,
    /// Async hooks waiting to be launched together: consecutive ones in the directory,
    /// launched before the next sync hook runs or when the dispatch ends.
    pending: Vec<(AsyncSpec, HookReport)>,
    /// The platform closed its end of our output: start nothing more.
    caller_gone: bool,
    /// Guarded and descriptors sealed (done once, before the first sync hook).
    contained: bool,
    /// This dispatch's running marker, once a sync hook has started.
    marker: Option<crate::running::Marker>,
}

/// What the dispatch loop has concluded so far.
struct Outcomes {
    hooks: Vec<HookReport>,
    aborted_by: Option<String>,
    first_failure: Option<i32>,
}

impl<'a> Dispatcher<'a> {
    fn new(settings: &'a Settings, req: &'a Request) -> Self {
        Dispatcher {
            settings,
            req,
            run_id: new_run_id(),
            records: RecordLog::new(&settings.log_dir),
            // A guarded worker has caught stop signals since the fork: one that came
            // during the scan is waiting in the self-pipe and must stop the first hook.
            signals: crate::contain::guard_pid().and_then(|_| SignalWatch::install().ok()),
            euid: nix::unistd::geteuid().as_raw(),
            filtered: None,
            pending: Vec::new(),
            caller_gone: false,
            contained: false,
            marker: None,
        }
    }

    fn run(mut self, entries: &[Entry]) -> Report {
        let req = self.req;
        let object = req.object.as_deref();
        let mut done = Outcomes {
            hooks: Vec::new(),
            aborted_by: None,
            first_failure: None,
        };
        let mut stopped_by = None;
        crate::running::collect_lost(&self.settings.log_dir, &req.platform, &mut self.records);

        for entry in entries {
            let verdict = entry.verdict(&req.phase, object);
            let name = entry.display_name();
            match verdict {
                Verdict::Ignored(_)
                | Verdict::NoPhases
                | Verdict::OtherPhase
                | Verdict::OtherObject => continue,
                Verdict::Unusable => {
                    if let EntryState::Unusable(why) = &entry.state {
                        tracing::warn!(
                            "{}: {why}; it is not run (remove it or fix it)",
                            entry.path.display()
                        );
                    }
                    continue;
                }
                Verdict::NotExecutable => {
                    tracing::warn!(
                        "{} asks for phase {} but is not executable, so it is not run: chmod +x {} (or rename it to {}.disabled)",
                        entry.path.display(),
                        req.phase,
                        entry.path.display(),
                        name
                    );
                    continue;
                }
                Verdict::HeaderInvalid | Verdict::Run => {}
            }
            let cand = entry.candidate().expect("only candidates run");
            let header = &cand.header;
            let mode = header.mode_or_default();
            let on_error = header.on_error.unwrap_or(req.default_on_error);
            let job = job_name(&req.platform, &name, object);
            // Every journal entry about this hook (lock waits, refusals, leftovers)
            // carries its fields, not only the one that says how it ended.
            let _fields = crate::logging::journal_active().then(|| {
                crate::logging::HookFields::enter(&self.running_record(&name, &job, mode))
            });
            let started = SystemTime::now();

            let mut report = HookReport::new(&name, mode, on_error);

            if stopped_by.is_none() {
                stopped_by = self.signals.as_mut().and_then(SignalWatch::stop_signal);
            }
            if let Some(by) = &done.aborted_by {
                report.message = Some(format!("skipped: {by} failed with on-error abort"));
            } else if self.caller_gone {
                report.message = Some(
                    "skipped: the caller closed its end of hookrun's output (it is gone)".into(),
                );
            } else if let Some(sig) = stopped_by {
                report.message = Some(format!("skipped: the dispatcher received signal {sig}"));
            } else if verdict == Verdict::HeaderInvalid {
                let errors: Vec<String> = header
                    .errors
                    .iter()
                    .map(|e| format!("{}:{}", entry.path.display(), e))
                    .collect();
                report.outcome = OutcomeKind::Refused;
                report.exit_code = Some(126);
                report.message = Some(format!(
                    "refused, its header is invalid: {}",
                    errors.join("; ")
                ));
            } else if let Err(why) = self.check_permissions(entry) {
                report.outcome = OutcomeKind::Refused;
                report.exit_code = Some(126);
                report.message = Some(format!("refused: {why}"));
            } else if mode == Mode::Async {
                let spec = self.async_spec(entry, &job, header, started, &report);
                self.pending.push((spec, report));
                continue;
            } else {
                self.launch_pending(&mut done);
                self.run_sync(entry, &job, header, &mut report);
                if let Some(sig) = report
                    .signal
                    .filter(|_| report.outcome == OutcomeKind::Signal)
                    && self.signals.as_mut().and_then(SignalWatch::stop_signal) == Some(sig)
                {
                    stopped_by = Some(sig);
                }
            }

            self.conclude(report, started, job, &mut done);
        }
        self.launch_pending(&mut done);
        if stopped_by.is_none() {
            stopped_by = self.signals.as_mut().and_then(SignalWatch::stop_signal);
        }

        if self.caller_gone && stopped_by.is_none() {
            stopped_by = Some(nix::libc::SIGPIPE);
        }
        let Outcomes {
            hooks,
            first_failure,
            ..
        } = done;
        let exit_code = match (stopped_by, first_failure) {
            (Some(sig), _) if req.may_fail => 128 + sig,
            (Some(sig), _) => {
                tracing::error!(
                    "stopped by signal {sig} in phase {}, where a failure is not passed on to {}: exiting 0",
                    req.phase,
                    req.platform
                );
                0
            }
            (None, Some(code)) if req.may_fail => code,
            (None, Some(code)) => {
                tracing::error!(
                    "phase {} failed (would be exit {code}), but a failure here is not passed on to {}: exiting 0",
                    req.phase,
                    req.platform
                );
                0
            }
            (None, None) => 0,
        };
        Report {
            run_id: self.run_id,
            hooks,
            exit_code,
            stopped_by,
            filtered: self.filtered,
        }
    }

    /// The permission checks, made for each hook right before it starts (and only for
    /// hooks that start): the directory and the file as they are now, not as the scan
    /// saw them — a dispatch can run for hours.
    fn check_permissions(&mut self, entry: &Entry) -> Result<(), String> {
        // Not a permission but an identity: refused whatever `strict_permissions` says.
        if let Some(why) = entry.job_conflict() {
            return Err(why);
        }
        if !self.settings.strict_permissions {
            return Ok(());
        }
        // One walk from `/` through the hooks directory to the file (and each link's
        // target); a directory that vanished mid-dispatch passes here, and starting the
        // hook then says it was removed.
        crate::perms::verify_entry(entry, self.euid).map_err(|e| e.to_string())
    }

    /// What the hook runs as (`# nice:`, `# io-class:`, `# user:`, or the config's
    /// defaults) and its environment, which names that user when there is one.
    fn plan_and_env(
        &self,
        entry: &Entry,
        job: &str,
        header: &Header,
        name: &str,
    ) -> (Option<crate::privilege::Plan>, Vec<(OsString, OsString)>) {
        let privilege = crate::privilege::Plan::for_hook(
            name,
            header.nice.or(self.settings.nice),
            header.io_class.or(self.settings.io_class),
            header.user.as_ref(),
        );
        let mut env = self.env_for(entry, job);
        env.extend(privilege.iter().flat_map(crate::privilege::Plan::env));
        (privilege, env)
    }

    fn env_for(&self, entry: &Entry, job: &str) -> Vec<(OsString, OsString)> {
        let req = self.req;
        let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(8 + req.env.len());
        if std::env::var_os("PATH").is_none() && !req.env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env.extend(req.env.iter().cloned());
        env.push(("HOOKRUN_PLATFORM".into(), req.platform.clone().into()));
        env.push(("HOOKRUN_PHASE".into(), req.phase.clone().into()));
        if let Some(o) = &req.object {
            env.push(("HOOKRUN_OBJECT".into(), o.clone().into()));
        }
        env.push(("HOOKRUN_HOOK".into(), entry.name.clone()));
        env.push(("HOOKRUN_JOB".into(), job.into()));
        env.push(("HOOKRUN_RUN_ID".into(), self.run_id.clone().into()));
        env
    }

    /// The grace between SIGTERM and SIGKILL for this dispatch's hooks: `kill_grace`,
    /// cut to fit inside the platform's own grace.
    fn kill_grace(&self) -> Duration {
        match self.req.platform_grace {
            Some(p) => self.settings.kill_grace.min(p.mul_f64(GRACE_SHARE)),
            None => self.settings.kill_grace,
        }
    }

    fn contain(&mut self) {
        if !self.contained {
            self.contained = true;
            self.signals();
            crate::contain::guard();
            crate::contain::seal_inherited_descriptors();
        }
    }

    /// The record a running marker holds for `hook`.
    fn running_record(&self, hook: &str, job: &str, mode: Mode) -> RunRecord {
        let req = self.req;
        RunRecord {
            time: crate::time::rfc3339(SystemTime::now()),
            run_id: self.run_id.clone(),
            platform: req.platform.clone(),
            phase: req.phase.clone(),
            object: req.object.clone(),
            hook: hook.to_owned(),
            mode: mode.as_str().to_owned(),
            outcome: OutcomeKind::Running,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            job: job.to_owned(),
            message: None,
        }
    }

    fn signals(&mut self) -> &mut SignalWatch {
        self.signals.get_or_insert_with(|| {
            SignalWatch::install()
                .unwrap_or_else(|e| panic!("cannot set up signal handling (signalfd): {e}"))
        })
    }

    /// The program and argv that run a hook: the hook itself, or `mk-job <job> <hook>
    /// <args>` with `mk_job = "external"`.
    fn command_for(&self, entry: &Entry, job: &str, mk_job: bool) -> (PathBuf, Vec<OsString>) {
        if mk_job && self.settings.mk_job == MkJobMode::External {
            let mut args = Vec::with_capacity(self.req.args.len() + 2);
            args.push(OsString::from(job));
            args.push(entry.path.clone().into_os_string());
            args.extend(self.req.args.iter().cloned());
            (PathBuf::from("mk-job"), args)
        } else {
            (entry.path.clone(), self.req.args.clone())
        }
    }

    fn native_mk_job_dir(&self, mk_job: bool) -> Option<&Path> {
        (mk_job && self.settings.mk_job == MkJobMode::Native)
            .then_some(self.settings.mk_job_dir.as_path())
    }

    /// Logs and records a hook's result, and applies its `on-error`.
    fn conclude(
        &mut self,
        report: HookReport,
        started: SystemTime,
        job: String,
        done: &mut Outcomes,
    ) {
        // Metrics may start a writer thread; the guard's fork must come first.
        if self.settings.metrics_textfile.is_some() {
            self.contain();
        }
        let req = self.req;
        let record = RunRecord {
            time: crate::time::rfc3339(report.started.unwrap_or(started)),
            run_id: self.run_id.clone(),
            platform: req.platform.clone(),
            phase: req.phase.clone(),
            object: req.object.clone(),
            hook: report.name.clone(),
            mode: report.mode.as_str().to_owned(),
            outcome: report.outcome,
            exit_code: report.exit_code,
            signal: report.signal,
            duration_ms: report.duration.as_millis() as u64,
            job,
            message: report
                .message
                .clone()
                .filter(|_| report.outcome != OutcomeKind::Ok),
        };
        let _journal = crate::logging::HookFields::enter(&record);
        self.log_result(&report);
        self.records.append(&record);
        crate::metrics::record_run(self.settings.metrics_textfile.as_deref(), &record);
        if let Some(m) = self.marker.as_mut() {
            m.idle();
        }
        if report.failed() {
            if report.on_error != OnError::Warn && done.first_failure.is_none() {
                done.first_failure = Some(failure_exit_code(&report));
            }
            if report.on_error == OnError::Abort && done.aborted_by.is_none() {
                done.aborted_by = Some(report.name.clone());
            }
        }
        done.hooks.push(report);
    }

    /// Starts the async hooks collected so far with one supervisor. If it cannot be
    /// started, each of them fails here and now, where the platform still hears of it.
    fn launch_pending(&mut self, done: &mut Outcomes) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        for (spec, report) in &batch {
            if let Err(why) = supervise::check_writable(&self.settings.log_dir, &spec.record.job) {
                tracing::error!(
                    "{}: cannot write {why}; it runs, but its output and how it ends will be lost (fix log_dir in the config, its permissions or free space)",
                    report.name
                );
            }
        }
        let specs: Vec<AsyncSpec> = batch.iter().map(|(s, _)| s.clone()).collect();
        match supervise::launch(&specs, self.input()) {
            Ok(pids) => {
                for ((spec, mut report), pid) in batch.into_iter().zip(pids) {
                    report.outcome = OutcomeKind::Running;
                    let _fields = crate::logging::HookFields::enter(&spec.record);
                    tracing::info!(
                        "{}: started async (supervisor pid {pid}); output goes to {}",
                        report.name,
                        supervise::async_log_path(&self.settings.log_dir, &spec.record.job)
                            .display()
                    );
                    done.hooks.push(report);
                }
            }
            Err(e) => {
                for (spec, mut report) in batch {
                    report.outcome = OutcomeKind::SpawnError;
                    report.exit_code = Some(126);
                    report.message = Some(format!("cannot start the async supervisor: {e}"));
                    let started = SystemTime::now();
                    self.conclude(report, started, spec.record.job, done);
                }
            }
        }
    }

    /// Everything a supervisor needs to run one async hook.
    fn async_spec(
        &self,
        entry: &Entry,
        job: &str,
        header: &Header,
        started: SystemTime,
        report: &HookReport,
    ) -> AsyncSpec {
        let (program, args) = self.command_for(entry, job, header.mk_job);
        let (privilege, env) = self.plan_and_env(entry, job, header, &report.name);
        AsyncSpec {
            program: path_bytes(&program),
            args: args.iter().map(|a| os_bytes(a)).collect(),
            env: env
                .iter()
                .map(|(k, v)| (os_bytes(k), os_bytes(v)))
                .collect(),
            timeout_ms: header
                .timeout
                .or(self.settings.default_timeout)
                .map(|t| t.as_millis() as u64),
            kill_grace_ms: self.kill_grace().as_millis() as u64,
            lock: header.lock.clone(),
            lock_timeout_ms: self.settings.lock_timeout.map(|t| t.as_millis() as u64),
            lock_dir: path_bytes(&self.settings.lock_dir),
            log_dir: path_bytes(&self.settings.log_dir),
            mk_job_dir: self.native_mk_job_dir(header.mk_job).map(path_bytes),
            metrics_textfile: self.settings.metrics_textfile.as_deref().map(path_bytes),
            has_stdin: self.input().is_some(),
            privilege,
            record: RunRecord {
                time: crate::time::rfc3339(started),
                ..self.running_record(&report.name, job, Mode::Async)
            },
        }
    }

    fn run_sync(&mut self, entry: &Entry, job: &str, header: &Header, report: &mut HookReport) {
        let header_timeout = header.timeout;
        let lock = header.lock.as_deref();
        let started = Instant::now();
        let lock_dir = self.settings.lock_dir.clone();
        let lock_bound = self
            .settings
            .lock_timeout
            .or(header_timeout)
            .or(self.settings.default_timeout);
        // From the first sync hook on, a guard makes sure nothing outlives this
        // process, and hooks inherit no descriptor of the platform's but 0, 1 and 2.
        self.contain();
        let _guard = match lock {
            None => None,
            Some(name) => match lock::acquire(&lock_dir, name, self.signals(), lock_bound) {
                LockWait::Acquired(g) => Some(g),
                LockWait::Interrupted(sig) => {
                    report.outcome = OutcomeKind::Skipped;
                    report.message = Some(format!(
                        "skipped: signal {sig} arrived while waiting for lock {name}"
                    ));
                    report.duration = started.elapsed();
                    return;
                }
                LockWait::TimedOut { waited, holder } => {
                    report.outcome = OutcomeKind::LockTimeout;
                    report.exit_code = Some(124);
                    report.message = Some(lock_timeout_message(name, waited, holder.as_deref()));
                    report.duration = started.elapsed();
                    return;
                }
                LockWait::Failed(why) => {
                    report.outcome = OutcomeKind::SpawnError;
                    report.exit_code = Some(126);
                    report.message = Some(why.to_string());
                    report.duration = started.elapsed();
                    return;
                }
            },
        };
        let (privilege, env) = self.plan_and_env(entry, job, header, &report.name);
        let timeout = header_timeout.or(self.settings.default_timeout);
        let output = if self.req.filter {
            Output::CaptureStdout(self.settings.prefix_output.then_some(report.name.as_str()))
        } else if self.settings.prefix_output {
            Output::Prefixed(&report.name)
        } else {
            Output::Plain
        };
        let (program, args) = self.command_for(entry, job, header.mk_job);
        report.started = Some(SystemTime::now());
        let mk_job = self.native_mk_job_dir(header.mk_job).and_then(|dir| {
            mkjob::start_as(
                dir,
                job,
                crate::privilege::Plan::user_of(privilege.as_ref()),
            )
        });
        let entry =
            crate::running::RunningEntry::new(self.running_record(&report.name, job, Mode::Sync));
        match self.marker.as_mut() {
            Some(m) => {
                m.update(&entry);
            }
            None => {
                self.marker = crate::running::Marker::create_reusing(
                    &crate::running::sync_dir(&self.settings.log_dir),
                    &format!("{}.json", self.run_id),
                    &entry,
                );
            }
        }
        // The watch is taken out for the run: `cmd` borrows this dispatcher's input.
        self.signals();
        let mut signals = self.signals.take().expect("installed just above");
        let cmd = SyncCommand {
            program: &program,
            args: &args,
            env: &env,
            stdin: self.input(),
            timeout,
            kill_grace: self.kill_grace(),
            output,
            privilege: privilege.as_ref(),
        };
        let result = process::run_sync(&cmd, &mut signals);
        self.signals = Some(signals);
        if result.caller_gone() {
            self.caller_gone = true;
        }
        if result.leftovers > 0 {
            tracing::warn!(
                "{}: exited but left processes running; they were stopped (SIGTERM, then SIGKILL after {}s). A hook's processes end with it: start long-running services through the service manager (systemd-run), or use '# mode: async'",
                report.name,
                self.kill_grace().as_secs()
            );
        }
        report.duration = result.duration;
        if result.pipe_held {
            tracing::warn!(
                "{}: a process it started in the background still holds its output open; stopped reading {}s after the hook exited (redirect the background process's output, e.g. >/dev/null 2>&1, or use '# mode: async')",
                report.name,
                process::PIPE_GRACE.as_secs()
            );
        }
        apply_ending(report, result.ending, &program, timeout);
        if self.req.filter {
            if result.capture_overflow {
                report.outcome = OutcomeKind::Failed;
                report.exit_code.get_or_insert(1);
                report.message = Some(format!(
                    "its output is larger than {} MiB, the most a filter may return",
                    process::MAX_CAPTURE >> 20
                ));
            } else if report.outcome == OutcomeKind::Ok && !result.captured.is_empty() {
                self.filtered = Some(result.captured);
            }
        }
        if let Some(j) = mk_job {
            j.finish(job_exit_code(report), result.duration, result.usage);
        }
    }

    /// What the next hook gets on stdin: the platform's payload, or in a filter the
    /// latest successful replacement. Not libvirt's own `.d` rule (after a failure it
    /// feeds the original XML on, so an `on-error: warn` hook would silently undo every
    /// earlier filter): a failed hook's output is dropped and the chain goes on.
    fn input(&self) -> Option<&[u8]> {
        self.filtered.as_deref().or(self.req.stdin.as_deref())
    }

    fn log_result(&self, r: &HookReport) {
        let secs = r.duration.as_secs_f64();
        match (r.outcome, &r.message) {
            (OutcomeKind::Ok, _) => tracing::info!("{}: ok ({secs:.2}s)", r.name),
            (OutcomeKind::Skipped, Some(m)) => tracing::warn!("{}: {m}", r.name),
            (_, msg) if r.failed() => {
                let what = msg.clone().unwrap_or_else(|| describe_failure(r));
                if r.on_error == OnError::Warn {
                    tracing::warn!("{}: {what} (on-error warn: the dispatch goes on)", r.name);
                } else {
                    tracing::error!("{}: {what} (on-error {})", r.name, r.on_error);
                }
            }
            _ => {}
        }
    }
}

fn describe_failure(r: &HookReport) -> String {
    match r.outcome {
        OutcomeKind::Failed => format!("failed with exit code {}", r.exit_code.unwrap_or(-1)),
        OutcomeKind::Signal => format!("killed by signal {}", r.signal.unwrap_or(0)),
        other => other.as_str().to_string(),
    }
}

pub(crate) fn apply_ending(
    report: &mut HookReport,
    ending: Ending,
    path: &Path,
    timeout: Option<Duration>,
) {
    let set_exit = |report: &mut HookReport, exit: Exit| match exit {
        Exit::Code(c) => report.exit_code = Some(c),
        Exit::Signal(s) => report.signal = Some(s),
        Exit::Abandoned => {
            report.message = Some("did not die even after SIGKILL (stuck in the kernel, e.g. on a hung mount); left behind".into());
        }
    };
    match ending {
        Ending::Exited(Exit::Code(0)) => {
            report.outcome = OutcomeKind::Ok;
            report.exit_code = Some(0);
        }
        Ending::Exited(Exit::Code(c)) => {
            report.outcome = OutcomeKind::Failed;
            report.exit_code = Some(c);
        }
        Ending::Exited(exit @ (Exit::Signal(_) | Exit::Abandoned)) => {
            report.outcome = OutcomeKind::Signal;
            set_exit(report, exit);
        }
        Ending::TimedOut(exit) => {
            report.outcome = OutcomeKind::Timeout;
            set_exit(report, exit);
            let abandoned = report.message.take();
            report.message = Some(format!(
                "timed out after {}s; its process group was sent SIGTERM, then SIGKILL to whatever was left after the grace period{}",
                timeout.unwrap_or_default().as_secs(),
                abandoned.map(|m| format!("; {m}")).unwrap_or_default()
            ));
        }
        Ending::Interrupted { signal, exit } => {
            report.outcome = OutcomeKind::Signal;
            set_exit(report, exit);
            report.signal = Some(signal);
            report.message = Some(format!(
                "stopped: the dispatcher received signal {signal} and passed it on to the hook's process group"
            ));
        }
        Ending::CallerGone(exit) => {
            report.outcome = OutcomeKind::Signal;
            set_exit(report, exit);
            // What a plain hook script would have died of at its next write.
            report.signal = Some(nix::libc::SIGPIPE);
            report.message = Some(
                "stopped: the caller closed its end of hookrun's output (it is gone), so the hook's processes were sent SIGTERM, then SIGKILL after the grace period".into(),
            );
        }
        Ending::SpawnFailed(e) => {
            report.outcome = OutcomeKind::SpawnError;
            let (code, why) = spawn_error(&e, path);
            report.exit_code = Some(code);
            report.message = Some(why);
        }
    }
}

/// Exit code and explanation for a hook that could not be started.
fn spawn_error(e: &std::io::Error, path: &Path) -> (i32, String) {
    let p = path.display();
    match e.raw_os_error() {
        Some(nix::libc::ENOENT) if path == Path::new("mk-job") => (
            127,
            "cannot run mk-job: not found in PATH (install the Checkmk agent, or set mk_job = \"native\")".to_string(),
        ),
        Some(nix::libc::ENOENT) if path.exists() => (
            127,
            format!("cannot run {p}: bad interpreter: the program on its #! line does not exist"),
        ),
        Some(nix::libc::ENOENT) => (127, format!("cannot run {p}: it was removed before it could run")),
        Some(nix::libc::ENOEXEC) => (
            126,
            format!("cannot run {p}: not a valid executable; scripts need a #! line such as #!/bin/sh"),
        ),
        Some(nix::libc::EACCES) => (126, format!("cannot run {p}: permission denied ({e})")),
        _ => (126, format!("cannot run {p}: {e}")),
    }
}

/// The exit code a Checkmk job file records: the hook's own code, or what a shell
/// would report for a timeout or a signal.
pub fn job_exit_code(r: &HookReport) -> i32 {
    match (r.outcome, r.exit_code) {
        (OutcomeKind::Ok, _) => 0,
        (OutcomeKind::Failed, Some(c)) => c,
        _ => failure_exit_code(r),
    }
}

/// The exit code a failing hook gives the dispatch (DESIGN §4).
pub fn failure_exit_code(r: &HookReport) -> i32 {
    match r.outcome {
        // 126 and up have meanings of their own (below); a hook's own such code is 1.
        OutcomeKind::Failed => r.exit_code.filter(|c| (1..=125).contains(c)).unwrap_or(1),
        OutcomeKind::Timeout => 124,
        OutcomeKind::Refused => 126,
        OutcomeKind::SpawnError => r.exit_code.unwrap_or(126),
        OutcomeKind::Signal => 128 + r.signal.unwrap_or(0),
        OutcomeKind::LockTimeout => 124,
        OutcomeKind::Lost => 1,
        OutcomeKind::Ok | OutcomeKind::Skipped | OutcomeKind::Running => 0,
    }
}

/// Why a hook did not run after waiting for its lock.
pub fn lock_timeout_message(name: &str, waited: Duration, holder: Option<&str>) -> String {
    format!(
        "not run: lock {name} was still held after {}s{} (raise lock_timeout or the hook's timeout, or find out why the holder takes so long)",
        waited.as_secs(),
        holder.map(|h| format!(" by {h}")).unwrap_or_default()
    )
}
