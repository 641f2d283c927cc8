//! Checkmk job files for `# mk-job` hooks (DESIGN §5, `mk_job = "native"`).
//!
//! The layout is the agent's `mk-job` script's: while the hook runs,
//! `<mk_job_dir>/<user>/<job>.<pid>running` holds `start_time <epoch>`; when it ends,
//! `<mk_job_dir>/<user>/<job>` is replaced atomically with exactly the keys Checkmk
//! knows — older Checkmk servers crash on any other two-word line. The agent only reads
//! files owned by the user the directory is named after, which is the user we run as.
//!
//! The agent prints every regular file in each user directory, dotfiles included, so
//! nothing else may ever be there: temp files are written in
//! `<mk_job_dir>/.hookrun-tmp.<user>/`, which the agent's `*` glob over the job
//! directory never visits, and renamed into place. Like `mk-job`, each run removes the
//! running files of dead earlier runs of the same job (a killed dispatcher, a reboot):
//! Checkmk would report them as running forever. "Dead" is decided by the pid in the
//! name *and* that process's start time, so a reused pid does not keep a stale file.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Where temp files are written, outside every directory the agent reads.
    tmp: PathBuf,
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
    let user = user.map_or_else(user_name, str::to_owned);
    let dir = mk_job_dir.join(&user);
    let euid = nix::unistd::geteuid().as_raw();
    if let Err(e) = crate::perms::open_trusted_dir(&dir, euid, Some(0o755)) {
        tracing::warn!(
            "mk-job: cannot create {}: {e}; no Checkmk job file for {job} (check mk_job_dir in the config)",
            dir.display()
        );
        return None;
    }
    let tmp = match temp_dir(mk_job_dir, &user) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "mk-job: cannot use {} for temp files: {e}; no Checkmk job file for {job}",
                mk_job_dir.join(format!(".hookrun-tmp.{user}")).display()
            );
            return None;
        }
    };
    remove_stale_running(&dir, job);
    let start = SystemTime::now();
    let running = dir.join(format!("{job}.{}running", std::process::id()));
    let content = format!("start_time {}\n", epoch(start));
    if let Err(e) = write_atomically(&tmp, &running, content.as_bytes()) {
        tracing::warn!(
            "mk-job: cannot write {}: {e}; no Checkmk job file for {job}",
            running.display()
        );
        return None;
    }
    Some(RunningJob {
        dir,
        tmp,
        job: job.to_owned(),
        running,
        start,
        usage_before: Usage::children_now(),
    })
}

/// `<mk_job_dir>/.hookrun-tmp.<user>`, created 0700 if missing; refused unless it is a
/// real directory (not a symlink) of ours. Temp files older than an hour in it are left
/// from a crash and removed.
fn temp_dir(mk_job_dir: &Path, user: &str) -> std::io::Result<PathBuf> {
    let tmp = mk_job_dir.join(format!(".hookrun-tmp.{user}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&tmp)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other(
            "it is not a directory owned by this user; remove it",
        ));
    }
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        for e in entries.flatten() {
            if e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(tmp)
}

/// Removes `<job>.<pid>running` files in `dir` whose owner is gone (see
/// [`owner_alive`]); other jobs' files and our own are left alone.
fn remove_stale_running(dir: &Path, job: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix("running"))
            .and_then(|n| n.strip_prefix(job))
            .and_then(|n| n.strip_prefix('.'))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(written) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if !owner_alive(pid, written) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(
                    "mk-job: removed {}: the run that wrote it (pid {pid}) is gone",
                    e.path().display()
                ),
                Err(err) => tracing::warn!(
                    "mk-job: cannot remove the stale {}: {err}",
                    e.path().display()
                ),
            }
        }
    }
}

/// Whether the process that wrote a running file at `written` may still be `pid`: a
/// process with that pid exists and started no later than the file was written. A pid
/// reused after the owner died (or after a reboot) belongs to a process started later.
pub fn owner_alive(pid: u32, written: SystemTime) -> bool {
    // A zombie nobody reaps (a container's PID 1 often does not) is as dead as it gets.
    if crate::contain::is_zombie(pid) {
        return false;
    }
    match process_start(pid) {
        // The start time is known to a clock tick (10 ms); allow for that.
        Some(started) => started <= written + Duration::from_millis(50),
        None => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// When process `pid` started, from `/proc/<pid>/stat` (field 22, clock ticks after
/// boot) and the boot time (`CLOCK_REALTIME - CLOCK_BOOTTIME`, which is what that
/// field counts from).
fn process_start(pid: u32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)? as u64;
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let since_boot = Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
    let boot = SystemTime::now().checked_sub(since_boot)?;
    Some(
        boot + Duration::from_secs(ticks / hz)
            + Duration::from_nanos(ticks % hz * 1_000_000_000 / hz),
    )
}

impl RunningJob {
    pub fn running_path(&self) -> &Path {
        &self.running
    }

    /// Writes the completed file and removes the running one. `usage` is the hook's own
    /// (`wait4`); without it, the children's totals around the run stand in.
    pub fn finish(self, exit_code: i32, real: Duration, usage: Option<Usage>) {
        let usage = usage.unwrap_or_else(|| Usage::since(self.usage_before));
        let text = completed_text(epoch(self.start), exit_code, real, &usage);
        let path = self.dir.join(&self.job);
        if let Err(e) = write_atomically(&self.tmp, &path, text.as_bytes()) {
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

/// Temp file in `tmp` (on the same filesystem, outside the agent's view), fsync,
/// rename: readers see all or nothing, and nothing but finished files.
fn write_atomically(tmp: &Path, path: &Path, content: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique names: a file left by a crash (or by another process that had our pid)
    // must never block a write with create_new.
    let mut attempt = 0;
    let (temp, mut f) = loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let temp = tmp.join(format!(
            "{name}.{}.{}.{nanos}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)
        {
            Ok(f) => break (temp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = f
        .write_all(content)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
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
        job.finish(0, Duration::from_secs(1), None);
        assert!(!running.exists());
        let done = std::fs::read_to_string(dir.join("vzdump-x-101")).unwrap();
        assert!(done.ends_with("exit_code 0\n"));
        // Only the completed file is left: no temp files.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // The temp directory is beside the user directory, hidden from the agent's glob,
        // and empty.
        let tmp = d.path().join(format!(".hookrun-tmp.{}", user_name()));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(names, [user_name()]);
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn running_files_of_dead_runs_of_the_same_job_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(user_name());
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "start_time 1\n").unwrap();
            p
        };
        let dead = dead_pid();
        let stale = touch(&format!("job-a.{dead}running"));
        // Alive, and started before it wrote its file: a run in progress.
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let in_progress = touch(&format!("job-a.{}running", live.id()));
        // The same pid, but the file is older than the process: the pid was reused.
        let mut reused = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let reused_file = touch(&format!("job-a.{}running", reused.id()));
        std::fs::File::options()
            .write(true)
            .open(&reused_file)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        // Other jobs, even with a dead owner, are not this run's business.
        let other = touch(&format!("job-b.{dead}running"));
        let longer_name = touch(&format!("job-a.x.{dead}running"));
        let completed = touch("job-a");

        let job = start(d.path(), "job-a").unwrap();
        let _ = (live.kill(), live.wait(), reused.kill(), reused.wait());
        assert!(!stale.exists(), "dead owner");
        assert!(!reused_file.exists(), "reused pid");
        for kept in [&in_progress, &other, &longer_name, &completed] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert!(job.running_path().exists());
        job.finish(0, Duration::from_secs(1), None);
    }

    #[test]
    fn owner_alive_needs_the_pid_and_a_start_before_the_file() {
        let now = SystemTime::now();
        assert!(owner_alive(std::process::id(), now));
        assert!(!owner_alive(
            std::process::id(),
            now - Duration::from_secs(3600)
        ));
        assert!(!owner_alive(dead_pid(), now));
    }

    #[test]
    fn a_leftover_temp_file_never_blocks_a_write() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(format!(".hookrun-tmp.{}", user_name()));
        std::fs::create_dir_all(&tmp).unwrap();
        // What the old naming scheme would pick, and an old crash's leftover.
        let pid = std::process::id();
        std::fs::write(tmp.join(format!("j.{pid}.tmp")), "x").unwrap();
        let old = tmp.join(format!("j.{pid}.0.0.tmp"));
        std::fs::write(&old, "x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        for _ in 0..3 {
            let job = start(d.path(), "j").unwrap();
            job.finish(0, Duration::from_secs(1), None);
        }
        assert!(!old.exists(), "temp files older than an hour are removed");
        let user_dir = d.path().join(user_name());
        let names: Vec<String> = std::fs::read_dir(&user_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["j"]);
    }

    #[test]
    fn a_temp_dir_that_is_a_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path(),
            d.path().join(format!(".hookrun-tmp.{}", user_name())),
        )
        .unwrap();
        assert!(start(d.path(), "j").is_none());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
