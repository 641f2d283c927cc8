//! Run records: one JSON object per line in `<log_dir>/runs.jsonl` (DESIGN §5).
//!
//! Each record is appended with a single `write` on an `O_APPEND` descriptor, so records
//! from concurrent dispatches never interleave. A log directory that cannot be written is
//! a warning, never a reason not to run hooks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What became of one matched hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Ok,
    Failed,
    Timeout,
    Signal,
    Refused,
    SpawnError,
    Skipped,
    /// Waited for its `# lock:` longer than the bound and did not run.
    LockTimeout,
    /// Its owner (dispatcher, supervisor or worker) died while it ran; written by the
    /// next dispatch of the platform that finds the owner's running marker.
    Lost,
    /// An async hook that has been started and has not ended yet. Never written to
    /// `runs.jsonl`: a run has exactly one record there, written when it ends.
    Running,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Signal => "signal",
            OutcomeKind::Refused => "refused",
            OutcomeKind::SpawnError => "spawn-error",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::LockTimeout => "lock-timeout",
            OutcomeKind::Lost => "lost",
            OutcomeKind::Running => "running",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// RFC 3339 start time.
    pub time: String,
    pub run_id: String,
    pub platform: String,
    pub phase: String,
    pub object: Option<String>,
    pub hook: String,
    pub mode: String,
    pub outcome: OutcomeKind,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub job: String,
    /// Why, for outcomes a code alone does not explain (a skip, a lock timeout, a lost
    /// run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub const RECORDS_FILE: &str = "runs.jsonl";

/// Appends records to `<log_dir>/runs.jsonl`, opening it on first use so dispatches that
/// run nothing touch nothing.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    file: Option<File>,
    failed: bool,
}

impl RecordLog {
    pub fn new(log_dir: &Path) -> RecordLog {
        RecordLog {
            path: log_dir.join(RECORDS_FILE),
            file: None,
            failed: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                // 0750: records name hooks and objects; operators read them as root.
                // Trusted: a log directory squatted or symlinked by another user is
                // refused, not written through (perms::open_trusted_dir).
                let euid = nix::unistd::geteuid().as_raw();
                crate::perms::open_trusted_dir(dir, euid, Some(0o750))
                    .map_err(std::io::Error::other)?;
            }
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&self.path)?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Appends one record. Failures are reported once per dispatch and otherwise ignored.
    pub fn append(&mut self, record: &RunRecord) {
        if self.failed {
            return;
        }
        let mut line = serde_json::to_vec(record).expect("records always serialise");
        line.push(b'\n');
        let result = self.open().and_then(|f| {
            let n = f.write(&line)?;
            if n == line.len() {
                Ok(())
            } else {
                // A full disk took only part of the line: take it back out, or the next
                // record appended (once there is room) would continue this broken line
                // and neither would parse. Our bytes end at our descriptor's offset.
                if n > 0
                    && let Ok(end) = std::io::Seek::stream_position(f)
                {
                    let _ = f.set_len(end.saturating_sub(n as u64));
                }
                Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!(
                        "short write ({n} of {} bytes; is the file system full?)",
                        line.len()
                    ),
                ))
            }
        });
        if let Err(e) = result {
            self.failed = true;
            tracing::warn!(
                "cannot write run record to {}: {e}; hooks still run, but this dispatch is not recorded (check log_dir in the config, free space and permissions)",
                self.path.display()
            );
        }
    }
}

/// Reads every parseable record in `path`; lines that do not parse are counted.
pub fn read_records(path: &Path) -> std::io::Result<(Vec<RunRecord>, usize)> {
    let text = std::fs::read(path)?;
    let mut bad = 0;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice(line) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hook: &str) -> RunRecord {
        RunRecord {
            time: "2026-11-21T15:30:12.345Z".into(),
            run_id: "r1".into(),
            platform: "vzdump".into(),
            phase: "log-end".into(),
            object: Some("101".into()),
            hook: hook.into(),
            mode: "sync".into(),
            outcome: OutcomeKind::SpawnError,
            exit_code: Some(127),
            signal: None,
            duration_ms: 5,
            job: "vzdump-x-101".into(),
            message: None,
        }
    }

    #[test]
    fn appends_parseable_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::new(&dir.path().join("sub"));
        log.append(&rec("a"));
        log.append(&rec("b"));
        let (recs, bad) = read_records(log.path()).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(recs, vec![rec("a"), rec("b")]);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.contains("\"outcome\":\"spawn-error\""), "{text}");
    }

    #[test]
    fn unwritable_log_dir_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        // A path below a regular file can never be created.
        let mut log = RecordLog::new(&file.join("logs"));
        log.append(&rec("a"));
        log.append(&rec("b"));
        assert!(log.failed);
    }
}
