//! Five-field cron expressions (`minute hour day-of-month month day-of-week`), UTC.
//!
//! Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, and names for
//! months (`JAN`–`DEC`) and weekdays (`SUN`–`SAT`; `0` and `7` are Sunday). As in Vixie cron,
//! when both day-of-month and day-of-week are restricted, a day matches if either does.
//! `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` are accepted.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::error::{Error, Result};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    dom_any: bool,
    dow_any: bool,
    text: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parse one field into a bit set of allowed values in `lo..=hi`.
fn field(s: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + name_base);
        }
        v.parse::<u32>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `a/n` means from a to the end, stepping n.
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl FromStr for Cron {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let expanded = match s.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let bad = |m: String| Error::invalid(format!("cron {s:?}: {m}"));
        if f.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields (minute hour day month weekday), got {}",
                f.len()
            )));
        }
        let minutes = field(f[0], 0, 59, &[], 0).map_err(|m| bad(format!("minute: {m}")))?;
        let hours = field(f[1], 0, 23, &[], 0).map_err(|m| bad(format!("hour: {m}")))?;
        let days = field(f[2], 1, 31, &[], 0).map_err(|m| bad(format!("day of month: {m}")))?;
        let months = field(f[3], 1, 12, &MONTHS, 1).map_err(|m| bad(format!("month: {m}")))?;
        let mut weekdays =
            field(f[4], 0, 7, &DAYS, 0).map_err(|m| bad(format!("day of week: {m}")))?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            // As Vixie cron: a field starting with `*` does not restrict the day.
            dom_any: f[2].starts_with('*'),
            dow_any: f[4].starts_with('*'),
            text: s.trim().to_string(),
        })
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        if self.months & (1 << t.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// Whether the schedule fires at minute `t` (seconds ignored).
    pub fn matches(&self, t: &DateTime<Utc>) -> bool {
        self.day_matches(t)
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
    }

    /// The first firing strictly after `t`, within eight years.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut c = floor_minute(t) + Duration::minutes(1);
        let end = t + Duration::days(366 * 8);
        while c <= end {
            if !self.day_matches(&c) {
                c = floor_minute(c) - Duration::minutes(i64::from(c.hour() * 60 + c.minute()))
                    + Duration::days(1);
            } else if self.hours & (1 << c.hour()) == 0 {
                c = c - Duration::minutes(i64::from(c.minute())) + Duration::hours(1);
            } else if self.minutes & (1 << c.minute()) == 0 {
                c += Duration::minutes(1);
            } else {
                return Some(c);
            }
        }
        None
    }

    /// The last firing at or before `t`, within eight years.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut c = floor_minute(t);
        let end = t - Duration::days(366 * 8);
        while c >= end {
            if !self.day_matches(&c) {
                // To 23:59 of the previous day.
                c = c - Duration::minutes(i64::from(c.hour() * 60 + c.minute()) + 1);
            } else if self.hours & (1 << c.hour()) == 0 {
                c -= Duration::minutes(i64::from(c.minute()) + 1);
            } else if self.minutes & (1 << c.minute()) == 0 {
                c -= Duration::minutes(1);
            } else {
                return Some(c);
            }
        }
        None
    }
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(c: &str, t: &str) -> String {
        let c: Cron = c.parse().unwrap();
        c.next_after(at(t)).unwrap().to_rfc3339()
    }

    fn last(c: &str, t: &str) -> String {
        let c: Cron = c.parse().unwrap();
        c.last_at_or_before(at(t)).unwrap().to_rfc3339()
    }

    #[test]
    fn next_fire_times() {
        assert_eq!(
            next("* * * * *", "2020-05-12T10:15:30Z"),
            "2020-05-12T10:16:00+00:00"
        );
        assert_eq!(
            next("0 * * * *", "2020-05-12T10:15:00Z"),
            "2020-05-12T11:00:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2020-05-12T10:15:00Z"),
            "2020-05-12T10:30:00+00:00"
        );
        assert_eq!(
            next("30 2 * * *", "2020-05-12T10:15:00Z"),
            "2020-05-13T02:30:00+00:00"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2020-05-12T10:15:00Z"),
            "2020-05-12T13:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 * *", "2020-05-12T10:15:00Z"),
            "2020-06-01T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 31 * *", "2020-04-12T10:15:00Z"),
            "2020-05-31T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2021-01-01T00:00:00Z"),
            "2024-02-29T00:00:00+00:00"
        );
        assert_eq!(
            next("0 8 * * MON-FRI", "2020-05-15T09:00:00Z"),
            "2020-05-18T08:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "2020-05-12T00:00:00Z"),
            "2020-05-17T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * JAN,JUL *", "2020-05-12T00:00:00Z"),
            "2020-07-01T00:00:00+00:00"
        );
        // Day of month OR day of week when both are given (Vixie cron).
        assert_eq!(
            next("0 0 13 * FRI", "2020-05-12T00:00:00Z"),
            "2020-05-13T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 13 * FRI", "2020-05-13T00:00:00Z"),
            "2020-05-15T00:00:00+00:00"
        );
        assert_eq!(
            next("@daily", "2020-12-31T23:59:00Z"),
            "2021-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn last_fire_times() {
        assert_eq!(
            last("0 * * * *", "2020-05-12T10:15:00Z"),
            "2020-05-12T10:00:00+00:00"
        );
        assert_eq!(
            last("0 * * * *", "2020-05-12T10:00:00Z"),
            "2020-05-12T10:00:00+00:00"
        );
        assert_eq!(
            last("30 2 * * *", "2020-05-12T01:15:00Z"),
            "2020-05-11T02:30:00+00:00"
        );
        assert_eq!(
            last("0 0 1 * *", "2020-03-01T00:00:59Z"),
            "2020-03-01T00:00:00+00:00"
        );
        assert_eq!(
            last("0 0 31 * *", "2020-05-01T00:00:00Z"),
            "2020-03-31T00:00:00+00:00"
        );
        assert_eq!(
            last("0 8 * * MON-FRI", "2020-05-17T09:00:00Z"),
            "2020-05-15T08:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (c, want) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "bad step"),
            ("x * * * *", "not a number"),
        ] {
            let e = c.parse::<Cron>().unwrap_err().to_string();
            assert!(e.contains(want), "{c}: {e}");
        }
    }
}
