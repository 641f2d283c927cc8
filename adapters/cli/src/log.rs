//! `hookrun log`: recent run records as a table, with async hooks that are still running.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hookrun_core::record::{self, OutcomeKind, RunRecord};
use hookrun_core::supervise;

use crate::cli::LogArgs;

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
        self.lost
            || !matches!(
                self.record.outcome,
                OutcomeKind::Ok | OutcomeKind::Skipped | OutcomeKind::Running
            )
    }
}

pub fn main(args: &LogArgs) -> anyhow::Result<i32> {
    let config = crate::load_config()?;
    // Platform tables may move log_dir; read every directory the config names.
    let dirs: BTreeSet<PathBuf> = match &args.platform {
        Some(p) => [config.settings_for(p).log_dir].into(),
        None => std::iter::once(config.settings_for("-").log_dir)
            .chain(
                config
                    .platform_names()
                    .map(|p| config.settings_for(p).log_dir),
            )
            .collect(),
    };
    let mut rows = Vec::new();
    let mut unreadable = 0;
    for dir in &dirs {
        let path = dir.join(record::RECORDS_FILE);
        match record::read_records(&path) {
            Ok((recs, bad)) => {
                unreadable += bad;
                rows.extend(recs.into_iter().map(|record| Row {
                    record,
                    lost: false,
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        }
        for (entry, alive) in supervise::running_entries(dir) {
            rows.push(Row {
                record: entry.record,
                lost: !alive,
            });
        }
    }
    rows.retain(|r| {
        args.platform
            .as_ref()
            .is_none_or(|p| &r.record.platform == p)
            && args.hook.as_ref().is_none_or(|h| &r.record.hook == h)
            && (!args.failed || r.failed())
    });
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
            .map(|d| d.join(record::RECORDS_FILE).display().to_string())
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
            time,
            rec.platform,
            rec.phase,
            rec.object.as_deref().unwrap_or("-"),
            rec.hook,
            rec.mode,
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
