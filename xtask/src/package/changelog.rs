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

/// The inverse of [`rfc2822`], for any `+HHMM`/`-HHMM` offset.
pub(super) fn parse_rfc2822(date: &str) -> Option<u64> {
    let zoned = jiff::fmt::rfc2822::parse(date).ok()?;
    u64::try_from(zoned.timestamp().as_second()).ok()
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

/// `Sat, 21 Nov 2026 16:20:40 +0000`, the date format of Debian changelogs (UTC, the
/// day always two digits as `date -R` writes it; jiff's RFC 2822 printer drops the 0).
pub(super) fn rfc2822(epoch: u64) -> String {
    let ts = i64::try_from(epoch)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}
