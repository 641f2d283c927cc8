//! Prometheus textfile metrics (`metrics_textfile`): after every hook run, sync or
//! async, the file is rewritten with one set of series per platform, phase, hook and
//! object, for node_exporter's textfile collector.
//!
//! The file is its own state: a writer reads it, changes the series of the run it
//! reports and writes everything back, so the counters count since the file was
//! created. Writers (concurrent dispatches, async supervisors) take turns under an
//! `flock` on `.<name>.lock` beside the file, waiting at most [`LOCK_WAIT`]; each writes
//! a temporary file in the same directory and renames it over the old one, so the
//! collector only ever reads a whole file and no writer loses another's series.
//!
//! Quick runs are batched ([`record_run`]): ten hooks of a second's phase cost one
//! rewrite, so the sync path stays within the bench's budget.
//!
//! Cardinality is bounded: a series set not updated for [`MAX_AGE`] (a hook deleted, a
//! guest destroyed) is dropped at the next rewrite, and beyond [`MAX_KEYS`] sets the
//! least recently updated go first. Label values longer than [`MAX_LABEL`] bytes are
//! cut. A failed update never fails a hook: it is reported once per process (one
//! dispatch, or one async supervisor).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::record::{OutcomeKind, RunRecord};

/// The longest a writer waits for another to finish its rewrite.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Series sets not updated for this long are dropped: longer than a monthly job's gap.
pub const MAX_AGE: Duration = Duration::from_secs(35 * 24 * 3600);
/// The most (platform, phase, hook, object) sets kept in the file.
pub const MAX_KEYS: usize = 2000;
/// Longer label values (an object is any argv string) are cut to this many bytes.
pub const MAX_LABEL: usize = 256;
/// The most of an existing file that is read back: more than hookrun ever writes
/// ([`MAX_KEYS`] sets of at most ~11 KB with every label at [`MAX_LABEL`]), so only a
/// file someone else filled is cut, and then rewritten as ours.
const MAX_FILE: u64 = 32 << 20;

static REPORTED: AtomicBool = AtomicBool::new(false);
/// Set after a lock wait ran out: the rest of this dispatch does not wait again (a
/// stuck writer or a hung file system must not add [`LOCK_WAIT`] to every hook).
static GAVE_UP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is still locked by another hookrun after {}s; this run's series were not written, and the rest of this dispatch does not wait for it again",
        LOCK_WAIT.as_secs()
    )]
    LockTimeout { path: PathBuf },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MetricsError + 'a {
    move |source| MetricsError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Runs ending within this time of the oldest one not yet written are written
/// together: a phase of many quick hooks rewrites the file once, not once per hook.
pub const BATCH: Duration = Duration::from_secs(1);

/// Runs not written yet: the file, the record and when it ended.
struct Pending {
    runs: Vec<(PathBuf, RunRecord, SystemTime)>,
    /// When the oldest of `runs` was added.
    oldest: Option<Instant>,
    /// The flusher thread and the exit hook are set up (once per process).
    started: bool,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    runs: Vec::new(),
    oldest: None,
    started: false,
});
/// Wakes the flusher when runs are added.
static ADDED: Condvar = Condvar::new();

/// Reports `record` (a finished run) in the textfile at `path`, when there is one. A
/// run that took [`BATCH`] or more is written at once, with any before it; quicker ones
/// are written together [`BATCH`] after the first of them by a background thread, and
/// whatever is left when the process exits is written then — a phase of ten quick hooks
/// rewrites the file once, not ten times (each rewrite costs a few hundred
/// microseconds, most of it the rename). A failure is a warning, once per process; the
/// hook's result is untouched.
pub fn record_run(path: Option<&Path>, record: &RunRecord) {
    let Some(path) = path else { return };
    if record.outcome == OutcomeKind::Running || GAVE_UP.load(Ordering::Relaxed) {
        return;
    }
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pending
        .runs
        .push((path.to_owned(), record.clone(), SystemTime::now()));
    let first = pending.oldest.is_none();
    let oldest = *pending.oldest.get_or_insert_with(Instant::now);
    if Duration::from_millis(record.duration_ms) >= BATCH || oldest.elapsed() >= BATCH {
        flush(&mut pending, false);
        return;
    }
    if !pending.started {
        pending.started = true;
        // SAFETY: registers a plain function; libc calls it from exit(3), which every
        // hookrun binary ends with (std::process::exit).
        unsafe {
            nix::libc::atexit(flush_at_exit);
        }
        start_flusher();
    }
    // The flusher already waits for the oldest one's time otherwise.
    if first {
        ADDED.notify_one();
    }
}

/// The thread that writes batched runs when they are [`BATCH`] old. It starts with
/// every signal blocked: the dispatcher takes its signals through a signalfd, which
/// only works while no thread can receive them.
fn start_flusher() {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old));
    // Without a thread to spare, the runs are written with the next slow one, or at exit.
    let _ = std::thread::Builder::new()
        .name("hookrun-metrics".into())
        .spawn(flusher);
    if blocked.is_ok() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

fn flusher() {
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        pending = match pending.oldest {
            None => ADDED
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Some(oldest) => {
                let left = BATCH.saturating_sub(oldest.elapsed());
                if left.is_zero() {
                    flush(&mut pending, false);
                    pending
                } else {
                    ADDED
                        .wait_timeout(pending, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            }
        };
    }
}

/// Writes the runs not written yet, now (a worker about to hand over to its guard).
pub fn flush_now() {
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !pending.runs.is_empty() {
        flush(&mut pending, false);
    }
}

extern "C" fn flush_at_exit() {
    // Nothing may unwind into libc.
    let _ = std::panic::catch_unwind(|| {
        let mut pending = PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flush(&mut pending, true);
    });
}

/// Writes what is pending. `at_exit`: called from exit(3), after glibc has destroyed
/// the thread-locals tracing needs, so a failure is reported without it.
fn flush(pending: &mut Pending, at_exit: bool) {
    pending.oldest = None;
    let runs = std::mem::take(&mut pending.runs);
    let mut by_file: BTreeMap<PathBuf, Vec<(RunRecord, SystemTime)>> = BTreeMap::new();
    for (path, record, ended) in runs {
        by_file.entry(path).or_default().push((record, ended));
    }
    for (path, runs) in by_file {
        if GAVE_UP.load(Ordering::Relaxed) {
            return;
        }
        let result = update(&path, &runs);
        if let Err(MetricsError::LockTimeout { .. }) = &result {
            GAVE_UP.store(true, Ordering::Relaxed);
        }
        if let Err(e) = result
            && !REPORTED.swap(true, Ordering::Relaxed)
        {
            let message = format!(
                "metrics: {e}; hooks still run, but the Prometheus textfile is not updated (check metrics_textfile in the config, and that its directory exists and root can write it)"
            );
            if at_exit {
                crate::logging::warn_at_exit(&message);
            } else {
                tracing::warn!("{message}");
            }
        }
    }
}

/// One series set: a platform, phase, hook and object ("" when there is none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    platform: String,
    phase: String,
    hook: String,
    object: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Series {
    start: f64,
    end: f64,
    duration: f64,
    exit_code: Option<i64>,
    outcome: String,
    last_success: Option<f64>,
    runs: u64,
    failures: u64,
}

const START: &str = "hookrun_hook_last_start_timestamp_seconds";
const END: &str = "hookrun_hook_last_end_timestamp_seconds";
const DURATION: &str = "hookrun_hook_last_duration_seconds";
const EXIT: &str = "hookrun_hook_last_exit_code";
const SUCCESS: &str = "hookrun_hook_last_success";
const OUTCOME: &str = "hookrun_hook_last_outcome";
const SUCCESS_TIME: &str = "hookrun_hook_last_success_timestamp_seconds";
const RUNS: &str = "hookrun_hook_runs_total";
const FAILURES: &str = "hookrun_hook_failures_total";

/// Name, type and help of every family, in the order they are written.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        START,
        "gauge",
        "When the hook's last run started (Unix time).",
    ),
    (END, "gauge", "When the hook's last run ended (Unix time)."),
    (
        DURATION,
        "gauge",
        "How long the hook's last run took, lock wait included for sync hooks.",
    ),
    (
        EXIT,
        "gauge",
        "Exit code of the hook's last run; 128+N when signal N ended it (143 after a timeout's SIGTERM).",
    ),
    (
        SUCCESS,
        "gauge",
        "1 when the hook's last run ended ok, else 0.",
    ),
    (
        OUTCOME,
        "gauge",
        "The outcome of the hook's last run, in the outcome label (ok, failed, timeout, signal, refused, spawn-error, skipped); always 1.",
    ),
    (
        SUCCESS_TIME,
        "gauge",
        "When the hook's last successful run ended (Unix time).",
    ),
    (
        RUNS,
        "counter",
        "Runs of the hook since this file was created (skipped ones included).",
    ),
    (
        FAILURES,
        "counter",
        "Runs of the hook that did not end ok or skipped, since this file was created.",
    ),
];

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_LABEL {
        return s.to_owned();
    }
    let mut end = MAX_LABEL;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Merges `runs` (records and when they ended) into the file, under its lock.
fn update(path: &Path, runs: &[(RunRecord, SystemTime)]) -> Result<(), MetricsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(io("open the lock file", &lock_path))?;
    lock_bounded(&lock, &lock_path)?;

    // Not through a symlink: the file is rewritten world-readable.
    let existing = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path);
    let mut all = match existing {
        Ok(f) => {
            let size = f.metadata().map_or(0, |m| m.len()).min(MAX_FILE);
            let mut text = String::with_capacity(size as usize + 1);
            f.take(MAX_FILE)
                .read_to_string(&mut text)
                .map_err(io("read", path))?;
            parse(&text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut latest = 0.0f64;
    for (record, ended) in runs {
        let end = secs(*ended);
        latest = latest.max(end);
        let key = Key {
            platform: cut(&record.platform),
            phase: cut(&record.phase),
            hook: cut(&record.hook),
            object: cut(record.object.as_deref().unwrap_or("")),
        };
        let s = all.entry(key).or_default();
        let duration = record.duration_ms as f64 / 1000.0;
        s.start = crate::time::parse_rfc3339(&record.time).unwrap_or(end - duration);
        s.end = end;
        s.duration = duration;
        s.exit_code = match (record.exit_code, record.signal) {
            (Some(c), _) => Some(i64::from(c)),
            (None, Some(sig)) => Some(128 + i64::from(sig)),
            (None, None) => None,
        };
        s.outcome = record.outcome.as_str().to_owned();
        s.runs += 1;
        let failed = !matches!(record.outcome, OutcomeKind::Ok | OutcomeKind::Skipped);
        if failed {
            s.failures += 1;
        }
        if record.outcome == OutcomeKind::Ok {
            s.last_success = Some(end);
        }
    }
    age_out(&mut all, latest);

    let text = render(&all);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Under the lock, a file of this name can only be left over from a writer that
    // died between creating and renaming it (with the same pid, after a reboot).
    let _ = std::fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        // node_exporter runs as its own user: the file must be world-readable.
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| {
            preallocate(&f, text.len());
            f.write_all(text.as_bytes())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", &tmp)(e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("replace", path)(e));
    }
    Ok(())
}

/// Allocates the temporary file's blocks before it is written. On ext4, renaming a file
/// whose blocks are still delayed over an existing one forces their allocation and
/// starts their writeback inside `rename` (`auto_da_alloc`): half a millisecond the
/// dispatch would wait at its end. Written into preallocated blocks, the data is not
/// delayed, and the rename only renames. Where the file system cannot preallocate, the
/// write goes on as before; a full disk then fails the write, as it would anyway.
fn preallocate(f: &File, len: usize) {
    if let Ok(len) = i64::try_from(len)
        && len > 0
    {
        let _ = nix::fcntl::fallocate(f, nix::fcntl::FallocateFlags::empty(), 0, len);
    }
}

/// `flock` with a bounded wait: a writer stuck under the lock (stopped, on a hung file
/// system) must not hold up every hook after it.
fn lock_bounded(lock: &File, path: &Path) -> Result<(), MetricsError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: flock on a descriptor this function's caller keeps open.
        let rc =
            unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(io("lock", path)(e));
        }
        if Instant::now() >= deadline {
            return Err(MetricsError::LockTimeout {
                path: path.to_owned(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Drops what is older than [`MAX_AGE`], then the oldest beyond [`MAX_KEYS`].
fn age_out(all: &mut BTreeMap<Key, Series>, now: f64) {
    let oldest = now - MAX_AGE.as_secs_f64();
    all.retain(|_, s| s.end >= oldest);
    if all.len() > MAX_KEYS {
        let mut ends: Vec<f64> = all.values().map(|s| s.end).collect();
        ends.sort_by(f64::total_cmp);
        let cutoff = ends[all.len() - MAX_KEYS];
        all.retain(|_, s| s.end >= cutoff);
        // Ties at the cutoff may leave a few too many; drop them by key order.
        while all.len() > MAX_KEYS {
            let k = all
                .iter()
                .find(|(_, s)| s.end == cutoff)
                .map(|(k, _)| k.clone());
            match k {
                Some(k) => all.remove(&k),
                None => break,
            };
        }
    }
}

/// A label value per the text exposition format: backslash, double quote and newline
/// escaped.
fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(k: &Key, outcome: Option<&str>) -> String {
    let mut l = String::with_capacity(64);
    for (name, v) in [
        ("platform", &k.platform),
        ("phase", &k.phase),
        ("hook", &k.hook),
        ("object", &k.object),
    ] {
        if !l.is_empty() {
            l.push(',');
        }
        l.push_str(name);
        l.push_str("=\"");
        escape(v, &mut l);
        l.push('"');
    }
    if let Some(o) = outcome {
        l.push_str(",outcome=\"");
        escape(o, &mut l);
        l.push('"');
    }
    l
}

fn render(all: &BTreeMap<Key, Series>) -> String {
    let mut out = String::with_capacity(256 + all.len() * 1200);
    for &(family, kind, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
        for (k, s) in all {
            let value = match family {
                START => Some(s.start),
                END => Some(s.end),
                DURATION => Some(s.duration),
                EXIT => s.exit_code.map(|c| c as f64),
                SUCCESS => Some(if s.outcome == "ok" { 1.0 } else { 0.0 }),
                OUTCOME => Some(1.0),
                SUCCESS_TIME => s.last_success,
                RUNS => Some(s.runs as f64),
                FAILURES => Some(s.failures as f64),
                _ => None,
            };
            if let Some(v) = value {
                let outcome = (family == OUTCOME).then_some(s.outcome.as_str());
                let _ = writeln!(out, "{family}{{{}}} {v}", labels(k, outcome));
            }
        }
    }
    out
}

/// Reads back what [`render`] wrote; anything else in the file is ignored (and so
/// dropped at the rewrite).
fn parse(text: &str) -> BTreeMap<Key, Series> {
    let mut all: BTreeMap<Key, Series> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let get = |n: &str| labels.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let (Some(platform), Some(phase), Some(hook), Some(object)) =
            (get("platform"), get("phase"), get("hook"), get("object"))
        else {
            continue;
        };
        let outcome = get("outcome");
        let s = all
            .entry(Key {
                platform,
                phase,
                hook,
                object,
            })
            .or_default();
        match name {
            START => s.start = value,
            END => s.end = value,
            DURATION => s.duration = value,
            EXIT => s.exit_code = Some(value as i64),
            OUTCOME => s.outcome = outcome.unwrap_or_default(),
            SUCCESS_TIME => s.last_success = Some(value),
            RUNS => s.runs = value as u64,
            FAILURES => s.failures = value as u64,
            _ => {}
        }
    }
    // A set whose outcome or end never parsed is not one of ours.
    all.retain(|_, s| !s.outcome.is_empty() && s.end > 0.0);
    all
}

type Labels = Vec<(String, String)>;

fn parse_line(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let open = line.find('{')?;
    let name = &line[..open];
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
            break;
        }
        let eq = rest.find("=\"")?;
        let label = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        rest = &rest[end?..];
        labels.push((label, value));
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hook: &str, object: Option<&str>, outcome: OutcomeKind) -> RunRecord {
        RunRecord {
            time: "2026-11-21T15:30:12.345Z".into(),
            run_id: "r1".into(),
            platform: "vzdump".into(),
            phase: "backup-end".into(),
            object: object.map(str::to_owned),
            hook: hook.into(),
            mode: "sync".into(),
            outcome,
            exit_code: (outcome == OutcomeKind::Failed).then_some(3),
            signal: (outcome == OutcomeKind::Timeout).then_some(15),
            duration_ms: 1500,
            job: "j".into(),
            message: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn counts_runs_and_failures_and_round_trips_odd_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookrun.prom");
        let odd = "a\"b\\c\nd{e}=,f";
        let t = 1_795_000_000;
        update(&path, &[(rec("10-x", Some(odd), OutcomeKind::Ok), at(t))]).unwrap();
        // Two runs in one rewrite, as a batch of quick hooks is written.
        update(
            &path,
            &[
                (rec("10-x", Some(odd), OutcomeKind::Failed), at(t + 10)),
                (rec("20-y", None, OutcomeKind::Timeout), at(t + 20)),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let all = parse(&text);
        assert_eq!(all.len(), 2, "{text}");
        let x = &all[&Key {
            platform: "vzdump".into(),
            phase: "backup-end".into(),
            hook: "10-x".into(),
            object: odd.into(),
        }];
        assert_eq!((x.runs, x.failures), (2, 1));
        assert_eq!(x.outcome, "failed");
        assert_eq!(x.exit_code, Some(3));
        assert_eq!(x.last_success, Some(t as f64));
        assert_eq!(x.end, (t + 10) as f64);
        assert_eq!(x.duration, 1.5);
        assert!(
            text.contains(r#"object="a\"b\\c\nd{e}=,f""#),
            "label escaping: {text}"
        );
        let y = all.values().find(|s| s.outcome == "timeout").unwrap();
        assert_eq!(y.exit_code, Some(143));
        assert_eq!(y.last_success, None);
        // Rewritten from its own output, nothing changes.
        assert_eq!(render(&parse(&text)), text);
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n == "hookrun.prom" || n == ".hookrun.prom.lock"),
            "{names:?}"
        );
    }

    #[test]
    fn old_and_excess_series_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let t = 1_795_000_000;
        update(&path, &[(rec("gone", None, OutcomeKind::Ok), at(t))]).unwrap();
        let later = t + MAX_AGE.as_secs() + 1;
        update(&path, &[(rec("kept", None, OutcomeKind::Ok), at(later))]).unwrap();
        let all = parse(&std::fs::read_to_string(&path).unwrap());
        let hooks: Vec<&str> = all.keys().map(|k| k.hook.as_str()).collect();
        assert_eq!(hooks, ["kept"]);

        let mut many = BTreeMap::new();
        for i in 0..MAX_KEYS + 10 {
            many.insert(
                Key {
                    platform: "p".into(),
                    phase: "x".into(),
                    hook: format!("h{i:05}"),
                    object: String::new(),
                },
                Series {
                    end: (t + i as u64) as f64,
                    outcome: "ok".into(),
                    ..Series::default()
                },
            );
        }
        age_out(&mut many, (t + 100_000) as f64);
        assert_eq!(many.len(), MAX_KEYS);
        assert!(many.keys().next().unwrap().hook == "h00010");
    }

    #[test]
    fn a_held_lock_is_waited_for_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let lock = File::create(dir.path().join(".m.prom.lock")).unwrap();
        // SAFETY: flock on a descriptor held for the test.
        assert_eq!(
            unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) },
            0
        );
        // A second open file description of the same lock file contends for it.
        let started = Instant::now();
        let e = update(&path, &[(rec("a", None, OutcomeKind::Ok), at(1))]).unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(e, MetricsError::LockTimeout { .. }), "{e}");
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT + Duration::from_secs(2),
            "{waited:?}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_failing_update_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/m.prom");
        let e = update(&missing, &[(rec("a", None, OutcomeKind::Ok), at(1))]).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        record_run(Some(&missing), &rec("a", None, OutcomeKind::Ok));

        // A symlink in the textfile's place is not followed, neither read nor written.
        let target = dir.path().join("secret");
        std::fs::write(&target, "not metrics\n").unwrap();
        let link = dir.path().join("m.prom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = update(&link, &[(rec("a", None, OutcomeKind::Ok), at(1))]).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "not metrics\n");
        assert!(link.is_symlink());
    }
}
