//! The dispatcher's own signals, read from a `signalfd` inside the same `poll` that
//! watches the hook's pipes, so a signal can never be lost between checks.
//!
//! SIGTERM, SIGINT and SIGHUP are what the platform (or an operator) sends to stop a
//! dispatch; SIGCHLD tells us a hook ended. All four are blocked for normal delivery;
//! the standard library resets the mask in every child, so hooks see a clean one.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals that stop a dispatch; the dispatcher exits `128 + N` after forwarding them.
pub const TERMINATING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

#[derive(Debug)]
pub struct SignalWatch {
    fd: SignalFd,
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
    pub fn install() -> std::io::Result<SignalWatch> {
        let mut set = SigSet::empty();
        for s in TERMINATING {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalWatch { fd, stop: None })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads everything queued on the descriptor without blocking.
    pub fn drain(&mut self) -> Arrived {
        let mut arrived = Arrived::default();
        while let Ok(Some(info)) = self.fd.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == Signal::SIGCHLD as i32 {
                arrived.child = true;
            } else if arrived.terminate.is_none() {
                arrived.terminate = Some(signo);
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
