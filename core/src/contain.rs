//! Containment (DESIGN §4): a hook and everything it starts live, die and lock as one
//! unit, even when hookrun itself is killed.
//!
//! Three pieces, all without cgroups, so they hold the same on a Proxmox host, in a
//! container and on a hybrid-cgroup machine:
//!
//! - **The unit is everything below us.** Every process that runs hooks is a child
//!   subreaper ([`crate::signals`]), so whatever a hook starts — through `setsid`,
//!   `daemon(3)` or a double fork — stays our descendant. [`Unit`] finds those
//!   processes in `/proc` (skipping detached async supervisors, which are units of their
//!   own) and signals every one of them, not just the hook's process group.
//! - **A guard outlives the worker.** Before the first hook starts, [`guard`] forks. The
//!   parent stays in the caller's process group and only waits: it passes SIGTERM,
//!   SIGINT and SIGHUP on, and exits with the worker's status. The child — the worker —
//!   moves to a process group of its own (so a platform's group SIGKILL cannot take it
//!   and its hooks' supervision down together) and dies with a signal of its own if the
//!   parent dies (`PR_SET_PDEATHSIG`), which it handles like SIGTERM: it stops the running
//!   hook's unit, records it, and exits. If the worker is SIGKILLed, its orphans are
//!   re-parented to the parent (a subreaper too), which kills them before it exits.
//!   Either way a hook is never left running unsupervised.
//! - **Identities, not pids.** A process is named by pid, start time and boot id
//!   ([`Identity`]), so a reused pid never passes for a live owner.
//!
//! With a cgroup v2 hierarchy delegated to us the kernel could do the finding; hookrun
//! does not create cgroups, because on a systemd host (every Proxmox VE node) a service
//! may only touch cgroups below one that systemd delegated to it, and vzdump's task and
//! libvirtd's hook children run in undelegated ones. The `/proc` walk needs no such
//! permission and is exact for everything that stays a descendant, which a subreaper
//! guarantees.

use std::ffi::CStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How long the guard gives a dead worker's orphans to end after SIGTERM before SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// A process as it can be recognised later: pid, start time (clock ticks since boot,
/// `/proc/<pid>/stat` field 22) and boot id. Two processes never share all three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub pid: u32,
    pub start: u64,
    pub boot: String,
}

impl Identity {
    /// This process (looked up once per process: markers name it for every hook).
    pub fn current() -> Identity {
        static CURRENT: std::sync::Mutex<Option<Identity>> = std::sync::Mutex::new(None);
        let pid = std::process::id();
        let mut cached = CURRENT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cached.as_ref() {
            // A forked child has a pid of its own, and so an identity of its own.
            Some(id) if id.pid == pid => id.clone(),
            _ => {
                let id = Identity {
                    pid,
                    start: start_time(pid).unwrap_or(0),
                    boot: boot_id().to_owned(),
                };
                *cached = Some(id.clone());
                id
            }
        }
    }

    /// Whether this very process still lives (a zombie counts as gone).
    pub fn alive(&self) -> bool {
        self.boot == boot_id()
            && proc_stat(self.pid).is_some_and(|st| st.start == self.start && st.state != b'Z')
    }

    /// `pid:start:boot`, for files that are not JSON (lock files).
    pub fn to_line(&self) -> String {
        format!("{}:{}:{}", self.pid, self.start, self.boot)
    }

    pub fn from_line(line: &str) -> Option<Identity> {
        let mut it = line.trim().splitn(3, ':');
        Some(Identity {
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
            boot: it.next()?.to_owned(),
        })
    }
}

/// The kernel's boot id; empty when `/proc` does not have it (then identities compare
/// by pid and start time alone).
pub fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// The fields of `/proc/<pid>/stat` containment needs.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: u8,
    ppid: u32,
    start: u64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let mut path = [0u8; 32];
    let text = read_small(format_path(&mut path, pid))?;
    parse_stat(&text)
}

fn format_path(buf: &mut [u8; 32], pid: u32) -> &CStr {
    use std::io::Write as _;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "/proc/{pid}/stat\0");
    let len = cur.position() as usize;
    CStr::from_bytes_with_nul(&buf[..len]).unwrap_or(c"/proc/self/stat")
}

/// Reads a small `/proc` file with raw calls: this runs for every process on the
/// machine when a unit is searched.
fn read_small(path: &CStr) -> Option<Vec<u8>> {
    // SAFETY: open/read/close on a path we own; the buffer outlives the read.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut buf = vec![0u8; 1024];
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }
}

/// `pid (comm) state ppid ...`: the command name may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Field 22 overall is the 20th after the command name.
    let start = fields.nth(17)?.parse().ok()?;
    Some(Stat { state, ppid, start })
}

/// Whether `pid` is a zombie: dead, waiting to be reaped.
pub fn is_zombie(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|st| st.state == b'Z')
}

fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start)
}

/// Every live process's pid and parent, from one pass over `/proc`.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(256);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(st) = proc_stat(pid)
            && st.state != b'Z'
        {
            out.push((pid, st.ppid));
        }
    }
    out
}

/// Pids of detached async supervisors this process started: units of their own, which a
/// sync hook's teardown must never touch. Kept in memory shared with the guard, which
/// needs them when the worker dies.
struct Detached {
    slots: &'static [AtomicI32],
    /// The worker's hand-over ([`hand_over`]): `0x100 | code` once it is done.
    done: &'static AtomicI32,
}

const DETACHED_SLOTS: usize = 1024;

fn detached() -> &'static Detached {
    static D: OnceLock<Detached> = OnceLock::new();
    D.get_or_init(|| {
        let bytes = (DETACHED_SLOTS + 1) * std::mem::size_of::<AtomicI32>();
        // SAFETY: an anonymous shared mapping, never unmapped, so the 'static slice over
        // it stays valid; AtomicI32 is valid for all-zero bytes.
        let slots = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                // Without shared memory the guard cannot tell supervisors apart; a
                // private table still serves this process.
                let v: Vec<AtomicI32> = (0..=DETACHED_SLOTS).map(|_| AtomicI32::new(0)).collect();
                let all: &'static [AtomicI32] = Box::leak(v.into_boxed_slice());
                let (slots, done) = all.split_at(DETACHED_SLOTS);
                return Detached {
                    slots,
                    done: &done[0],
                };
            }
            std::slice::from_raw_parts(p.cast::<AtomicI32>(), DETACHED_SLOTS + 1)
        };
        let (slots, done) = slots.split_at(DETACHED_SLOTS);
        Detached {
            slots,
            done: &done[0],
        }
    })
}

/// Notes an async supervisor (a unit of its own) started by this process.
pub fn register_detached(pid: u32) {
    let pid = pid as i32;
    let d = detached();
    // Slots of supervisors that have ended are reused.
    for slot in d.slots {
        let cur = slot.load(Ordering::Relaxed);
        if (cur == 0 || kill(Pid::from_raw(cur), None).is_err())
            && slot
                .compare_exchange(cur, pid, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
    }
}

fn detached_pids() -> Vec<u32> {
    detached()
        .slots
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .filter(|&p| p > 0)
        .map(|p| p as u32)
        .collect()
}

/// Every descendant of this process, except detached supervisors and theirs.
pub fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let skip = detached_pids();
    let table = process_table();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier = vec![me];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &table {
            if ppid == parent
                && !skip.contains(&pid)
                && pid != me
                && !found.contains(&pid)
                && !is_async_supervisor(pid)
            {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Whether `pid` is an async supervisor of ours (our executable, started under the
/// name `hookrun-async …`): one that became our child because the process that started
/// it ended first is still a unit of its own, never a sync hook's leftover.
fn is_async_supervisor(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A supervisor, its worker, or its guard (which keeps the supervisor's argv; a
    // dispatcher's own guard is its parent, never below it).
    if !cmdline.starts_with(b"hookrun-async ") {
        return false;
    }
    match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    }
}

/// Whether this process has any child at all, reaped or not: one system call, and the
/// common answer after a hook ends is "no", which proves there is nothing left.
pub fn has_children() -> bool {
    // SAFETY: waitid with WNOWAIT only reports; `info` is plain data.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_ALL,
            0,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        !(rc != 0 && *libc::__errno_location() == libc::ECHILD)
    }
}

/// One hook's processes: its process group and every descendant of ours that is not a
/// detached supervisor. Only one sync hook runs at a time in a process, so everything
/// else below us is this hook's.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    pub pgid: Pid,
}

impl Unit {
    /// Sends `sig` to every process of the unit; returns how many were found.
    pub fn signal(&self, sig: Signal) -> usize {
        let _ = killpg(self.pgid, sig);
        let members = descendants();
        for &pid in &members {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
        members.len()
    }

    /// Whether anything of the unit is left (zombies aside).
    pub fn alive(&self) -> bool {
        crate::process::reap_zombies();
        if !has_children() {
            return false;
        }
        killpg(self.pgid, None).is_ok() || !descendants().is_empty()
    }
}

/// The guard's pid once [`guard`] has run in this process (0 before).
static GUARD_PID: AtomicU32 = AtomicU32::new(0);

/// The guard of this process, when it has one.
pub fn guard_pid() -> Option<u32> {
    match GUARD_PID.load(Ordering::Relaxed) {
        0 => None,
        p => Some(p),
    }
}

/// The identity that stands for "this work may still be running": the guard when
/// there is one (it outlives the worker until the worker's hooks are dead), else this
/// process.
pub fn owner() -> Identity {
    static GUARD_ID: OnceLock<Identity> = OnceLock::new();
    match guard_pid() {
        Some(pid) => GUARD_ID
            .get_or_init(|| Identity {
                pid,
                start: start_time(pid).unwrap_or(0),
                boot: boot_id().to_owned(),
            })
            .clone(),
        None => Identity::current(),
    }
}

/// Splits this process into a guard and a worker (see the module doc), once; returns in
/// the worker. Call it before the first hook starts. If the fork fails the process goes
/// on unguarded, which is what hookrun did before guards existed: a hook still runs.
pub fn guard() {
    if guard_pid().is_some() {
        return;
    }
    // Forking is only sound with one thread (hookrun's binaries); a library caller with
    // threads — a test harness, a fuzzer — runs unguarded rather than be split in two.
    if !single_threaded() {
        return;
    }
    // The self-pipe exists before the fork, so the worker's replacement is complete.
    let _ = crate::signals::SignalWatch::install();
    let mut forwarded = nix::sys::signal::SigSet::empty();
    for s in crate::signals::TERMINATING {
        forwarded.add(s);
    }
    forwarded.add(Signal::SIGCHLD);
    // Blocked across the fork: a signal for the guard that arrives meanwhile waits in
    // its queue for `sigwaitinfo` instead of running the worker's handler in it.
    let Ok(old_mask) = forwarded.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) else {
        return;
    };
    let parent = std::process::id();
    let foreground = crate::process::stdin_is_foreground_terminal();
    // Reserve the shared table before the fork, so both sides see one mapping.
    let _ = detached();
    let pinned = pin_to_this_cpu();
    // SAFETY: hookrun is single-threaded here (it starts no threads), so the child may
    // go on running ordinary Rust code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            unpin(pinned.as_ref());
            GUARD_PID.store(parent, Ordering::Relaxed);
            // A group of its own: a platform's SIGKILL to its task's group takes the
            // guard only, and the worker lives to stop its hooks. A terminal's
            // foreground job stays whole instead, so the worker keeps the terminal.
            if !foreground {
                let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            }
            let _ = crate::signals::SignalWatch::reinstall_after_fork();
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
            let _ = old_mask.thread_set_mask();
            // The guard may have died before the death signal was armed.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            become_guard(child, &forwarded, pinned.as_ref())
        }
        Err(_) => {
            unpin(pinned.as_ref());
            let _ = old_mask.thread_set_mask();
        }
    }
}

/// Pins this process to the CPU it runs on, for the fork: the child is then queued
/// here, behind the parent, which blocks for good a few system calls later — instead of
/// being placed on an idle CPU that first has to be woken (on a virtual machine that
/// measured 0.2–2 ms). Returns the affinity to restore, on both sides.
fn pin_to_this_cpu() -> Option<nix::sched::CpuSet> {
    use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
    let me = Pid::from_raw(0);
    let saved = sched_getaffinity(me).ok()?;
    let mut here = CpuSet::new();
    here.set(sched_getcpu().ok()?).ok()?;
    sched_setaffinity(me, &here).ok()?;
    Some(saved)
}

/// Restores the affinity saved by [`pin_to_this_cpu`]. Should the saved set no longer
/// be allowed (the cpuset changed in between), every CPU is asked for instead, which the
/// kernel cuts to what is allowed: hooks inherit the affinity and must never be left
/// on one CPU.
fn unpin(saved: Option<&nix::sched::CpuSet>) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let Some(saved) = saved else {
        return;
    };
    if sched_setaffinity(Pid::from_raw(0), saved).is_err() {
        let mut all = CpuSet::new();
        for cpu in 0..CpuSet::count() {
            let _ = all.set(cpu);
        }
        let _ = sched_setaffinity(Pid::from_raw(0), &all);
    }
}

fn single_threaded() -> bool {
    let Some(text) = read_small(c"/proc/self/stat") else {
        return false;
    };
    let Some(close) = text.iter().rposition(|&b| b == b')') else {
        return false;
    };
    // Field 20 overall (num_threads) is the 18th after the command name.
    std::str::from_utf8(&text[close + 1..])
        .ok()
        .and_then(|rest| rest.split_ascii_whitespace().nth(17))
        == Some("1")
}

/// Turns the parent of a fresh fork into the guard, in place. The fork is made first
/// thing in a dispatch, while the process is small, so the worker pays copy-on-write
/// for a few pages only; re-executing the guard instead cost more CPU than it saved
/// (docs/performance.md). What an exec would have dropped is dropped by hand: the
/// close-on-exec descriptors (the worker's directory handles, log and lock files: a
/// lock must not stay held through the guard's copy of its descriptor) and stdin,
/// which the guard never reads.
fn become_guard(
    worker: Pid,
    forwarded: &nix::sys::signal::SigSet,
    pinned: Option<&nix::sched::CpuSet>,
) -> ! {
    // `ps -o comm`, `top` and `pgrep hookrun-guard` tell it from the worker, which
    // keeps the argv the platform gave.
    let _ = nix::sys::prctl::set_name(c"hookrun-guard");
    close_exec_descriptors();
    // Nor does it hold the platform's output: the platform's read sees its end when the
    // worker lets go of it ([`hand_over`]), not one more process exit later. The guard
    // writes nothing.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    unpin(pinned);
    // The worker may have ended already: its SIGCHLD is pending then, and the loop's
    // first wait returns it.
    guard_loop(worker, forwarded)
}

/// Closes every descriptor above stderr that is close-on-exec, as an exec would.
fn close_exec_descriptors() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // The listing's own descriptor is closed by now and fails harmlessly.
        if set_close_on_exec(fd, true) == Some(true) {
            // SAFETY: the guard owns no Rust object that wraps these descriptors it
            // will use again: it only waits for signals from here on.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// The guard: forwards stop signals to the worker, reaps, and when the worker is gone
/// makes sure nothing it started lives on. Never returns.
fn guard_loop(worker: Pid, forwarded: &nix::sys::signal::SigSet) -> ! {
    loop {
        match forwarded.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(end) = reap_guarded(worker) {
                    finish_guard(end);
                }
                // The worker has handed over: done, its hooks stopped, only its own
                // exit left, which need not hold the platform up.
                let done = detached().done.load(Ordering::SeqCst);
                if done & 0x100 != 0 {
                    finish_guard(WorkerEnd {
                        code: done & 0xff,
                        killed: false,
                    });
                }
            }
            Ok(sig) => {
                let _ = kill(worker, sig);
            }
            Err(_) => {}
        }
    }
}

/// How the worker ended, once it has.
#[derive(Debug, Clone, Copy)]
struct WorkerEnd {
    /// Our exit code: the worker's, or 128+N when signal N killed it.
    code: i32,
    /// It was killed (SIGKILL, a crash): whatever it ran was not stopped by it.
    killed: bool,
}

/// Reaps every exited child; how the worker ended once it is gone.
fn reap_guarded(worker: Pid) -> Option<WorkerEnd> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == worker => {
                result = Some(WorkerEnd {
                    code,
                    killed: false,
                });
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == worker => {
                result = Some(WorkerEnd {
                    code: 128 + sig as i32,
                    killed: true,
                });
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

/// The worker is gone. A worker that exited stopped its own hooks; what is left below
/// us then is async supervisors, units of their own, which live on. A worker that was
/// killed stopped nothing: its hooks, orphaned to us, are stopped now — TERM, a short
/// grace, KILL until nothing is left.
fn finish_guard(end: WorkerEnd) -> ! {
    let code = end.code;
    // No child at all proves nothing is left (orphans below us become our children);
    // only then is `/proc` searched, which costs a read per process on the machine.
    if end.killed && has_children() && !descendants().is_empty() {
        for pid in descendants() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let until = Instant::now() + ORPHAN_GRACE;
        while Instant::now() < until && !descendants().is_empty() {
            crate::process::reap_zombies();
            std::thread::sleep(Duration::from_millis(20));
        }
        let until = Instant::now() + crate::process::KILL_WAIT;
        loop {
            crate::process::reap_zombies();
            let left = descendants();
            if left.is_empty() || Instant::now() >= until {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // SAFETY: _exit skips the at-exit flushing of buffers the worker owns now.
    unsafe { libc::_exit(code) }
}

/// The worker's last act before it exits with `code`: everything is done (records,
/// markers, metrics), so it lets go of the platform's output and tells the guard, which
/// exits with `code` at once instead of waiting for the worker's own exit to be over —
/// a tear-down of its memory, a wake-up of the guard, and only then the guard's exit.
/// Nothing without a guard.
pub fn hand_over(code: i32) {
    let Some(guard) = guard_pid() else {
        return;
    };
    crate::metrics::flush_now();
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // The guard's exit must not signal us on the way out.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    detached()
        .done
        .store(0x100 | (code & 0xff), Ordering::SeqCst);
    let _ = kill(Pid::from_raw(guard as i32), Signal::SIGCHLD);
}

/// Makes every inherited descriptor above stderr close-on-exec, so hooks get stdin,
/// stdout and stderr and nothing else (DESIGN §4). [`with_inherited`] undoes it for a
/// worker's own command, which gets what its caller passed.
pub fn seal_inherited_descriptors() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        // One the listing itself used is closed by now and fails harmlessly.
        .filter(|&fd| set_close_on_exec(fd, true) == Some(false))
        .collect();
    SEALED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend_from_slice(&fds);
}

/// Descriptors [`seal_inherited_descriptors`] made close-on-exec.
static SEALED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with the caller's descriptors inheritable again: a wrapped command (the
/// worker's) gets what its caller passed, hooks never do.
pub fn with_inherited<R>(f: impl FnOnce() -> R) -> R {
    let fds = SEALED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for &fd in &fds {
        set_close_on_exec(fd, false);
    }
    let r = f();
    for &fd in &fds {
        set_close_on_exec(fd, true);
    }
    r
}

/// Sets or clears `FD_CLOEXEC` on `fd`; returns whether it was set before (`None`: not
/// an open descriptor).
fn set_close_on_exec(fd: i32, on: bool) -> Option<bool> {
    // SAFETY: fcntl flag queries and updates on a descriptor number of this process.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return None;
        }
        let was = flags & libc::FD_CLOEXEC != 0;
        if was != on {
            let new = if on {
                flags | libc::FD_CLOEXEC
            } else {
                flags & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, new);
        }
        Some(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line =
            b"42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, b'S');
        assert_eq!(st.ppid, 7);
        assert_eq!(st.start, 123456);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Identity::current();
        assert!(me.start > 0);
        assert!(me.alive());
        let other = Identity {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!other.alive());
        assert_eq!(Identity::from_line(&me.to_line()), Some(me));
    }
}
