//! Async hooks (DESIGN §4): the dispatcher re-executes its own binary as a detached
//! supervisor and returns at once; the supervisor takes the lock, runs the hook with its
//! timeout, appends the output to `<log_dir>/async/<job>.log`, writes the Checkmk job
//! file and the run record, and exits.
//!
//! Detachment is what lets the platform see EOF: vzdump and libvirt read the hook
//! script's pipes until *every* holder closes them. So the supervisor starts in a new
//! session (a signal to the platform's process group does not reach it), with stdin,
//! stdout and stderr pointing away from the platform's pipes, and closes every other
//! descriptor it might have inherited before doing anything else.
//!
//! Everything it needs — the hook, its argv and environment, settings, the record to
//! complete, and the stdin payload — travels in one private memory file (`memfd`) that
//! becomes the supervisor's stdin: nothing touches a filesystem where others could read
//! it (libvirt's migrate XML can hold passwords).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::record::{OutcomeKind, RecordLog, RunRecord};

/// The argument that makes any hookrun binary act as an async supervisor.
pub const SUPERVISOR_FLAG: &str = "--hookrun-async-supervisor";

/// The most output of one async run that goes into its log: a hook that floods its
/// output cannot fill the log directory. Past it, the log says so, and the rest is read
/// and discarded (the hook is never blocked by a full pipe).
pub const ASYNC_LOG_CAP: u64 = 64 << 20;

/// Everything the supervisor needs, serialised as the first line of its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsyncSpec {
    /// The program to run (the hook, or `mk-job` in external mode) and its argv.
    pub program: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    /// Added to the inherited environment.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    pub timeout_ms: Option<u64>,
    pub kill_grace_ms: u64,
    pub lock: Option<String>,
    /// How long to wait for the lock; `None`: as long as the hook's timeout.
    #[serde(default)]
    pub lock_timeout_ms: Option<u64>,
    pub lock_dir: Vec<u8>,
    pub log_dir: Vec<u8>,
    /// Set for native `# mk-job`: the Checkmk job directory.
    pub mk_job_dir: Option<Vec<u8>>,
    /// `metrics_textfile`, when set.
    #[serde(default)]
    pub metrics_textfile: Option<Vec<u8>>,
    pub has_stdin: bool,
    /// `# nice:`/`# io-class:`/`# user:` for the hook's process.
    pub privilege: Option<crate::privilege::Plan>,
    /// The record to complete and append when the hook ends.
    pub record: RunRecord,
}

pub use crate::running::RunningEntry;

pub fn async_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("async")
}

pub fn running_dir(log_dir: &Path) -> PathBuf {
    crate::running::async_dir(log_dir)
}

/// The per-job async log.
pub fn async_log_path(log_dir: &Path, job: &str) -> PathBuf {
    async_dir(log_dir).join(format!("{job}.log"))
}

/// Starts one detached supervisor for `specs` (async hooks that came one after another
/// in a dispatch, so they share their stdin); returns each hook's supervisor pid, in
/// order. For several hooks it forks a child per hook: one `exec` of hookrun however
/// many hooks start together; the pids come back over a pipe on the supervisor's fd 3.
pub fn launch(specs: &[AsyncSpec], stdin: Option<&[u8]>) -> std::io::Result<Vec<u32>> {
    let memfd =
        nix::sys::memfd::memfd_create("hookrun-async", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = File::from(memfd);
    let mut line = serde_json::to_vec(specs).map_err(std::io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    if let Some(payload) = stdin {
        file.write_all(payload)?;
    }
    file.rewind()?;
    let title = match specs {
        [one] => one.record.job.clone(),
        many => format!("{} hooks of {}", many.len(), many[0].record.run_id),
    };
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let pid = spawn_detached(&title, &file, &report_w)?;
    drop(report_w);
    crate::contain::register_detached(pid);
    let mut pids = read_pids(report_r, specs.len());
    // Each hook's supervisor is a unit of its own, and may become our child when the
    // batch's first process ends before it (we are a subreaper): never a leftover.
    for &p in &pids {
        crate::contain::register_detached(p);
    }
    // A supervisor that could not say (it died at once): the batch's pid for all.
    pids.resize(specs.len(), pid);
    Ok(pids)
}

/// Whether an async hook's log and the run records can be written: checked before the
/// hook starts, so that the platform's task log says so while someone still reads it.
pub fn check_writable(log_dir: &Path, job: &str) -> Result<(), String> {
    open_async_log(log_dir, job)
        .map(drop)
        .map_err(|e| format!("its log {}: {e}", async_log_path(log_dir, job).display()))?;
    let records = log_dir.join(crate::record::RECORDS_FILE);
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&records)
        .map(drop)
        .map_err(|e| format!("the run records {}: {e}", records.display()))
}

/// How long the dispatcher waits for a supervisor to name its hooks' pids.
const PID_REPORT_WAIT: Duration = Duration::from_secs(2);

fn read_pids(pipe: std::os::fd::OwnedFd, want: usize) -> Vec<u32> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut file = File::from(pipe);
    let mut text = Vec::new();
    let until = Instant::now() + PID_REPORT_WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            PollFlags::POLLIN,
        )];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let mut buf = [0u8; 512];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
        if text.ends_with(b"\n") {
            break;
        }
    }
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .take(want)
        .collect()
}

/// `posix_spawn` of our own binary as a supervisor: in a new session (`setsid` done by
/// the spawn itself), stdin from `input`, stdout and stderr on `/dev/null`. glibc's
/// `posix_spawn` takes the cheap `vfork` path, which matters when a phase starts many
/// async hooks; `std::process::Command` would have to `fork` for the `setsid`.
fn spawn_detached(job: &str, input: &File, report: &std::os::fd::OwnedFd) -> std::io::Result<u32> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt as _;

    let c = |b: &[u8]| {
        CString::new(b)
            .map_err(|_| std::io::Error::other("NUL byte in an argument or the environment"))
    };
    let exe = c(b"/proc/self/exe")?;
    let argv = [
        c(format!("hookrun-async {job}").as_bytes())?,
        c(SUPERVISOR_FLAG.as_bytes())?,
    ];
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            c(&kv)
        })
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*mut nix::libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut nix::libc::c_char> =
        envp.iter().map(|a| a.as_ptr().cast_mut()).collect();
    envp_p.push(std::ptr::null_mut());
    let dev_null = c(b"/dev/null")?;
    let mut pid: nix::libc::pid_t = 0;
    // SAFETY: the attribute and file-action objects are initialised before use and
    // destroyed after; every pointer handed to posix_spawn outlives the call.
    let rc = unsafe {
        use nix::libc;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&raw mut attr);
        libc::posix_spawn_file_actions_init(&raw mut actions);
        // Ignored signals survive exec; the supervisor starts with SIGPIPE at default.
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut defaults);
        libc::sigaddset(&raw mut defaults, libc::SIGPIPE);
        libc::posix_spawnattr_setsigdefault(&raw mut attr, &raw const defaults);
        libc::posix_spawnattr_setflags(
            &raw mut attr,
            libc::POSIX_SPAWN_SETSID as libc::c_short
                | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short,
        );
        libc::posix_spawn_file_actions_adddup2(&raw mut actions, input.as_raw_fd(), 0);
        libc::posix_spawn_file_actions_addopen(
            &raw mut actions,
            1,
            dev_null.as_ptr(),
            libc::O_WRONLY,
            0,
        );
        libc::posix_spawn_file_actions_adddup2(&raw mut actions, 1, 2);
        libc::posix_spawn_file_actions_adddup2(&raw mut actions, report.as_raw_fd(), 3);
        let rc = libc::posix_spawn(
            &raw mut pid,
            exe.as_ptr(),
            &raw const actions,
            &raw const attr,
            argv_p.as_ptr(),
            envp_p.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&raw mut actions);
        libc::posix_spawnattr_destroy(&raw mut attr);
        rc
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(pid as u32)
}

/// If this process was started as a supervisor, runs it and returns the exit code.
/// Every hookrun binary calls this first thing.
///
/// A platform controls our argv (libvirt's first argument is a domain name anyone with
/// access to libvirt chooses), so the flag alone proves nothing. A supervisor is started
/// with exactly two arguments and the spec in a memory file named `hookrun-async` as its
/// stdin, which no platform passes.
pub fn supervisor_entry() -> Option<i32> {
    let mut args = std::env::args_os();
    if args.len() != 2 || args.nth(1).as_deref() != Some(OsStr::new(SUPERVISOR_FLAG)) {
        return None;
    }
    let stdin = std::fs::read_link("/proc/self/fd/0").ok()?;
    if !stdin
        .as_os_str()
        .as_bytes()
        .starts_with(b"/memfd:hookrun-async")
    {
        return None;
    }
    Some(run_supervisor())
}

/// The pipe on which the dispatcher waits for the hooks' pids: descriptor 3, kept open
/// only when it is a pipe (anything else there is the platform's and is closed).
const PID_REPORT_FD: i32 = 3;

fn close_inherited_descriptors() {
    // Raw fstat, close_range and close: descriptor 3 and those above it may or may not
    // be open, which is what is asked, and nothing owns them (no `BorrowedFd` or
    // `OwnedFd` can stand for them); nix has no close_range.
    // SAFETY: fstat on descriptor 3 into a zeroed buffer.
    let report_is_pipe = unsafe {
        let mut st: nix::libc::stat = std::mem::zeroed();
        nix::libc::fstat(PID_REPORT_FD, &raw mut st) == 0
            && st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO
    };
    let first = if report_is_pipe { 4u32 } else { 3u32 };
    // SAFETY: close_range(2) on descriptors this process does not use yet.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc != 0 {
        // ENOSYS before Linux 5.9, EPERM under some seccomp profiles: one by one, from
        // what /proc lists (the platform's pipes must not stay open in a supervisor).
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .filter(|&fd| fd >= first as i32)
                    .collect()
            })
            .unwrap_or_else(|_| (first as i32..1024).collect());
        for fd in fds {
            // SAFETY: closing descriptors nothing in this process uses.
            unsafe {
                nix::libc::close(fd);
            }
        }
    }
}

fn run_supervisor() -> i32 {
    close_inherited_descriptors();
    let mut input = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut input).is_err() {
        return 70;
    }
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    let split = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    let specs: Vec<AsyncSpec> = match serde_json::from_slice(&input[..split]) {
        Ok(s) => s,
        Err(_) => return 70,
    };
    let payload = input.get(split + 1..).unwrap_or_default().to_vec();
    drop(input);

    let count = specs.len();
    let mut pids = String::new();
    for (i, spec) in specs.into_iter().enumerate() {
        if i + 1 == count {
            pids.push_str(&std::process::id().to_string());
            report_pids(&pids);
            return supervise_one(spec, payload);
        }
        // SAFETY: this process is single-threaded here (no thread has been started, no
        // logger installed), so the child may do anything the parent could.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // The report is the batch parent's to write and close.
                // SAFETY: closing our copy of the report pipe.
                unsafe {
                    nix::libc::close(PID_REPORT_FD);
                }
                std::process::exit(supervise_one(spec, payload));
            }
            // A unit of its own: the hook this process runs must never stop it.
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                crate::contain::register_detached(child.as_raw() as u32);
                pids.push_str(&format!("{child} "));
            }
            // No process to spare: run this hook here and now, before the others,
            // rather than lose it.
            Err(_) => {
                pids.push_str(&format!("{} ", std::process::id()));
                supervise_one(spec, payload.clone());
            }
        }
    }
    report_pids(&pids);
    0
}

/// Tells the dispatcher each hook's supervisor pid, then closes the pipe, so it can
/// return to the platform.
fn report_pids(pids: &str) {
    let line = format!("{pids}\n");
    // SAFETY: write and close on descriptor 3 (a pipe, or closed: then both fail).
    unsafe {
        nix::libc::write(PID_REPORT_FD, line.as_ptr().cast(), line.len());
        nix::libc::close(PID_REPORT_FD);
    }
}

/// Supervises one async hook in this process, start to record.
fn supervise_one(spec: AsyncSpec, payload: Vec<u8>) -> i32 {
    // From here on this process is the worker; its guard stops the hook if it is killed.
    crate::contain::guard();
    let log_dir = PathBuf::from(OsString::from_vec(spec.log_dir.clone()));
    let job = spec.record.job.clone();
    // The hook's output, and our own messages, go to its async log. Without one, keep
    // going: the run record still says what happened.
    if let Ok(log) = open_async_log(&log_dir, &job) {
        let _ = nix::unistd::dup2_stdout(&log);
        let _ = nix::unistd::dup2_stderr(&log);
    }
    crate::logging::init("hookrun", false);
    // Every journal entry of this supervisor is about its one hook.
    let _fields = crate::logging::HookFields::enter(&spec.record);
    Supervisor {
        spec,
        payload,
        log_dir,
    }
    .run()
}

fn open_async_log(log_dir: &Path, job: &str) -> std::io::Result<File> {
    let dir = async_dir(log_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&dir)?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(async_log_path(log_dir, job))
}

struct Supervisor {
    spec: AsyncSpec,
    payload: Vec<u8>,
    log_dir: PathBuf,
}

impl Supervisor {
    fn run(self) -> i32 {
        let spec = &self.spec;
        let rec = &spec.record;
        let started = Instant::now();
        let running = self.mark_running();
        say(&format!(
            "=== {} start run {} hook {} phase {}{} (supervisor pid {})",
            crate::time::rfc3339(SystemTime::now()),
            rec.run_id,
            rec.hook,
            rec.phase,
            rec.object
                .as_ref()
                .map(|o| format!(" object {o}"))
                .unwrap_or_default(),
            // The pid the dispatcher named: the guard's, when there is one.
            crate::contain::guard_pid().unwrap_or_else(std::process::id)
        ));
        let mut signals = match crate::signals::SignalWatch::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot set up signal handling: {e}");
                return 70;
            }
        };
        let mut report = crate::dispatch::HookReport::new(
            &rec.hook,
            crate::header::Mode::Async,
            crate::header::OnError::Warn,
        );

        let lock_dir = PathBuf::from(OsString::from_vec(spec.lock_dir.clone()));
        let guard = match &spec.lock {
            None => None,
            Some(name) => match crate::lock::acquire(
                &lock_dir,
                name,
                &mut signals,
                spec.lock_timeout_ms
                    .or(spec.timeout_ms)
                    .map(Duration::from_millis),
            ) {
                crate::lock::LockWait::Acquired(g) => Some(g),
                crate::lock::LockWait::TimedOut { waited, holder } => {
                    report.outcome = OutcomeKind::LockTimeout;
                    report.exit_code = Some(124);
                    report.message = Some(crate::dispatch::lock_timeout_message(
                        name,
                        waited,
                        holder.as_deref(),
                    ));
                    None
                }
                crate::lock::LockWait::Interrupted(sig) => {
                    report.outcome = OutcomeKind::Skipped;
                    report.signal = Some(sig);
                    report.message = Some(format!(
                        "skipped: signal {sig} arrived while waiting for lock {name}"
                    ));
                    None
                }
                crate::lock::LockWait::Failed(why) => {
                    report.outcome = OutcomeKind::SpawnError;
                    report.exit_code = Some(126);
                    report.message = Some(why.to_string());
                    None
                }
            },
        };
        let lock_ok = spec.lock.is_none() || guard.is_some();
        let mut run_started = SystemTime::now();
        let mut truncated = 0;
        if lock_ok {
            run_started = SystemTime::now();
            let job = spec.mk_job_dir.as_ref().and_then(|dir| {
                let user = crate::privilege::Plan::user_of(spec.privilege.as_ref());
                crate::mkjob::start_as(Path::new(OsStr::from_bytes(dir)), &rec.job, user)
            });
            let args: Vec<OsString> = spec
                .args
                .iter()
                .map(|a| OsString::from_vec(a.clone()))
                .collect();
            let env: Vec<(OsString, OsString)> = spec
                .env
                .iter()
                .map(|(k, v)| (OsString::from_vec(k.clone()), OsString::from_vec(v.clone())))
                .collect();
            let program = PathBuf::from(OsString::from_vec(spec.program.clone()));
            let timeout = spec.timeout_ms.map(Duration::from_millis);
            let cmd = crate::process::SyncCommand {
                program: &program,
                args: &args,
                env: &env,
                stdin: spec.has_stdin.then_some(self.payload.as_slice()),
                timeout,
                kill_grace: Duration::from_millis(spec.kill_grace_ms),
                output: crate::process::Output::Capped(ASYNC_LOG_CAP),
                privilege: spec.privilege.as_ref(),
            };
            let result = crate::process::run_sync(&cmd, &mut signals);
            report.duration = result.duration;
            truncated = result.discarded;
            if result.pipe_held {
                tracing::warn!(
                    "a process the hook left behind still held its output open; stopped reading 1s after it exited"
                );
            }
            crate::dispatch::apply_ending(&mut report, result.ending, &program, timeout);
            if let Some(job) = job {
                job.finish(
                    crate::dispatch::job_exit_code(&report),
                    result.duration,
                    result.usage,
                );
            }
        }
        drop(guard);

        let mut record = rec.clone();
        record.time = crate::time::rfc3339(run_started);
        record.outcome = report.outcome;
        record.exit_code = report.exit_code;
        record.signal = report.signal;
        record.duration_ms = report.duration.as_millis() as u64;
        let mut records = RecordLog::new(&self.log_dir);
        records.append(&record);
        if records.failed() {
            // The async log and the journal may be gone with it (a full disk, no
            // systemd): syslog is the last channel a supervisor has left.
            crate::logging::syslog(
                3,
                &format!(
                    "{}: cannot write the run record of {} run {} ({}) to {}; it ended {}",
                    rec.hook,
                    rec.job,
                    rec.run_id,
                    rec.phase,
                    records.path().display(),
                    record.outcome.as_str()
                ),
            );
        }
        let metrics = spec.metrics_textfile.as_deref().map(OsStr::from_bytes);
        crate::metrics::record_run(metrics.map(Path::new), &record);
        crate::logging::journal_async_end("hookrun", &record, report.message.as_deref());
        say(&format!(
            "=== {} end run {} hook {}: {}{} after {:.2}s{}{}",
            crate::time::rfc3339(SystemTime::now()),
            rec.run_id,
            rec.hook,
            report.outcome.as_str(),
            report
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64(),
            report
                .message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
            if truncated > 0 {
                format!(
                    "; output truncated after {} MiB, {truncated} more bytes discarded",
                    ASYNC_LOG_CAP >> 20
                )
            } else {
                String::new()
            }
        ));
        drop(running);
        0
    }

    /// The running marker, removed when it is dropped (after the record is written).
    fn mark_running(&self) -> Option<crate::running::Marker> {
        let rec = &self.spec.record;
        let mut record = rec.clone();
        record.outcome = OutcomeKind::Running;
        crate::running::Marker::create(
            &running_dir(&self.log_dir),
            &format!("{}.{}.json", rec.run_id, rec.job),
            &RunningEntry::new(record),
        )
    }
}

/// A start or end line in the async log (stdout is the log). Control characters in it
/// (a newline in an object or hook name) are escaped: no value can start a line of its
/// own and pass for a start or end line.
fn say(line: &str) {
    let mut clean = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{clean}");
    let _ = out.flush();
}

/// Running hooks, sync and async, with whether their owner is still alive (a dead one
/// was killed with SIGKILL, or the machine rebooted: `lost`).
pub fn running_entries(log_dir: &Path) -> Vec<(RunningEntry, bool)> {
    crate::running::entries(log_dir)
}

pub(crate) fn os_bytes(s: &OsStr) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub(crate) fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}
