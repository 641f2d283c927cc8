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
            println!("{value}");
        }
        return Ok(0);
    }
    if rows.is_empty() {
        let shown: Vec<String> = dirs
            .iter()
            .map(|d| clean(&d.join(record::RECORDS_FILE).display().to_string()).into_owned())
            .collect();
        println!(
            "no run records{} in {}",
            if args.failed { " of failed runs" } else { "" },
            shown.join(", ")
        );
        return Ok(0);
    }
    println!(
        "{:<19}  {:<14} {:<13} {:<10} {:<22} {:<5} {:<11} {:>4} {:>9}",
        "time (UTC)", "platform", "phase", "object", "hook", "mode", "outcome", "exit", "duration"
    );
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
        println!(
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
        );
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
}
