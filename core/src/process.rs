//! Running one sync hook to completion (DESIGN §4).
//!
//! The hook gets its own process group. One `poll` loop watches its stdout and stderr,
//! the stdin payload still to be written, and the dispatcher's signals, so that:
//! - output is relayed line by line as it comes, prefixed with the hook's name;
//! - a timeout sends SIGTERM to the whole group, then SIGKILL after the grace period;
//! - SIGTERM/SIGINT/SIGHUP to the dispatcher reach the hook's group the same way;
//! - once the hook has exited, a background process still holding its pipes delays the
//!   dispatcher by at most [`PIPE_GRACE`], never forever;
//! - a process that survives SIGKILL (stuck in the kernel) is abandoned after
//!   [`KILL_WAIT`] rather than hanging the platform.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::signals::SignalWatch;

/// How long the dispatcher keeps reading a finished hook's pipes.
pub const PIPE_GRACE: Duration = Duration::from_secs(1);
/// How long after SIGKILL the dispatcher waits for the hook before giving up on it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// A line longer than this is relayed in pieces.
const MAX_LINE: usize = 64 * 1024;
/// Captured stdout (filter hooks) is bounded like the platform's own input.
pub const MAX_CAPTURE: usize = 64 * 1024 * 1024;

/// How the hook ended, as the operating system reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Did not die even after SIGKILL; left behind.
    Abandoned,
}

impl From<ExitStatus> for Exit {
    fn from(s: ExitStatus) -> Exit {
        match (s.code(), s.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Abandoned,
        }
    }
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
    SpawnFailed(std::io::Error),
}

/// Where the hook's output goes.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Each line to the dispatcher's stdout/stderr as `[<name>] line`.
    Prefixed(&'a str),
    /// Relayed unchanged.
    Plain,
    /// stdout kept (libvirt filters), stderr relayed unchanged.
    CaptureStdout,
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
    /// Stdout, with [`Output::CaptureStdout`].
    pub captured: Vec<u8>,
    /// Captured stdout went over [`MAX_CAPTURE`] and was cut.
    pub capture_overflow: bool,
    /// With [`Output::Capped`]: how many bytes of output were discarded past the cap.
    pub discarded: u64,
}

/// Starts the hook and supervises it until it (and its pipes) are done.
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
                use nix::libc;
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
                captured: Vec::new(),
                capture_overflow: false,
                discarded: 0,
            };
        }
    };
    let result = Supervisor::new(child, cmd, start).run(signals);
    if terminal {
        reclaim_terminal();
    }
    result
}

/// Whether stdin is a terminal whose foreground process group is ours.
fn stdin_is_foreground_terminal() -> bool {
    // SAFETY: plain queries on descriptor 0.
    unsafe { nix::libc::isatty(0) == 1 && nix::libc::tcgetpgrp(0) == nix::libc::getpgrp() }
}

/// Makes our process group the terminal's foreground group again.
fn reclaim_terminal() {
    // SAFETY: SIGTTOU is ignored only around the call, so a background tcsetpgrp does
    // not stop us; the previous disposition is restored.
    unsafe {
        use nix::libc;
        let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(0, libc::getpgrp());
        libc::signal(libc::SIGTTOU, old);
    }
}

struct Stream<R> {
    pipe: Option<R>,
    lines: Vec<u8>,
}

struct Supervisor<'a> {
    cmd: &'a SyncCommand<'a>,
    child: Child,
    pgid: Pid,
    start: Instant,
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
    stdin: Option<ChildStdin>,
    stdin_pos: usize,
    status: Option<ExitStatus>,
    exited_at: Option<Instant>,
    /// When SIGTERM (or the forwarded signal) went to the group.
    term_sent: Option<Instant>,
    kill_sent: Option<Instant>,
    timed_out: bool,
    interrupted: Option<i32>,
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
            let size = payload.len().min(1 << 20) as nix::libc::c_int;
            // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
            unsafe {
                nix::libc::fcntl(pipe.as_raw_fd(), nix::libc::F_SETPIPE_SZ, size);
            }
        }
        for fd in [
            stdout.as_ref().map(|f| f.as_raw_fd()),
            stderr.as_ref().map(|f| f.as_raw_fd()),
            stdin.as_ref().map(|f| f.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(fd);
        }
        let pgid = Pid::from_raw(child.id() as i32);
        Supervisor {
            cmd,
            child,
            pgid,
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
            status: None,
            exited_at: None,
            term_sent: None,
            kill_sent: None,
            timed_out: false,
            interrupted: None,
            captured: Vec::new(),
            capture_overflow: false,
            relayed: 0,
            at_line_start: true,
            discarded: 0,
        }
    }

    fn run(mut self, signals: &mut SignalWatch) -> RunResult {
        let deadline = self.cmd.timeout.map(|t| self.start + t);
        // A stop requested before the hook even started is passed on at once.
        if let Some(sig) = signals.stop_signal() {
            self.interrupt(sig);
        }
        // Children that ended before now (their SIGCHLD may have been read already).
        reap_others(self.pgid);
        let mut pipe_held = false;
        loop {
            let now = Instant::now();
            if self.status.is_none() {
                self.reap();
            }
            // Decide whether we are done, and how long we may sleep otherwise.
            let mut wake: Option<Instant> = None;
            let mut soonest = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
            if let Some(exited) = self.exited_at {
                // After SIGKILL the pipes close as the group dies; give them the grace
                // from then, not from the leader's exit.
                let exited = self.kill_sent.map_or(exited, |k| k.max(exited));
                let pipes_open = self.stdout.pipe.is_some() || self.stderr.pipe.is_some();
                // A group we are terminating is waited for until it is gone: through the
                // grace period, and after SIGKILL until the kernel has really ended it
                // (bounded by KILL_WAIT for processes stuck in the kernel).
                let group_lingers = self.term_sent.is_some()
                    && self.kill_sent.is_none_or(|k| now < k + KILL_WAIT)
                    && self.group_alive();
                if !pipes_open && !group_lingers {
                    break;
                }
                if group_lingers {
                    // Members of a group we are terminating do not send us SIGCHLD.
                    soonest(now + Duration::from_millis(20));
                } else if now >= exited + PIPE_GRACE {
                    pipe_held = true;
                    break;
                } else {
                    soonest(exited + PIPE_GRACE);
                }
            } else if let Some(killed) = self.kill_sent {
                if now >= killed + KILL_WAIT {
                    break;
                }
                soonest(killed + KILL_WAIT);
            }
            if self.kill_sent.is_none() {
                match self.term_sent {
                    Some(t) => soonest(t + self.cmd.kill_grace),
                    None if self.status.is_none() => {
                        if let Some(d) = deadline {
                            soonest(d);
                        }
                    }
                    None => {}
                }
            }

            self.wait_and_handle(signals, wake);

            let now = Instant::now();
            if self.term_sent.is_none()
                && self.status.is_none()
                && deadline.is_some_and(|d| now >= d)
            {
                self.timed_out = true;
                self.term_sent = Some(now);
                self.signal_group(Signal::SIGTERM);
            }
            if let Some(t) = self.term_sent
                && self.kill_sent.is_none()
                && now >= t + self.cmd.kill_grace
            {
                self.kill_sent = Some(now);
                self.signal_group(Signal::SIGKILL);
            }
        }
        self.finish_lines();
        let exit = match self.status {
            Some(s) => Exit::from(s),
            None => Exit::Abandoned,
        };
        let ending = if let Some(signal) = self.interrupted {
            Ending::Interrupted { signal, exit }
        } else if self.timed_out {
            Ending::TimedOut(exit)
        } else {
            Ending::Exited(exit)
        };
        RunResult {
            ending,
            duration: self.exited_at.unwrap_or_else(Instant::now) - self.start,
            pipe_held,
            captured: std::mem::take(&mut self.captured),
            capture_overflow: self.capture_overflow,
            discarded: self.discarded,
        }
    }

    fn reap(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.status = Some(status);
            self.exited_at = Some(Instant::now());
        }
    }

    /// Whether any process of the hook's group still lives. Only asked once the leader
    /// has been reaped, so reaping the group's other (re-parented) zombies here cannot
    /// take the leader's status away from `reap`.
    fn group_alive(&self) -> bool {
        let group = Pid::from_raw(-self.pgid.as_raw());
        while let Ok(status) = waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        killpg(self.pgid, None).is_ok()
    }

    fn signal_group(&self, sig: Signal) {
        // ESRCH only means everyone is gone already.
        let _ = killpg(self.pgid, sig);
    }

    fn interrupt(&mut self, signo: i32) {
        if self.interrupted.is_some() {
            return;
        }
        self.interrupted = Some(signo);
        if self.term_sent.is_none() {
            self.term_sent = Some(Instant::now());
            if let Ok(sig) = Signal::try_from(signo) {
                self.signal_group(sig);
            }
        }
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
        let (out_ready, err_ready, in_ready, sig_ready) = {
            let mut fds = Vec::with_capacity(4);
            fds.push(PollFd::new(signals.fd(), PollFlags::POLLIN));
            let out_at = self.stdout.pipe.as_ref().map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let err_at = self.stderr.pipe.as_ref().map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let in_at = self.stdin.as_ref().map(|p| {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLOUT));
                fds.len() - 1
            });
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
            (ready(out_at), ready(err_at), ready(in_at), ready(Some(0)))
        };
        if sig_ready {
            let arrived = signals.drain();
            if arrived.child {
                self.reap();
                reap_others(self.pgid);
            }
            if let Some(sig) = arrived.terminate {
                self.interrupt(sig);
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
        for chunk in chunks {
            match mode {
                Output::CaptureStdout => {
                    if self.captured.len() + chunk.len() > MAX_CAPTURE {
                        self.capture_overflow = true;
                    } else {
                        self.captured.extend_from_slice(&chunk);
                    }
                }
                Output::Plain | Output::Inherit => write_all(&mut std::io::stdout().lock(), &chunk),
                Output::Capped(cap) => {
                    self.relay_capped(cap, &chunk, &mut std::io::stdout().lock())
                }
                Output::Prefixed(name) => relay_lines(
                    &mut self.stdout.lines,
                    &chunk,
                    name,
                    &mut std::io::stdout().lock(),
                ),
            }
        }
        if eof {
            self.stdout.pipe = None;
            if let Output::Prefixed(name) = mode {
                flush_partial(&mut self.stdout.lines, name, &mut std::io::stdout().lock());
            }
        }
    }

    fn pump_stderr(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        let (eof, chunks) = drain_pipe(&mut self.stderr.pipe, &mut buf);
        for chunk in chunks {
            match self.cmd.output {
                Output::Prefixed(name) => relay_lines(
                    &mut self.stderr.lines,
                    &chunk,
                    name,
                    &mut std::io::stderr().lock(),
                ),
                Output::Capped(cap) => {
                    self.relay_capped(cap, &chunk, &mut std::io::stderr().lock())
                }
                _ => write_all(&mut std::io::stderr().lock(), &chunk),
            }
        }
        if eof {
            self.stderr.pipe = None;
            if let Output::Prefixed(name) = self.cmd.output {
                flush_partial(&mut self.stderr.lines, name, &mut std::io::stderr().lock());
            }
        }
    }

    /// Relays `chunk` unchanged while the run's output is within `cap` bytes; the first
    /// byte past it gets one line saying the rest is discarded, and the rest is counted.
    fn relay_capped(&mut self, cap: u64, chunk: &[u8], out: &mut dyn Write) {
        let room = cap.saturating_sub(self.relayed);
        let keep = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if keep > 0 {
            write_all(out, &chunk[..keep]);
            self.relayed += keep as u64;
            self.at_line_start = chunk[keep - 1] == b'\n';
        }
        if keep < chunk.len() {
            if self.discarded == 0 {
                let newline = if self.at_line_start { "" } else { "\n" };
                write_all(
                    out,
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
        if let Output::Prefixed(name) = self.cmd.output {
            flush_partial(&mut self.stdout.lines, name, &mut std::io::stdout().lock());
            flush_partial(&mut self.stderr.lines, name, &mut std::io::stderr().lock());
        }
    }
}

/// Reaps every exited child but the hook (`hook`, not yet reaped): async supervisors this
/// process started, and orphans re-parented to it as a subreaper. Nobody else waits for
/// them, and a dispatcher that lives on — `hookrun-worker run` during a long command,
/// perhaps as a container's PID 1 — would otherwise collect zombies. Each exited child is
/// looked at without reaping it first, so the hook's own status is never taken.
fn reap_others(hook: Pid) {
    loop {
        // SAFETY: waitid with WNOWAIT only reads which child has exited into `info`.
        let pid = unsafe {
            let mut info: nix::libc::siginfo_t = std::mem::zeroed();
            let rc = nix::libc::waitid(
                nix::libc::P_ALL,
                0,
                &raw mut info,
                nix::libc::WEXITED | nix::libc::WNOHANG | nix::libc::WNOWAIT,
            );
            if rc != 0 {
                return;
            }
            info.si_pid()
        };
        if pid == 0 || pid == hook.as_raw() {
            return;
        }
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
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
/// line as `[name] line\n`.
pub fn relay_lines(pending: &mut Vec<u8>, chunk: &[u8], name: &str, out: &mut dyn Write) {
    let mut buf = Vec::with_capacity(chunk.len() + 64);
    let mut rest = chunk;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        push_line(&mut buf, name, pending, &rest[..i]);
        pending.clear();
        rest = &rest[i + 1..];
    }
    pending.extend_from_slice(rest);
    while pending.len() >= MAX_LINE {
        let tail = pending.split_off(MAX_LINE);
        push_line(&mut buf, name, pending, &[]);
        *pending = tail;
    }
    write_all(out, &buf);
}

/// Writes a final line that had no newline.
pub fn flush_partial(pending: &mut Vec<u8>, name: &str, out: &mut dyn Write) {
    if pending.is_empty() {
        return;
    }
    let mut buf = Vec::with_capacity(pending.len() + name.len() + 4);
    push_line(&mut buf, name, pending, &[]);
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

/// Output to the platform is best effort: if it stopped listening, hooks still run.
fn write_all(out: &mut dyn Write, data: &[u8]) {
    let _ = out.write_all(data).and_then(|()| out.flush());
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own, with flags derived from its current ones.
    unsafe {
        let flags = nix::libc::fcntl(fd, nix::libc::F_GETFL);
        if flags >= 0 {
            nix::libc::fcntl(fd, nix::libc::F_SETFL, flags | nix::libc::O_NONBLOCK);
        }
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
    fn overlong_lines_are_split() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let out = relay(&[&long]);
        assert_eq!(out.lines().count(), 3);
        assert!(out.lines().all(|l| l.starts_with("[h] ")));
    }
}
