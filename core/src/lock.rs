//! `# lock: NAME` (DESIGN §4): an exclusive `flock` on `<lock_dir>/NAME.lock`.
//!
//! The descriptor is close-on-exec, so neither the hook nor anything it leaves behind
//! can hold the lock past the dispatcher's own hold. Waiting stays responsive to the
//! dispatcher's signals: an operator can always stop a dispatch stuck behind a lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::signals::SignalWatch;

/// Held while the guard lives; dropping it closes the descriptor and releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

#[derive(Debug)]
pub enum LockWait {
    Acquired(LockGuard),
    /// A terminating signal arrived while waiting.
    Interrupted(i32),
    Failed(String),
}

pub fn open_lock_file(lock_dir: &Path, name: &str) -> Result<File, String> {
    crate::header::validate_lock_name(name).map_err(|m| format!("lock name {name:?}: {m}"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lock_dir)
        .map_err(|e| {
            format!(
                "cannot create lock directory {}: {e} (check lock_dir in the config)",
                lock_dir.display()
            )
        })?;
    let path = lock_dir.join(format!("{name}.lock"));
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))
}

/// Takes the lock if it is free; `Ok(None)` when someone else holds it.
pub fn try_acquire(lock_dir: &Path, name: &str) -> Result<Option<LockGuard>, String> {
    let file = open_lock_file(lock_dir, name)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(format!(
            "cannot lock {}/{name}.lock: {e}",
            lock_dir.display()
        )),
    }
}

/// Waits for the lock, watching `signals` for a request to stop.
pub fn acquire(lock_dir: &Path, name: &str, signals: &mut SignalWatch) -> LockWait {
    let file = match open_lock_file(lock_dir, name) {
        Ok(f) => f,
        Err(why) => return LockWait::Failed(why),
    };
    let mut waited = false;
    let mut pause = Duration::from_millis(5);
    loop {
        match file.try_lock() {
            Ok(()) => return LockWait::Acquired(LockGuard { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return LockWait::Failed(format!(
                    "cannot lock {}/{name}.lock: {e}",
                    lock_dir.display()
                ));
            }
        }
        if !waited {
            tracing::info!("waiting for lock {name} (another run holds it)");
            waited = true;
        }
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(pause).unwrap_or(PollTimeout::MAX),
        );
        if let Some(sig) = signals.stop_signal() {
            return LockWait::Interrupted(sig);
        }
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
