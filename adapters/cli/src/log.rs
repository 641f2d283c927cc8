//! `hookrun log`: recent run records as a table, with async hooks that are still running.
//!
//! The records are read from the end of `runs.jsonl` (then of logrotate's `runs.jsonl.1`,
//! `runs.jsonl.2.gz`, ... when more are asked for), so `hookrun log` takes the same
//! time and memory on a record file of a year as on one of a day. Everything printed
//! for a terminal passes through [`clean`]: object and hook names come from platforms
//! and file names, and a newline or an escape sequence in them must not be able to draw
//! a row of its own on an administrator's terminal. `--json` prints the values exactly.

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use hookrun_core::record::{self, OutcomeKind, RunRecord};
use hookrun_core::supervise;

use crate::cli::LogArgs;

/// The most rotated files looked at beyond `runs.jsonl` (logrotate's default rule keeps 12).
const MAX_ROTATED: u32 = 100;

/// A row: a finished record, or a running async hook (`lost` when its supervisor died).
struct Row {
    record: RunRecord,
    lost: bool,
}

impl Row {
    fn outcome(&self) -> &'static str {
        if self.lost {
            "lost"
        } else {
            self.record.outcome.as_str()
        }
    }

    fn failed(&self) -> bool {
        self.lost || failed(&self.record)
    }
}

pub(crate) fn failed(r: &RunRecord) -> bool {
    !matches!(
        r.outcome,
        OutcomeKind::Ok | OutcomeKind::Skipped | OutcomeKind::Running
    )
}

/// A value as it may be shown on a terminal: control characters (C0, DEL, C1) and the
/// Unicode controls that reorder or hide text (bidi overrides and isolates, zero-width
/// marks, line and paragraph separators) are written as escapes such as `\n`,
/// `\u{1b}`; everything else is unchanged.
pub fn clean(s: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c,
                '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
                | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
    }
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The record files of one log directory, newest first: `runs.jsonl`, then logrotate's
/// `runs.jsonl.1`, `runs.jsonl.1.gz`, `runs.jsonl.2.gz`, ... as far as they go.
pub(crate) fn record_files(dir: &Path) -> Vec<PathBuf> {
    let base = dir.join(record::RECORDS_FILE);
    let mut out = vec![base.clone()];
    for k in 1..=MAX_ROTATED {
        let plain = PathBuf::from(format!("{}.{k}", base.display()));
        let gz = PathBuf::from(format!("{}.{k}.gz", base.display()));
        let mut any = false;
        for p in [plain, gz] {
            if p.is_file() {
                out.push(p);
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    out
}

pub(crate) fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Streams every record of `path` (gzip or plain) to `f`; returns the unparseable lines.
pub(crate) fn scan_file(path: &Path, f: impl FnMut(RunRecord)) -> std::io::Result<usize> {
    let file = File::open(path)?;
    if is_gz(path) {
        // MultiGzDecoder: logrotate's `compress` writes one member, but concatenated
        // members are valid gzip too.
        record::scan_records(BufReader::new(flate2::read::MultiGzDecoder::new(file)), f)
    } else {
        record::scan_records(BufReader::new(file), f)
    }
}

/// The last `n` records `keep` accepts from one record file, oldest first.
fn last_of_file(
    path: &Path,
    n: usize,
    mut keep: impl FnMut(&RunRecord) -> bool,
) -> std::io::Result<(Vec<RunRecord>, usize)> {
    if !is_gz(path) {
        return record::last_records(path, n, keep);
    }
    // gzip cannot be read backwards: stream it, keeping only the newest n.
    let mut ring = VecDeque::new();
    let bad = scan_file(path, |r| {
        if keep(&r) {
            if ring.len() == n {
                ring.pop_front();
            }
            if n > 0 {
                ring.push_back(r);
            }
        }
    })?;
    Ok((ring.into(), bad))
}

/// The log directories to read: the platform's, or every one the config names.
pub(crate) fn log_dirs(platform: Option<&str>) -> anyhow::Result<BTreeSet<PathBuf>> {
    let config = crate::load_config()?;
    // Platform tables may move log_dir; read every directory the config names.
    Ok(match platform {
        Some(p) => [config.settings_for(p).log_dir].into(),
        None => std::iter::once(config.settings_for("-").log_dir)
            .chain(
                config
                    .platform_names()
                    .map(|p| config.settings_for(p).log_dir),
            )
            .collect(),
    })
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

pub fn main(args: &LogArgs) -> anyhow::Result<i32> {
    let result = if args.summary {
        summary(args)
    } else {
        table(args)
    };
    // `hookrun log | head` is not an error.
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        r => r,
    }
}

fn table(args: &LogArgs) -> anyhow::Result<i32> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let dirs = log_dirs(args.platform.as_deref())?;
    let keep = |r: &RunRecord| matches_filters(args, r) && (!args.failed || failed(r));
    let mut rows = Vec::new();
    let mut unreadable = 0;
    for dir in &dirs {
        let mut found = 0;
        for path in record_files(dir) {
            if found >= args.last {
                break;
            }
            match last_of_file(&path, args.last - found, keep) {
                Ok((recs, bad)) => {
                    unreadable += bad;
                    found += recs.len();
                    rows.extend(recs.into_iter().map(|record| Row {
                        record,
                        lost: false,
                    }));
                }
                Err(e) if not_found(&e) => {}
                Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
            }
        }
        for (entry, alive) in supervise::running_entries(dir) {
            let row = Row {
                record: entry.record,
                lost: !alive,
            };
            if matches_filters(args, &row.record) && (!args.failed || row.failed()) {
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| a.record.time.cmp(&b.record.time));
    let skip = rows.len().saturating_sub(args.last);
    let rows = &rows[skip..];

    if args.json {
        for r in rows {
            let mut value = serde_json::to_value(&r.record)?;
            value["outcome"] = r.outcome().into();
            writeln!(out, "{value}")?;
        }
        return Ok(0);
    }
    if rows.is_empty() {
        let shown: Vec<String> = dirs
            .iter()
            .map(|d| clean(&d.join(record::RECORDS_FILE).display().to_string()).into_owned())
            .collect();
        writeln!(
            out,
            "no run records{} in {}",
            if args.failed { " of failed runs" } else { "" },
            shown.join(", ")
        )?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<19}  {:<14} {:<13} {:<10} {:<22} {:<5} {:<11} {:>4} {:>9}",
        "time (UTC)", "platform", "phase", "object", "hook", "mode", "outcome", "exit", "duration"
    )?;
    for r in rows {
        let rec = &r.record;
        let time = rec.time.get(..19).unwrap_or(&rec.time).replace('T', " ");
        let exit = match (rec.exit_code, rec.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("s{s}"),
            _ => "-".into(),
        };
        let duration = if rec.outcome == OutcomeKind::Running {
            "-".to_string()
        } else {
            format!("{:.2}s", rec.duration_ms as f64 / 1000.0)
        };
        writeln!(
            out,
            "{:<19}  {:<14} {:<13} {:<10} {:<22} {:<5} {:<11} {:>4} {:>9}",
            clean(&time),
            clean(&rec.platform),
            clean(&rec.phase),
            clean(rec.object.as_deref().unwrap_or("-")),
            clean(&rec.hook),
            clean(&rec.mode),
            r.outcome(),
            exit,
            duration
        )?;
    }
    if unreadable > 0 {
        eprintln!(
            "hookrun: warning: {unreadable} line(s) of the records could not be parsed and were left out"
        );
    }
    Ok(0)
}

/// `--platform` and `--hook`.
pub(crate) fn matches_filters(args: &LogArgs, r: &RunRecord) -> bool {
    args.platform.as_ref().is_none_or(|p| &r.platform == p)
        && args.hook.as_ref().is_none_or(|h| &r.hook == h)
}

/// The most durations kept per hook and object for the median; past it, a uniform
/// sample of that many (reservoir sampling) stands for all of them.
const MEDIAN_SAMPLE: usize = 10_000;
/// Runs in the sparkline.
const SPARK_RUNS: usize = 20;
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// What `--summary` keeps of one hook and object: bounded, whatever the records' size.
#[derive(Default)]
struct Stats {
    runs: u64,
    failures: u64,
    last_success: Option<(f64, String)>,
    last_failure: Option<(f64, String)>,
    max_ms: u64,
    durations: Vec<u64>,
    /// The newest [`SPARK_RUNS`] runs: duration and whether it failed.
    recent: VecDeque<(u64, bool)>,
    /// Reservoir sampling's generator state (xorshift; any fixed seed is fine).
    rng: u64,
}

impl Stats {
    fn add(&mut self, r: &RunRecord, at: f64) {
        self.runs += 1;
        let bad = failed(r);
        if bad {
            self.failures += 1;
            if self.last_failure.as_ref().is_none_or(|(t, _)| at >= *t) {
                self.last_failure = Some((at, r.time.clone()));
            }
        } else if r.outcome == OutcomeKind::Ok
            && self.last_success.as_ref().is_none_or(|(t, _)| at >= *t)
        {
            self.last_success = Some((at, r.time.clone()));
        }
        self.max_ms = self.max_ms.max(r.duration_ms);
        if self.durations.len() < MEDIAN_SAMPLE {
            self.durations.push(r.duration_ms);
        } else {
            if self.rng == 0 {
                self.rng = 0x9e37_79b9_7f4a_7c15;
            }
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let slot = self.rng % self.runs;
            if (slot as usize) < MEDIAN_SAMPLE {
                self.durations[slot as usize] = r.duration_ms;
            }
        }
        if self.recent.len() == SPARK_RUNS {
            self.recent.pop_front();
        }
        self.recent.push_back((r.duration_ms, bad));
    }

    fn median_ms(&mut self) -> u64 {
        if self.durations.is_empty() {
            return 0;
        }
        self.durations.sort_unstable();
        let n = self.durations.len();
        if n % 2 == 1 {
            self.durations[n / 2]
        } else {
            (self.durations[n / 2 - 1] + self.durations[n / 2]) / 2
        }
    }

    /// The recent runs as bars from the shortest (▁) to the longest (█) of those that
    /// did not fail (all ▄ when they took the same time); a failure is `x`.
    fn sparkline(&self) -> Vec<(char, bool)> {
        let ok = self.recent.iter().filter(|(_, bad)| !bad).map(|(d, _)| *d);
        let (lo, hi) = (ok.clone().min().unwrap_or(0), ok.max().unwrap_or(0));
        self.recent
            .iter()
            .map(|&(d, bad)| {
                if bad {
                    ('x', true)
                } else if hi == lo {
                    (SPARKS[SPARKS.len() / 2 - 1], false)
                } else {
                    let top = SPARKS.len() as u64 - 1;
                    let i = ((d - lo) * top + (hi - lo) / 2) / (hi - lo);
                    (SPARKS[i as usize], false)
                }
            })
            .collect()
    }
}

fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn ago(at: Option<f64>, now: f64) -> String {
    let Some(at) = at else {
        return "-".into();
    };
    let s = (now - at).max(0.0) as u64;
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{}m ago", s / 60),
        3600..172_800 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `hookrun log --summary`: streams every record file once, oldest first.
fn summary(args: &LogArgs) -> anyhow::Result<i32> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let dirs = log_dirs(args.platform.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let cutoff = args.since.map(|p| now - p.as_secs_f64());
    let mut stats: std::collections::BTreeMap<(String, String, String), Stats> =
        std::collections::BTreeMap::new();
    let mut unreadable = 0;
    for dir in &dirs {
        for path in record_files(dir).into_iter().rev() {
            // A file last written before the period holds nothing of it.
            if let (Some(cutoff), Ok(meta)) = (cutoff, std::fs::metadata(&path))
                && let Ok(mtime) = meta.modified()
                && let Ok(m) = mtime.duration_since(std::time::UNIX_EPOCH)
                && m.as_secs_f64() < cutoff
            {
                continue;
            }
            let result = scan_file(&path, |r| {
                if !matches_filters(args, &r) {
                    return;
                }
                let at = hookrun_core::time::parse_rfc3339(&r.time).unwrap_or(0.0);
                if cutoff.is_some_and(|c| at < c) {
                    return;
                }
                let key = (
                    r.platform.clone(),
                    r.hook.clone(),
                    r.object.clone().unwrap_or_default(),
                );
                stats.entry(key).or_default().add(&r, at);
            });
            match result {
                Ok(bad) => unreadable += bad,
                Err(e) if not_found(&e) => {}
                Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
            }
        }
    }
    if args.failed {
        stats.retain(|_, s| s.failures > 0);
    }

    if args.json {
        for ((platform, hook, object), mut s) in stats {
            let median = s.median_ms();
            let recent: Vec<serde_json::Value> = s
                .recent
                .iter()
                .map(|&(d, bad)| serde_json::json!({"duration_ms": d, "failed": bad}))
                .collect();
            let v = serde_json::json!({
                "platform": platform,
                "hook": hook,
                "object": (!object.is_empty()).then_some(object),
                "runs": s.runs,
                "failures": s.failures,
                "last_success": s.last_success.map(|(_, t)| t),
                "last_failure": s.last_failure.map(|(_, t)| t),
                "median_ms": median,
                "max_ms": s.max_ms,
                "recent": recent,
            });
            writeln!(out, "{v}")?;
        }
        return Ok(0);
    }
    if stats.is_empty() {
        writeln!(
            out,
            "no run records{}{} in {}",
            if args.failed { " of failed runs" } else { "" },
            args.since.map_or(String::new(), |p| format!(
                " in the last {}",
                human_period(p)
            )),
            dirs.iter()
                .map(|d| clean(&d.join(record::RECORDS_FILE).display().to_string()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        return Ok(0);
    }
    use std::io::IsTerminal as _;
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let red = |text: &str, on: bool| {
        if colour && on {
            format!("\x1b[31m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let rows: Vec<[String; 10]> = stats
        .into_iter()
        .map(|((platform, hook, object), mut s)| {
            let median = s.median_ms();
            let spark: String = s
                .sparkline()
                .into_iter()
                .map(|(c, bad)| red(&c.to_string(), bad))
                .collect();
            let failing =
                s.last_failure.as_ref().map(|f| f.0) > s.last_success.as_ref().map(|o| o.0);
            [
                clean(&platform).into_owned(),
                clean(&hook).into_owned(),
                clean(if object.is_empty() { "-" } else { &object }).into_owned(),
                s.runs.to_string(),
                red(&s.failures.to_string(), s.failures > 0),
                ago(s.last_success.map(|o| o.0), now),
                red(&ago(s.last_failure.map(|f| f.0), now), failing),
                human_ms(median),
                human_ms(s.max_ms),
                spark,
            ]
        })
        .collect();
    let head = [
        "platform",
        "hook",
        "object",
        "runs",
        "fail",
        "last ok",
        "last failure",
        "median",
        "max",
        "last 20",
    ];
    // Widths by visible characters: colour codes take no room.
    let visible = |s: &str| {
        let mut n = 0;
        let mut in_esc = false;
        for c in s.chars() {
            match (in_esc, c) {
                (false, '\x1b') => in_esc = true,
                (true, 'm') => in_esc = false,
                (false, _) => n += 1,
                _ => {}
            }
        }
        n
    };
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(visible(cell));
        }
    }
    // Text columns left-aligned, numbers right-aligned; the sparkline last, unpadded.
    let right = [
        false, false, false, true, true, true, true, true, true, false,
    ];
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(width[i].saturating_sub(visible(cell)));
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else if right[i] {
                out.push_str(&pad);
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&pad);
            }
        }
        out.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&head.map(str::to_owned)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    if unreadable > 0 {
        eprintln!(
            "hookrun: warning: {unreadable} line(s) of the records could not be parsed and were left out"
        );
    }
    Ok(0)
}

fn human_period(p: std::time::Duration) -> String {
    let s = p.as_secs();
    match s {
        _ if s.is_multiple_of(604_800) => format!("{}w", s / 604_800),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_what_could_draw_on_a_terminal() {
        assert!(matches!(clean("vm-101 ok"), Cow::Borrowed(_)));
        assert_eq!(
            clean("a\nb\x1b[2Jc\r\t\u{7f}"),
            "a\\nb\\u{1b}[2Jc\\r\\t\\u{7f}"
        );
        assert_eq!(clean("x\u{202e}y\u{2066}"), "x\\u{202e}y\\u{2066}");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(clean("grüße"), "grüße");
    }

    fn r(outcome: OutcomeKind, ms: u64) -> RunRecord {
        RunRecord {
            time: "2026-11-21T15:30:12.345Z".into(),
            run_id: "r".into(),
            platform: "p".into(),
            phase: "x".into(),
            object: None,
            hook: "h".into(),
            mode: "sync".into(),
            outcome,
            exit_code: None,
            signal: None,
            duration_ms: ms,
            job: "j".into(),
            message: None,
        }
    }

    #[test]
    fn stats_median_max_and_sparkline() {
        let mut s = Stats::default();
        for (i, ms) in [100, 300, 200, 800].into_iter().enumerate() {
            s.add(&r(OutcomeKind::Ok, ms), i as f64);
        }
        s.add(&r(OutcomeKind::Failed, 50), 10.0);
        assert_eq!((s.runs, s.failures, s.max_ms), (5, 1, 800));
        assert_eq!(s.median_ms(), 200);
        assert_eq!(s.last_success.as_ref().unwrap().0, 3.0);
        assert_eq!(s.last_failure.as_ref().unwrap().0, 10.0);
        let line: String = s.sparkline().into_iter().map(|(c, _)| c).collect();
        assert_eq!(line, "▁▃▂█x");
        for i in 0..30 {
            s.add(&r(OutcomeKind::Ok, 10), 20.0 + f64::from(i));
        }
        assert_eq!(s.sparkline().len(), SPARK_RUNS);
        // The sample stays bounded past MEDIAN_SAMPLE runs, and still finds the median.
        let mut big = Stats::default();
        for i in 0..(MEDIAN_SAMPLE as u64 * 3) {
            big.add(&r(OutcomeKind::Ok, 1000 + i % 2), 0.0);
        }
        assert_eq!(big.durations.len(), MEDIAN_SAMPLE);
        assert!((1000..=1001).contains(&big.median_ms()));
    }

    #[test]
    fn human_durations_and_ages() {
        assert_eq!(human_ms(1234), "1.2s");
        assert_eq!(human_ms(252_000), "4m12s");
        assert_eq!(human_ms(7_380_000), "2h03m");
        assert_eq!(ago(None, 0.0), "-");
        assert_eq!(ago(Some(0.0), 30.0), "just now");
        assert_eq!(ago(Some(0.0), 9.0 * 3600.0), "9h ago");
        assert_eq!(ago(Some(0.0), 3.0 * 86_400.0), "3d ago");
    }
}
