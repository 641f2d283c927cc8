//! Permission checks for root-run hooks (DESIGN §3, `strict_permissions`).
//!
//! The rule is cron's and NetworkManager-dispatcher's: what root executes must be owned
//! by root (or by the invoking user) and writable by nobody else, and must not carry
//! setuid/setgid bits. Every refusal names the command that fixes it.
//!
//! # Trusted directories, and why the check and the exec see the same file
//!
//! [`open_trusted_dir`] walks a path from `/` one component at a time with
//! `openat(O_PATH|O_NOFOLLOW|O_DIRECTORY)` on the descriptor of the component before,
//! and judges each by `fstat` of the descriptor it opened, never by a second lookup of
//! the name:
//! - every directory on the way must be owned by root or by the effective user;
//! - an ancestor may be writable by group or others only when it is sticky (`/tmp`,
//!   `/run/lock`), where others can add entries but not rename or remove ours — the
//!   rule of sshd's `StrictModes`, with the sticky exception of `fs.protected_*`;
//! - the directory itself (the hooks directory, the log, lock or Checkmk directory, the
//!   directory holding a symlinked hook's target) may not be writable by group or
//!   others at all, sticky or not;
//! - a symlink on the way is followed only when root or the effective user owns it (in
//!   a sticky directory, anyone can plant one), and its target is walked the same way;
//! - a missing component is created, when asked, by `mkdirat` on the parent's
//!   descriptor, so it is owned by the effective user with the mode asked for (less the
//!   umask).
//!
//! Hooks themselves are then run by path, and that is sound: once every directory from
//! `/` to the hook's file — and, for a symlinked hook, to its target — has been seen by
//! descriptor to be changeable only by root or the invoking user, nobody else can swap
//! a directory or the file between the check and the `execve` (swapping needs write
//! access to a directory on the path). The remaining writers are the ones the hook runs
//! as anyway. `fexecve` of the checked descriptor was the alternative; it was not taken
//! because a script run through an fd gets `/dev/fd/N` as its `$0`, which hooks use to
//! find their own files, and because the check has to cover the directories anyway
//! (a script's interpreter re-opens it by name). The renameat2(RENAME_EXCHANGE) race of
//! issue 13 is in `tests/tests/e2e/hardening.rs`.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// Why a directory cannot be trusted; each says the fix.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("directory {path} does not exist: mkdir -m 0755 {path}")]
    Missing { path: String },
    #[error(
        "{path} is not a directory (it is on the way to {wanted}); remove it or point the setting elsewhere"
    )]
    NotADirectory { path: String, wanted: String },
    #[error(
        "directory {path} is writable by {who}, so anyone there could run code as root: chmod go-w {path}"
    )]
    Writable { path: String, who: &'static str },
    #[error(
        "directory {path} (on the way to {wanted}) is writable by {who} without the sticky bit, so anyone there could swap what is below it: chmod go-w {path}"
    )]
    AncestorWritable {
        path: String,
        wanted: String,
        who: &'static str,
    },
    #[error("directory {path} is owned by uid {uid}, not by root: chown root {path}")]
    Owner { path: String, uid: u32 },
    #[error(
        "symlink {path} (on the way to {wanted}) is owned by uid {uid}, who could point it anywhere: chown -h root {path}, or use the real path"
    )]
    SymlinkOwner {
        path: String,
        wanted: String,
        uid: u32,
    },
    #[error("too many symlinks on the way to {wanted}; use the real path")]
    SymlinkLoop { wanted: String },
    #[error("cannot open {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Opens `path` as a trusted directory (see the module documentation), creating
/// missing components with `create`'s mode when it is given. The descriptor returned is
/// an `O_PATH` one: good for `openat`, `fstat` and `*at` calls relative to it.
pub fn open_trusted_dir(
    path: &Path,
    euid: u32,
    create: Option<u32>,
) -> Result<OwnedFd, TrustError> {
    let wanted = path.display().to_string();
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|source| TrustError::Io {
                path: wanted.clone(),
                source,
            })?
            .join(path)
    };
    let open_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let io = |p: &Path, e: nix::errno::Errno| TrustError::Io {
        path: p.display().to_string(),
        source: e.into(),
    };
    let root =
        nix::fcntl::open("/", open_flags, Mode::empty()).map_err(|e| io(Path::new("/"), e))?;
    check_ancestor(
        &fstat(&root, Path::new("/"))?,
        Path::new("/"),
        euid,
        &wanted,
    )?;
    // The directories walked so far, innermost last, with their real paths.
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::from("/"))];
    let mut todo: std::collections::VecDeque<OsString> = components(&abs);
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (parent, parent_path) = stack.last().expect("the root stays");
        let here = parent_path.join(&name);
        let st =
            match nix::sys::stat::fstatat(parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => match create {
                    Some(mode) => {
                        match nix::sys::stat::mkdirat(
                            parent,
                            name.as_os_str(),
                            Mode::from_bits_truncate(mode),
                        ) {
                            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                            Err(e) => return Err(io(&here, e)),
                        }
                        todo.push_front(name);
                        continue;
                    }
                    None => {
                        return Err(TrustError::Missing {
                            path: here.display().to_string(),
                        });
                    }
                },
                Err(e) => return Err(io(&here, e)),
            };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if st.st_uid != 0 && st.st_uid != euid {
                return Err(TrustError::SymlinkOwner {
                    path: here.display().to_string(),
                    wanted,
                    uid: st.st_uid,
                });
            }
            hops += 1;
            if hops > 40 {
                return Err(TrustError::SymlinkLoop { wanted });
            }
            let target =
                nix::fcntl::readlinkat(parent, name.as_os_str()).map_err(|e| io(&here, e))?;
            let target = Path::new(&target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            for c in components(target).into_iter().rev() {
                todo.push_front(c);
            }
            continue;
        }
        if kind != SFlag::S_IFDIR {
            return Err(TrustError::NotADirectory {
                path: here.display().to_string(),
                wanted,
            });
        }
        let fd = nix::fcntl::openat(parent, name.as_os_str(), open_flags, Mode::empty())
            .map_err(|e| io(&here, e))?;
        // Judged by the descriptor: whatever the name points at now, this is what the
        // walk goes on from.
        check_ancestor(&fstat(&fd, &here)?, &here, euid, &wanted)?;
        stack.push((fd, here));
    }
    let (fd, real) = stack.pop().expect("the root stays");
    let st = fstat(&fd, &real)?;
    check_common(
        &real.display().to_string(),
        st.st_mode,
        st.st_uid,
        euid,
        "directory",
    )
    .map_err(|_| {
        let p = real.display().to_string();
        if st.st_uid != 0 && st.st_uid != euid {
            TrustError::Owner {
                path: p,
                uid: st.st_uid,
            }
        } else {
            TrustError::Writable {
                path: p,
                who: writers(st.st_mode),
            }
        }
    })?;
    Ok(fd)
}

/// The normal components of a path, `..` kept (the walk resolves it on its stack, after
/// symlinks, as the kernel does).
fn components(p: &Path) -> std::collections::VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn fstat(fd: &OwnedFd, path: &Path) -> Result<FileStat, TrustError> {
    nix::sys::stat::fstat(fd.as_fd()).map_err(|e| TrustError::Io {
        path: path.display().to_string(),
        source: e.into(),
    })
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

/// The rule for a directory on the way: owned by root or the user, and writable by
/// others only when sticky.
fn check_ancestor(st: &FileStat, path: &Path, euid: u32, wanted: &str) -> Result<(), TrustError> {
    let p = path.display().to_string();
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(TrustError::Owner {
            path: p,
            uid: st.st_uid,
        });
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        return Err(TrustError::AncestorWritable {
            path: p,
            wanted: wanted.to_owned(),
            who: writers(st.st_mode),
        });
    }
    Ok(())
}

use std::os::unix::fs::MetadataExt;

/// Checks a hook's target file, given its metadata (symlinks already followed).
pub fn check_hook(path: &Path, meta: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    let mode = meta.mode();
    let p = path.display();
    if mode & 0o6000 != 0 {
        return Err(format!(
            "{p} is setuid/setgid; hooks never need that: chmod ug-s {p}"
        ));
    }
    check_common(&p.to_string(), mode, meta.uid(), euid, "hook")
}

/// Checks a directory that hooks are run from.
pub fn check_dir(path: &Path, meta: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    check_common(
        &path.display().to_string(),
        meta.mode(),
        meta.uid(),
        euid,
        "directory",
    )
}

fn check_common(p: &str, mode: u32, uid: u32, euid: u32, what: &str) -> Result<(), String> {
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(format!(
            "{what} {p} is writable by {who}, so anyone there could run code as root: chmod go-w {p}"
        ));
    }
    if uid != 0 && uid != euid {
        return Err(format!(
            "{what} {p} is owned by uid {uid}, not by root: chown root {p}"
        ));
    }
    Ok(())
}

/// For a hook reached through a symlink: the directories holding the real file (every
/// symlink of the chain) must be trusted too, or whoever can write there can swap the
/// file. Walks the link itself, never a canonicalized path: an untrusted symlink in the
/// middle of the chain could be re-pointed after a canonicalization.
pub fn check_symlink_target_dir(link: &Path, euid: u32) -> Result<(), String> {
    resolve_hook(link, euid)
        .map(|_| ())
        .map_err(|(_, m)| format!("{} is a symlink into an unsafe place: {m}", link.display()))
}

/// Follows `path` (a file in a trusted directory) through its symlinks, each target's
/// directory walked with [`open_trusted_dir`]. Returns the metadata of the file at the
/// end by descriptor, `None` when something on the way does not exist. An error comes
/// with the number of links followed before it (0: the hook's own directory).
fn resolve_hook(path: &Path, euid: u32) -> Result<Option<FileStat>, (usize, TrustError)> {
    let mut current = path.to_owned();
    for hop in 0..40 {
        let (dir, name) = split(&current);
        let io = |e: nix::errno::Errno| TrustError::Io {
            path: current.display().to_string(),
            source: e.into(),
        };
        let dirfd = match open_trusted_dir(&dir, euid, None) {
            Ok(fd) => fd,
            Err(TrustError::Missing { .. }) => return Ok(None),
            Err(e) => return Err((hop, e)),
        };
        let st =
            match nix::sys::stat::fstatat(&dirfd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => return Ok(None),
                Err(e) => return Err((hop, io(e))),
            };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
            return Ok(Some(st));
        }
        if st.st_uid != 0 && st.st_uid != euid {
            return Err((
                hop + 1,
                TrustError::SymlinkOwner {
                    path: current.display().to_string(),
                    wanted: path.display().to_string(),
                    uid: st.st_uid,
                },
            ));
        }
        let target =
            nix::fcntl::readlinkat(&dirfd, name.as_os_str()).map_err(|e| (hop + 1, io(e)))?;
        current = dir.join(target);
    }
    Err((
        40,
        TrustError::SymlinkLoop {
            wanted: path.display().to_string(),
        },
    ))
}

/// Directory and last component of a hook path.
fn split(path: &Path) -> (PathBuf, OsString) {
    let name = path
        .file_name()
        .map(OsStr::to_owned)
        .unwrap_or_else(|| OsString::from("."));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    // A path ending in `..` or `.` names a directory, not a hook: keep it whole.
    if matches!(name.as_bytes(), b"." | b"..") || path.file_name().is_none() {
        return (path.to_owned(), OsString::from("."));
    }
    (dir, name)
}

/// Everything `strict_permissions` checks for one hook that is about to run: every
/// directory from `/` to it (see the module documentation), the file, and for a
/// symlink every link of the chain and the directories of its target.
///
/// The file is looked at afresh, not as the scan saw it: an earlier hook of the
/// dispatch, or anyone during a long one, may have changed its mode or replaced it
/// since, and what is checked must be what is about to be executed. A file that has
/// vanished passes here; starting it then fails with a message of its own.
pub fn check_entry(entry: &crate::discover::Entry, euid: u32) -> Result<(), String> {
    if entry.candidate().is_none() {
        return Ok(());
    }
    // One walk: the hook's directory and its ancestors first, then each link's target.
    let st = resolve_hook(&entry.path, euid).map_err(|(hop, e)| {
        if hop == 0 {
            e.to_string()
        } else {
            format!(
                "{} is a symlink into an unsafe place: {e}",
                entry.path.display()
            )
        }
    })?;
    let Some(st) = st else {
        return Ok(());
    };
    let p = entry.path.display();
    if st.st_mode & 0o6000 != 0 {
        return Err(format!(
            "{p} is setuid/setgid; hooks never need that: chmod ug-s {p}"
        ));
    }
    check_common(&p.to_string(), st.st_mode, st.st_uid, euid, "hook")
}

/// Checks the hooks directory and every directory above it ([`open_trusted_dir`]).
pub fn check_dir_path(dir: &Path, euid: u32) -> Result<(), String> {
    open_trusted_dir(dir, euid, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn meta_with(mode: u32) -> (tempfile::TempDir, std::path::PathBuf, std::fs::Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        (dir, path, meta)
    }

    #[test]
    fn modes() {
        let euid = nix::unistd::geteuid().as_raw();
        let (_d, p, m) = meta_with(0o755);
        assert_eq!(check_hook(&p, &m, euid), Ok(()));
        let (_d, p, m) = meta_with(0o775);
        assert!(check_hook(&p, &m, euid).unwrap_err().contains("chmod go-w"));
        let (_d, p, m) = meta_with(0o757);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .contains("writable by others")
        );
        let (_d, p, m) = meta_with(0o4755);
        assert!(check_hook(&p, &m, euid).unwrap_err().contains("chmod ug-s"));
        let (_d, p, m) = meta_with(0o2755);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .contains("setuid/setgid")
        );
    }

    fn root_dir() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().canonicalize().unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        (d, p)
    }

    fn mkdir(p: &Path, mode: u32) {
        std::fs::create_dir(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn euid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn ancestors_writable_by_others_need_the_sticky_bit() {
        let (_d, root) = root_dir();
        let open = root.join("open");
        mkdir(&open, 0o777);
        mkdir(&open.join("hooks.d"), 0o755);
        let e = open_trusted_dir(&open.join("hooks.d"), euid(), None).unwrap_err();
        assert!(matches!(e, TrustError::AncestorWritable { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("chmod go-w {}", open.display()))
                && m.contains("without the sticky bit"),
            "{m}"
        );
        // Group-writable is as bad.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
        let m = check_dir_path(&open.join("hooks.d"), euid()).unwrap_err();
        assert!(m.contains("writable by its group"), "{m}");
        // Sticky, like /tmp: others cannot rename or remove what is ours.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        open_trusted_dir(&open.join("hooks.d"), euid(), None).unwrap();
        // But the directory itself may never be writable by others, sticky or not.
        let m = check_dir_path(&open, euid()).unwrap_err();
        assert!(m.contains(&format!("chmod go-w {}", open.display())), "{m}");
        // Walking through `..` judges the directories actually walked.
        let via = open.join("hooks.d/../hooks.d");
        open_trusted_dir(&via, euid(), None).unwrap();
    }

    #[test]
    fn missing_and_non_directories_are_named() {
        let (_d, root) = root_dir();
        let e = open_trusted_dir(&root.join("nope/deeper"), euid(), None).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("mkdir -m 0755 {}", root.join("nope").display())),
            "{e}"
        );
        std::fs::write(root.join("file"), "").unwrap();
        let e = open_trusted_dir(&root.join("file/x"), euid(), None).unwrap_err();
        assert!(matches!(e, TrustError::NotADirectory { .. }), "{e}");
    }

    #[test]
    fn missing_components_are_created_owned_by_us_with_the_mode() {
        let (_d, root) = root_dir();
        let want = root.join("a/b/log");
        let fd = open_trusted_dir(&want, euid(), Some(0o750)).unwrap();
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert_eq!(st.st_uid, euid());
        assert_eq!(st.st_mode & 0o777 & !0o022, 0o750 & !0o022);
        assert_eq!(st.st_mode & 0o007, 0);
        assert!(want.is_dir());
        // Again: it exists now and is used as it is.
        open_trusted_dir(&want, euid(), Some(0o750)).unwrap();
    }

    #[test]
    fn symlinks_are_followed_only_when_trusted_and_their_targets_walked() {
        let (_d, root) = root_dir();
        mkdir(&root.join("real"), 0o755);
        std::os::unix::fs::symlink("real", root.join("link")).unwrap();
        let fd = open_trusted_dir(&root.join("link"), euid(), None).unwrap();
        let real = std::fs::metadata(root.join("real")).unwrap();
        assert_eq!(nix::sys::stat::fstat(&fd).unwrap().st_ino, real.ino());
        // A target in an untrusted place is judged as that place.
        let open = root.join("open");
        mkdir(&open, 0o777);
        mkdir(&open.join("d"), 0o755);
        std::os::unix::fs::symlink(open.join("d"), root.join("to-open")).unwrap();
        let e = open_trusted_dir(&root.join("to-open"), euid(), None).unwrap_err();
        assert!(matches!(e, TrustError::AncestorWritable { .. }), "{e}");
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let e = open_trusted_dir(&root.join("loop"), euid(), None).unwrap_err();
        assert!(matches!(e, TrustError::SymlinkLoop { .. }), "{e}");
    }

    #[test]
    #[allow(clippy::print_stderr)] // the visible reason for a skip
    fn other_users_directories_and_symlinks_are_refused() {
        if euid() != 0 {
            eprintln!("SKIP: needs root to give files to another user (uid 65534)");
            return;
        }
        let (_d, root) = root_dir();
        let theirs = root.join("theirs");
        mkdir(&theirs, 0o755);
        mkdir(&theirs.join("d"), 0o755);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = open_trusted_dir(&theirs.join("d"), 0, None).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("chown root {}", theirs.display())),
            "{e}"
        );
        // Squatting: a directory someone else created where ours was to be.
        let e = open_trusted_dir(&theirs, 0, Some(0o755)).unwrap_err();
        assert!(matches!(e, TrustError::Owner { uid: 65534, .. }), "{e}");
        // A symlink someone else planted (in /tmp or /run/lock anyone can) is not followed.
        mkdir(&root.join("real"), 0o755);
        std::os::unix::fs::symlink(root.join("real"), root.join("planted")).unwrap();
        std::os::unix::fs::lchown(root.join("planted"), Some(65534), None).unwrap();
        let e = open_trusted_dir(&root.join("planted"), 0, Some(0o755)).unwrap_err();
        assert!(
            matches!(e, TrustError::SymlinkOwner { uid: 65534, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chown -h root"), "{e}");
        // The user it runs as may own its directories.
        open_trusted_dir(&theirs.join("d"), 65534, None).unwrap();
    }

    #[test]
    fn owner() {
        assert!(
            check_common("/x", 0o755, 1234, 0, "hook")
                .unwrap_err()
                .contains("chown root /x")
        );
        assert_eq!(check_common("/x", 0o755, 1234, 1234, "hook"), Ok(()));
        assert_eq!(check_common("/x", 0o755, 0, 1234, "hook"), Ok(()));
    }
}
