//! Calendar arithmetic for retention buckets, without a calendar dependency.
//!
//! `retentions` puts a file into buckets by `datetime.fromtimestamp(ts)`, i.e. the
//! **local** time of the process. [`Zone`] is that conversion: [`Zone::Local`] asks the C
//! library (`localtime_r` after `tzset`, so `TZ` and `/etc/localtime` apply exactly as for
//! Python), [`Zone::Fixed`] applies a constant UTC offset and is what the unit tests use,
//! so that their expectations do not depend on the machine's time zone.

use nix::libc;

/// A broken-down time: the civil date and time of a timestamp in some zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// How timestamps become civil times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The process's local time zone (`TZ`, else `/etc/localtime`), like `retentions`.
    Local,
    /// A fixed offset east of UTC, in seconds (`Fixed(0)` is UTC).
    Fixed(i64),
}

unsafe extern "C" {
    fn tzset();
}

impl Zone {
    /// The civil time of `ts` (seconds since the epoch) in this zone.
    pub fn civil(self, ts: i64) -> Civil {
        match self {
            Zone::Fixed(offset) => civil_utc(ts + offset),
            Zone::Local => local(ts).unwrap_or_else(|| civil_utc(ts)),
        }
    }
}

fn local(ts: i64) -> Option<Civil> {
    static TZSET: std::sync::Once = std::sync::Once::new();
    // SAFETY: tzset only reads the environment and initialises libc's zone state; the
    // Once makes it run before any localtime_r of this process, and only once.
    TZSET.call_once(|| unsafe { tzset() });
    #[allow(clippy::useless_conversion)] // time_t is 32 bits on some targets
    let t: libc::time_t = ts.try_into().ok()?;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is the
    // reentrant variant and writes only into `tm`.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        // A leap second (60) is folded into 59, as Python's fromtimestamp does.
        second: u32::try_from(tm.tm_sec.min(59)).ok()?,
    })
}

/// Civil time in UTC of `ts` seconds since the epoch.
pub fn civil_utc(ts: i64) -> Civil {
    let days = ts.div_euclid(86_400);
    let rem = ts.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
    }
}

pub use hookrun_core::time::{civil_from_days, days_from_civil};

/// ISO weekday of a day number: Monday = 1 ... Sunday = 7 (1970-01-01 was a Thursday).
pub fn iso_weekday(days: i64) -> u32 {
    ((days + 3).rem_euclid(7) + 1) as u32
}

/// Whether an ISO year has 53 weeks: it starts on a Thursday, or is a leap year that
/// starts on a Wednesday.
fn has_53_weeks(year: i64) -> bool {
    let jan1 = iso_weekday(days_from_civil(year, 1, 1));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    jan1 == 4 || (leap && jan1 == 3)
}

/// ISO 8601 year and week of a civil date, like Python's `date.isocalendar()[:2]`.
pub fn iso_week(year: i64, month: u32, day: u32) -> (i64, u32) {
    let days = days_from_civil(year, month, day);
    let ordinal = days - days_from_civil(year, 1, 1) + 1;
    let week = (ordinal - i64::from(iso_weekday(days)) + 10).div_euclid(7);
    if week < 1 {
        let prev = year - 1;
        (prev, if has_53_weeks(prev) { 53 } else { 52 })
    } else if week == 53 && !has_53_weeks(year) {
        (year + 1, 1)
    } else {
        (year, week as u32)
    }
}

/// Seconds since the epoch of a UTC civil time (test and tool helper).
pub fn utc_timestamp(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
}

/// `YYYY-MM-DD HH:MM:SS`, like Python's `str(datetime)` (for debug output).
pub fn format_civil(c: Civil) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for days in -800_000..800_000 {
            if days % 997 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn weekdays() {
        assert_eq!(iso_weekday(0), 4, "1970-01-01 was a Thursday");
        assert_eq!(iso_weekday(days_from_civil(2024, 1, 1)), 1, "Monday");
        assert_eq!(iso_weekday(days_from_civil(2021, 1, 3)), 7, "Sunday");
    }

    /// Values checked against a printed calendar and Python's isocalendar().
    #[test]
    fn iso_weeks_at_year_edges() {
        let cases = [
            ((2020, 12, 31), (2020, 53)), // Thursday: 2020 has 53 weeks
            ((2021, 1, 1), (2020, 53)),   // Friday, still 2020-W53
            ((2021, 1, 3), (2020, 53)),   // Sunday, last day of 2020-W53
            ((2021, 1, 4), (2021, 1)),    // Monday, first day of 2021-W01
            ((2019, 12, 30), (2020, 1)),  // Monday: 2020-W01 starts in 2019
            ((2019, 12, 29), (2019, 52)), // Sunday
            ((2024, 12, 30), (2025, 1)),  // Monday
            ((2026, 1, 1), (2026, 1)),    // Thursday: 2026-W01
            ((2027, 1, 1), (2026, 53)),   // Friday: 2026 has 53 weeks
            ((2015, 12, 31), (2015, 53)), // Thursday
            ((2016, 1, 1), (2015, 53)),
            ((2016, 1, 4), (2016, 1)),
            ((2018, 1, 1), (2018, 1)), // Monday
            ((2017, 1, 1), (2016, 52)),
            ((2032, 12, 31), (2032, 53)), // leap year starting on Thursday
            ((2004, 12, 31), (2004, 53)), // leap year starting on Thursday
            ((2008, 12, 29), (2009, 1)),
        ];
        for ((y, m, d), want) in cases {
            assert_eq!(iso_week(y, m, d), want, "{y}-{m:02}-{d:02}");
        }
    }

    #[test]
    fn fixed_offsets() {
        let ts = utc_timestamp(2026, 1, 31, 23, 30, 0);
        assert_eq!(Zone::Fixed(0).civil(ts).day, 31);
        let c = Zone::Fixed(3600).civil(ts);
        assert_eq!((c.year, c.month, c.day, c.hour), (2026, 2, 1, 0));
        let c = Zone::Fixed(-3600 * 5).civil(utc_timestamp(2026, 1, 1, 2, 0, 0));
        assert_eq!((c.year, c.month, c.day, c.hour), (2025, 12, 31, 21));
        assert_eq!(format_civil(c), "2025-12-31 21:00:00");
    }
}
