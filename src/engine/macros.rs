//! Panther's time macros, so saved searches written for Panther run unchanged:
//!
//! | macro | expands to |
//! |---|---|
//! | `p_occurs_since(offset)` | `p_event_time >= now - offset` |
//! | `p_occurs_between(start, end)` | `p_event_time >= start AND p_event_time <= end` |
//! | `p_occurs_after(t)`, `p_occurs_before(t)` | `p_event_time > t`, `p_event_time < t` |
//! | `p_occurs_around(t, offset)` | `p_event_time` within `offset` of `t` |
//!
//! An offset is a number of seconds or a string such as `'6 h'`, `'30 minutes'`, `'2 days'`,
//! `'1 week'`; a time is a string (`'2020-05-12 10:00:00'`, RFC 3339, or a date). Each macro
//! takes an optional table alias and column after its own arguments
//! (`p_occurs_since('1 d', logs)`, `p_occurs_since('1 d', logs, p_parse_time)`). Expansion is
//! on the statement's tokens, so text inside string literals and comments is left alone, and
//! the resulting time range prunes folders like any other ([`super::prune`]).

use std::borrow::Cow;

use chrono::{DateTime, Duration, Utc};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};
use crate::parse::time::parse_instant;

/// The macros (also offered by the REPL's completion).
pub const NAMES: [&str; 5] = [
    "p_occurs_since",
    "p_occurs_between",
    "p_occurs_after",
    "p_occurs_before",
    "p_occurs_around",
];

/// `sql` with every time macro expanded; `now` anchors `p_occurs_since`.
pub fn expand(sql: &str, now: DateTime<Utc>) -> Result<Cow<'_, str>> {
    if !sql.to_ascii_lowercase().contains("p_occurs_") {
        return Ok(Cow::Borrowed(sql));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::invalid(format!("syntax error: {e}")))?;
    let mut out = String::with_capacity(sql.len() + 64);
    let mut i = 0;
    while i < tokens.len() {
        let name = match &tokens[i] {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase(),
            t => {
                out.push_str(&t.to_string());
                i += 1;
                continue;
            }
        };
        let kind = match name.strip_prefix("p_occurs_") {
            Some(k) if NAMES.contains(&name.as_str()) => k,
            _ => {
                out.push_str(&tokens[i].to_string());
                i += 1;
                continue;
            }
        };
        let (args, next) = arguments(&tokens, i + 1).ok_or_else(|| {
            Error::invalid(format!(
                "{name}: expected its arguments in parentheses, e.g. {name}('1 day')"
            ))
        })?;
        out.push_str(&macro_sql(&name, kind, &args, now)?);
        i = next;
    }
    Ok(Cow::Owned(out))
}

/// The comma-separated arguments of a call starting after `start` (which must be `(`, after
/// optional whitespace), each as its literal text, and the index after the closing `)`.
fn arguments(tokens: &[Token], start: usize) -> Option<(Vec<String>, usize)> {
    let mut i = start;
    while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
        i += 1;
    }
    if tokens.get(i) != Some(&Token::LParen) {
        return None;
    }
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    for (j, t) in tokens.iter().enumerate().skip(i + 1) {
        match t {
            Token::Whitespace(_) => {}
            Token::RParen => {
                args.extend(current);
                return Some((args, j + 1));
            }
            Token::Comma => args.push(current.take()?),
            Token::SingleQuotedString(s) if current.is_none() => current = Some(s.clone()),
            Token::Number(n, _) if current.is_none() => current = Some(n.clone()),
            Token::Word(w) if current.is_none() => current = Some(w.value.clone()),
            _ => return None,
        }
    }
    None
}

fn macro_sql(name: &str, kind: &str, args: &[String], now: DateTime<Utc>) -> Result<String> {
    let (own, usage) = match kind {
        "since" => (1, "p_occurs_since(offset[, alias[, column]])"),
        "between" => (2, "p_occurs_between(start, end[, alias[, column]])"),
        "after" => (1, "p_occurs_after(time[, alias[, column]])"),
        "before" => (1, "p_occurs_before(time[, alias[, column]])"),
        _ => (2, "p_occurs_around(time, offset[, alias[, column]])"),
    };
    if args.len() < own || args.len() > own + 2 {
        return Err(Error::invalid(format!(
            "{name} takes {own} to {} arguments: {usage}",
            own + 2
        )));
    }
    let column = match (args.get(own), args.get(own + 1)) {
        (Some(alias), Some(col)) => format!("{alias}.{col}"),
        (Some(alias), None) => format!("{alias}.p_event_time"),
        _ => "p_event_time".to_string(),
    };
    let lit = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
    let time = |s: &str| parse_time(s).map_err(|e| Error::invalid(format!("{name}: {e}")));
    let offset = |s: &str| parse_offset(s).map_err(|e| Error::invalid(format!("{name}: {e}")));
    Ok(match kind {
        "since" => format!("({column} >= {})", lit(now - offset(&args[0])?)),
        "between" => format!(
            "({column} >= {} AND {column} <= {})",
            lit(time(&args[0])?),
            lit(time(&args[1])?)
        ),
        "after" => format!("({column} > {})", lit(time(&args[0])?)),
        "before" => format!("({column} < {})", lit(time(&args[0])?)),
        _ => {
            let (t, d) = (time(&args[0])?, offset(&args[1])?);
            format!(
                "({column} >= {} AND {column} <= {})",
                lit(t - d),
                lit(t + d)
            )
        }
    })
}

/// `3600`, `'6 h'`, `'30 minutes'`, `'2d'`, `'1 week'`.
fn parse_offset(s: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!("cannot read '{s}' as a time offset (seconds, or e.g. '6 h', '2 days', '1 week')")
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: i64 = s[..split].parse().map_err(|_| bad())?;
    let seconds = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "wk" | "week" | "weeks" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .and_then(Duration::try_seconds)
        .ok_or_else(bad)
}

/// `'2020-05-12 10:00:00'` (optionally with fractions or a `T`), RFC 3339, or `'2020-05-12'`.
fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    parse_instant(s, &["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"])
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| {
            format!(
                "cannot read '{}' as a time (e.g. '2020-05-12 10:00:00' or '2020-05-12')",
                s.trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_time("2020-05-12 10:00:00").unwrap()
    }

    fn x(sql: &str) -> String {
        expand(sql, now()).unwrap().into_owned()
    }

    #[test]
    fn each_macro_expands_to_a_time_range() {
        assert_eq!(
            x("SELECT 1 FROM t WHERE p_occurs_since('6 h') AND x = 1"),
            "SELECT 1 FROM t WHERE (p_event_time >= TIMESTAMP '2020-05-12 04:00:00.000000') AND x = 1"
        );
        assert_eq!(
            x("select * from t where P_OCCURS_SINCE(3600)"),
            "select * from t where (p_event_time >= TIMESTAMP '2020-05-12 09:00:00.000000')"
        );
        assert_eq!(
            x("WHERE p_occurs_between('2020-05-10', '2020-05-11 12:30:00')"),
            "WHERE (p_event_time >= TIMESTAMP '2020-05-10 00:00:00.000000' AND \
             p_event_time <= TIMESTAMP '2020-05-11 12:30:00.000000')"
        );
        assert_eq!(
            x("WHERE p_occurs_after('2020-05-10T01:02:03Z') OR p_occurs_before('2020-05-01')"),
            "WHERE (p_event_time > TIMESTAMP '2020-05-10 01:02:03.000000') OR \
             (p_event_time < TIMESTAMP '2020-05-01 00:00:00.000000')"
        );
        assert_eq!(
            x("WHERE p_occurs_around('2020-05-10 12:00:00', '30 minutes', l)"),
            "WHERE (l.p_event_time >= TIMESTAMP '2020-05-10 11:30:00.000000' AND \
             l.p_event_time <= TIMESTAMP '2020-05-10 12:30:00.000000')"
        );
        assert_eq!(
            x("WHERE p_occurs_since('2 days', l, p_parse_time)"),
            "WHERE (l.p_parse_time >= TIMESTAMP '2020-05-10 10:00:00.000000')"
        );
    }

    #[test]
    fn strings_comments_and_other_sql_are_left_alone() {
        for sql in [
            "SELECT 'p_occurs_since(1)' AS s -- p_occurs_since('1 d')\nFROM t",
            "SELECT count(*) FROM aws_s3serveraccess WHERE month = 5",
            "SELECT p_occurs_count FROM t",
        ] {
            assert_eq!(x(sql), sql);
        }
    }

    #[test]
    fn mistakes_name_the_macro_and_what_it_expects() {
        for (sql, want) in [
            (
                "WHERE p_occurs_since('1 fortnight')",
                "p_occurs_since: cannot read '1 fortnight'",
            ),
            (
                "WHERE p_occurs_between('2020-05-10')",
                "p_occurs_between takes 2 to 4 arguments",
            ),
            (
                "WHERE p_occurs_after('yesterday')",
                "p_occurs_after: cannot read 'yesterday' as a time",
            ),
            (
                "WHERE p_occurs_since",
                "p_occurs_since: expected its arguments in parentheses",
            ),
            (
                "WHERE p_occurs_since(now() - 1)",
                "p_occurs_since: expected its arguments",
            ),
        ] {
            let e = expand(sql, now()).unwrap_err().to_string();
            assert!(e.contains(want), "{sql}: {e}");
        }
    }
}
