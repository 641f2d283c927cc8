//! The changelog: its newest entry, its dates (RFC 2822, as Debian writes them) and the
//! workspace version it must match.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use super::*;

/// `[workspace.package] version` from the root manifest.
pub(crate) fn workspace_version(root: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(root.join("Cargo.toml"))?;
    let doc: toml::Table = text.parse().context("Cargo.toml does not parse")?;
    doc.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("no [workspace.package] version in Cargo.toml")
}

/// The newest entry of a Debian changelog.
pub struct ChangelogTop {
    pub version: String,
    /// `Name <email>`.
    pub maintainer: String,
    /// Seconds since the epoch.
    pub date: u64,
}

/// Reads the newest entry's first line (`hookrun (VERSION) ...`) and its trailer line
/// (` -- NAME <EMAIL>  Sat, 21 Nov 2026 16:20:40 +0000`).
pub fn changelog_top(changelog: &str) -> anyhow::Result<ChangelogTop> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .strip_prefix(&format!("{SOURCE} ("))
        .and_then(|r| r.split_once(')'))
        .map(|(v, _)| v.to_owned())
        .with_context(|| format!("pkg/changelog does not start with '{SOURCE} (VERSION)'"))?;
    let (maintainer, date) = changelog
        .lines()
        .find_map(|l| l.strip_prefix(" -- "))
        .and_then(|l| l.split_once(">  "))
        .context("pkg/changelog's newest entry has no ' -- NAME <EMAIL>  DATE' line")?;
    let parsed = parse_rfc2822(date)
        .with_context(|| format!("pkg/changelog: cannot read the date '{date}'"))?;
    Ok(ChangelogTop {
        version,
        maintainer: format!("{maintainer}>"),
        date: parsed,
    })
}

pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The inverse of [`rfc2822`], for any `+HHMM`/`-HHMM` offset.
pub(super) fn parse_rfc2822(date: &str) -> Option<u64> {
    let fields: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, offset] = fields.as_slice() else {
        return None;
    };
    let month = u32::try_from(MONTHS.iter().position(|m| m == month)? + 1).ok()?;
    let days = hookrun_core::time::days_from_civil(year.parse().ok()?, month, day.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    let (sign, hhmm) = offset.split_at_checked(1)?;
    let hhmm: i64 = hhmm.parse().ok()?;
    let offset = (hhmm / 100 * 3600 + hhmm % 100 * 60) * if sign == "-" { -1 } else { 1 };
    u64::try_from(days * 86400 + h * 3600 + m * 60 + sec - offset).ok()
}

/// `SOURCE_DATE_EPOCH`, else the last commit's time.
pub(crate) fn source_date_epoch(root: &Path) -> anyhow::Result<u64> {
    let value = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v,
        _ => output(Command::new("git").args(["log", "-1", "--pretty=%ct"]).current_dir(root))
            .context("SOURCE_DATE_EPOCH is not set and `git log` cannot provide it (not a git checkout?): set SOURCE_DATE_EPOCH")?,
    };
    value.trim().parse().with_context(|| {
        format!(
            "SOURCE_DATE_EPOCH '{}' is not a number of seconds",
            value.trim()
        )
    })
}

/// `Sat, 21 Nov 2026 16:20:40 +0000`, the date format of Debian changelogs.
pub(super) fn rfc2822(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let days = epoch / 86400;
    let secs = epoch % 86400;
    let (y, m, d) = hookrun_core::time::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
