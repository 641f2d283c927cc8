//! The dispatcher's own signals, delivered through a self-pipe that the same `poll`
//! watching the hook's pipes also watches, so no signal is lost between checks.
//!
//! SIGTERM, SIGINT and SIGHUP are what the platform (or an operator) sends to stop a
//! dispatch; SIGCHLD says a hook ended. They are caught by a handler, not blocked: a
//! blocked mask is inherited by every child through `exec` (and shells pass it on to
//! their background jobs), which would make a hook's processes deaf to the very SIGTERM
//! meant to stop them. Caught signals revert to their defaults in the child on `exec`.

use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Signals that stop a dispatch; the dispatcher exits `128 + N` after forwarding them.
pub const TERMINATING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

static WRITE_END: AtomicI32 = AtomicI32::new(-1);
/// The self-pipe's read end: raw, because a process that forks to guard itself
/// ([`crate::contain`]) replaces the pipe in the child so that parent and child never
/// read each other's signals.
static READ_END: AtomicI32 = AtomicI32::new(-1);
static HANDLERS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signo: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // Raw write: the pipe may be being replaced (a guard's fork) while a signal arrives,
    // and a failed write to a stale descriptor is harmless where a `BorrowedFd` of it
    // would be invalid.
    // SAFETY: write(2) and errno access are async-signal-safe; errno is restored so the
    // interrupted code never sees the handler's.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = signo as u8;
        libc::write(fd, (&raw const byte).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

#[derive(Debug)]
pub struct SignalWatch {
    /// The first terminating signal received; it stays set for the rest of the dispatch.
    stop: Option<i32>,
}

/// What arrived since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub child: bool,
    /// A terminating signal that arrived in this batch.
    pub terminate: Option<i32>,
}

impl SignalWatch {
    /// Installs the handlers (once per process) and returns a watch on them.
    pub fn install() -> std::io::Result<SignalWatch> {
        if !HANDLERS.load(Ordering::Relaxed) {
            new_pipe()?;
            let action = SigAction::new(
                SigHandler::Handler(on_signal),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            let child_action = SigAction::new(
                SigHandler::Handler(on_signal),
                SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
                SigSet::empty(),
            );
            // SAFETY: the handler only calls async-signal-safe functions.
            unsafe {
                for s in TERMINATING {
                    sigaction(s, &action)?;
                }
                sigaction(Signal::SIGCHLD, &child_action)?;
            }
            // Processes a hook leaves behind are re-parented to us rather than to PID 1,
            // so we can find, stop and reap them: a hook's unit is everything below us.
            let _ = nix::sys::prctl::set_child_subreaper(true);
            HANDLERS.store(true, Ordering::Relaxed);
        }
        Ok(SignalWatch { stop: None })
    }

    /// In a freshly forked child: a self-pipe of its own (the inherited one is the
    /// parent's), and the subreaper flag, which `fork` does not inherit.
    pub(crate) fn reinstall_after_fork() -> std::io::Result<()> {
        let old_read = READ_END.swap(-1, Ordering::Relaxed);
        let old_write = WRITE_END.swap(-1, Ordering::Relaxed);
        for fd in [old_read, old_write] {
            if fd >= 0 {
                let _ = nix::unistd::close(fd);
            }
        }
        if HANDLERS.load(Ordering::Relaxed) {
            new_pipe()?;
            let _ = nix::sys::prctl::set_child_subreaper(true);
        }
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        let fd = READ_END.load(Ordering::Relaxed);
        assert!(fd >= 0, "SignalWatch exists only after install()");
        // SAFETY: the read end stays open for the life of the process once installed
        // (only a forked child replaces it, before any watch of its own is used).
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// Reads everything queued without blocking.
    pub fn drain(&mut self) -> Arrived {
        let mut arrived = Arrived::default();
        let fd = READ_END.load(Ordering::Relaxed);
        if fd < 0 {
            return arrived;
        }
        // SAFETY: see `fd`.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        let signo = i32::from(b);
                        if signo == Signal::SIGCHLD as i32 {
                            arrived.child = true;
                        } else if arrived.terminate.is_none() {
                            arrived.terminate = Some(signo);
                        }
                    }
                }
            }
        }
        if self.stop.is_none() {
            self.stop = arrived.terminate;
        }
        arrived
    }

    /// The terminating signal received so far, if any. Checked between hooks: once the
    /// dispatcher has been told to stop, it starts nothing new.
    pub fn stop_signal(&mut self) -> Option<i32> {
        self.drain();
        self.stop
    }
}

fn new_pipe() -> std::io::Result<()> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    READ_END.store(read.into_raw_fd(), Ordering::Relaxed);
    WRITE_END.store(write.into_raw_fd(), Ordering::Relaxed);
    Ok(())
}
