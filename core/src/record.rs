//! Run records: one JSON object per line in `<log_dir>/runs.jsonl` (DESIGN §5).
//!
//! Each record is appended with a single `write` on an `O_APPEND` descriptor, so records
//! from concurrent dispatches never interleave. A log directory that cannot be written is
//! a warning, never a reason not to run hooks.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
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
    /// Whether a record could not be written (reported once, as a warning).
    pub fn failed(&self) -> bool {
        self.failed
    }

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

/// The longest record line a reader keeps. hookrun's own lines are far shorter (an object
/// is at most one argv string, 128 KiB); a longer line is a corrupt file, skipped and
/// counted as unparseable without being held in memory.
pub const MAX_RECORD_LINE: usize = 1 << 20;

/// How much of the file the backward reader takes per read.
const BLOCK: usize = 64 << 10;

/// Reads every parseable record in `path`; lines that do not parse are counted.
pub fn read_records(path: &Path) -> std::io::Result<(Vec<RunRecord>, usize)> {
    let mut out = Vec::new();
    let bad = scan_records(std::io::BufReader::new(File::open(path)?), |r| out.push(r))?;
    Ok((out, bad))
}

/// Calls `f` with every parseable record of `reader`, in order, holding one line at a
/// time (at most [`MAX_RECORD_LINE`] bytes); returns how many lines did not parse.
pub fn scan_records<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(RunRecord),
) -> std::io::Result<usize> {
    let mut line = Vec::new();
    let mut bad = 0;
    loop {
        line.clear();
        let (read, fits) = read_line_capped(&mut reader, &mut line)?;
        if read == 0 {
            return Ok(bad);
        }
        if !fits {
            bad += 1;
            continue;
        }
        match parse_line(&line) {
            Some(Ok(r)) => f(r),
            Some(Err(())) => bad += 1,
            None => {}
        }
    }
}

/// One line into `line` (without its newline), keeping at most [`MAX_RECORD_LINE`]
/// bytes; the rest of a longer line is consumed and dropped. Returns the bytes consumed
/// and whether the line fitted.
fn read_line_capped<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut fits = true;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((consumed, fits));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        if fits && line.len() + chunk.len() <= MAX_RECORD_LINE {
            line.extend_from_slice(chunk);
        } else {
            fits = false;
            line.clear();
        }
        let newline = done > chunk.len();
        reader.consume(done);
        consumed += done;
        if newline {
            return Ok((consumed, fits));
        }
    }
}

/// `None` for a blank line, else the record or `Err` when it does not parse.
fn parse_line(line: &[u8]) -> Option<Result<RunRecord, ()>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(|_| ()))
}

/// The last `n` records of `path` that `keep` accepts, oldest first, read backwards from
/// the end of the file: the time and memory it takes depend on `n`, not on the file's
/// size. Returns them with the number of unparseable lines seen on the way.
pub fn last_records(
    path: &Path,
    n: usize,
    mut keep: impl FnMut(&RunRecord) -> bool,
) -> std::io::Result<(Vec<RunRecord>, usize)> {
    let mut lines = RevLines::open(path)?;
    let mut out = Vec::new();
    let mut bad = 0;
    while out.len() < n {
        match lines.next_line()? {
            None => break,
            Some(None) => bad += 1,
            Some(Some(line)) => match parse_line(&line) {
                Some(Ok(r)) if keep(&r) => out.push(r),
                Some(Ok(_)) | None => {}
                Some(Err(())) => bad += 1,
            },
        }
    }
    out.reverse();
    Ok((out, bad))
}

/// The lines of a file, last first, read in blocks from the end.
struct RevLines {
    file: File,
    /// File offset of `buf[0]`; everything before it is still unread.
    pos: u64,
    /// Bytes read but not yet returned: the start of the file's last unreturned line(s).
    buf: Vec<u8>,
    /// The line being assembled grew past [`MAX_RECORD_LINE`] and was dropped.
    overlong: bool,
}

impl RevLines {
    fn open(path: &Path) -> std::io::Result<RevLines> {
        let file = File::open(path)?;
        let pos = file.metadata()?.len();
        Ok(RevLines {
            file,
            pos,
            buf: Vec::new(),
            overlong: false,
        })
    }

    /// The previous line: `Some(None)` for one longer than [`MAX_RECORD_LINE`], `None`
    /// at the start of the file.
    fn next_line(&mut self) -> std::io::Result<Option<Option<Vec<u8>>>> {
        use std::os::unix::fs::FileExt;
        loop {
            if let Some(i) = self.buf.iter().rposition(|&b| b == b'\n') {
                let line = self.buf.split_off(i + 1);
                self.buf.truncate(i);
                if std::mem::take(&mut self.overlong) {
                    return Ok(Some(None));
                }
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(Some(line)));
            }
            if self.pos == 0 {
                if self.buf.is_empty() && !self.overlong {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                return Ok(Some((!std::mem::take(&mut self.overlong)).then_some(line)));
            }
            if self.buf.len() > MAX_RECORD_LINE {
                self.overlong = true;
                self.buf.clear();
            }
            let take = (self.pos as usize).min(BLOCK);
            let mut block = vec![0; take];
            self.file
                .read_exact_at(&mut block, self.pos - take as u64)?;
            self.pos -= take as u64;
            block.extend_from_slice(&self.buf);
            self.buf = block;
        }
    }
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

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn last_records_reads_backwards_across_blocks_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        // Enough lines to span several blocks, with junk and an overlong line between.
        let mut lines = Vec::new();
        for i in 0..3000 {
            lines.push(serde_json::to_string(&rec(&format!("h{i}"))).unwrap());
            if i == 1000 {
                lines.push("not json".into());
                lines.push("x".repeat(MAX_RECORD_LINE + BLOCK + 5));
            }
        }
        write_lines(&path, &lines);
        let (last, bad) = last_records(&path, 3, |_| true).unwrap();
        let hooks: Vec<&str> = last.iter().map(|r| r.hook.as_str()).collect();
        assert_eq!(hooks, ["h2997", "h2998", "h2999"]);
        assert_eq!(bad, 0);
        let (all, bad) = last_records(&path, usize::MAX, |_| true).unwrap();
        assert_eq!(all.len(), 3000);
        assert_eq!(all[0].hook, "h0");
        assert_eq!(all[2999].hook, "h2999");
        assert_eq!(bad, 2);
        let (even, _) = last_records(&path, 2, |r| r.hook.ends_with('0')).unwrap();
        let hooks: Vec<&str> = even.iter().map(|r| r.hook.as_str()).collect();
        assert_eq!(hooks, ["h2980", "h2990"]);
        // The forward reader agrees, and counts the same bad lines.
        let (fwd, bad) = read_records(&path).unwrap();
        assert_eq!(fwd, all);
        assert_eq!(bad, 2);
    }

    #[test]
    fn a_last_line_without_newline_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let text = format!(
            "{}\n{}",
            serde_json::to_string(&rec("a")).unwrap(),
            serde_json::to_string(&rec("b")).unwrap()
        );
        std::fs::write(&path, text).unwrap();
        let (last, _) = last_records(&path, 5, |_| true).unwrap();
        assert_eq!(last, vec![rec("a"), rec("b")]);
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_records(&path, 5, |_| true).unwrap(), (vec![], 0));
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
