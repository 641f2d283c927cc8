//! Running one sync hook to completion (DESIGN §4).
//!
//! The hook gets its own process group; its unit ([`crate::contain::Unit`]) is that group
//! plus everything else below us, which a subreaper keeps together even across `setsid`.
//! One `poll` loop watches the hook's stdout and stderr, the stdin payload still to be
//! written, the platform's ends of our own stdout and stderr, and our signals, so that:
//! - output is relayed line by line as it comes, prefixed with the hook's name, and a
//!   platform that reads slowly slows the hook instead of the loop: relayed output waits
//!   in a bounded buffer, and while that is full the hook's pipes are not read;
//! - a timeout sends SIGTERM to the whole unit, then SIGKILL after the grace period,
//!   and nothing — a stalled reader included — delays either;
//! - SIGTERM/SIGINT/SIGHUP to the dispatcher reach the unit the same way;
//! - the platform closing its end of our stdout or stderr (EPIPE, POLLERR) means the
//!   caller is gone: the unit is stopped as for SIGTERM;
//! - once the hook has exited, processes it left behind get [`PIPE_GRACE`] to finish,
//!   then are stopped like a timed-out unit: a hook never outlives its run, and a lock is
//!   never released while something of the locked hook still runs;
//! - a process that survives SIGKILL (stuck in the kernel) is abandoned after
//!   [`KILL_WAIT`] rather than hanging the platform.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::contain::Unit;
use crate::mkjob::Usage;
use crate::signals::SignalWatch;

/// How long a finished hook's leftovers may go on (holding its pipes, or not) before
/// they are stopped.
pub const PIPE_GRACE: Duration = Duration::from_secs(1);
/// How long after SIGKILL the dispatcher waits for the hook before giving up on it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// A line longer than this is relayed in pieces.
const MAX_LINE: usize = 64 * 1024;
/// Captured stdout (filter hooks) is bounded like the platform's own input.
pub const MAX_CAPTURE: usize = 64 * 1024 * 1024;
/// Relayed output waiting for a slow platform; past this the hook's pipes are left
/// unread until the platform catches up.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;
/// How long the output of a finished hook may wait for a caller that reads nothing.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// The most a pipe takes without blocking once `poll` says it is writable (PIPE_BUF).
const PIPE_CHUNK: usize = 4096;

/// The hook leader being supervised, whose status only `wait4` on it may take.
static LEADER: AtomicI32 = AtomicI32::new(0);

/// How the hook ended, as the operating system reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Did not die even after SIGKILL; left behind.
    Abandoned,
}

#[derive(Debug)]
pub enum Ending {
    /// Ran to its own end.
    Exited(Exit),
    /// Killed by the dispatcher after its timeout.
    TimedOut(Exit),
    /// The dispatcher received `signal` and passed it on.
    Interrupted {
        signal: i32,
        exit: Exit,
    },
    /// The platform closed its end of our stdout or stderr; the unit was stopped.
    CallerGone(Exit),
    SpawnFailed(std::io::Error),
}

/// Where the hook's output goes.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Each line to the dispatcher's stdout/stderr as `[<name>] line`.
    Prefixed(&'a str),
    /// Relayed unchanged.
    Plain,
    /// stdout kept (libvirt filters); stderr relayed, each line prefixed `[<name>] `
    /// when a name is given, as in every other phase.
    CaptureStdout(Option<&'a str>),
    /// stdin, stdout and stderr are the dispatcher's own (a worker's main command).
    Inherit,
    /// Relayed unchanged like `Plain`, but at most this many bytes of stdout and stderr
    /// together (an async hook's log): past that, one line says so, and the rest is
    /// still read — the hook never blocks on a full pipe — and discarded.
    Capped(u64),
}

#[derive(Debug)]
pub struct SyncCommand<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    /// Added to (or replacing in) the inherited environment.
    pub env: &'a [(OsString, OsString)],
    /// `None`: stdin is `/dev/null` (EOF at once).
    pub stdin: Option<&'a [u8]>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub output: Output<'a>,
    /// `# nice:`/`# io-class:`/`# user:`, applied in the child before exec.
    pub privilege: Option<&'a crate::privilege::Plan>,
}

#[derive(Debug)]
pub struct RunResult {
    pub ending: Ending,
    pub duration: Duration,
    /// A process the hook left behind still held its output pipes when it ended.
    pub pipe_held: bool,
    /// Processes the hook left running after it exited, which were stopped.
    pub leftovers: usize,
    /// Stdout, with [`Output::CaptureStdout`].
    pub captured: Vec<u8>,
    /// Captured stdout went over [`MAX_CAPTURE`] and was cut.
    pub capture_overflow: bool,
    /// With [`Output::Capped`]: how many bytes of output were discarded past the cap.
    pub discarded: u64,
    /// The hook's own resource use (`wait4`), when it was reaped.
    pub usage: Option<Usage>,
}

impl RunResult {
    /// The platform closed our output: the dispatch should end.
    pub fn caller_gone(&self) -> bool {
        matches!(self.ending, Ending::CallerGone(_))
    }
}

/// Starts the hook and supervises it until it, everything it started, and its pipes
/// are done.
pub fn run_sync(cmd: &SyncCommand<'_>, signals: &mut SignalWatch) -> RunResult {
    let start = Instant::now();
    let mut command = Command::new(cmd.program);
    command
        .args(cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let terminal = matches!(cmd.output, Output::Inherit) && stdin_is_foreground_terminal();
    if let Output::Inherit = cmd.output {
        command
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    }
    if terminal {
        // A command in a process group of its own is a background job on the terminal:
        // reading from it would stop it with SIGTTIN. So it takes the terminal over
        // before exec (SIGTTOU ignored meanwhile, as shells do), and `reclaim_terminal`
        // takes it back when it is done.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::setpgid(0, 0);
                libc::tcsetpgrp(0, libc::getpid());
                libc::signal(libc::SIGTTOU, old);
                Ok(())
            });
        }
    }
    if let Some(plan) = cmd.privilege.cloned() {
        // SAFETY: `Plan::apply` makes only raw syscalls on memory owned by the closure.
        unsafe { command.pre_exec(move || plan.apply()) };
    }
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return RunResult {
                ending: Ending::SpawnFailed(e),
                duration: start.elapsed(),
                pipe_held: false,
                leftovers: 0,
                captured: Vec::new(),
                capture_overflow: false,
                discarded: 0,
                usage: None,
            };
        }
    };
    LEADER.store(child.id() as i32, Ordering::Relaxed);
    let result = Supervisor::new(child, cmd, start).run(signals);
    LEADER.store(0, Ordering::Relaxed);
    if terminal {
        reclaim_terminal();
    }
    result
}

/// Whether stdin is a terminal whose foreground process group is ours.
pub(crate) fn stdin_is_foreground_terminal() -> bool {
    let stdin = std::io::stdin();
    nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
        && nix::unistd::tcgetpgrp(stdin.as_fd()) == Ok(nix::unistd::getpgrp())
}

/// Makes our process group the terminal's foreground group again.
fn reclaim_terminal() {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: SIGTTOU is ignored only around the call, so a background tcsetpgrp does
    // not stop us; the previous disposition, whatever it was, is put back as it was.
    unsafe {
        let old = signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::unistd::tcsetpgrp(std::io::stdin().as_fd(), nix::unistd::getpgrp());
        if let Ok(old) = old {
            let _ = signal(Signal::SIGTTOU, old);
        }
    }
}

struct Stream<R> {
    pipe: Option<R>,
    lines: Vec<u8>,
}

/// What kind of file the platform gave us as stdout or stderr, which decides how to
/// write to it without ever blocking the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    /// A pipe or FIFO: after POLLOUT, up to PIPE_BUF bytes go in without blocking.
    Pipe,
    /// A socket (a systemd journal stream): `send` with MSG_DONTWAIT.
    Socket,
    /// A terminal: written after POLLOUT in small pieces.
    Terminal,
    /// A regular file or /dev/null: never blocks.
    File,
    /// Not open: output is dropped.
    Closed,
}

/// Our stdout or stderr towards the platform, with the output still to be written.
struct Sink {
    fd: i32,
    kind: SinkKind,
    queue: Vec<u8>,
    /// Written bytes at the front of `queue`.
    sent: usize,
    /// The reader is gone (EPIPE, POLLERR).
    broken: bool,
}

impl Sink {
    fn new(fd: i32) -> Sink {
        // What stdout and stderr are does not change in a process's life: asked once.
        static KINDS: [std::sync::OnceLock<SinkKind>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let kind = *KINDS[usize::from(fd == 2)].get_or_init(|| Sink::kind_of(fd));
        Sink {
            kind,
            ..Sink::closed(fd)
        }
    }

    /// A sink that takes nothing (the hook writes to our descriptors itself).
    fn closed(fd: i32) -> Sink {
        Sink {
            fd,
            kind: SinkKind::Closed,
            queue: Vec::new(),
            sent: 0,
            broken: false,
        }
    }

    fn kind_of(fd: i32) -> SinkKind {
        // Raw: the descriptor may be closed, which is an answer here, and a `BorrowedFd`
        // of a closed descriptor would be invalid.
        // SAFETY: fstat into a zeroed buffer on one of our standard descriptors.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &raw mut st) != 0 {
                SinkKind::Closed
            } else {
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFIFO => SinkKind::Pipe,
                    libc::S_IFSOCK => SinkKind::Socket,
                    libc::S_IFCHR if libc::isatty(fd) == 1 => SinkKind::Terminal,
                    _ => SinkKind::File,
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.queue.len() - self.sent
    }

    fn push(&mut self, data: &[u8]) {
        if self.broken || self.kind == SinkKind::Closed || data.is_empty() {
            return;
        }
        self.queue.extend_from_slice(data);
        self.flush();
    }

    /// Writes what the reader takes right now; never blocks.
    fn flush(&mut self) {
        while self.pending() > 0 && !self.broken {
            let data = &self.queue[self.sent..];
            let written = match self.kind {
                SinkKind::Closed => Ok(data.len()),
                SinkKind::File => nix::unistd::write(self.borrowed(), data),
                SinkKind::Socket => {
                    use nix::sys::socket::MsgFlags;
                    nix::sys::socket::send(
                        self.fd,
                        data,
                        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                    )
                }
                SinkKind::Pipe | SinkKind::Terminal => {
                    if !writable_now(self.borrowed()) {
                        return;
                    }
                    let limit = if self.kind == SinkKind::Pipe {
                        PIPE_CHUNK
                    } else {
                        256
                    };
                    nix::unistd::write(self.borrowed(), &data[..data.len().min(limit)])
                }
            };
            let n = match written {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => return,
                // The reader is gone: the caller went away.
                Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                    self.broken = true;
                    self.queue.clear();
                    self.sent = 0;
                    return;
                }
                // A full disk under an async log, EIO on a terminal: this output is
                // lost, the hook is not stopped for it (the record says how it ended).
                Err(_) => {
                    self.queue.clear();
                    self.sent = 0;
                    return;
                }
            };
            self.sent += n;
        }
        if self.pending() == 0 {
            self.queue.clear();
            self.sent = 0;
        } else if self.sent > MAX_PENDING_OUTPUT {
            self.queue.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// What to ask `poll` for: POLLOUT while output waits; otherwise nothing, which
    /// still reports POLLERR when the reader of a pipe goes away.
    fn poll_flags(&self) -> Option<PollFlags> {
        if self.broken || matches!(self.kind, SinkKind::Closed | SinkKind::File) {
            return None;
        }
        Some(if self.pending() > 0 {
            PollFlags::POLLOUT
        } else {
            PollFlags::empty()
        })
    }

    fn borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: descriptors 1 and 2 stay open for the life of the process.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

/// What `poll` reports for `fd` right now, without waiting (empty when nothing).
fn poll_now(fd: BorrowedFd<'_>, events: PollFlags) -> PollFlags {
    let mut p = [PollFd::new(fd, events)];
    match poll(&mut p, PollTimeout::ZERO) {
        Ok(n) if n > 0 => p[0].revents().unwrap_or(PollFlags::empty()),
        _ => PollFlags::empty(),
    }
}

/// Whether a write to `fd` would not block now. POLLERR/POLLHUP also count: the write
/// then reports EPIPE, which is the answer.
fn writable_now(fd: BorrowedFd<'_>) -> bool {
    !poll_now(fd, PollFlags::POLLOUT).is_empty()
}

/// Whether the reading end of our pipe or socket `fd` has been closed.
fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    poll_now(fd, PollFlags::empty()).intersects(PollFlags::POLLERR | PollFlags::POLLHUP)
}

struct Supervisor<'a> {
    cmd: &'a SyncCommand<'a>,
    child: Child,
    pid: Pid,
    unit: Unit,
    start: Instant,
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
    stdin: Option<ChildStdin>,
    stdin_pos: usize,
    out: Sink,
    err: Sink,
    status: Option<Exit>,
    usage: Option<Usage>,
    exited_at: Option<Instant>,
    /// When SIGTERM (or the forwarded signal) went to the unit.
    term_sent: Option<Instant>,
    kill_sent: Option<Instant>,
    timed_out: bool,
    interrupted: Option<i32>,
    caller_gone: bool,
    /// Processes left after the hook exited, when they were stopped.
    leftovers: usize,
    /// The unit has been seen empty since the leader exited.
    unit_done: bool,
    captured: Vec<u8>,
    capture_overflow: bool,
    /// With [`Output::Capped`]: bytes relayed so far, whether the last one was a
    /// newline, and bytes discarded past the cap.
    relayed: u64,
    at_line_start: bool,
    discarded: u64,
}

impl<'a> Supervisor<'a> {
    fn new(mut child: Child, cmd: &'a SyncCommand<'a>, start: Instant) -> Self {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stdin = child.stdin.take();
        // A large payload (libvirt XML) fits the pipe in one write when the pipe is
        // grown to it, up to the system's limit (1 MiB by default): one wake-up instead
        // of one per 64 KiB. Failure just keeps the default size.
        if let (Some(pipe), Some(payload)) = (&stdin, cmd.stdin)
            && payload.len() > 64 * 1024
        {
            let size = payload.len().min(1 << 20) as libc::c_int;
            let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
        }
        for fd in [
            stdout.as_ref().map(|f| f.as_fd()),
            stderr.as_ref().map(|f| f.as_fd()),
            stdin.as_ref().map(|f| f.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(fd);
        }
        let pid = Pid::from_raw(child.id() as i32);
        let (out, err) = match cmd.output {
            // The hook writes to our descriptors itself; we relay nothing.
            Output::Inherit => (Sink::closed(1), Sink::closed(2)),
            _ => (Sink::new(1), Sink::new(2)),
        };
        Supervisor {
            cmd,
            child,
            pid,
            unit: Unit { pgid: pid },
            start,
            stdout: Stream {
                pipe: stdout,
                lines: Vec::new(),
            },
            stderr: Stream {
                pipe: stderr,
                lines: Vec::new(),
            },
            stdin,
            stdin_pos: 0,
            out,
            err,
            status: None,
            usage: None,
            exited_at: None,
            term_sent: None,
            kill_sent: None,
            timed_out: false,
            interrupted: None,
            caller_gone: false,
            leftovers: 0,
            unit_done: false,
            captured: Vec::new(),
            capture_overflow: false,
            relayed: 0,
            at_line_start: true,
            discarded: 0,
        }
    }

    fn run(mut self, signals: &mut SignalWatch) -> RunResult {
        // A timeout too large for the clock is no timeout (headers are range-checked;
        // this keeps the loop itself panic-free whatever it is given).
        let deadline = self.cmd.timeout.and_then(|t| self.start.checked_add(t));
        let grace = self.cmd.kill_grace;
        // A stop requested before the hook even started is passed on at once.
        if let Some(sig) = signals.stop_signal() {
            self.interrupt(sig);
        }
        let mut pipe_held = false;
        loop {
            let now = Instant::now();
            if self.status.is_none() {
                self.reap();
            }
            let mut wake: Option<Instant> = None;
            let mut soonest = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));

            if let Some(exited) = self.exited_at {
                if !self.unit_done && !self.unit.alive() {
                    self.unit_done = true;
                }
                let pipes_open = self.stdout.pipe.is_some() || self.stderr.pipe.is_some();
                if !pipes_open && self.unit_done {
                    break;
                }
                if self.term_sent.is_none() {
                    // Leftovers get PIPE_GRACE after the hook's exit to finish by
                    // themselves, then they are stopped like a timed-out unit.
                    if now >= exited + PIPE_GRACE {
                        if pipes_open {
                            // Unread because the caller reads nothing is not "held".
                            pipe_held = !self.paused();
                            self.close_pipes();
                        }
                        if !self.unit_done {
                            self.term_sent = Some(now);
                            self.leftovers = self.unit.signal(Signal::SIGTERM).max(1);
                        }
                        continue;
                    }
                    soonest(exited + PIPE_GRACE);
                    if !self.unit_done {
                        // Deeper leftovers do not send us SIGCHLD when they end.
                        soonest(now + Duration::from_millis(50));
                    }
                }
            }
            if let Some(t) = self.term_sent {
                if self.unit_done && self.status.is_some() {
                    if self.stdout.pipe.is_some() || self.stderr.pipe.is_some() {
                        // Everyone is dead; the pipes close as the kernel tears down.
                        soonest(now + Duration::from_millis(20));
                        if self.exited_at.is_some_and(|e| now >= e + PIPE_GRACE) {
                            pipe_held = true;
                            break;
                        }
                    } else {
                        break;
                    }
                } else {
                    match self.kill_sent {
                        None if now >= t + grace => {
                            self.kill_sent = Some(now);
                            self.unit.signal(Signal::SIGKILL);
                            continue;
                        }
                        None => soonest(t + grace),
                        Some(k) if now >= k + KILL_WAIT => break,
                        Some(_) => {
                            // A unit that forks while dying needs more than one sweep.
                            if self.unit.alive() {
                                self.unit.signal(Signal::SIGKILL);
                            } else if self.status.is_some() {
                                self.unit_done = true;
                            }
                            soonest(now + Duration::from_millis(20));
                        }
                    }
                    if self.status.is_none() || !self.unit_done {
                        soonest(now + Duration::from_millis(50));
                    }
                }
            } else if self.status.is_none()
                && let Some(d) = deadline
            {
                if now >= d {
                    self.timed_out = true;
                    self.term_sent = Some(now);
                    self.unit.signal(Signal::SIGTERM);
                    continue;
                }
                soonest(d);
            }

            self.wait_and_handle(signals, wake);
            if (self.out.broken || self.err.broken) && !self.caller_gone {
                self.caller_gone = true;
                self.interrupt(Signal::SIGTERM as i32);
            }
        }
        self.close_pipes();
        self.finish_lines();
        self.drain_sinks(signals);
        let exit = self.status.unwrap_or(Exit::Abandoned);
        // What stopped the hook first names its end.
        let ending = if self.timed_out {
            Ending::TimedOut(exit)
        } else if self.caller_gone {
            Ending::CallerGone(exit)
        } else if let Some(signal) = self.interrupted {
            Ending::Interrupted { signal, exit }
        } else {
            Ending::Exited(exit)
        };
        RunResult {
            ending,
            duration: self.exited_at.unwrap_or_else(Instant::now) - self.start,
            pipe_held,
            leftovers: self.leftovers,
            captured: std::mem::take(&mut self.captured),
            capture_overflow: self.capture_overflow,
            discarded: self.discarded,
            usage: self.usage,
        }
    }

    /// Reaps the hook leader with its resource use.
    fn reap(&mut self) {
        // Raw: nix has no wait4, and the hook's own resource use is only there.
        // SAFETY: wait4 on our own child into zeroed plain-data buffers.
        let (rc, status, ru) = unsafe {
            let mut status: libc::c_int = 0;
            let mut ru: libc::rusage = std::mem::zeroed();
            let rc = libc::wait4(
                self.pid.as_raw(),
                &raw mut status,
                libc::WNOHANG,
                &raw mut ru,
            );
            (rc, status, ru)
        };
        if rc != self.pid.as_raw() {
            return;
        }
        self.status = Some(if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Abandoned
        });
        self.usage = Some(usage_of(&ru));
        self.exited_at = Some(Instant::now());
        LEADER.store(0, Ordering::Relaxed);
        // The std handle must not try to reap it again.
        let _ = &self.child;
    }

    fn close_pipes(&mut self) {
        self.stdout.pipe = None;
        self.stderr.pipe = None;
    }

    fn interrupt(&mut self, signo: i32) {
        if self.interrupted.is_some() {
            return;
        }
        self.interrupted = Some(signo);
        if self.term_sent.is_none() {
            self.term_sent = Some(Instant::now());
            if let Ok(sig) = Signal::try_from(signo) {
                self.unit.signal(sig);
            }
        }
    }

    fn paused(&self) -> bool {
        self.out.pending() + self.err.pending() > MAX_PENDING_OUTPUT
    }

    fn wait_and_handle(&mut self, signals: &mut SignalWatch, wake: Option<Instant>) {
        let timeout = match wake {
            None => PollTimeout::NONE,
            Some(w) => {
                let ms = w
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .saturating_add(1);
                PollTimeout::try_from(ms.min(60_000) as u64).unwrap_or(PollTimeout::MAX)
            }
        };
        let paused = self.paused();
        let (out_ready, err_ready, in_ready, sig_ready, sinks_ready) = {
            let mut fds = Vec::with_capacity(6);
            fds.push(PollFd::new(signals.fd(), PollFlags::POLLIN));
            let out_at = self.stdout.pipe.as_ref().filter(|_| !paused).map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let err_at = self.stderr.pipe.as_ref().filter(|_| !paused).map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let in_at = self.stdin.as_ref().map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLOUT));
                fds.len() - 1
            });
            let mut sink_at = Vec::with_capacity(2);
            for sink in [&self.out, &self.err] {
                if let Some(flags) = sink.poll_flags() {
                    fds.push(PollFd::new(sink.borrowed(), flags));
                    sink_at.push(fds.len() - 1);
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return,
                Err(e) => {
                    tracing::error!("poll failed while supervising a hook: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
            let ready = |i: Option<usize>| {
                i.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()))
            };
            let sinks = sink_at.iter().any(|&i| ready(Some(i)));
            (
                ready(out_at),
                ready(err_at),
                ready(in_at),
                ready(Some(0)),
                sinks,
            )
        };
        if sig_ready {
            let arrived = signals.drain();
            if arrived.child {
                self.reap();
                reap_zombies();
            }
            if let Some(sig) = arrived.terminate {
                self.interrupt(sig);
            }
        }
        if sinks_ready {
            self.out.flush();
            self.err.flush();
            // POLLERR with nothing to write: the reader is gone.
            for sink in [&mut self.out, &mut self.err] {
                if sink.pending() == 0
                    && sink.poll_flags().is_some()
                    && reader_gone(sink.borrowed())
                {
                    sink.broken = true;
                }
            }
        }
        if out_ready {
            self.pump_stdout();
        }
        if err_ready {
            self.pump_stderr();
        }
        if in_ready {
            self.feed_stdin();
        }
    }

    fn pump_stdout(&mut self) {
        let mode = self.cmd.output;
        let mut buf = [0u8; 64 * 1024];
        let (eof, chunks) = drain_pipe(&mut self.stdout.pipe, &mut buf);
        let mut staged = Vec::new();
        for chunk in chunks {
            match mode {
                Output::CaptureStdout(_) => {
                    if self.captured.len() + chunk.len() > MAX_CAPTURE {
                        self.capture_overflow = true;
                    } else {
                        self.captured.extend_from_slice(&chunk);
                    }
                }
                Output::Plain | Output::Inherit => staged.extend_from_slice(&chunk),
                Output::Capped(cap) => self.relay_capped(cap, &chunk, &mut staged),
                Output::Prefixed(name) => {
                    relay_lines(&mut self.stdout.lines, &chunk, name, &mut staged)
                }
            }
        }
        if eof {
            self.stdout.pipe = None;
            if let Output::Prefixed(name) = mode {
                flush_partial(&mut self.stdout.lines, name, &mut staged);
            }
        }
        self.out.push(&staged);
    }

    fn pump_stderr(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        let (eof, chunks) = drain_pipe(&mut self.stderr.pipe, &mut buf);
        let mut staged = Vec::new();
        for chunk in chunks {
            match self.cmd.output {
                Output::Prefixed(name) | Output::CaptureStdout(Some(name)) => {
                    relay_lines(&mut self.stderr.lines, &chunk, name, &mut staged)
                }
                Output::Capped(cap) => self.relay_capped(cap, &chunk, &mut staged),
                _ => staged.extend_from_slice(&chunk),
            }
        }
        if eof {
            self.stderr.pipe = None;
            if let Output::Prefixed(name) | Output::CaptureStdout(Some(name)) = self.cmd.output {
                flush_partial(&mut self.stderr.lines, name, &mut staged);
            }
        }
        self.err.push(&staged);
    }

    /// Relays `chunk` unchanged while the run's output is within `cap` bytes; the first
    /// byte past it gets one line saying the rest is discarded, and the rest is counted.
    fn relay_capped(&mut self, cap: u64, chunk: &[u8], out: &mut Vec<u8>) {
        let room = cap.saturating_sub(self.relayed);
        let keep = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if keep > 0 {
            out.extend_from_slice(&chunk[..keep]);
            self.relayed += keep as u64;
            self.at_line_start = chunk[keep - 1] == b'\n';
        }
        if keep < chunk.len() {
            if self.discarded == 0 {
                let newline = if self.at_line_start { "" } else { "\n" };
                out.extend_from_slice(
                    format!(
                        "{newline}hookrun: output truncated after {} MiB; the rest of this run's output is discarded\n",
                        cap >> 20
                    )
                    .as_bytes(),
                );
            }
            self.discarded += (chunk.len() - keep) as u64;
        }
    }

    fn feed_stdin(&mut self) {
        let payload = self.cmd.stdin.unwrap_or_default();
        let Some(pipe) = self.stdin.as_mut() else {
            return;
        };
        while self.stdin_pos < payload.len() {
            match pipe.write(&payload[self.stdin_pos..]) {
                Ok(n) => self.stdin_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EPIPE: the hook does not want (the rest of) its input. That is its call.
                Err(_) => break,
            }
        }
        // Closing is the EOF the hook waits for.
        self.stdin = None;
    }

    /// Emits any unterminated last lines once the hook is done.
    fn finish_lines(&mut self) {
        let mut staged = Vec::new();
        if let Output::Prefixed(name) = self.cmd.output {
            flush_partial(&mut self.stdout.lines, name, &mut staged);
            self.out.push(&staged);
            staged.clear();
        }
        if let Output::Prefixed(name) | Output::CaptureStdout(Some(name)) = self.cmd.output {
            flush_partial(&mut self.stderr.lines, name, &mut staged);
            self.err.push(&staged);
        }
    }

    /// Hands the platform what is still queued for it. The hook is done, so nothing
    /// else waits on this; a stop signal, the reader going away, or a reader that has
    /// taken nothing for [`STALL_LIMIT`] ends it (the rest is dropped, and said so).
    fn drain_sinks(&mut self, signals: &mut SignalWatch) {
        let mut last_progress = Instant::now();
        let mut left = self.out.pending() + self.err.pending();
        while (self.out.pending() > 0 && !self.out.broken)
            || (self.err.pending() > 0 && !self.err.broken)
        {
            if signals.stop_signal().is_some() {
                return;
            }
            let now_left = self.out.pending() + self.err.pending();
            if now_left < left {
                left = now_left;
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= STALL_LIMIT {
                tracing::warn!(
                    "the caller has read nothing of this hook's output for {}s; {now_left} bytes of it were dropped",
                    STALL_LIMIT.as_secs()
                );
                return;
            }
            let mut fds = Vec::with_capacity(3);
            fds.push(PollFd::new(signals.fd(), PollFlags::POLLIN));
            for sink in [&self.out, &self.err] {
                if let Some(flags) = sink.poll_flags() {
                    fds.push(PollFd::new(sink.borrowed(), flags));
                }
            }
            let _ = poll(&mut fds, PollTimeout::from(1000u16));
            drop(fds);
            self.out.flush();
            self.err.flush();
        }
    }
}

fn usage_of(ru: &libc::rusage) -> Usage {
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    Usage {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        max_rss_kb: ru.ru_maxrss,
        reads: ru.ru_inblock,
        writes: ru.ru_oublock,
        invol_cs: ru.ru_nivcsw,
        vol_cs: ru.ru_nvcsw,
    }
}

/// Reaps every exited child but the hook leader being supervised: async supervisors
/// this process started, and orphans re-parented to it as a subreaper. Nobody else
/// waits for them, and a dispatcher that lives on — `hookrun-worker run` during a long
/// command, perhaps as a container's PID 1 — would otherwise collect zombies. Each
/// exited child is looked at without reaping it first, so the leader's status (and its
/// resource use) is only ever taken by its own `wait4`.
pub fn reap_zombies() {
    let leader = LEADER.load(Ordering::Relaxed);
    loop {
        // WNOWAIT: only which child has exited, not reaped yet.
        let status = nix::sys::wait::waitid(
            nix::sys::wait::Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let Some(pid) = status.ok().and_then(|s| s.pid()) else {
            return;
        };
        if pid.as_raw() == 0 || pid.as_raw() == leader {
            return;
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// Reads what is available without blocking (bounded, so one flooding stream cannot
/// starve the loop). Returns whether EOF was reached and the chunks read.
fn drain_pipe<R: Read>(pipe: &mut Option<R>, buf: &mut [u8]) -> (bool, Vec<Vec<u8>>) {
    let mut chunks = Vec::new();
    let Some(p) = pipe.as_mut() else {
        return (true, chunks);
    };
    for _ in 0..16 {
        match p.read(buf) {
            Ok(0) => return (true, chunks),
            Ok(n) => chunks.push(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (true, chunks),
        }
    }
    (false, chunks)
}

/// Appends `chunk` to the pending partial line in `pending` and writes every completed
/// line as `[name] line\n`. Lines end where Proxmox's `PVE::Tools::run_command` ends
/// them — at `\n`, `\r\n`, a lone `\r` and a run of backspaces — so a progress meter's
/// every update (`10%\r20%\r`) keeps its prefix in the task log. A `\r` or backspace
/// run at the end of a chunk waits for the next one: it may still become `\r\n` or a
/// longer run, one line end either way.
pub fn relay_lines(pending: &mut Vec<u8>, chunk: &[u8], name: &str, out: &mut dyn Write) {
    let mut buf = Vec::with_capacity(chunk.len() + 64);
    pending.extend_from_slice(chunk);
    let data = pending.as_slice();
    let (mut line_start, mut i) = (0, 0);
    while i < data.len() {
        let end = match data[i] {
            b'\n' => i + 1,
            b'\r' if i + 1 == data.len() => break,
            b'\r' if data[i + 1] == b'\n' => i + 2,
            b'\r' => i + 1,
            b'\x08' => match data[i..].iter().position(|&b| b != b'\x08') {
                Some(run) => i + run,
                None => break,
            },
            _ => {
                i += 1;
                continue;
            }
        };
        push_line(&mut buf, name, &data[line_start..i], &[]);
        line_start = end;
        i = end;
    }
    pending.drain(..line_start);
    while pending.len() >= MAX_LINE {
        let tail = pending.split_off(MAX_LINE);
        push_line(&mut buf, name, pending, &[]);
        *pending = tail;
    }
    write_all(out, &buf);
}

/// Writes a final line that had no line end (or whose `\r` or backspaces were the last
/// bytes of the output).
pub fn flush_partial(pending: &mut Vec<u8>, name: &str, out: &mut dyn Write) {
    if pending.is_empty() {
        return;
    }
    let text = match pending.iter().rposition(|&b| b != b'\r' && b != b'\x08') {
        Some(last) => &pending[..=last],
        None => &[][..],
    };
    let mut buf = Vec::with_capacity(pending.len() + name.len() + 4);
    push_line(&mut buf, name, text, &[]);
    pending.clear();
    write_all(out, &buf);
}

fn push_line(buf: &mut Vec<u8>, name: &str, head: &[u8], tail: &[u8]) {
    buf.push(b'[');
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"] ");
    buf.extend_from_slice(head);
    buf.extend_from_slice(tail);
    buf.push(b'\n');
}

/// Writes to an in-memory buffer cannot fail.
fn write_all(out: &mut dyn Write, data: &[u8]) {
    let _ = out.write_all(data);
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(chunks: &[&[u8]]) -> String {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            relay_lines(&mut pending, c, "h", &mut out);
        }
        flush_partial(&mut pending, "h", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_prefixed_across_chunks() {
        assert_eq!(
            relay(&[b"a\nb", b"c\n", b"\nlast"]),
            "[h] a\n[h] bc\n[h] \n[h] last\n"
        );
        assert_eq!(relay(&[b""]), "");
    }

    #[test]
    fn carriage_returns_and_backspace_runs_end_lines_as_in_pve_cmd_run() {
        assert_eq!(
            relay(&[b"progress 10%\rprogress 20%\n"]),
            "[h] progress 10%\n[h] progress 20%\n"
        );
        assert_eq!(relay(&[b"a\r\nb\r\n"]), "[h] a\n[h] b\n");
        assert_eq!(relay(&[b"a\r\rb"]), "[h] a\n[h] \n[h] b\n");
        assert_eq!(
            relay(&[b"50%\x08\x08\x0860%\x08\x08\x08"]),
            "[h] 50%\n[h] 60%\n"
        );
        // A \r\n split between two reads is still one line end, and so is a run of
        // backspaces.
        assert_eq!(relay(&[b"a\r", b"\nb\r", b"c"]), "[h] a\n[h] b\n[h] c\n");
        assert_eq!(relay(&[b"a\x08", b"\x08\x08b"]), "[h] a\n[h] b\n");
        // A trailing \r at the very end of the output ends the last line.
        assert_eq!(relay(&[b"x\r"]), "[h] x\n");
        assert_eq!(relay(&[b"x\x08\x08"]), "[h] x\n");
    }

    #[test]
    fn overlong_lines_are_split() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let out = relay(&[&long]);
        assert_eq!(out.lines().count(), 3);
        assert!(out.lines().all(|l| l.starts_with("[h] ")));
    }
}
