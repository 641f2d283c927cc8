//! Running markers (DESIGN §5): every run, sync or async, has a file saying it is
//! running and who owns it, so a run whose owner dies — SIGKILL, a crash, a reboot —
//! still leaves a trace. `hookrun log` shows such a run as `lost`, and the next dispatch
//! of the platform turns the marker into a `lost` record.
//!
//! - sync: one marker per dispatch, `<log_dir>/running/<run_id>.json`, rewritten in
//!   place for each hook (two system calls, no new file per hook), and when the dispatch
//!   ends blanked and kept as a spare (`.spare-N`, at most four) for a later dispatch to
//!   rename, so no file is created or removed per dispatch;
//! - async: one per supervisor, `<log_dir>/async/running/<run_id>.<job>.json`.
//!
//! Owners are [`Identity`]s (pid, start time, boot id): a reused pid never makes a
//! dead run look alive again.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::contain::Identity;
use crate::record::{OutcomeKind, RecordLog, RunRecord};

/// A running hook, as `hookrun log` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningEntry {
    pub record: RunRecord,
    /// The owner's pid (kept for readers of older markers; `owner` is authoritative).
    pub supervisor_pid: u32,
    /// Who owns the run; absent in markers written before identities existed.
    #[serde(default)]
    pub owner: Option<Identity>,
}

impl RunningEntry {
    pub fn new(record: RunRecord) -> RunningEntry {
        let owner = Identity::current();
        RunningEntry {
            record,
            supervisor_pid: owner.pid,
            owner: Some(owner),
        }
    }

    /// Whether the owner still lives.
    pub fn alive(&self) -> bool {
        match &self.owner {
            Some(id) => id.alive(),
            None => Path::new(&format!("/proc/{}", self.supervisor_pid)).exists(),
        }
    }
}

pub fn sync_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("running")
}

pub fn async_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("async").join("running")
}

/// A marker file, removed when dropped.
#[derive(Debug)]
pub struct Marker {
    file: File,
    path: PathBuf,
    last: Option<RunningEntry>,
    /// Length of the longest body written (the file's size).
    size: usize,
    /// Kept as a spare when done instead of removed ([`Marker::create_reusing`]).
    reuse: bool,
}

/// Spare sync markers kept in the marker directory, blank, for the next dispatches to
/// take. Their names do not end in `.json`, so no reader looks at them.
const SPARES: usize = 4;

fn spare_name(i: usize) -> String {
    format!(".spare-{i}")
}

impl Marker {
    /// Creates `dir/name` (and `dir`, mode 0750) holding `entry`. `None` when it cannot
    /// be written: the run record, written at the end, is what counts.
    pub fn create(dir: &Path, name: &str, entry: &RunningEntry) -> Option<Marker> {
        Self::open(dir, name, entry, false)
    }

    /// [`Marker::create`] for a dispatch's sync marker: takes a spare left by an earlier
    /// dispatch (a rename, which cannot take one another dispatch took) and leaves its own
    /// as one when done, blanked first. A file created and removed per dispatch cost
    /// 0.1–0.2 ms of inode allocation and release on ext4, more without a journal.
    pub fn create_reusing(dir: &Path, name: &str, entry: &RunningEntry) -> Option<Marker> {
        Self::open(dir, name, entry, true)
    }

    fn open(dir: &Path, name: &str, entry: &RunningEntry, reuse: bool) -> Option<Marker> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .ok()?;
        let path = dir.join(name);
        let taken = reuse
            && (0..SPARES).any(|i| {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &dir.join(spare_name(i)),
                    nix::fcntl::AT_FDCWD,
                    &path,
                    nix::fcntl::RenameFlags::RENAME_NOREPLACE,
                )
                .is_ok()
            });
        // A spare is blank (spaces only), which readers skip as they skip a marker
        // being written; the body below is padded over whatever it held.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(!taken)
            .truncate(!taken)
            .mode(0o640)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .ok()?;
        let mut m = Marker {
            file,
            path,
            last: None,
            size: 0,
            reuse,
        };
        if !m.update(entry) {
            // A full disk: an empty marker would only confuse `hookrun log`.
            return None;
        }
        Some(m)
    }

    /// Replaces the marker's content. Readers that see it half-written skip it.
    pub fn update(&mut self, entry: &RunningEntry) -> bool {
        let Ok(body) = serde_json::to_vec(entry) else {
            return false;
        };
        self.last = Some(entry.clone());
        // Overwritten in place, padded with spaces (JSON allows them) to the longest
        // body so far: no truncation, which on most file systems costs far more than
        // the write itself.
        let mut body = body;
        if body.len() < self.size {
            body.resize(self.size, b' ');
        }
        self.size = body.len();
        self.file.write_all_at(&body, 0).is_ok()
    }

    /// Says that no hook of the owner runs right now (between two sync hooks).
    pub fn idle(&mut self) {
        if let Some(mut entry) = self.last.take() {
            entry.record.outcome = OutcomeKind::Skipped;
            entry.record.hook.clear();
            self.update(&entry);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if self.reuse && self.retire() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Marker {
    /// Blanks the marker and renames it to a free spare name; false (remove it instead)
    /// when it cannot be blanked or every spare name is taken.
    fn retire(&mut self) -> bool {
        let Some(dir) = self.path.parent() else {
            return false;
        };
        // A reader sees the run end as it sees it gone: nothing to parse.
        if self.file.write_all_at(&vec![b' '; self.size], 0).is_err() {
            return false;
        }
        (0..SPARES).any(|i| {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &self.path,
                nix::fcntl::AT_FDCWD,
                &dir.join(spare_name(i)),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .is_ok()
        })
    }
}

/// A marker that holds only spaces: a spare taken or left by a dispatch that died
/// between two steps, which nothing will use; removed once it is a minute old.
fn remove_if_stale_blank(path: &Path, bytes: &[u8]) {
    if bytes.iter().all(|&b| b == b' ')
        && std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() >= 60))
    {
        let _ = std::fs::remove_file(path);
    }
}

fn read_dir_entries(dir: &Path) -> Vec<(PathBuf, RunningEntry)> {
    let Ok(items) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.flatten() {
        let path = item.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<RunningEntry>(&bytes) {
            Ok(entry) => out.push((path, entry)),
            Err(_) => remove_if_stale_blank(&path, &bytes),
        }
    }
    out
}

/// Every running marker, sync and async, with whether its owner is alive, oldest first.
pub fn entries(log_dir: &Path) -> Vec<(RunningEntry, bool)> {
    let mut out: Vec<(RunningEntry, bool)> = read_dir_entries(&sync_dir(log_dir))
        .into_iter()
        .chain(read_dir_entries(&async_dir(log_dir)))
        .filter(|(_, e)| e.record.outcome == OutcomeKind::Running)
        .map(|(_, e)| {
            let alive = e.alive();
            (e, alive)
        })
        .collect();
    out.sort_by(|a, b| a.0.record.time.cmp(&b.0.record.time));
    out
}

/// Turns the markers of `platform` whose owner died into `lost` records. Each marker is
/// claimed by renaming it first, so two dispatches that find it at once write one record.
pub fn collect_lost(log_dir: &Path, platform: &str, records: &mut RecordLog) -> usize {
    let mut n = 0;
    for dir in [sync_dir(log_dir), async_dir(log_dir)] {
        for (path, entry) in read_dir_entries(&dir) {
            if entry.record.platform != platform || entry.alive() {
                continue;
            }
            if entry.record.outcome != OutcomeKind::Running {
                // Died between two hooks: nothing was lost.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let claimed = path.with_extension(format!("lost-{}", std::process::id()));
            if std::fs::rename(&path, &claimed).is_err() {
                continue;
            }
            let mut rec = entry.record.clone();
            rec.outcome = OutcomeKind::Lost;
            rec.message = Some(format!(
                "its owner (pid {}) died while it ran (killed, crashed, or the machine rebooted); what it did is unknown",
                entry.owner.as_ref().map_or(entry.supervisor_pid, |o| o.pid)
            ));
            tracing::warn!(
                "{}: run {} of phase {}{} was lost: {}",
                rec.hook,
                rec.run_id,
                rec.phase,
                rec.object
                    .as_deref()
                    .map(|o| format!(" object {o}"))
                    .unwrap_or_default(),
                rec.message.as_deref().unwrap_or_default()
            );
            records.append(&rec);
            let _ = std::fs::remove_file(&claimed);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hook: &str, outcome: OutcomeKind) -> RunningEntry {
        RunningEntry::new(RunRecord {
            time: "2026-12-06T10:00:00.000Z".into(),
            run_id: "r1".into(),
            platform: "vzdump".into(),
            phase: "backup-end".into(),
            object: Some("101".into()),
            hook: hook.into(),
            mode: "sync".into(),
            outcome,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            job: format!("vzdump-{hook}-101"),
            message: None,
        })
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sync_markers_are_kept_blank_as_spares_and_taken_again() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("running");
        let long = "a-hook-with-a-rather-long-name-indeed";
        let m =
            Marker::create_reusing(&dir, "r1.json", &entry(long, OutcomeKind::Running)).unwrap();
        assert_eq!(entries(d.path()).len(), 1);
        drop(m);
        assert_eq!(names(&dir), [".spare-0"], "kept, not removed");
        let blank = std::fs::read(dir.join(".spare-0")).unwrap();
        assert!(!blank.is_empty() && blank.iter().all(|&b| b == b' '));
        assert!(entries(d.path()).is_empty(), "a spare is no run");

        // The next one takes it; its shorter body parses over the old length.
        let m = Marker::create_reusing(&dir, "r2.json", &entry("x", OutcomeKind::Running)).unwrap();
        assert_eq!(names(&dir), ["r2.json"]);
        let seen = entries(d.path());
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.record.hook, "x");
        assert!(seen[0].1, "its owner, this process, is alive");
        drop(m);

        // Concurrent dispatches: each gets its own file; at most SPARES are kept.
        let ms: Vec<Marker> = (0..SPARES + 2)
            .map(|i| {
                Marker::create_reusing(
                    &dir,
                    &format!("c{i}.json"),
                    &entry("y", OutcomeKind::Running),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(entries(d.path()).len(), SPARES + 2);
        drop(ms);
        let left = names(&dir);
        assert_eq!(left.len(), SPARES, "{left:?}");
        assert!(left.iter().all(|n| n.starts_with(".spare-")), "{left:?}");

        // Async markers are removed as before.
        let a = async_dir(d.path());
        drop(Marker::create(&a, "s.json", &entry("z", OutcomeKind::Running)).unwrap());
        assert!(names(&a).is_empty());
    }

    #[test]
    fn a_blank_marker_left_by_a_crash_is_removed_once_stale() {
        let d = tempfile::tempdir().unwrap();
        let dir = sync_dir(d.path());
        std::fs::create_dir_all(&dir).unwrap();
        let fresh = dir.join("fresh.json");
        let stale = dir.join("stale.json");
        std::fs::write(&fresh, b"      ").unwrap();
        std::fs::write(&stale, b"      ").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut log = RecordLog::new(d.path());
        assert_eq!(collect_lost(d.path(), "vzdump", &mut log), 0);
        assert!(fresh.exists(), "may be a marker being written right now");
        assert!(!stale.exists());
    }
}
