//! The retention engine on a directory: which files are candidates (`retentions`'
//! `read_filelist`), and deleting the pruned ones with their companions
//! (`run_deletion`). Both tools use this; they differ only in how candidates and
//! companions are named.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::dirlock::LOCK_FILE_NAME;
use crate::glob::Pattern;
use crate::retention::{Item, Plan};

/// Which timestamp is a file's age (`--age-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgeType {
    Mtime,
    Ctime,
    Atime,
    Birthtime,
}

impl AgeType {
    pub fn name(self) -> &'static str {
        match self {
            AgeType::Mtime => "mtime",
            AgeType::Ctime => "ctime",
            AgeType::Atime => "atime",
            AgeType::Birthtime => "birthtime",
        }
    }

    /// The attribute in whole seconds (truncated, as `int(st_mtime)`).
    pub fn of(self, meta: &std::fs::Metadata) -> io::Result<i64> {
        Ok(match self {
            AgeType::Mtime => meta.mtime(),
            AgeType::Ctime => meta.ctime(),
            AgeType::Atime => meta.atime(),
            AgeType::Birthtime => {
                let t = meta.created()?;
                match t.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => d.as_secs() as i64,
                    Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
                }
            }
        })
    }
}

/// A candidate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: OsString,
    pub time: i64,
    pub size: u64,
}

/// What a directory holds for a retention run.
#[derive(Debug, Default)]
pub struct Scan {
    /// Candidates, newest first; equal times by name, larger name first.
    pub files: Vec<FileEntry>,
    /// Matching files excluded by `--protect`, with the pattern that protected them.
    pub protected: Vec<FileEntry>,
    /// Matching names that are symlinks to regular files (ignored, with a warning).
    pub symlinks: Vec<OsString>,
}

impl Scan {
    pub fn items(&self) -> Vec<Item> {
        self.files
            .iter()
            .map(|f| Item {
                time: f.time,
                size: f.size,
            })
            .collect()
    }
}

/// Lists the regular files directly in `dir` whose name `select` accepts, minus the lock
/// file and the `protect`ed ones. Symlinks are never candidates; hidden files are, when
/// the selection matches them (as `pathlib.glob` does).
pub fn scan(
    dir: &Path,
    select: &dyn Fn(&OsStr) -> bool,
    protect: Option<&Pattern>,
    age: AgeType,
) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !select(&name) {
            continue;
        }
        let path = entry.path();
        let lmeta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // gone meanwhile
            Err(e) => return Err(e),
        };
        if lmeta.file_type().is_symlink() {
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                scan.symlinks.push(name);
            }
            continue;
        }
        if !lmeta.is_file() || name == LOCK_FILE_NAME {
            continue;
        }
        let fe = FileEntry {
            time: age.of(&lmeta)?,
            size: lmeta.len(),
            name,
        };
        if protect.is_some_and(|p| p.matches(fe.name.as_bytes())) {
            scan.protected.push(fe);
        } else {
            scan.files.push(fe);
        }
    }
    let newest_first = |a: &FileEntry, b: &FileEntry| b.time.cmp(&a.time).then(b.name.cmp(&a.name));
    scan.files.sort_by(newest_first);
    scan.protected.sort_by(newest_first);
    scan.symlinks.sort();
    Ok(scan)
}

/// Something deletion did or would do, for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `path` was deleted (or would be, in a dry run).
    Deleted { name: OsString, companion: bool },
    /// A companion name that is a symlink: skipped.
    CompanionSymlink(OsString),
    /// Unlinking failed and `fail_on_error` is off: reported, and deletion goes on.
    Failed {
        name: OsString,
        companion: bool,
        error: String,
    },
}

#[derive(Debug)]
pub enum DeleteError {
    /// A companion would delete a kept, pruned or protected file, the lock file, or a
    /// file outside the directory (exit 7).
    Integrity(String),
    /// Unlinking failed with `fail_on_error` (exit 1).
    Io(String),
}

impl std::fmt::Display for DeleteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeleteError::Integrity(m) | DeleteError::Io(m) => f.write_str(m),
        }
    }
}

/// Deletes the pruned files of `plan` (over `scan.files`), newest first, each followed by
/// its companions that exist as regular files. In a dry run nothing is touched and the
/// events say what would be deleted.
pub fn delete_pruned(
    dir: &Path,
    scan: &Scan,
    plan: &Plan,
    companions: &dyn Fn(&OsStr) -> Vec<OsString>,
    dry_run: bool,
    fail_on_error: bool,
    report: &mut dyn FnMut(Event),
) -> Result<usize, DeleteError> {
    // Names a companion must never be: every candidate, every protected file, the lock.
    let mut disallowed: BTreeSet<&OsStr> = scan.files.iter().map(|f| f.name.as_os_str()).collect();
    disallowed.extend(scan.protected.iter().map(|f| f.name.as_os_str()));
    disallowed.insert(OsStr::new(LOCK_FILE_NAME));

    // Every companion name is checked before anything is deleted, so an integrity
    // error leaves the directory as it was (`retentions` finds it midway).
    let mut work: Vec<(&OsStr, Vec<OsString>)> = Vec::new();
    for i in plan.pruned() {
        let name = scan.files[i].name.as_os_str();
        let comps = companions(name);
        for comp in &comps {
            if comp.as_bytes().contains(&b'/') || comp == "." || comp == ".." {
                return Err(DeleteError::Integrity(format!(
                    "(Companion) file '{}' of '{}' is not a child of the directory {}",
                    Path::new(comp).display(),
                    Path::new(name).display(),
                    dir.display()
                )));
            }
            if disallowed.contains(comp.as_os_str()) {
                return Err(DeleteError::Integrity(format!(
                    "Companion file '{}' of '{}' must not be deleted, because it is kept, pruned, protected or the lock file",
                    dir.join(comp).display(),
                    Path::new(name).display()
                )));
            }
        }
        work.push((name, comps));
    }

    let mut deleted = 0;
    for (name, comps) in work {
        deleted += unlink(dir, name, false, dry_run, fail_on_error, report)?;
        for comp in comps {
            let path = dir.join(&comp);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => report(Event::CompanionSymlink(comp)),
                Ok(m) if m.is_file() => {
                    deleted += unlink(dir, &comp, true, dry_run, fail_on_error, report)?;
                }
                _ => {}
            }
        }
    }
    Ok(deleted)
}

fn unlink(
    dir: &Path,
    name: &OsStr,
    companion: bool,
    dry_run: bool,
    fail_on_error: bool,
    report: &mut dyn FnMut(Event),
) -> Result<usize, DeleteError> {
    let path: PathBuf = dir.join(name);
    if dry_run {
        report(Event::Deleted {
            name: name.to_owned(),
            companion,
        });
        return Ok(1);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            report(Event::Deleted {
                name: name.to_owned(),
                companion,
            });
            Ok(1)
        }
        Err(e) => {
            let error = format!(
                "Error while deleting {}file '{}': {e}",
                if companion { "(companion) " } else { "" },
                Path::new(name).display()
            );
            if fail_on_error {
                return Err(DeleteError::Io(error));
            }
            report(Event::Failed {
                name: name.to_owned(),
                companion,
                error,
            });
            Ok(0)
        }
    }
}
