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

/// What a refusal is about: the hook file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Hook,
    Directory,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Subject::Hook => "hook",
            Subject::Directory => "directory",
        })
    }
}

/// Why a hook or a directory is refused. `Display` is the whole message (the words the
/// dispatcher, `list`, `lint` and `doctor` print); [`PermError::fix`] is the remedy
/// alone, the command at the end of that message.
#[derive(Debug, thiserror::Error)]
pub enum PermError {
    #[error("directory {path} does not exist: mkdir -m 0755 {path}")]
    Missing { path: String },
    #[error(
        "{path} is not a directory (it is on the way to {wanted}); remove it or point the setting elsewhere"
    )]
    NotADirectory { path: String, wanted: String },
    #[error(
        "{what} {path} is writable by {who}, so anyone there could run code as root: chmod go-w {path}"
    )]
    Writable {
        what: Subject,
        path: String,
        who: &'static str,
    },
    #[error(
        "directory {path} (on the way to {wanted}) is writable by {who} without the sticky bit, so anyone there could swap what is below it: chmod go-w {path}"
    )]
    AncestorWritable {
        path: String,
        wanted: String,
        who: &'static str,
    },
    #[error("{what} {path} is owned by uid {uid}, not by root: chown root {path}")]
    Owner {
        what: Subject,
        path: String,
        uid: u32,
    },
    #[error("{path} is setuid/setgid; hooks never need that: chmod ug-s {path}")]
    Setuid { path: String },
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
    /// A hook reached through a symlink whose chain or target directory is refused.
    #[error("{link} is a symlink into an unsafe place: {source}")]
    UnsafeSymlink {
        link: String,
        #[source]
        source: Box<PermError>,
    },
    #[error("cannot open {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PermError {
    /// The command that fixes it, when there is one (the text after the message's last
    /// ": "); `None` when the fix is a decision (remove it, point the setting elsewhere).
    pub fn fix(&self) -> Option<String> {
        match self {
            PermError::Missing { path } => Some(format!("mkdir -m 0755 {path}")),
            PermError::Writable { path, .. } | PermError::AncestorWritable { path, .. } => {
                Some(format!("chmod go-w {path}"))
            }
            PermError::Owner { path, .. } => Some(format!("chown root {path}")),
            PermError::Setuid { path } => Some(format!("chmod ug-s {path}")),
            PermError::SymlinkOwner { path, .. } => {
                Some(format!("chown -h root {path}, or use the real path"))
            }
            PermError::UnsafeSymlink { source, .. } => source.fix(),
            PermError::NotADirectory { .. }
            | PermError::SymlinkLoop { .. }
            | PermError::Io { .. } => None,
        }
    }

    /// The message without its fix: what is wrong, for a report that shows the fix on a
    /// line of its own. Every message with a fix ends in ": " and the fix.
    pub fn problem(&self) -> String {
        let message = self.to_string();
        match self.fix() {
            Some(fix) => {
                let cut = message.len() - fix.len() - 2;
                debug_assert_eq!(&message[cut..], format!(": {fix}"));
                message[..cut].to_owned()
            }
            None => message,
        }
    }
}

/// Opens `path` as a trusted directory (see the module documentation), creating
/// missing components with `create`'s mode when it is given. The descriptor returned is
/// an `O_PATH` one: good for `openat`, `fstat` and `*at` calls relative to it.
pub fn open_trusted_dir(path: &Path, euid: u32, create: Option<u32>) -> Result<OwnedFd, PermError> {
    let wanted = path.display().to_string();
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|source| PermError::Io {
                path: wanted.clone(),
                source,
            })?
            .join(path)
    };
    if let Some(fd) = rechecked(&abs, euid) {
        return Ok(fd);
    }
    let (fd, chain) = walk_trusted_dir(&abs, &wanted, euid, create)?;
    if let Some(chain) = chain {
        remember(Walked {
            path: abs,
            euid,
            chain,
        });
    }
    Ok(fd)
}

/// A walk this process made, kept to re-check the same path with one `fstatat` per
/// component instead of four system calls: a dispatch walks its hooks directory once
/// per hook and the log directory several times. Only plain walks are kept (no symlink,
/// no `..` on the way).
struct Walked {
    path: PathBuf,
    euid: u32,
    chain: Chain,
}

/// `/` first, then each directory of a walk with its name and (device, inode).
type Chain = Vec<(OwnedFd, OsString, (u64, u64))>;

static WALKED: std::sync::Mutex<Vec<Walked>> = std::sync::Mutex::new(Vec::new());

fn remember(w: Walked) {
    let mut all = WALKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|o| o.path != w.path || o.euid != w.euid);
    // The hooks, log, cache and lock directories of one dispatch.
    if all.len() >= 6 {
        all.remove(0);
    }
    all.push(w);
}

/// The directory at `abs` if a kept walk of it still holds: every name on the way
/// still leads, as looked up now in the directory before it, to the very directory the
/// walk opened, and what `fstatat` says of it now passes the same rules. Together with
/// the kept descriptors this is what a new walk would find, so the path still resolves
/// to directories only root or `euid` can change (the module documentation's argument);
/// anything else — a change, an error — is left to a full walk, which says what is wrong.
fn rechecked(abs: &Path, euid: u32) -> Option<OwnedFd> {
    let all = WALKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let w = all.iter().find(|w| w.path == abs && w.euid == euid)?;
    let wanted = abs.display().to_string();
    let (root, _, _) = w.chain.first()?;
    let st = nix::sys::stat::fstat(root.as_fd()).ok()?;
    check_ancestor(&st, Path::new("/"), euid, &wanted).ok()?;
    let mut here = PathBuf::from("/");
    for pair in w.chain.windows(2) {
        let (parent, _, _) = &pair[0];
        let (_, name, id) = &pair[1];
        here.push(name);
        let st =
            nix::sys::stat::fstatat(parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR
            || (st.st_dev, st.st_ino) != *id
        {
            return None;
        }
        check_ancestor(&st, &here, euid, &wanted).ok()?;
    }
    let (last, _, _) = w.chain.last()?;
    let st = nix::sys::stat::fstat(last.as_fd()).ok()?;
    check_common(&wanted, st.st_mode, st.st_uid, euid, Subject::Directory).ok()?;
    last.try_clone().ok()
}

/// The walk itself; with the chain to keep when it was a plain one.
fn walk_trusted_dir(
    abs: &Path,
    wanted: &str,
    euid: u32,
    create: Option<u32>,
) -> Result<(OwnedFd, Option<Chain>), PermError> {
    let wanted = wanted.to_owned();
    let abs = abs.to_owned();
    let mut plain = true;
    let open_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let io = |p: &Path, e: nix::errno::Errno| PermError::Io {
        path: p.display().to_string(),
        source: e.into(),
    };
    let root =
        nix::fcntl::open("/", open_flags, Mode::empty()).map_err(|e| io(Path::new("/"), e))?;
    let root_st = fstat(&root, Path::new("/"))?;
    check_ancestor(&root_st, Path::new("/"), euid, &wanted)?;
    // The directories walked so far, innermost last, with their real paths and ids.
    let mut stack: Vec<(OwnedFd, PathBuf, (u64, u64))> =
        vec![(root, PathBuf::from("/"), (root_st.st_dev, root_st.st_ino))];
    let mut todo: std::collections::VecDeque<OsString> = components(&abs);
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            plain = false;
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (parent, parent_path, _) = stack.last().expect("the root stays");
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
                        return Err(PermError::Missing {
                            path: here.display().to_string(),
                        });
                    }
                },
                Err(e) => return Err(io(&here, e)),
            };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if st.st_uid != 0 && st.st_uid != euid {
                return Err(PermError::SymlinkOwner {
                    path: here.display().to_string(),
                    wanted,
                    uid: st.st_uid,
                });
            }
            plain = false;
            hops += 1;
            if hops > 40 {
                return Err(PermError::SymlinkLoop { wanted });
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
            return Err(PermError::NotADirectory {
                path: here.display().to_string(),
                wanted,
            });
        }
        let fd = nix::fcntl::openat(parent, name.as_os_str(), open_flags, Mode::empty())
            .map_err(|e| io(&here, e))?;
        // Judged by the descriptor: whatever the name points at now, this is what the
        // walk goes on from.
        let st = fstat(&fd, &here)?;
        check_ancestor(&st, &here, euid, &wanted)?;
        stack.push((fd, here, (st.st_dev, st.st_ino)));
    }
    let (last, real, _) = stack.last().expect("the root stays");
    let real = real.clone();
    let st = fstat(last, &real)?;
    check_common(
        &real.display().to_string(),
        st.st_mode,
        st.st_uid,
        euid,
        Subject::Directory,
    )
    .map_err(|_| {
        let p = real.display().to_string();
        if st.st_uid != 0 && st.st_uid != euid {
            PermError::Owner {
                what: Subject::Directory,
                path: p,
                uid: st.st_uid,
            }
        } else {
            PermError::Writable {
                what: Subject::Directory,
                path: p,
                who: writers(st.st_mode),
            }
        }
    })?;
    let fd = stack
        .last()
        .expect("the root stays")
        .0
        .try_clone()
        .map_err(|source| PermError::Io {
            path: real.display().to_string(),
            source,
        })?;
    let chain = plain.then(|| {
        stack
            .into_iter()
            .map(|(fd, p, id)| {
                let name = p.file_name().map_or_else(OsString::new, OsStr::to_owned);
                (fd, name, id)
            })
            .collect()
    });
    Ok((fd, chain))
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

fn fstat(fd: &OwnedFd, path: &Path) -> Result<FileStat, PermError> {
    nix::sys::stat::fstat(fd.as_fd()).map_err(|e| PermError::Io {
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
fn check_ancestor(st: &FileStat, path: &Path, euid: u32, wanted: &str) -> Result<(), PermError> {
    let p = path.display().to_string();
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(PermError::Owner {
            what: Subject::Directory,
            path: p,
            uid: st.st_uid,
        });
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        return Err(PermError::AncestorWritable {
            path: p,
            wanted: wanted.to_owned(),
            who: writers(st.st_mode),
        });
    }
    Ok(())
}

use std::os::unix::fs::MetadataExt;

/// Checks a hook's target file, given its metadata (symlinks already followed).
pub fn check_hook(path: &Path, meta: &std::fs::Metadata, euid: u32) -> Result<(), PermError> {
    check_file(&path.display().to_string(), meta.mode(), meta.uid(), euid)
}

/// Checks a directory that hooks are run from.
pub fn check_dir(path: &Path, meta: &std::fs::Metadata, euid: u32) -> Result<(), PermError> {
    check_common(
        &path.display().to_string(),
        meta.mode(),
        meta.uid(),
        euid,
        Subject::Directory,
    )
}

/// The rule for the file a hook is: no setuid/setgid, then [`check_common`].
fn check_file(p: &str, mode: u32, uid: u32, euid: u32) -> Result<(), PermError> {
    if mode & 0o6000 != 0 {
        return Err(PermError::Setuid { path: p.to_owned() });
    }
    check_common(p, mode, uid, euid, Subject::Hook)
}

fn check_common(p: &str, mode: u32, uid: u32, euid: u32, what: Subject) -> Result<(), PermError> {
    if mode & 0o022 != 0 {
        return Err(PermError::Writable {
            what,
            path: p.to_owned(),
            who: writers(mode),
        });
    }
    if uid != 0 && uid != euid {
        return Err(PermError::Owner {
            what,
            path: p.to_owned(),
            uid,
        });
    }
    Ok(())
}

/// For a hook reached through a symlink: the directories holding the real file (every
/// symlink of the chain) must be trusted too, or whoever can write there can swap the
/// file. Walks the link itself, never a canonicalized path: an untrusted symlink in the
/// middle of the chain could be re-pointed after a canonicalization.
pub fn check_symlink_target_dir(link: &Path, euid: u32) -> Result<(), PermError> {
    resolve_hook(link, euid)
        .map(|_| ())
        .map_err(|(_, e)| unsafe_symlink(link, e))
}

fn unsafe_symlink(link: &Path, e: PermError) -> PermError {
    PermError::UnsafeSymlink {
        link: link.display().to_string(),
        source: Box::new(e),
    }
}

/// Follows `path` (a file in a trusted directory) through its symlinks, each target's
/// directory walked with [`open_trusted_dir`]. Returns the metadata of the file at the
/// end by descriptor, `None` when something on the way does not exist. An error comes
/// with the number of links followed before it (0: the hook's own directory).
fn resolve_hook(path: &Path, euid: u32) -> Result<Option<FileStat>, (usize, PermError)> {
    let mut current = path.to_owned();
    for hop in 0..40 {
        let (dir, name) = split(&current);
        let io = |e: nix::errno::Errno| PermError::Io {
            path: current.display().to_string(),
            source: e.into(),
        };
        let dirfd = match open_trusted_dir(&dir, euid, None) {
            Ok(fd) => fd,
            Err(PermError::Missing { .. }) => return Ok(None),
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
                PermError::SymlinkOwner {
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
        PermError::SymlinkLoop {
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
pub fn verify_entry(entry: &crate::discover::Entry, euid: u32) -> Result<(), PermError> {
    if entry.candidate().is_none() {
        return Ok(());
    }
    // One walk: the hook's directory and its ancestors first, then each link's target.
    let st = resolve_hook(&entry.path, euid).map_err(|(hop, e)| {
        if hop == 0 {
            e
        } else {
            unsafe_symlink(&entry.path, e)
        }
    })?;
    let Some(st) = st else {
        return Ok(());
    };
    check_file(
        &entry.path.display().to_string(),
        st.st_mode,
        st.st_uid,
        euid,
    )
}

/// Checks the hooks directory and every directory above it ([`open_trusted_dir`]).
pub fn verify_dir_path(dir: &Path, euid: u32) -> Result<(), PermError> {
    open_trusted_dir(dir, euid, None).map(|_| ())
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
        check_hook(&p, &m, euid).unwrap();
        let (_d, p, m) = meta_with(0o775);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .to_string()
                .contains("chmod go-w")
        );
        let (_d, p, m) = meta_with(0o757);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .to_string()
                .contains("writable by others")
        );
        let (_d, p, m) = meta_with(0o4755);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .to_string()
                .contains("chmod ug-s")
        );
        let (_d, p, m) = meta_with(0o2755);
        assert!(
            check_hook(&p, &m, euid)
                .unwrap_err()
                .to_string()
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

    /// A second walk of the same path is a re-check of the kept one: it must still see
    /// every change a full walk would see.
    #[test]
    fn a_kept_walk_sees_every_change_on_the_way() {
        use std::os::unix::fs::MetadataExt;
        let (_d, root) = root_dir();
        let mid = root.join("mid");
        mkdir(&mid, 0o755);
        let hooks = mid.join("hooks.d");
        mkdir(&hooks, 0o755);
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_fd()).unwrap().st_ino;
        let first = open_trusted_dir(&hooks, euid(), None).unwrap();
        let again = open_trusted_dir(&hooks, euid(), None).unwrap();
        assert_eq!(ino(&first), ino(&again));
        // An ancestor made writable by others.
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open_trusted_dir(&hooks, euid(), None).unwrap_err();
        assert!(matches!(e, PermError::AncestorWritable { .. }), "{e}");
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_trusted_dir(&hooks, euid(), None).unwrap();
        // The directory itself made writable by its group.
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(open_trusted_dir(&hooks, euid(), None).is_err());
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_trusted_dir(&hooks, euid(), None).unwrap();
        // An ancestor swapped for another directory: the path now leads elsewhere, and
        // the answer is the new directory, judged on its own (here: open to others).
        std::fs::rename(&mid, root.join("mid.old")).unwrap();
        mkdir(&mid, 0o755);
        mkdir(&hooks, 0o777);
        let e = open_trusted_dir(&hooks, euid(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("chmod go-w {}", hooks.display())),
            "{e}"
        );
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
        let swapped = open_trusted_dir(&hooks, euid(), None).unwrap();
        assert_eq!(ino(&swapped), std::fs::metadata(&hooks).unwrap().ino());
        assert_ne!(ino(&swapped), ino(&first));
        // A component replaced by a symlink to a safe place is walked in full again.
        std::fs::remove_dir(&hooks).unwrap();
        std::os::unix::fs::symlink(root.join("mid.old/hooks.d"), &hooks).unwrap();
        let linked = open_trusted_dir(&hooks, euid(), None).unwrap();
        assert_eq!(ino(&linked), ino(&first));
        std::fs::remove_file(&hooks).unwrap();
        assert!(matches!(
            open_trusted_dir(&hooks, euid(), None).unwrap_err(),
            PermError::Missing { .. }
        ));
    }

    #[test]
    fn ancestors_writable_by_others_need_the_sticky_bit() {
        let (_d, root) = root_dir();
        let open = root.join("open");
        mkdir(&open, 0o777);
        mkdir(&open.join("hooks.d"), 0o755);
        let e = open_trusted_dir(&open.join("hooks.d"), euid(), None).unwrap_err();
        assert!(matches!(e, PermError::AncestorWritable { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("chmod go-w {}", open.display()))
                && m.contains("without the sticky bit"),
            "{m}"
        );
        // Group-writable is as bad.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
        let m = verify_dir_path(&open.join("hooks.d"), euid())
            .unwrap_err()
            .to_string();
        assert!(m.contains("writable by its group"), "{m}");
        // Sticky, like /tmp: others cannot rename or remove what is ours.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        open_trusted_dir(&open.join("hooks.d"), euid(), None).unwrap();
        // But the directory itself may never be writable by others, sticky or not.
        let m = verify_dir_path(&open, euid()).unwrap_err().to_string();
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
        assert!(matches!(e, PermError::NotADirectory { .. }), "{e}");
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
        assert!(matches!(e, PermError::AncestorWritable { .. }), "{e}");
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let e = open_trusted_dir(&root.join("loop"), euid(), None).unwrap_err();
        assert!(matches!(e, PermError::SymlinkLoop { .. }), "{e}");
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
        assert!(matches!(e, PermError::Owner { uid: 65534, .. }), "{e}");
        // A symlink someone else planted (in /tmp or /run/lock anyone can) is not followed.
        mkdir(&root.join("real"), 0o755);
        std::os::unix::fs::symlink(root.join("real"), root.join("planted")).unwrap();
        std::os::unix::fs::lchown(root.join("planted"), Some(65534), None).unwrap();
        let e = open_trusted_dir(&root.join("planted"), 0, Some(0o755)).unwrap_err();
        assert!(
            matches!(e, PermError::SymlinkOwner { uid: 65534, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chown -h root"), "{e}");
        // The user it runs as may own its directories.
        open_trusted_dir(&theirs.join("d"), 65534, None).unwrap();
    }

    #[test]
    fn owner() {
        assert!(
            check_common("/x", 0o755, 1234, 0, Subject::Hook)
                .unwrap_err()
                .to_string()
                .contains("chown root /x")
        );
        check_common("/x", 0o755, 1234, 1234, Subject::Hook).unwrap();
        check_common("/x", 0o755, 0, 1234, Subject::Hook).unwrap();
    }

    /// What the cli's doctor has done so far to get a fix: cut the message at the last
    /// ": " that a command follows. The typed fix must give the same text.
    fn split_fix(msg: &str) -> (String, Option<String>) {
        for (i, _) in msg.rmatch_indices(": ") {
            let rest = &msg[i + 2..];
            if ["chmod ", "chown ", "mkdir "]
                .iter()
                .any(|p| rest.starts_with(p))
            {
                return (msg[..i].to_owned(), Some(rest.to_owned()));
            }
        }
        (msg.to_owned(), None)
    }

    #[test]
    fn the_typed_fix_is_the_command_at_the_end_of_the_message() {
        let p = || "/etc/hookrun/vzdump.d".to_owned();
        let every = [
            PermError::Missing { path: p() },
            PermError::NotADirectory {
                path: p(),
                wanted: "/x".into(),
            },
            PermError::Writable {
                what: Subject::Hook,
                path: p(),
                who: "others",
            },
            PermError::Writable {
                what: Subject::Directory,
                path: p(),
                who: "its group",
            },
            PermError::AncestorWritable {
                path: p(),
                wanted: "/x".into(),
                who: "group and others",
            },
            PermError::Owner {
                what: Subject::Directory,
                path: p(),
                uid: 1000,
            },
            PermError::Setuid { path: p() },
            PermError::SymlinkOwner {
                path: p(),
                wanted: "/x".into(),
                uid: 1000,
            },
            PermError::SymlinkLoop { wanted: p() },
            PermError::UnsafeSymlink {
                link: "/etc/hookrun/vzdump.d/10-x".into(),
                source: Box::new(PermError::Owner {
                    what: Subject::Directory,
                    path: "/srv/scripts".into(),
                    uid: 1000,
                }),
            },
            PermError::Io {
                path: p(),
                source: std::io::Error::from_raw_os_error(13),
            },
        ];
        let mut with_fix = 0;
        for e in &every {
            let (problem, cut) = split_fix(&e.to_string());
            assert_eq!(e.fix(), cut, "{e}");
            assert_eq!(e.problem(), problem, "{e}");
            with_fix += usize::from(cut.is_some());
        }
        assert_eq!(with_fix, 8);
        // And the same for errors the checks actually return.
        let (_d, p, m) = meta_with(0o4757);
        let e = check_hook(&p, &m, euid()).unwrap_err();
        assert_eq!(e.fix(), Some(format!("chmod ug-s {}", p.display())));
        assert_eq!(
            e.problem(),
            format!("{} is setuid/setgid; hooks never need that", p.display())
        );
        assert_eq!(e.fix(), split_fix(&e.to_string()).1);
        let (_d, root) = root_dir();
        let e = verify_dir_path(&root.join("nope"), euid()).unwrap_err();
        assert_eq!(e.fix(), split_fix(&e.to_string()).1);
        assert!(
            e.fix().is_some_and(|f| f.starts_with("mkdir -m 0755 ")),
            "{e}"
        );
    }
}
