//! `# lock: NAME` (DESIGN §4): an exclusive `flock` on `<lock_dir>/NAME.lock`.
//!
//! - The descriptor is close-on-exec, so nothing a hook starts can hold the lock past
//!   the dispatcher's own hold.
//! - **Never free while the locked work runs.** `flock` ends with its holder, but a
//!   killed holder's hooks take a moment to be stopped by its guard
//!   ([`crate::contain`]). So the holder writes the identity of the process that
//!   outlives its work (the guard) into the lock file, and clears it when it releases
//!   the lock normally. Whoever takes the lock next and finds a live owner there waits
//!   for that process to be gone: the previous work is then gone too.
//! - **Bounded and loud.** A wait ends after its bound as its own outcome, names the
//!   holder when it can be found, and is interrupted by the dispatcher's signals.
//! - **Trusted directory.** The lock directory is refused when it is a symlink, owned by
//!   another user, or writable by group or others: anyone who can create or replace
//!   lock files there could hold every lock and stall root's backups.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use crate::contain::Identity;
use crate::header::LockNameError;
use crate::perms::PermError;
use crate::signals::SignalWatch;

/// The built-in `lock_dir`; processes not running as root use a directory of their own
/// beside it, so an unprivileged worker never creates (and so owns) root's.
pub const DEFAULT_LOCK_DIR: &str = "/run/lock/hookrun";

/// Why a lock could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock name {name:?}: {why}")]
    BadName { name: String, why: LockNameError },
    #[error("lock directory: {0} (check lock_dir in the config)")]
    Trust(#[from] PermError),
    #[error("lock directory {dir} is not safe: {why}; no lock there can be trusted (fix: {fix})")]
    Untrusted {
        dir: PathBuf,
        why: String,
        fix: String,
    },
    #[error("cannot open lock file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open lock file {path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockError {
    /// The remedy alone: the lock directory's, when that is what is wrong.
    pub fn fix(&self) -> Option<String> {
        match self {
            LockError::Trust(e) => e.fix(),
            LockError::Untrusted { fix, .. } => Some(fix.clone()),
            LockError::BadName { .. }
            | LockError::Open { .. }
            | LockError::NotAFile { .. }
            | LockError::Lock { .. } => None,
        }
    }
}

/// Held while the guard lives; dropping it clears the owner line and releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // A normal release says so; only a holder that died leaves its owner behind.
        let _ = self.file.set_len(0);
    }
}

#[derive(Debug)]
pub enum LockWait {
    Acquired(LockGuard),
    /// A terminating signal arrived while waiting.
    Interrupted(i32),
    /// The wait's bound passed; `holder` names who had it, when known.
    TimedOut {
        waited: Duration,
        holder: Option<String>,
    },
    Failed(LockError),
}

/// The lock directory to use: `lock_dir` as configured, except that the built-in default
/// becomes `/run/lock/hookrun-<uid>` for processes not running as root.
pub fn effective_dir(lock_dir: &Path) -> PathBuf {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 && lock_dir == Path::new(DEFAULT_LOCK_DIR) {
        PathBuf::from(format!("{DEFAULT_LOCK_DIR}-{euid}"))
    } else {
        lock_dir.to_owned()
    }
}

/// Opens the lock directory as a trusted directory ([`crate::perms::open_trusted_dir`]:
/// every component from `/` by descriptor, symlinks only when trusted), creating what
/// is missing with mode 0700. Owned by another user, it is refused with the fix that
/// suits a directory hookrun makes itself: remove it.
fn open_dir(dir: &Path) -> Result<OwnedFd, LockError> {
    let euid = nix::unistd::geteuid().as_raw();
    crate::perms::open_trusted_dir(dir, euid, Some(0o700)).map_err(|e| match e {
        PermError::Owner { path, uid, .. } if Path::new(&path) == dir => LockError::Untrusted {
            dir: dir.to_owned(),
            why: format!(
                "it is owned by {} (uid {uid}), not by {} (uid {euid}) that takes the locks",
                crate::privilege::user_name(uid),
                crate::privilege::user_name(euid)
            ),
            fix: format!(
                "rm -rf {} (hookrun creates it again, mode 0700), or set lock_dir to a directory of your own",
                dir.display()
            ),
        },
        other => LockError::Trust(other),
    })
}

pub fn open_lock_file(lock_dir: &Path, name: &str) -> Result<File, LockError> {
    crate::header::validate_lock_name(name).map_err(|why| LockError::BadName {
        name: name.to_owned(),
        why,
    })?;
    let dir = effective_dir(lock_dir);
    let dirfd = open_dir(&dir)?;
    let file_name = format!("{name}.lock");
    // Relative to the directory just checked, never following a link.
    let fd = nix::fcntl::openat(
        &dirfd,
        file_name.as_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| LockError::Open {
        path: dir.join(&file_name),
        source: e.into(),
    })?;
    let file = File::from(fd);
    let path = || dir.join(&file_name);
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(LockError::NotAFile { path: path() }),
        Err(source) => Err(LockError::Open {
            path: path(),
            source,
        }),
    }
}

/// The owner line a holder left in the lock file, when that process still lives.
fn live_owner(file: &mut File) -> Option<Identity> {
    let mut text = String::new();
    file.rewind().ok()?;
    Read::by_ref(file)
        .take(512)
        .read_to_string(&mut text)
        .ok()?;
    let id = text.lines().find_map(|l| l.strip_prefix("owner "))?;
    let id = Identity::from_line(id)?;
    (id != crate::contain::owner() && id.alive()).then_some(id)
}

fn write_owner(file: &mut File) {
    let line = format!(
        "owner {}\nuid {}\n",
        crate::contain::owner().to_line(),
        nix::unistd::geteuid().as_raw()
    );
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(line.as_bytes());
}

/// Takes the lock if it is free; `Ok(None)` when someone else holds it (or its last
/// holder's work is still being stopped).
pub fn try_acquire(lock_dir: &Path, name: &str) -> Result<Option<LockGuard>, LockError> {
    let mut file = open_lock_file(lock_dir, name)?;
    match file.try_lock() {
        Ok(()) => {
            if live_owner(&mut file).is_some() {
                return Ok(None);
            }
            write_owner(&mut file);
            Ok(Some(LockGuard { file }))
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(LockError::Lock {
            path: effective_dir(lock_dir).join(format!("{name}.lock")),
            source,
        }),
    }
}

/// Waits for the lock, at most `bound` (none: until a signal), watching `signals` for a
/// request to stop.
pub fn acquire(
    lock_dir: &Path,
    name: &str,
    signals: &mut SignalWatch,
    bound: Option<Duration>,
) -> LockWait {
    let mut file = match open_lock_file(lock_dir, name) {
        Ok(f) => f,
        Err(e) => return LockWait::Failed(e),
    };
    let start = Instant::now();
    let mut waited = false;
    let mut pause = Duration::from_millis(5);
    let mut next_note = start + Duration::from_secs(60);
    loop {
        match file.try_lock() {
            Ok(()) => {
                if live_owner(&mut file).is_none() {
                    write_owner(&mut file);
                    return LockWait::Acquired(LockGuard { file });
                }
                // The last holder died and its guard is still stopping its hooks.
                let _ = file.unlock();
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return LockWait::Failed(LockError::Lock {
                    path: effective_dir(lock_dir).join(format!("{name}.lock")),
                    source,
                });
            }
        }
        let now = Instant::now();
        if !waited {
            tracing::info!(
                "waiting for lock {name} (held by {}){}",
                holder(lock_dir, name).unwrap_or_else(|| "another run".into()),
                bound
                    .map(|b| format!(", at most {}s", b.as_secs()))
                    .unwrap_or_default()
            );
            waited = true;
        } else if now >= next_note {
            tracing::info!(
                "still waiting for lock {name} after {}s (held by {})",
                (now - start).as_secs(),
                holder(lock_dir, name).unwrap_or_else(|| "another run".into())
            );
            next_note = now + Duration::from_secs(60);
        }
        if let Some(b) = bound
            && now - start >= b
        {
            return LockWait::TimedOut {
                waited: now - start,
                holder: holder(lock_dir, name),
            };
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

/// Who holds the lock, from `/proc/locks` (any holder, even one that is not hookrun):
/// `pid N (command, user U)`.
pub fn holder(lock_dir: &Path, name: &str) -> Option<String> {
    let path = effective_dir(lock_dir).join(format!("{name}.lock"));
    let meta = std::fs::metadata(&path).ok()?;
    let want = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = fields.iter().position(|f| *f == "FLOCK") else {
            continue;
        };
        let (Some(pid), Some(dev_ino)) = (fields.get(pos + 3), fields.get(pos + 4)) else {
            continue;
        };
        if *dev_ino != want {
            continue;
        }
        let pid: u32 = pid.parse().ok()?;
        // argv[0] says more than the command name: an async supervisor is
        // `hookrun-async <job>`, where its name is only "exe".
        let comm = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|c| {
                let first = c.split(|&b| b == 0).next()?.to_vec();
                (!first.is_empty()).then(|| String::from_utf8_lossy(&first).into_owned())
            })
            .or_else(|| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .ok()
                    .map(|c| c.trim().to_owned())
            })
            .unwrap_or_else(|| "?".into())
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>();
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .ok();
        return Some(match uid {
            Some(uid) => format!(
                "pid {pid} ({comm}, user {})",
                crate::privilege::user_name(uid)
            ),
            None => format!("pid {pid} ({comm})"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_errors_carry_the_fix_of_the_lock_directory() {
        let e = LockError::Trust(PermError::Writable {
            what: crate::perms::Subject::Directory,
            path: "/run/lock/hookrun".into(),
            who: "others",
        });
        assert_eq!(
            e.to_string(),
            "lock directory: directory /run/lock/hookrun is writable by others, so anyone there could run code as root: chmod go-w /run/lock/hookrun (check lock_dir in the config)"
        );
        assert_eq!(e.fix().as_deref(), Some("chmod go-w /run/lock/hookrun"));
        let e = LockError::Untrusted {
            dir: "/run/lock/hookrun".into(),
            why: "it is owned by nobody (uid 65534), not by root (uid 0) that takes the locks"
                .into(),
            fix: "rm -rf /run/lock/hookrun".into(),
        };
        assert_eq!(e.fix().as_deref(), Some("rm -rf /run/lock/hookrun"));
        let e = open_lock_file(Path::new("/nonexistent"), "../x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "lock name \"../x\": lock names use letters, digits, '-', '_' and '.', and do not start with '.'"
        );
        assert_eq!(e.fix(), None);
    }

    #[test]
    fn a_lock_file_that_is_not_a_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().canonicalize().unwrap();
        std::fs::create_dir(dir.join("x.lock")).unwrap();
        let e = open_lock_file(&dir, "x").unwrap_err();
        assert!(
            matches!(e, LockError::Open { .. } | LockError::NotAFile { .. }),
            "{e}"
        );
        assert!(
            e.to_string().starts_with(&format!(
                "cannot open lock file {}",
                dir.join("x.lock").display()
            )),
            "{e}"
        );
        open_lock_file(&dir, "y").expect("a fresh lock file");
        assert!(dir.join("y.lock").is_file());
    }
}
