//! Detection: rules over ingested events, and the alert pipeline every detection shares.
//!
//! - [`rule`]: rule files (`queries/rules/*.yml`) — the model, parameters, loading.
//! - [`eval`]: rules compiled to DataFusion physical expressions, evaluated per batch.
//! - [`per_value`]: condition parts over dictionary columns evaluated per distinct value.
//! - [`alert`]: hits → alerts (dedup windows, thresholds), stored with the transaction.
//! - [`sink`]: the outbox and destinations (stdout, file, webhook).
//! - [`matches`](mod@matches): rule-match rows for `panther_rule_matches.<table>`.
//! - [`replay`]: rules over data already in the lake (`seclake detect`).
//! - [`schedule`], [`cron`]: scheduled and saved queries, run-due, run records.
//!
//! Rules run inside `ingest` on every parsed batch, on the parser threads, before the
//! transaction commits; their matches, alert changes and outbox items commit with the data.

pub mod alert;
pub mod cron;
pub mod eval;
pub mod matches;
pub mod per_value;
pub mod replay;
pub mod rule;
pub mod schedule;
pub mod sink;

use std::sync::Arc;

use alert::{Detection, Origin};
use rule::Rule;

use crate::error::{Error, Result};
use crate::schema::Registry;

/// Detection content files: the shipped `(name, text)` pairs (named `queries/<prefix><name>`
/// in errors), then every `*.yml`/`*.yaml` of each folder in name order, as
/// (file name for errors, text). Later files override earlier ones with the same id.
pub fn content_files(
    prefix: &str,
    builtin: &[(&str, &str)],
    dirs: &[&std::path::Path],
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = builtin
        .iter()
        .map(|(name, text)| (format!("queries/{prefix}{name}"), text.to_string()))
        .collect();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(*dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
            out.push((f.display().to_string(), text));
        }
    }
    Ok(out)
}

/// Where a raised alert goes: the detection's own `OutputIds` (looked up among `rules` by
/// id) or every destination, filtered by severity.
pub fn destinations_for(
    config: &crate::config::Config,
    rules: &[Arc<Rule>],
    a: &alert::Alert,
) -> Vec<String> {
    let only = rules
        .iter()
        .find(|r| r.id == a.detection_id)
        .and_then(|r| r.output_ids.as_deref());
    config.destinations_for(a.severity, only)
}

/// The alert-pipeline view of a rule.
pub fn detection(rule: &Rule) -> Detection {
    Detection {
        origin: Origin::Rule,
        id: rule.id.clone(),
        severity: rule.severity,
        threshold: rule.threshold,
        dedup_period_minutes: rule.dedup_period_minutes,
        destinations: rule.output_ids.clone(),
        runbook: rule.runbook.clone(),
        reference: rule.reference.clone(),
    }
}

/// Outcome of one embedded rule test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub rule: String,
    pub test: String,
    /// `None` when the test passed; otherwise what went wrong.
    pub failure: Option<String>,
    /// Title and dedup string when the rule matched.
    pub title: Option<(String, String)>,
}

/// Check that every rule compiles against each of its log types, and spell those as the
/// registry does (a rule may name `aws.s3serveraccess` or `AWS.S3.ServerAccess`; ingest picks
/// the rules of a batch by the canonical `AWS.S3ServerAccess`).
pub fn check(rules: &mut [Arc<Rule>], registry: &Registry) -> Result<()> {
    let ctx = eval::expr_session()?;
    for r in rules {
        let mut canonical = Vec::with_capacity(r.log_types.len());
        for lt in &r.log_types {
            let schema = registry
                .get(lt)
                .map_err(|_| r.error(format!("unknown log type {lt:?}")))?;
            eval::CompiledRule::new(&ctx, r.clone(), &schema.arrow_schema())?;
            canonical.push(schema.log_type.clone());
        }
        if canonical != r.log_types {
            Arc::make_mut(r).log_types = canonical;
        }
    }
    Ok(())
}

/// Run the embedded tests of `rules`. A rule that does not compile fails each of its tests
/// with the compile error (and a rule with no tests gets one failing entry for it).
pub fn run_tests(rules: &[Arc<Rule>], registry: &Registry) -> Result<Vec<TestOutcome>> {
    let ctx = eval::expr_session()?;
    let mut out = Vec::new();
    for r in rules {
        let outcome = |test: &str, failure: Option<String>, title| TestOutcome {
            rule: r.id.clone(),
            test: test.into(),
            failure,
            title,
        };
        let Some(lt) = r.log_types.first() else {
            continue;
        };
        let schema = match registry.get(lt) {
            Ok(s) => s,
            Err(e) => {
                out.push(outcome("(load)", Some(e.to_string()), None));
                continue;
            }
        };
        let compiled = match eval::CompiledRule::new(&ctx, r.clone(), &schema.arrow_schema()) {
            Ok(c) => c,
            Err(e) => {
                out.push(outcome("(compile)", Some(e.to_string()), None));
                continue;
            }
        };
        if r.tests.is_empty() {
            out.push(outcome(
                "(tests)",
                Some("the rule has no Tests".into()),
                None,
            ));
        }
        for t in &r.tests {
            let result = eval::events_to_batch(&schema, std::slice::from_ref(&t.log), true)
                .and_then(|b| compiled.eval(&b));
            out.push(match result {
                Err(e) => outcome(&t.name, Some(e.to_string()), None),
                Ok(m) => {
                    let title =
                        m.map(|m| (m.titles.value(0).to_string(), m.dedups.value(0).to_string()));
                    let got = title.is_some();
                    let failure = (got != t.expected_result)
                        .then(|| format!("expected {}, got {got}", t.expected_result));
                    outcome(&t.name, failure, title)
                }
            });
        }
    }
    Ok(out)
}

/// The ids of `items` (rules, policies) that `only` names, as typed on a command line: each
/// exactly, or in other letter case when that names one item only. An unknown id is an error
/// naming the `kind` and the command that lists them.
pub fn named_ids<T>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    only: &[String],
    (kind, list): (&str, &str),
) -> Result<Vec<String>> {
    only.iter()
        .map(|id| {
            let exact = items.iter().find(|r| id_of(r) == id);
            let mut alike = items.iter().filter(|r| id_of(r).eq_ignore_ascii_case(id));
            let found = exact.or(match (alike.next(), alike.next()) {
                (Some(r), None) => Some(r),
                _ => None,
            });
            found.map(|r| id_of(r).to_string()).ok_or_else(|| {
                Error::invalid(format!("no {kind} with id {id:?} (`{list}` lists them)"))
            })
        })
        .collect()
}

/// Load rules (shipped plus `dirs`), keep `only` (ids, see [`named_ids`]) when given.
pub fn load_rules(dirs: &[&std::path::Path], only: &[String]) -> Result<Vec<Arc<Rule>>> {
    let all = rule::load(dirs)?;
    let wanted = named_ids(&all, |r| &r.id, only, ("rule", "seclake rules list"))?;
    Ok(all
        .into_iter()
        .filter(|r| only.is_empty() || wanted.contains(&r.id))
        .map(Arc::new)
        .collect())
}

/// `TIMESTAMP '…'` SQL literal for `us` microseconds since the epoch (UTC).
pub fn ts_literal(us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// `year * 10000 + month * 100 + day` of the UTC day holding `us`: compared with the same
/// expression over the partition columns, it prunes partition folders.
pub fn day_number(us: i64) -> i64 {
    let (y, m, d) =
        crate::parse::time::civil_from_days(us.div_euclid(crate::parse::time::MICROS_PER_DAY));
    i64::from(y) * 10000 + i64::from(m) * 100 + i64::from(d)
}

/// A point in time given on the command line: a date (`2020-05-10`, midnight UTC), a date and
/// time (`2020-05-10T12:00:00Z`, `2020-05-10 12:00:00`, UTC when no zone), or an age before
/// `now` (`30m`, `12h`, `1d`, `2w`). Microseconds since the epoch.
pub fn parse_time_arg(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        Error::invalid(format!(
            "cannot read time {s:?}: use 2020-05-10, 2020-05-10T12:00:00Z or an age like 12h, 1d"
        ))
    };
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let minutes = match unit {
            'm' => 1,
            'h' => 60,
            'd' => 1440,
            'w' => 10080,
            _ => return Err(bad()),
        };
        return Ok(now - n * minutes * 60_000_000);
    }
    crate::parse::time::parse_instant(
        s,
        &["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_args() {
        let day = 86_400_000_000i64;
        assert_eq!(parse_time_arg("1970-01-02", 0).unwrap(), day);
        assert_eq!(parse_time_arg("1970-01-02T00:00:00Z", 0).unwrap(), day);
        assert_eq!(parse_time_arg("1970-01-02 00:00:00", 0).unwrap(), day);
        assert_eq!(parse_time_arg("1d", 3 * day).unwrap(), 2 * day);
        assert_eq!(parse_time_arg("12h", day).unwrap(), day / 2);
        assert!(parse_time_arg("yesterday", 0).is_err());
        assert!(parse_time_arg("3y", 0).is_err());
    }
}
