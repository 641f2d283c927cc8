//! Permission checks for root-run hooks (DESIGN §3, `strict_permissions`).
//!
//! The rule is cron's and NetworkManager-dispatcher's: what root executes must be owned
//! by root (or by the invoking user) and writable by nobody else, and must not carry
//! setuid/setgid bits. Every refusal names the command that fixes it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// For a hook reached through a symlink: the directory holding the real file must be
/// safe too, or whoever can write there can swap the file.
pub fn check_symlink_target_dir(link: &Path, euid: u32) -> Result<(), String> {
    let target = std::fs::canonicalize(link)
        .map_err(|e| format!("cannot resolve symlink {}: {e}", link.display()))?;
    let Some(dir) = target.parent() else {
        return Ok(());
    };
    let meta =
        std::fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    check_dir(dir, &meta, euid)
        .map_err(|m| format!("{} is a symlink into an unsafe place: {m}", link.display()))
}

/// Everything `strict_permissions` checks for one hook that is about to run: the file
/// and, for a symlink, the directory holding its target. (The hooks directory itself is
/// checked with [`check_dir_path`].)
///
/// The file is looked at afresh, not as the scan saw it: an earlier hook of the
/// dispatch, or anyone during a long one, may have changed its mode or replaced it
/// since, and what is checked must be what is about to be executed. A file that has
/// vanished passes here; starting it then fails with a message of its own.
pub fn check_entry(entry: &crate::discover::Entry, euid: u32) -> Result<(), String> {
    if entry.candidate().is_none() {
        return Ok(());
    }
    let meta = match std::fs::metadata(&entry.path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect {}: {e}", entry.path.display())),
    };
    check_hook(&entry.path, &meta, euid)?;
    let symlink = std::fs::symlink_metadata(&entry.path).is_ok_and(|m| m.file_type().is_symlink());
    if symlink {
        check_symlink_target_dir(&entry.path, euid)?;
    }
    Ok(())
}

/// Checks the hooks directory by path.
pub fn check_dir_path(dir: &Path, euid: u32) -> Result<(), String> {
    let meta =
        std::fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    check_dir(dir, &meta, euid)
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
