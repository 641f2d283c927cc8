//! The retention lock: `flock` on `DIR/.retentions.lock`.
//!
//! `retentions` treats the mere existence of the file as "locked", so a run killed with
//! SIGKILL blocks every later run until someone deletes the file by hand. Here the lock
//! is the `flock`, which the kernel drops when its holder dies, so a file left behind
//! by a killed run (ours or `retentions`') never blocks anything.
//!
//! The file is removed on release, while still locked. A second run that opened the old
//! file just before it was unlinked may then lock an inode that no longer has a name;
//! every locker therefore checks, after locking, that the path still names the inode it
//! locked, and starts over if not. So at most one run holds the lock of a directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name; it is never a retention candidate.
pub const LOCK_FILE_NAME: &str = ".retentions.lock";

/// Held while it lives; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Held(PathBuf),
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(p) => write!(
                f,
                "A retention process is already running on {} (it holds the lock on {}; a lock file left by a killed run does not block, only a live process does)",
                p.parent().unwrap_or(p).display(),
                p.display()
            ),
            LockError::Io(p, e) => write!(f, "cannot lock {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// Takes the lock of `dir` without waiting.
pub fn lock(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE_NAME);
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| LockError::Io(path.clone(), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held(path)),
            Err(TryLockError::Error(e)) => return Err(LockError::Io(path, e)),
        }
        let held = file
            .metadata()
            .map_err(|e| LockError::Io(path.clone(), e))?;
        match std::fs::symlink_metadata(&path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                return Ok(DirLock { file, path });
            }
            // Unlinked or replaced by its previous holder between our open and lock.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LockError::Io(path, e)),
        }
    }
    Err(LockError::Io(
        path,
        io::Error::other("the lock file keeps being replaced"),
    ))
}

impl DirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Unlink while locked, then close (which unlocks): see the module comment.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_lock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock(dir.path()).unwrap();
        assert!(dir.path().join(LOCK_FILE_NAME).exists());
        match lock(dir.path()) {
            Err(LockError::Held(p)) => assert_eq!(p, dir.path().join(LOCK_FILE_NAME)),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(a);
        assert!(!dir.path().join(LOCK_FILE_NAME).exists());
        let b = lock(dir.path()).unwrap();
        drop(b);
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE_NAME), b"").unwrap();
        let l = lock(dir.path()).expect("a lock file nobody holds is free");
        drop(l);
        assert!(!dir.path().join(LOCK_FILE_NAME).exists());
    }

    #[test]
    fn a_symlinked_lock_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(LOCK_FILE_NAME)).unwrap();
        assert!(matches!(lock(dir.path()), Err(LockError::Io(..))));
    }
}
