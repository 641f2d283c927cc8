//! A simulated Proxmox `vzdump` that calls its hook script exactly as
//! `PVE::VZDump::run_hook_script` does, and interprets the exit status per phase as
//! `PVE::VZDump::exec_backup` / `exec_backup_task` do (`../shared/reference/proxmox.md`
//! §1.2–§1.7):
//!
//! - argv `[script, phase]` for job phases, `[script, phase, mode, vmid]` for guest phases;
//! - environment cleared except `STOREID`, `DUMPDIR`, `VMTYPE`, `HOSTNAME`, `TARGET`,
//!   `LOGFILE` (each only when vzdump has a value for it in that phase), plus `LC_ALL=C`
//!   and `LVM_SUPPRESS_FD_WARNINGS=1` from `run_command` — and the test's own
//!   `HOOKRUN_CONFIG`, the one variable the harness adds (see [`crate::TestEnv`]);
//! - stdin a pipe closed at once; stdout and stderr read until EOF on both, then
//!   `waitpid`; any exit status but 0 is a failure of the call;
//! - the phase order of §1.5 for each mode, including "a guest that is not running is
//!   backed up in stop mode, without pre-stop and restart hooks", the cleanup path
//!   (`pre-restart`/`post-restart` when the guest must be resumed or restarted),
//!   `backup-abort` and `log-end`;
//! - the consequences of §1.7: a failing `job-init` fails the job before anything else
//!   runs; a failing `job-start` or `job-end` makes `job-abort` run and fails the job; a
//!   failing guest phase fails that guest (the job goes on, `job-end` still runs, the task
//!   ends in error); a failing `backup-abort` or `log-end` is a task warning; a failing
//!   `pre-restart`/`post-restart` in the cleanup path is a plain Perl `warn` (not counted
//!   as a task warning), and a failing cleanup `pre-restart` leaves the guest stopped.
//!
//! Not modelled (no hook sees a difference): the snapshot → suspend fallback, LXC
//! snapshots of more than one volume, lock waits, notifications, backup providers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::{Outcome, Run, TestEnv};

/// `$plugin->type()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    Qemu,
    Lxc,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }

    /// Archive extension with zstd compression.
    pub fn archive_ext(self) -> &'static str {
        match self {
            GuestType::Qemu => ".vma.zst",
            GuestType::Lxc => ".tar.zst",
        }
    }

    /// The PBS backup type.
    pub fn pbs_type(self) -> &'static str {
        match self {
            GuestType::Qemu => "vm",
            GuestType::Lxc => "ct",
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    Snapshot,
    Suspend,
    Stop,
}

impl BackupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Snapshot => "snapshot",
            BackupMode::Suspend => "suspend",
            BackupMode::Stop => "stop",
        }
    }
}

/// One guest selected for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub vmid: u32,
    pub kind: GuestType,
    /// QEMU `name:` / LXC `hostname:`; `None` when the config has none.
    pub name: Option<String>,
    pub running: bool,
}

impl Guest {
    /// A running VM without a `name:`.
    pub fn qemu(vmid: u32) -> Guest {
        Guest {
            vmid,
            kind: GuestType::Qemu,
            name: None,
            running: true,
        }
    }

    /// A running container without a `hostname:`.
    pub fn lxc(vmid: u32) -> Guest {
        Guest {
            vmid,
            kind: GuestType::Lxc,
            name: None,
            running: true,
        }
    }

    pub fn named(mut self, name: &str) -> Guest {
        self.name = Some(name.to_owned());
        self
    }

    pub fn stopped(mut self) -> Guest {
        self.running = false;
        self
    }

    /// What `HOSTNAME` is in guest phases: the VM's name (none without one), the
    /// container's hostname or `CT<vmid>`.
    pub fn hostname(&self) -> Option<String> {
        match self.kind {
            GuestType::Qemu => self.name.clone(),
            GuestType::Lxc => Some(
                self.name
                    .clone()
                    .unwrap_or_else(|| format!("CT{}", self.vmid)),
            ),
        }
    }
}

/// Where the backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A directory storage (`--storage local`): `STOREID` always, `DUMPDIR` from
    /// job-start on (the storage is activated after job-init).
    Dir { storeid: String, dumpdir: PathBuf },
    /// Proxmox Backup Server: `STOREID`, never `DUMPDIR` or `LOGFILE`; `TARGET` is the
    /// snapshot name.
    Pbs { storeid: String },
    /// `--dumpdir DIR` without a storage: `DUMPDIR` in every phase, no `STOREID`.
    DumpDir(PathBuf),
}

impl Storage {
    fn storeid(&self) -> Option<&str> {
        match self {
            Storage::Dir { storeid, .. } | Storage::Pbs { storeid } => Some(storeid),
            Storage::DumpDir(_) => None,
        }
    }

    /// `$opts->{dumpdir}` once known: in job-init only with `--dumpdir`.
    fn dumpdir(&self, job_init: bool) -> Option<&PathBuf> {
        match self {
            Storage::Dir { dumpdir, .. } if !job_init => Some(dumpdir),
            Storage::DumpDir(d) => Some(d),
            _ => None,
        }
    }
}

/// A backup job: `vzdump <vmids> --mode <mode> --storage <storage>`.
#[derive(Debug, Clone)]
pub struct Job {
    pub mode: BackupMode,
    pub storage: Storage,
    pub guests: Vec<Guest>,
}

impl Job {
    pub fn new(mode: BackupMode, storage: Storage, guests: Vec<Guest>) -> Job {
        Job {
            mode,
            storage,
            guests,
        }
    }
}

/// `$task`: what a guest's phases are called with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub vmid: u32,
    pub vmtype: GuestType,
    /// The effective mode (`stop` for a guest that is not running).
    pub mode: BackupMode,
    pub hostname: Option<String>,
    pub target: String,
    pub logfile: Option<String>,
}

impl Task {
    /// The task for the `index`-th guest of `job` (guests are backed up one after the
    /// other; each gets its own `backup_time`, a minute apart from 01:00:00).
    pub fn new(job: &Job, guest: &Guest, index: usize) -> Task {
        let mode = if guest.running {
            job.mode
        } else {
            BackupMode::Stop
        };
        let (h, m) = (1 + index / 60, index % 60);
        let basename = format!(
            "vzdump-{}-{}-2026_11_21-{h:02}_{m:02}_00",
            guest.kind.as_str(),
            guest.vmid
        );
        let (target, logfile) = match &job.storage {
            Storage::Pbs { .. } => (
                format!(
                    "{}/{}/2026-11-21T{h:02}:{m:02}:00Z",
                    guest.kind.pbs_type(),
                    guest.vmid
                ),
                None,
            ),
            Storage::Dir { dumpdir, .. } | Storage::DumpDir(dumpdir) => {
                let dir = dumpdir.to_string_lossy();
                (
                    format!("{dir}/{basename}{}", guest.kind.archive_ext()),
                    Some(format!("{dir}/{basename}.log")),
                )
            }
        };
        Task {
            vmid: guest.vmid,
            vmtype: guest.kind,
            mode,
            hostname: guest.hostname(),
            target,
            logfile,
        }
    }
}

/// One `run_hook_script` call and how it ended.
#[derive(Debug, Clone)]
pub struct PhaseCall {
    pub phase: String,
    /// The arguments after the script path.
    pub argv: Vec<String>,
    /// The complete environment the script was given.
    pub env: BTreeMap<String, String>,
    pub outcome: Outcome,
}

impl PhaseCall {
    pub fn failed(&self) -> bool {
        !self.outcome.success()
    }

    /// The guest's VMID for guest phases.
    pub fn vmid(&self) -> Option<&str> {
        self.argv.get(2).map(String::as_str)
    }

    /// What `PVE::Tools::run_command` dies with.
    pub fn error(&self) -> String {
        let cmd = std::iter::once("<script>".to_owned())
            .chain(self.argv.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        match (
            self.outcome.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&self.outcome.status),
        ) {
            (Some(c), _) => format!("command '{cmd}' failed: exit code {c}"),
            (None, Some(s)) => format!("command '{cmd}' failed: got signal {s}"),
            _ => format!("command '{cmd}' failed"),
        }
    }

    /// `phase` or `phase mode vmid`, for phase traces.
    pub fn line(&self) -> String {
        self.argv.join(" ")
    }
}

/// How one guest's backup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestReport {
    pub vmid: u32,
    /// The effective mode.
    pub mode: BackupMode,
    /// `None` when the backup succeeded; the failing phase otherwise.
    pub failed_in: Option<String>,
    /// A cleanup `pre-restart` failed, so the guest was not resumed/restarted.
    pub left_stopped: bool,
}

/// What the vzdump task concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// `TASK OK`.
    Ok,
    /// `TASK WARNINGS: n`.
    Warnings(usize),
    /// Some guests failed (`job errors`): the task ends in error; `job-end` ran.
    GuestsFailed(Vec<u32>),
    /// The whole job failed (`Backup job failed - ...`, or a failed job-init).
    JobFailed(String),
}

impl fmt::Display for Conclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conclusion::Ok => f.write_str("TASK OK"),
            Conclusion::Warnings(n) => write!(f, "TASK WARNINGS: {n}"),
            Conclusion::GuestsFailed(v) => {
                write!(f, "TASK ERROR: job errors (failed guests: {v:?})")
            }
            Conclusion::JobFailed(e) => write!(f, "TASK ERROR: {e}"),
        }
    }
}

/// Everything a simulated job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub calls: Vec<PhaseCall>,
    pub guests: Vec<GuestReport>,
    /// `WARN:` lines (counted) and plain Perl warnings (not counted), in order.
    pub messages: Vec<String>,
    pub warnings: usize,
    pub conclusion: Conclusion,
}

impl JobReport {
    /// `phase [mode vmid]` of every hook script call, in order.
    pub fn trace(&self) -> Vec<String> {
        self.calls.iter().map(PhaseCall::line).collect()
    }

    pub fn guest(&self, vmid: u32) -> &GuestReport {
        self.guests
            .iter()
            .find(|g| g.vmid == vmid)
            .unwrap_or_else(|| panic!("guest {vmid} was not backed up: {:#?}", self.guests))
    }

    /// The call of `phase` (for `vmid`, in guest phases).
    pub fn call(&self, phase: &str, vmid: Option<u32>) -> &PhaseCall {
        let vmid = vmid.map(|v| v.to_string());
        self.calls
            .iter()
            .find(|c| c.phase == phase && c.vmid() == vmid.as_deref())
            .unwrap_or_else(|| {
                panic!(
                    "no call of {phase} {vmid:?}; trace: {:#?}\nfailed calls:\n{}",
                    self.trace(),
                    self.failures()
                )
            })
    }

    /// The failed calls with their whole outcome, for messages.
    pub fn failures(&self) -> String {
        self.calls
            .iter()
            .filter(|c| c.failed())
            .map(|c| format!("{}: {:#?}\n", c.line(), c.outcome))
            .collect()
    }
}

/// The vzdump side: the configured `script:` and the job runner.
pub struct Vzdump<'a> {
    env: &'a TestEnv,
    script: PathBuf,
}

impl<'a> Vzdump<'a> {
    /// vzdump with `script: <env's entry point>`.
    pub fn new(env: &'a TestEnv) -> Vzdump<'a> {
        Vzdump {
            env,
            script: env.entry_point(),
        }
    }

    /// vzdump with another `script:` (e.g. the seed's dispatcher), in the same tree.
    pub fn with_script(env: &'a TestEnv, script: PathBuf) -> Vzdump<'a> {
        Vzdump { env, script }
    }

    /// The environment `run_hook_script` gives `phase` (plus `HOOKRUN_CONFIG`).
    pub fn environment(
        &self,
        storage: &Storage,
        phase: &str,
        task: Option<&Task>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(id) = storage.storeid() {
            env.insert("STOREID".to_owned(), id.to_owned());
        }
        if let Some(d) = storage.dumpdir(phase == "job-init") {
            env.insert("DUMPDIR".to_owned(), d.to_string_lossy().into_owned());
        }
        if let Some(t) = task {
            env.insert("VMTYPE".to_owned(), t.vmtype.as_str().to_owned());
            if let Some(h) = &t.hostname {
                env.insert("HOSTNAME".to_owned(), h.clone());
            }
            env.insert("TARGET".to_owned(), t.target.clone());
            if let Some(l) = &t.logfile {
                env.insert("LOGFILE".to_owned(), l.clone());
            }
        }
        // PVE::Tools::run_command
        env.insert("LC_ALL".to_owned(), "C".to_owned());
        env.insert("LVM_SUPPRESS_FD_WARNINGS".to_owned(), "1".to_owned());
        let (k, v) = self.env.config_var();
        env.insert(k, v);
        env
    }

    /// `run_hook_script($phase, $task)`: runs the script and returns the call.
    pub fn run_hook_script(
        &self,
        storage: &Storage,
        phase: &str,
        task: Option<&Task>,
    ) -> PhaseCall {
        // `die ... if !-f $script; die ... if !-x $script;`
        let meta = std::fs::metadata(&self.script).unwrap_or_else(|e| {
            panic!(
                "Error: The hook script '{}' does not exist ({e}).",
                self.script.display()
            )
        });
        assert!(
            meta.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
            "Error: The hook script '{}' is not executable.",
            self.script.display()
        );
        let mut argv = vec![phase.to_owned()];
        if let Some(t) = task {
            argv.push(t.mode.as_str().to_owned());
            argv.push(t.vmid.to_string());
        }
        let env = self.environment(storage, phase, task);
        let outcome = Run::new(&self.script).args(&argv).envs(&env).run();
        PhaseCall {
            phase: phase.to_owned(),
            argv,
            env,
            outcome,
        }
    }

    /// Runs a whole job (`PVE::VZDump::new` + `exec_backup`).
    pub fn run_job(&self, job: &Job) -> JobReport {
        let mut sim = Sim {
            vz: self,
            job,
            report: JobReport {
                calls: Vec::new(),
                guests: Vec::new(),
                messages: Vec::new(),
                warnings: 0,
                conclusion: Conclusion::Ok,
            },
        };
        sim.exec();
        sim.report
    }
}

struct Sim<'v, 'a> {
    vz: &'v Vzdump<'a>,
    job: &'v Job,
    report: JobReport,
}

struct Cleanup {
    resume: bool,
    restart: bool,
}

impl Sim<'_, '_> {
    /// Runs the hook script; `Err` with run_command's message when it failed.
    fn hook(&mut self, phase: &str, task: Option<&Task>) -> Result<(), String> {
        let call = self.vz.run_hook_script(&self.job.storage, phase, task);
        let result = if call.failed() {
            Err(call.error())
        } else {
            Ok(())
        };
        self.report.calls.push(call);
        result
    }

    /// `debugmsg('warn', ...)`: a `WARN:` line that counts.
    fn warn(&mut self, msg: String) {
        self.report.warnings += 1;
        self.report.messages.push(format!("WARN: {msg}"));
    }

    fn exec(&mut self) {
        // PVE::VZDump::new: job-init, before the storage is activated.
        if let Err(e) = self.hook("job-init", None) {
            self.report.conclusion = Conclusion::JobFailed(e);
            return;
        }
        // exec_backup
        let mut guests = self.job.guests.clone();
        guests.sort_by_key(|g| g.vmid);
        let mut errcount = Vec::new();
        let result = (|| {
            self.hook("job-start", None)?;
            for (i, guest) in guests.iter().enumerate() {
                let g = self.exec_backup_task(guest, i);
                if g.failed_in.is_some() {
                    errcount.push(g.vmid);
                }
                self.report.guests.push(g);
            }
            self.hook("job-end", None)
        })();
        if let Err(mut err) = result {
            if let Err(e) = self.hook("job-abort", None) {
                err.push('\n');
                err.push_str(&e);
            }
            self.report.conclusion = Conclusion::JobFailed(format!("Backup job failed - {err}"));
        } else if !errcount.is_empty() {
            self.report.conclusion = Conclusion::GuestsFailed(errcount);
        } else if self.report.warnings > 0 {
            self.report.conclusion = Conclusion::Warnings(self.report.warnings);
        }
    }

    fn exec_backup_task(&mut self, guest: &Guest, index: usize) -> GuestReport {
        let task = Task::new(self.job, guest, index);
        let mut cleanup = Cleanup {
            resume: false,
            restart: false,
        };
        let mut failed_in = None;
        if let Err((phase, e)) = self.backup_steps(guest, &task, &mut cleanup) {
            failed_in = Some((phase, e));
        }
        let mut left_stopped = false;
        if cleanup.resume || cleanup.restart {
            // eval { pre-restart; resume/start; post-restart }; warn $err if $err;
            match self.hook("pre-restart", Some(&task)) {
                Err(e) => {
                    left_stopped = true;
                    self.report.messages.push(e);
                }
                Ok(()) => {
                    if let Err(e) = self.hook("post-restart", Some(&task)) {
                        self.report.messages.push(e);
                    }
                }
            }
        }
        if let Some((phase, e)) = &failed_in {
            self.report.messages.push(format!(
                "ERROR: Backup of VM {} failed - {e} (in {phase})",
                guest.vmid
            ));
            if let Err(e) = self.hook("backup-abort", Some(&task)) {
                self.warn(e);
            }
        }
        if let Err(e) = self.hook("log-end", Some(&task)) {
            self.warn(e);
        }
        GuestReport {
            vmid: guest.vmid,
            mode: task.mode,
            failed_in: failed_in.map(|(p, _)| p),
            left_stopped,
        }
    }

    /// The guest's `eval { ... }` up to `backup-end`; the failing phase on error.
    fn backup_steps(
        &mut self,
        guest: &Guest,
        task: &Task,
        cleanup: &mut Cleanup,
    ) -> Result<(), (String, String)> {
        let step = |sim: &mut Self, phase: &str| {
            sim.hook(phase, Some(task))
                .map_err(|e| (phase.to_owned(), e))
        };
        match task.mode {
            BackupMode::Stop => {
                step(self, "backup-start")?;
                if guest.running {
                    step(self, "pre-stop")?;
                    // stop_vm
                    cleanup.restart = true;
                }
            }
            BackupMode::Suspend => {
                step(self, "backup-start")?;
                step(self, "pre-stop")?;
                // suspend_vm
                cleanup.resume = true;
                if guest.kind == GuestType::Lxc {
                    // rsync phase 2, then resume right away
                    cleanup.resume = false;
                    step(self, "pre-restart")?;
                    step(self, "post-restart")?;
                }
            }
            BackupMode::Snapshot => {
                step(self, "backup-start")?;
                step(self, "pre-stop")?;
                // snapshot (no suspend with a single volume)
                step(self, "pre-restart")?;
                step(self, "post-restart")?;
            }
        }
        // archive, rename to TARGET
        step(self, "backup-end")
    }
}
