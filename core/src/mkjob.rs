//! Checkmk job files for `# mk-job` hooks (DESIGN §5, `mk_job = "native"`).
//!
//! The layout is the agent's `mk-job` script's: while the hook runs,
//! `<mk_job_dir>/<user>/<job>.<pid>running` holds `start_time <epoch>`; when it ends,
//! `<mk_job_dir>/<user>/<job>` is replaced atomically (temp file in the same directory,
//! then rename) with exactly the keys Checkmk knows — older Checkmk servers crash on
//! any other two-word line. The agent only reads files owned by the user the directory
//! is named after, which is the user we run as.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Resource use of the hook, as `getrusage(RUSAGE_CHILDREN)` deltas around it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kb: i64,
    pub reads: i64,
    pub writes: i64,
    pub invol_cs: i64,
    pub vol_cs: i64,
}

impl Usage {
    /// The children's totals so far.
    pub fn children_now() -> Usage {
        match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
            Ok(u) => Usage {
                user: timeval(u.user_time()),
                sys: timeval(u.system_time()),
                max_rss_kb: u.max_rss(),
                reads: u.block_reads(),
                writes: u.block_writes(),
                invol_cs: u.involuntary_context_switches(),
                vol_cs: u.voluntary_context_switches(),
            },
            Err(_) => Usage::default(),
        }
    }

    /// What was used between `before` and now. The maximum RSS is a high-water mark
    /// over all children, not a sum, so it is taken as is.
    pub fn since(before: Usage) -> Usage {
        let now = Usage::children_now();
        Usage {
            user: now.user.saturating_sub(before.user),
            sys: now.sys.saturating_sub(before.sys),
            max_rss_kb: now.max_rss_kb,
            reads: now.reads - before.reads,
            writes: now.writes - before.writes,
            invol_cs: now.invol_cs - before.invol_cs,
            vol_cs: now.vol_cs - before.vol_cs,
        }
    }
}

fn timeval(t: nix::sys::time::TimeVal) -> Duration {
    Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
}

/// A job whose running file exists.
#[derive(Debug)]
pub struct RunningJob {
    dir: PathBuf,
    job: String,
    running: PathBuf,
    start: SystemTime,
    usage_before: Usage,
}

/// The user name the job directory is named after (from /etc/passwd without NSS, so
/// the static build finds it too).
fn user_name() -> String {
    crate::privilege::user_name(nix::unistd::geteuid().as_raw())
}

/// Creates the running file. Problems are warnings: Checkmk bookkeeping never stops a
/// hook from running.
pub fn start(mk_job_dir: &Path, job: &str) -> Option<RunningJob> {
    start_as(mk_job_dir, job, None)
}

/// [`start`] for a hook that runs as `user` (`# user:`): its job file goes into that
/// user's job directory, where `mk-job` run by that user would put it.
pub fn start_as(mk_job_dir: &Path, job: &str, user: Option<&str>) -> Option<RunningJob> {
    let dir = mk_job_dir.join(user.map_or_else(user_name, str::to_owned));
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
    {
        tracing::warn!(
            "mk-job: cannot create {}: {e}; no Checkmk job file for {job} (check mk_job_dir in the config)",
            dir.display()
        );
        return None;
    }
    let start = SystemTime::now();
    let running = dir.join(format!("{job}.{}running", std::process::id()));
    let content = format!("start_time {}\n", epoch(start));
    if let Err(e) = write_atomically(&dir, &running, content.as_bytes()) {
        tracing::warn!(
            "mk-job: cannot write {}: {e}; no Checkmk job file for {job}",
            running.display()
        );
        return None;
    }
    Some(RunningJob {
        dir,
        job: job.to_owned(),
        running,
        start,
        usage_before: Usage::children_now(),
    })
}

impl RunningJob {
    pub fn running_path(&self) -> &Path {
        &self.running
    }

    /// Writes the completed file and removes the running one.
    pub fn finish(self, exit_code: i32, real: Duration) {
        let usage = Usage::since(self.usage_before);
        let text = completed_text(epoch(self.start), exit_code, real, &usage);
        let path = self.dir.join(&self.job);
        if let Err(e) = write_atomically(&self.dir, &path, text.as_bytes()) {
            tracing::warn!("mk-job: cannot write {}: {e}", path.display());
        }
        let _ = std::fs::remove_file(&self.running);
    }
}

/// The completed job file, keys in the order the agent's `mk-job` writes them.
pub fn completed_text(start_epoch: u64, exit_code: i32, real: Duration, u: &Usage) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "start_time {start_epoch}");
    let _ = writeln!(s, "real {}", elapsed(real));
    let _ = writeln!(s, "user {:.2}", u.user.as_secs_f64());
    let _ = writeln!(s, "sys {:.2}", u.sys.as_secs_f64());
    let _ = writeln!(s, "reads {}", u.reads.max(0));
    let _ = writeln!(s, "writes {}", u.writes.max(0));
    let _ = writeln!(s, "max_res_kbytes {}", u.max_rss_kb.max(0));
    // GNU time's %K is always 0 on Linux; Checkmk expects the key.
    let _ = writeln!(s, "avg_mem_kbytes 0");
    let _ = writeln!(s, "invol_context_switches {}", u.invol_cs.max(0));
    let _ = writeln!(s, "vol_context_switches {}", u.vol_cs.max(0));
    let _ = writeln!(s, "exit_code {exit_code}");
    s
}

/// GNU time's `%E`: `m:ss.cc`, or `h:mm:ss` from an hour on.
pub fn elapsed(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}.{:02}", d.subsec_millis() / 10)
    }
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Temp file in the same directory, fsync, rename: readers see all or nothing.
fn write_atomically(dir: &Path, path: &Path, content: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the 2.3/2.4 parser accepts; any other two-word line crashes it.
    const KNOWN: &[&str] = &[
        "start_time",
        "exit_code",
        "real",
        "user",
        "sys",
        "reads",
        "writes",
        "max_res_kbytes",
        "avg_mem_kbytes",
        "invol_context_switches",
        "vol_context_switches",
    ];

    #[test]
    fn completed_file_has_only_known_keys() {
        let text = completed_text(
            1_700_000_000,
            2,
            Duration::from_millis(2_345),
            &Usage::default(),
        );
        assert!(text.starts_with("start_time 1700000000\n"), "{text}");
        assert!(text.ends_with("exit_code 2\n"), "{text}");
        for line in text.lines() {
            let words: Vec<_> = line.split_whitespace().collect();
            assert_eq!(words.len(), 2, "{line}");
            assert!(KNOWN.contains(&words[0]), "{line}");
        }
        assert!(text.contains("real 0:02.34\n"), "{text}");
    }

    #[test]
    fn elapsed_format() {
        assert_eq!(elapsed(Duration::from_millis(0)), "0:00.00");
        assert_eq!(elapsed(Duration::from_millis(61_500)), "1:01.50");
        assert_eq!(elapsed(Duration::from_secs(3_725)), "1:02:05");
    }

    #[test]
    fn running_then_completed() {
        let d = tempfile::tempdir().unwrap();
        let job = start(d.path(), "vzdump-x-101").unwrap();
        let running = job.running_path().to_owned();
        let text = std::fs::read_to_string(&running).unwrap();
        assert!(
            text.starts_with("start_time ") && text.lines().count() == 1,
            "{text}"
        );
        let dir = running.parent().unwrap().to_owned();
        job.finish(0, Duration::from_secs(1));
        assert!(!running.exists());
        let done = std::fs::read_to_string(dir.join("vzdump-x-101")).unwrap();
        assert!(done.ends_with("exit_code 0\n"));
        // Only the completed file is left: no temp files.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}
