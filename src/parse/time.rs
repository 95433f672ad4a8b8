//! Timestamp parsing shared by parsers. All results are microseconds since the Unix epoch, UTC.

/// A point in time as a person writes it: RFC 3339, then each of `formats` (a date and time
/// without zone, read as UTC), then a date alone (midnight UTC).
pub fn parse_instant(s: &str, formats: &[&str]) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in formats {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

fn digits<const N: usize>(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..N)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn month(b: &[u8]) -> Option<u32> {
    // The three bytes as one integer: a match on integers compiles to compares, where one on
    // byte strings called `memcmp` per arm (`parse_clf` runs for every access-log line).
    let key = |m: &[u8; 3]| u32::from_le_bytes([m[0], m[1], m[2], 0]);
    let got = key(b.get(..3)?.try_into().ok()?);
    const NAMES: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    NAMES
        .iter()
        .position(|m| key(m) == got)
        .map(|i| i as u32 + 1)
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=dim).contains(&d)
}

/// A time of day, a leap second allowed.
fn valid_time(hh: u32, mm: u32, ss: u32) -> bool {
    hh < 24 && mm < 60 && ss < 61
}

/// Parse the S3 access log time `06/Feb/2019:00:00:38 +0000` (without brackets).
pub fn parse_clf(b: &[u8]) -> Option<i64> {
    parse_clf_cached(b, &mut ClfDay::default())
}

/// The date of the last time [`parse_clf_cached`] read: its text (`06/Feb/2019`) and its day
/// number since 1970-01-01.
#[derive(Debug, Default)]
pub struct ClfDay {
    text: [u8; 11],
    days: Option<i64>,
}

/// [`parse_clf`], keeping the date between calls: the lines of a log share their day, so its
/// digits, month name, validity and day number are worked out once a day instead of once a
/// line (half of the function's work).
pub fn parse_clf_cached(b: &[u8], day: &mut ClfDay) -> Option<i64> {
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[14] != b':' {
        return None;
    }
    if b[17] != b':' || b[20] != b' ' {
        return None;
    }
    let days = match day.days {
        Some(days) if b[..11] == day.text => days,
        _ => {
            let d = digits::<2>(b)?;
            let m = month(&b[3..6])?;
            let y = digits::<4>(&b[7..])?;
            if !valid_date(y, m, d) {
                return None;
            }
            let days = days_from_civil(y as i64, m, d);
            day.text.copy_from_slice(&b[..11]);
            day.days = Some(days);
            days
        }
    };
    let (hh, mm, ss) = (
        digits::<2>(&b[12..])?,
        digits::<2>(&b[15..])?,
        digits::<2>(&b[18..])?,
    );
    if !valid_time(hh, mm, ss) {
        return None;
    }
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (digits::<2>(&b[22..])?, digits::<2>(&b[24..])?);
    if oh > 23 || om > 59 {
        return None;
    }
    let offset = sign * (oh as i64 * 3600 + om as i64 * 60);
    let secs = days * 86_400 + (hh as i64 * 3600 + mm as i64 * 60 + ss as i64) - offset;
    Some(secs * 1_000_000)
}

/// Parse an RFC 3339 / ISO 8601 time: `2020-05-12T10:15:00Z`, with `T` or a space, optional
/// fractional seconds (to microseconds), and `Z`, `±HH:MM`, `±HHMM` or no zone (UTC).
pub fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, m, d) = (
        digits::<4>(b)?,
        digits::<2>(&b[5..])?,
        digits::<2>(&b[8..])?,
    );
    let (hh, mm, ss) = (
        digits::<2>(&b[11..])?,
        digits::<2>(&b[14..])?,
        digits::<2>(&b[17..])?,
    );
    if !valid_date(y, m, d) || !valid_time(hh, mm, ss) {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10
                + frac
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |c| (c - b'0') as i64);
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (oh, om) = match tz {
                [_, _, b':', _, _] => (digits::<2>(tz)?, digits::<2>(&tz[3..])?),
                [_, _, _, _] => (digits::<2>(tz)?, digits::<2>(&tz[2..])?),
                [_, _] => (digits::<2>(tz)?, 0),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh as i64 * 3600 + om as i64 * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y as i64, m, d) * 86_400
        + (hh as i64 * 3600 + mm as i64 * 60 + ss as i64)
        - offset;
    Some(secs * 1_000_000 + micros)
}

/// How a schema's timestamp column reads (`time_format` in a schema file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 text (see [`parse_rfc3339`]); the default.
    Rfc3339,
    /// Seconds since the epoch (may be fractional), as a number or text.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// Microseconds since the epoch.
    UnixUs,
    /// Nanoseconds since the epoch.
    UnixNs,
    /// A strftime pattern; without `%z` the time is UTC.
    Pattern(String),
}

impl TimeFormat {
    /// Read a `time_format` value; a pattern must contain a `%` directive.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_us" => TimeFormat::UnixUs,
            "unix_ns" => TimeFormat::UnixNs,
            p if p.contains('%') => TimeFormat::Pattern(p.to_string()),
            other => {
                return Err(format!(
                    "unknown time_format {other:?} (expected rfc3339, unix, unix_ms, unix_us, \
                     unix_ns or a strftime pattern)"
                ));
            }
        })
    }

    /// Microseconds since the epoch of a time written as text.
    pub fn parse_text(&self, s: &str) -> Option<i64> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(s.trim().as_bytes()),
            TimeFormat::Pattern(p) => {
                if p.contains("%z") || p.contains("%:z") {
                    chrono::DateTime::parse_from_str(s.trim(), p)
                        .ok()
                        .map(|t| t.timestamp_micros())
                } else {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), p)
                        .ok()
                        .map(|t| t.and_utc().timestamp_micros())
                }
            }
            epoch => epoch.from_number(s.trim().parse::<f64>().ok()?),
        }
    }

    /// Microseconds since the epoch of a time written as a JSON number.
    pub fn from_number(&self, v: f64) -> Option<i64> {
        let scale = match self {
            TimeFormat::Unix => 1e6,
            TimeFormat::UnixMs => 1e3,
            TimeFormat::UnixUs => 1.0,
            TimeFormat::UnixNs => 1e-3,
            TimeFormat::Rfc3339 | TimeFormat::Pattern(_) => return None,
        };
        let us = (v * scale).round();
        (us.is_finite() && us.abs() < 9.0e18).then_some(us as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Reading times through one cache gives what reading each afresh gives: the cache
        /// only skips work for a date it has already read (valid or not, any order).
        #[test]
        fn the_day_cache_changes_no_result(
            times in proptest::collection::vec(
                (0usize..4, 0u32..32, 0usize..13, 0u32..62, proptest::bool::ANY), 1..30),
        ) {
            const DATES: [&str; 4] = ["29/Feb/2020", "29/Feb/2019", "31/Dec/1969", "06/Fab/2019"];
            let mut day = ClfDay::default();
            for (d, h, m, s, plus) in times {
                let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Xyz"];
                let date = if h % 3 == 0 { format!("{:02}/{}/2021", h, months[m]) } else { DATES[d].to_string() };
                let text = format!("{date}:{:02}:{:02}:{s:02} {}0{}00", h % 25, s % 61, if plus { '+' } else { '-' }, d);
                proptest::prop_assert_eq!(
                    parse_clf_cached(text.as_bytes(), &mut day),
                    parse_clf(text.as_bytes()),
                    "{}", text
                );
            }
        }
    }

    #[test]
    fn rfc3339_times() {
        let t = 1_589_278_500_000_000; // 2020-05-12T10:15:00Z
        assert_eq!(parse_rfc3339(b"2020-05-12T10:15:00Z"), Some(t));
        assert_eq!(parse_rfc3339(b"2020-05-12 10:15:00"), Some(t));
        assert_eq!(parse_rfc3339(b"2020-05-12T10:15:00.25Z"), Some(t + 250_000));
        assert_eq!(
            parse_rfc3339(b"2020-05-12T10:15:00.123456789Z"),
            Some(t + 123_456)
        );
        assert_eq!(parse_rfc3339(b"2020-05-12T12:15:00+02:00"), Some(t));
        assert_eq!(parse_rfc3339(b"2020-05-12T05:15:00-0500"), Some(t));
        assert_eq!(parse_rfc3339(b"2020-05-12T10:15:00X"), None);
        assert_eq!(parse_rfc3339(b"2020-02-30T10:15:00Z"), None);
        assert_eq!(parse_rfc3339(b"2020-05-12T10:15:00."), None);
    }

    #[test]
    fn clf_months_and_their_neighbours() {
        let names = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for (i, name) in names.iter().enumerate() {
            let line = format!("01/{name}/2020:00:00:00 +0000");
            let days = days_from_civil(2020, i as u32 + 1, 1);
            assert_eq!(
                parse_clf(line.as_bytes()),
                Some(days * 86_400_000_000),
                "{line}"
            );
        }
        for bad in ["jan", "JAN", "Jun ", "Ja", "Jxn", "\0an"] {
            let line = format!("01/{bad}/2020:00:00:00 +0000");
            assert_eq!(parse_clf(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn time_formats() {
        let t = 1_589_278_500_000_000;
        assert_eq!(TimeFormat::Unix.from_number(1_589_278_500.0), Some(t));
        assert_eq!(TimeFormat::UnixMs.parse_text("1589278500000"), Some(t));
        let p = TimeFormat::parse("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(p.parse_text("12/May/2020:12:15:00 +0200"), Some(t));
        let p = TimeFormat::parse("%Y%m%d %H%M%S").unwrap();
        assert_eq!(p.parse_text("20200512 101500"), Some(t));
        assert!(TimeFormat::parse("iso").is_err());
        assert_eq!(TimeFormat::Rfc3339.from_number(1.0), None);
    }

    #[test]
    fn clf_times() {
        assert_eq!(
            parse_clf(b"06/Feb/2019:00:00:38 +0000"),
            Some(1_549_411_238_000_000)
        );
        assert_eq!(parse_clf(b"01/Jan/1970:01:00:00 +0100"), Some(0));
        assert_eq!(parse_clf(b"31/Dec/1969:19:00:00 -0500"), Some(0));
        assert_eq!(
            parse_clf(b"29/Feb/2020:00:00:00 +0000"),
            Some(1_582_934_400_000_000)
        );
        assert_eq!(parse_clf(b"29/Feb/2019:00:00:00 +0000"), None);
        assert_eq!(parse_clf(b"06/Fab/2019:00:00:38 +0000"), None);
        assert_eq!(parse_clf(b"06/Feb/2019:24:00:38 +0000"), None);
        assert_eq!(parse_clf(b"06/Feb/2019:00:00:38"), None);
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 18_394, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y as i64, m, d), z);
        }
        assert_eq!(civil_from_days(18_394), (2020, 5, 12));
    }
}
