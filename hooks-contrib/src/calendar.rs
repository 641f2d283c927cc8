//! Calendar arithmetic for retention buckets, on jiff.
//!
//! `retentions` puts a file into buckets by `datetime.fromtimestamp(ts)`, i.e. the
//! **local** time of the process. [`Zone`] is that conversion: [`Zone::Local`] is jiff's
//! system zone (`TZ`, else `/etc/localtime`, the same sources as the C library Python
//! uses), [`Zone::Fixed`] applies a constant UTC offset and is what the unit tests use,
//! so that their expectations do not depend on the machine's time zone.

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};

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

/// Read once per process: a retention run converts every file's time, and the zone
/// cannot change under a running process any more than it can under Python's.
static LOCAL: LazyLock<TimeZone> = LazyLock::new(TimeZone::system);

impl Zone {
    /// The civil time of `ts` (seconds since the epoch) in this zone. A time or offset
    /// outside jiff's range (years -9999..=9999, offsets under 26 h) falls back to UTC.
    pub fn civil(self, ts: i64) -> Civil {
        let civil = match self {
            Zone::Local => civil_in(&LOCAL, ts),
            Zone::Fixed(offset) => i32::try_from(offset)
                .ok()
                .and_then(|o| Offset::from_seconds(o).ok())
                .and_then(|o| civil_in(&TimeZone::fixed(o), ts)),
        };
        civil.unwrap_or_else(|| civil_utc(ts))
    }
}

fn civil_in(zone: &TimeZone, ts: i64) -> Option<Civil> {
    let dt = zone.to_datetime(Timestamp::from_second(ts).ok()?);
    Some(Civil {
        year: i64::from(dt.year()),
        month: u32::try_from(dt.month()).ok()?,
        day: u32::try_from(dt.day()).ok()?,
        hour: u32::try_from(dt.hour()).ok()?,
        minute: u32::try_from(dt.minute()).ok()?,
        second: u32::try_from(dt.second()).ok()?,
    })
}

/// Civil time in UTC of `ts` seconds since the epoch (jiff's range; beyond it the
/// proleptic Gregorian arithmetic of `hookrun_core::time`).
pub fn civil_utc(ts: i64) -> Civil {
    civil_in(&TimeZone::UTC, ts).unwrap_or_else(|| {
        let (year, month, day) = hookrun_core::time::civil_from_days(ts.div_euclid(86_400));
        let rem = ts.rem_euclid(86_400);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    })
}

/// ISO 8601 year and week of a civil date, like Python's `date.isocalendar()[:2]`.
/// A date jiff cannot represent (outside years -9999..=9999) gets week 0 of its year.
pub fn iso_week(year: i64, month: u32, day: u32) -> (i64, u32) {
    let date = i16::try_from(year)
        .ok()
        .and_then(|y| Date::new(y, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok());
    match date {
        Some(d) => {
            let w = d.iso_week_date();
            (i64::from(w.year()), w.week().unsigned_abs().into())
        }
        None => (year, 0),
    }
}

/// Seconds since the epoch of a UTC civil time (test and tool helper).
pub fn utc_timestamp(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    hookrun_core::time::days_from_civil(year, month, day) * 86_400
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
    fn utc_beyond_jiffs_range() {
        let c = civil_utc(utc_timestamp(12_000, 3, 1, 4, 5, 6));
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (12_000, 3, 1, 4, 5, 6)
        );
        assert_eq!(
            civil_utc(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
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
