//! Running markers (DESIGN §5): every run, sync or async, has a file saying it is
//! running and who owns it, so a run whose owner dies — SIGKILL, a crash, a reboot —
//! still leaves a trace. `hookrun log` shows such a run as `lost`, and the next dispatch
//! of the platform turns the marker into a `lost` record.
//!
//! - sync: one marker per dispatch, `<log_dir>/running/<run_id>.json`, rewritten in
//!   place for each hook (two system calls, no new file per hook);
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
}

impl Marker {
    /// Creates `dir/name` (and `dir`, mode 0750) holding `entry`. `None` when it cannot
    /// be written: the run record, written at the end, is what counts.
    pub fn create(dir: &Path, name: &str, entry: &RunningEntry) -> Option<Marker> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .ok()?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .ok()?;
        let mut m = Marker {
            file,
            path,
            last: None,
            size: 0,
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
        let _ = std::fs::remove_file(&self.path);
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
        if let Ok(entry) = serde_json::from_slice::<RunningEntry>(&bytes) {
            out.push((path, entry));
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
