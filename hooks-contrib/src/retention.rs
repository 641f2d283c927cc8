//! The retention engine: which files to keep and which to prune, with the exact
//! decisions of thk-systems `retentions` (`RetentionLogic.process_retention_logic`,
//! reference `proxmox.md` §4.3). Pure: it sees timestamps and sizes, never the disk.
//!
//! 1. Files are ordered newest first (ties keep the caller's order).
//! 2. For each mode with a count, in the fixed order minutes, hours, days, weeks (ISO),
//!    months, quarters, 13-week blocks, years: files are put into buckets by their
//!    **local** civil time ([`Zone`]); buckets are visited newest first. A bucket whose
//!    key is not older than the key of the oldest file kept so far (by a finer mode) is
//!    skipped entirely; in any other bucket, the newest file that is not kept yet and is
//!    strictly older than the last kept file is kept, until the mode's count is reached.
//!    So N counts *buckets that contain files*, not calendar periods back from now.
//! 3. `--last N` then keeps the N newest files as well; it moves no cut-off.
//! 4. With any rule given, everything not kept is pruned; with none, everything is kept.
//! 5. The filters `--max-files`, `--max-size`, `--max-age` (in that order) move kept
//!    files to prune.

use std::fmt;

use crate::calendar::{Civil, Zone, iso_week};

/// A bucket granularity, in the order the engine applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Quarters,
    Week13,
    Years,
}

/// Every mode, finest first: the order of the hierarchical cut-off.
pub const MODES: [Mode; 8] = [
    Mode::Minutes,
    Mode::Hours,
    Mode::Days,
    Mode::Weeks,
    Mode::Months,
    Mode::Quarters,
    Mode::Week13,
    Mode::Years,
];

impl Mode {
    /// The name `retentions` prints (`Keeping for mode 'days' ...`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Minutes => "minutes",
            Mode::Hours => "hours",
            Mode::Days => "days",
            Mode::Weeks => "weeks",
            Mode::Months => "months",
            Mode::Quarters => "quarters",
            Mode::Week13 => "week13",
            Mode::Years => "years",
        }
    }

    /// The bucket a civil time falls into. Keys compare like `retentions`' string keys
    /// (`%Y-%m-%d`, `2021-W01`, `2026-Q1`, ...), i.e. chronologically.
    pub fn key(self, c: Civil) -> Key {
        let (y, mo, d, h, mi) = (
            c.year,
            i64::from(c.month),
            i64::from(c.day),
            i64::from(c.hour),
            i64::from(c.minute),
        );
        let parts = match self {
            Mode::Minutes => [y, mo, d, h, mi],
            Mode::Hours => [y, mo, d, h, 0],
            Mode::Days => [y, mo, d, 0, 0],
            Mode::Weeks => {
                let (iy, w) = iso_week(y, c.month, c.day);
                [iy, i64::from(w), 0, 0, 0]
            }
            Mode::Months => [y, mo, 0, 0, 0],
            Mode::Quarters => [y, (mo - 1) / 3 + 1, 0, 0, 0],
            Mode::Week13 => {
                let (iy, w) = iso_week(y, c.month, c.day);
                [iy, (i64::from(w) - 1) / 13 + 1, 0, 0, 0]
            }
            Mode::Years => [y, 0, 0, 0, 0],
        };
        Key { mode: self, parts }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A bucket key of one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    mode: Mode,
    parts: [i64; 5],
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e] = self.parts;
        match self.mode {
            Mode::Minutes => write!(f, "{a:04}-{b:02}-{c:02}-{d:02}-{e:02}"),
            Mode::Hours => write!(f, "{a:04}-{b:02}-{c:02}-{d:02}"),
            Mode::Days => write!(f, "{a:04}-{b:02}-{c:02}"),
            Mode::Weeks => write!(f, "{a:04}-W{b:02}"),
            Mode::Months => write!(f, "{a:04}-{b:02}"),
            Mode::Quarters => write!(f, "{a:04}-Q{b}"),
            Mode::Week13 => write!(f, "{a:04}-week13-{b}"),
            Mode::Years => write!(f, "{a:04}"),
        }
    }
}

/// What to keep. Counts of `None` (or 0) mean the rule is not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub minutes: Option<u32>,
    pub hours: Option<u32>,
    pub days: Option<u32>,
    pub weeks: Option<u32>,
    pub months: Option<u32>,
    pub quarters: Option<u32>,
    pub week13: Option<u32>,
    pub years: Option<u32>,
    pub last: Option<u32>,
    pub max_files: Option<u32>,
    /// Bytes, and the limit as the user wrote it (for messages).
    pub max_size: Option<(u64, String)>,
    /// Seconds, and the limit as the user wrote it.
    pub max_age: Option<(i64, String)>,
    /// "Now" for `max_age` (the tool's start time).
    pub now: i64,
}

impl Policy {
    pub fn count(&self, mode: Mode) -> Option<u32> {
        let n = match mode {
            Mode::Minutes => self.minutes,
            Mode::Hours => self.hours,
            Mode::Days => self.days,
            Mode::Weeks => self.weeks,
            Mode::Months => self.months,
            Mode::Quarters => self.quarters,
            Mode::Week13 => self.week13,
            Mode::Years => self.years,
        };
        n.filter(|&n| n > 0)
    }

    /// Whether any retention rule (a mode or `last`) is given.
    pub fn has_rules(&self) -> bool {
        MODES.iter().any(|&m| self.count(m).is_some()) || self.last.is_some_and(|n| n > 0)
    }
}

/// One file as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Seconds since the epoch (the chosen age attribute, truncated to whole seconds).
    pub time: i64,
    pub size: u64,
}

/// Why a file is kept or pruned; the last decision made about a file wins, as in
/// `retentions`' output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Kept as the `n`-th of `of` buckets of `mode`.
    Mode {
        mode: Mode,
        n: u32,
        of: u32,
        bucket: String,
    },
    /// Kept as the `n`-th newest file (`--last`).
    Last { n: u32, of: u32 },
    /// Kept because no rule was given.
    NoRules,
    /// Pruned: no rule kept it.
    NotMatched,
    /// Pruned by `--max-files`: it was the `index`-th kept file.
    MaxFiles { index: usize, max: u32 },
    /// Pruned by `--max-size`: the running total reached `total` bytes.
    MaxSize { total: u64, limit: String },
    /// Pruned by `--max-age`: it is `age` seconds old.
    MaxAge { age: i64, limit: String },
}

impl Reason {
    pub fn keeps(&self) -> bool {
        matches!(
            self,
            Reason::Mode { .. } | Reason::Last { .. } | Reason::NoRules
        )
    }

    /// The message `retentions` prints for this decision.
    pub fn message(&self) -> String {
        match self {
            Reason::Mode { mode, n, of, .. } => {
                format!("Keeping for mode '{mode}' {n:02} / {of:02}")
            }
            Reason::Last { n, of } => format!("Keeping last {n:02}/{of:02}"),
            Reason::NoRules => "Keeping: no retention rules specified".into(),
            Reason::NotMatched => "Pruning: not matched by any retention rule".into(),
            Reason::MaxFiles { index, max } => {
                format!("Filtering: max total count of files exceeded: {index:02} > {max:02}")
            }
            Reason::MaxSize { total, limit } => format!(
                "Filtering: max total size exceeded: {} > {limit}",
                format_size(*total)
            ),
            Reason::MaxAge { age, limit } => format!(
                "Filtering: max total age exceeded: {} > {limit}",
                format_time(*age)
            ),
        }
    }
}

/// The decision for every input item, by input index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub reasons: Vec<Reason>,
    /// Input indices, newest first (the order decisions are reported and files deleted).
    pub order: Vec<usize>,
}

impl Plan {
    pub fn kept(&self) -> impl Iterator<Item = usize> + '_ {
        self.order
            .iter()
            .copied()
            .filter(|&i| self.reasons[i].keeps())
    }

    pub fn pruned(&self) -> impl Iterator<Item = usize> + '_ {
        self.order
            .iter()
            .copied()
            .filter(|&i| !self.reasons[i].keeps())
    }
}

/// Decides for every item. `items` may be in any order; ties in time keep their input
/// order (callers pass files sorted by name, newest name first, for a stable outcome).
pub fn plan(items: &[Item], policy: &Policy, zone: Zone) -> Plan {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].time));
    let time = |i: usize| items[i].time;

    let mut decided: Vec<Option<Reason>> = vec![None; items.len()];
    let mut last_keep_time = i64::MAX;
    let mut applied = false;

    for mode in MODES {
        let Some(wanted) = policy.count(mode) else {
            continue;
        };
        applied = true;
        // Buckets in key order; inside a bucket, newest first (the order of `order`).
        let mut buckets: std::collections::BTreeMap<Key, Vec<usize>> = Default::default();
        for &i in &order {
            buckets
                .entry(mode.key(zone.civil(time(i))))
                .or_default()
                .push(i);
        }
        let cutoff = (last_keep_time != i64::MAX).then(|| mode.key(zone.civil(last_keep_time)));
        let mut count = 0;
        for (key, files) in buckets.iter().rev() {
            if cutoff.is_some_and(|c| *key >= c) {
                continue; // consumed by a finer mode
            }
            if count >= wanted {
                break;
            }
            let first = files
                .iter()
                .copied()
                .find(|&i| decided[i].is_none() && time(i) < last_keep_time);
            if let Some(i) = first {
                count += 1;
                decided[i] = Some(Reason::Mode {
                    mode,
                    n: count,
                    of: wanted,
                    bucket: key.to_string(),
                });
                last_keep_time = time(i);
            }
        }
    }

    if let Some(n) = policy.last.filter(|&n| n > 0) {
        applied = true;
        for (index, &i) in order.iter().take(n as usize).enumerate() {
            if decided[i].is_none() {
                decided[i] = Some(Reason::Last {
                    n: index as u32 + 1,
                    of: n,
                });
            }
        }
    }

    let mut reasons: Vec<Reason> = decided
        .into_iter()
        .map(|d| {
            d.unwrap_or(if applied {
                Reason::NotMatched
            } else {
                Reason::NoRules
            })
        })
        .collect();

    // Filters, each over the files still kept, newest first.
    let kept_now = |reasons: &[Reason]| -> Vec<usize> {
        order
            .iter()
            .copied()
            .filter(|&i| reasons[i].keeps())
            .collect()
    };
    if let Some(max) = policy.max_files {
        for (pos, i) in kept_now(&reasons).into_iter().enumerate() {
            if pos >= max as usize {
                reasons[i] = Reason::MaxFiles {
                    index: pos + 1,
                    max,
                };
            }
        }
    }
    if let Some((limit, text)) = &policy.max_size {
        let mut total: u64 = 0;
        for i in kept_now(&reasons) {
            total = total.saturating_add(items[i].size);
            if total > *limit {
                reasons[i] = Reason::MaxSize {
                    total,
                    limit: text.clone(),
                };
            }
        }
    }
    if let Some((secs, text)) = &policy.max_age {
        let threshold = policy.now - secs;
        for i in kept_now(&reasons) {
            if time(i) <= threshold {
                reasons[i] = Reason::MaxAge {
                    age: policy.now - time(i),
                    limit: text.clone(),
                };
            }
        }
    }
    Plan { reasons, order }
}

/// `retentions`' size format: binary units, at most two decimals, trailing zeros cut.
pub fn format_size(bytes: u64) -> String {
    // (sic) `retentions` lists E before P; kept so the messages are the same.
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "E", "P"];
    let (mut value, mut idx) = (bytes as f64, 0);
    while value >= 1024.0 && idx < UNITS.len() - 1 {
        value /= 1024.0;
        idx += 1;
    }
    format!("{}{}", trim_decimals(value), UNITS[idx])
}

/// `retentions`' age format: the largest unit of y, q, m (30 d), w, d, h that fits.
pub fn format_time(seconds: i64) -> String {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400),
        ("q", 90 * 86_400),
        ("m", 30 * 86_400),
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3600),
        ("", 1),
    ];
    for (suffix, unit) in UNITS {
        if seconds >= unit {
            return format!("{}{suffix}", trim_decimals(seconds as f64 / unit as f64));
        }
    }
    trim_decimals(seconds as f64)
}

fn trim_decimals(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Parses a `--max-size` value (`12`, `10.5M`, `500 G`): binary K/M/G/T/P/E.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim().to_ascii_uppercase();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(p) => (&s[..p], s[p..].trim_start()),
        None => (s.as_str(), ""),
    };
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        "E" => 1 << 60,
        _ => return Err(format!("Invalid size format: '{s}'")),
    };
    if !valid_decimal(num) {
        return Err(format!("Invalid size format: '{s}'"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("Invalid size format: '{s}'"))?;
    Ok((v * mult as f64) as u64)
}

/// Parses a `--max-age` value (`3600`, `1h`, `1 d`, `2w`, `1m` = 30 d, `1q` = 90 d,
/// `1y` = 365 d) into seconds; it must be at least one second.
pub fn parse_age(text: &str) -> Result<i64, String> {
    let s = text.trim_matches(' ');
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(p) => {
            let rest = &s[p..];
            (&s[..p], rest.strip_prefix(' ').unwrap_or(rest))
        }
        None => (s, ""),
    };
    let mult: i64 = match unit {
        "" => 1,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "q" => 90 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(format!("Invalid time format: '{s}'")),
    };
    if !valid_decimal(num) {
        return Err(format!("Invalid time format: '{s}'"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("Invalid time format: '{s}'"))?;
    let secs = v * mult as f64;
    if secs < 1.0 {
        return Err(format!("Time value must be >= 1 s: '{s}'"));
    }
    Ok(secs as i64)
}

/// `[0-9]+(\.[0-9]*)?`
fn valid_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
