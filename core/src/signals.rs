//! The dispatcher's own signals, delivered through a self-pipe that the same `poll`
//! watching the hook's pipes also watches, so no signal is lost between checks.
//!
//! SIGTERM, SIGINT and SIGHUP are what the platform (or an operator) sends to stop a
//! dispatch; SIGCHLD says a hook ended. They are caught by a handler, not blocked: a
//! blocked mask is inherited by every child through `exec` (and shells pass it on to
//! their background jobs), which would make a hook's processes deaf to the very SIGTERM
//! meant to stop them. Caught signals revert to their defaults in the child on `exec`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Signals that stop a dispatch; the dispatcher exits `128 + N` after forwarding them.
pub const TERMINATING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

static WRITE_END: AtomicI32 = AtomicI32::new(-1);
static READ_END: OnceLock<OwnedFd> = OnceLock::new();

extern "C" fn on_signal(signo: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
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
        if READ_END.get().is_none() {
            let (read, write) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
            WRITE_END.store(
                std::os::fd::IntoRawFd::into_raw_fd(write),
                Ordering::Relaxed,
            );
            let _ = READ_END.set(read);
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
            // so we can reap them: a zombie still counts as a member of its process
            // group, and a PID 1 that never reaps (common in containers) would otherwise
            // make a killed group look alive until the grace period runs out.
            let _ = nix::sys::prctl::set_child_subreaper(true);
        }
        Ok(SignalWatch { stop: None })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match READ_END.get() {
            Some(fd) => fd.as_fd(),
            // SAFETY: unreachable after `install`; -1 polls as an ignored descriptor.
            None => unsafe { BorrowedFd::borrow_raw(-1) },
        }
    }

    /// Reads everything queued without blocking.
    pub fn drain(&mut self) -> Arrived {
        let mut arrived = Arrived::default();
        let Some(fd) = READ_END.get() else {
            return arrived;
        };
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
