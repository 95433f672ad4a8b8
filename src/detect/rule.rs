//! Rule files: `queries/rules/*.yml`, one rule each, in the spirit of Panther's analysis YAML.
//!
//! ```yaml
//! RuleID: AWS.S3.ServerAccess.Error
//! LogTypes: [AWS.S3ServerAccess]
//! Severity: Info
//! Threshold: 5
//! DedupPeriodMinutes: 180
//! Params:
//!   codes: [400, 403, 405]
//! Condition: glob_match(operation, 'REST.*.OBJECT') AND httpstatus IN (${codes})
//! Title: concat(httpstatus, ' errors found to S3 Bucket [', bucket, ']')
//! Tests:
//!   - Name: forbidden GET
//!     ExpectedResult: true
//!     Log: {operation: REST.GET.OBJECT, httpstatus: 403, bucket: b}
//! ```
//!
//! `Condition` is a SQL boolean expression over the log type's columns (and seclake's
//! functions); `Title` and `Dedup` are SQL string expressions. `Params` keep a rule's tunables
//! (bucket lists, role patterns, CIDRs) out of its logic: `${name}` in an expression becomes
//! the parameter as SQL — a string or number as a literal, a list as comma-separated literals
//! (`NULL` when empty), a mapping as a JSON string literal (for `glob_map_match`); `${#name}`
//! is the number of items (so `${#buckets} = 0 OR bucket IN (${buckets})` means "all buckets
//! unless some are listed").
//!
//! Guarantees: unknown keys are errors; every error names the file and, once known, the rule.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Alert severities, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// SQL expression ranking a severity column (`INFO` 0 … `CRITICAL` 4; NULL for others).
    pub fn sql_rank(column: &str) -> String {
        let whens: String = Self::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| format!(" WHEN '{}' THEN {i}", s.as_str()))
            .collect();
        format!("CASE {column}{whens} END")
    }

    /// Upper-case name, as Panther shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl FromStr for Severity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "INFO" => Severity::Info,
            "LOW" => Severity::Low,
            "MEDIUM" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown severity {s:?} (one of INFO, LOW, MEDIUM, HIGH, CRITICAL)"
                )));
            }
        })
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One embedded test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RuleTest {
    pub name: String,
    pub expected_result: bool,
    /// The event, with Panther's field names (matched to columns case-insensitively).
    pub log: serde_json::Value,
}

/// A rule as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Rule {
    #[serde(rename = "RuleID")]
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub log_types: Vec<String>,
    pub severity: Severity,
    #[serde(default)]
    pub description: String,
    /// SQL boolean expression: the event matches when it is true.
    pub condition: String,
    /// SQL string expression for the alert title; the rule id when absent.
    #[serde(default)]
    pub title: Option<String>,
    /// SQL string expression grouping events into alerts; the title when absent.
    #[serde(default)]
    pub dedup: Option<String>,
    #[serde(default = "sixty")]
    pub dedup_period_minutes: u32,
    #[serde(default = "one")]
    pub threshold: u32,
    /// Columns copied into each match's `p_alert_context` (JSON).
    #[serde(default)]
    pub alert_context: Vec<String>,
    /// Named values `${name}` in the expressions stands for.
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub runbook: Option<String>,
    /// Destinations (by name) to send alerts to; every configured one when absent.
    #[serde(default)]
    pub output_ids: Option<Vec<String>>,
    #[serde(default)]
    pub tests: Vec<RuleTest>,
    /// File the rule came from (set by the loader).
    #[serde(skip)]
    pub file: String,
}

fn yes() -> bool {
    true
}
fn sixty() -> u32 {
    60
}
fn one() -> u32 {
    1
}

impl Rule {
    /// Parse one rule file; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self> {
        let mut rule: Rule = serde_yaml::from_str(text).map_err(|source| Error::Yaml {
            file: file.to_string(),
            source,
        })?;
        rule.file = file.to_string();
        let bad = |m: String| Err(rule.error(m));
        if rule.id.trim().is_empty() {
            return bad("RuleID is empty".into());
        }
        if rule.log_types.is_empty() {
            return bad("LogTypes is empty".into());
        }
        if rule.threshold == 0 {
            return bad("Threshold must be at least 1".into());
        }
        if rule.dedup_period_minutes == 0 {
            return bad("DedupPeriodMinutes must be at least 1".into());
        }
        for (k, v) in &rule.params {
            render_param(v).map_err(|m| rule.error(format!("param {k}: {m}")))?;
        }
        Ok(rule)
    }

    /// An error naming this rule and its file.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Detection {
            file: self.file.clone(),
            id: self.id.clone(),
            message: message.into(),
        }
    }

    /// `sql` with every `${param}` replaced by its SQL rendering.
    pub fn expand(&self, what: &str, sql: &str) -> Result<String> {
        expand(sql, &self.params).map_err(|m| self.error(format!("{what}: {m}")))
    }
}

/// Replace `${name}` in `sql` with the SQL rendering of `params[name]`.
pub fn expand(sql: &str, params: &BTreeMap<String, serde_yaml::Value>) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(p) = rest.find("${") {
        out.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {sql:?}"))?;
        let name = after[..end].trim();
        let (count, name) = match name.strip_prefix('#') {
            Some(n) => (true, n.trim()),
            None => (false, name),
        };
        let value = params
            .get(name)
            .ok_or_else(|| format!("unknown parameter ${{{name}}} (Params has no {name:?})"))?;
        if count {
            let n = match value {
                serde_yaml::Value::Sequence(s) => s.len(),
                serde_yaml::Value::Mapping(m) => m.len(),
                serde_yaml::Value::Null => 0,
                _ => 1,
            };
            out.push_str(&n.to_string());
        } else {
            out.push_str(&render_param(value)?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SQL literal for a scalar YAML value.
fn literal(v: &serde_yaml::Value) -> Result<String, String> {
    use serde_yaml::Value;
    Ok(match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => sql_string(s),
        other => return Err(format!("expected a scalar, found {other:?}")),
    })
}

/// `s` as a quoted SQL string literal.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn render_param(v: &serde_yaml::Value) -> Result<String, String> {
    use serde_yaml::Value;
    match v {
        Value::Sequence(items) if items.is_empty() => Ok("NULL".into()),
        Value::Sequence(items) => Ok(items
            .iter()
            .map(literal)
            .collect::<Result<Vec<_>, _>>()?
            .join(", ")),
        Value::Mapping(_) => {
            let json = serde_json::to_string(v).map_err(|e| e.to_string())?;
            Ok(sql_string(&json))
        }
        other => literal(other),
    }
}

/// The rules that ship with seclake, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "aws_s3_bucket_policy_modified.yml",
        include_str!("../../queries/rules/aws_s3_bucket_policy_modified.yml"),
    ),
    (
        "aws_s3_access_error.yml",
        include_str!("../../queries/rules/aws_s3_access_error.yml"),
    ),
    (
        "aws_s3_insecure_access.yml",
        include_str!("../../queries/rules/aws_s3_insecure_access.yml"),
    ),
    (
        "aws_s3_ip_whitelist.yml",
        include_str!("../../queries/rules/aws_s3_ip_whitelist.yml"),
    ),
    (
        "aws_s3_unknown_requester.yml",
        include_str!("../../queries/rules/aws_s3_unknown_requester.yml"),
    ),
    (
        "aws_s3_unauthenticated.yml",
        include_str!("../../queries/rules/aws_s3_unauthenticated.yml"),
    ),
    (
        "aws_s3_defacement.yml",
        include_str!("../../queries/rules/aws_s3_defacement.yml"),
    ),
];

/// Every rule: the shipped ones, then each folder's `*.yml` (a rule with a shipped id replaces
/// it). Sorted by id.
pub fn load(dirs: &[&Path]) -> Result<Vec<Rule>> {
    let mut by_id: BTreeMap<String, Rule> = BTreeMap::new();
    for (file, text) in super::content_files("rules/", BUILTIN, dirs)? {
        let r = Rule::from_yaml(&file, &text)?;
        by_id.insert(r.id.clone(), r);
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(y: &str) -> BTreeMap<String, serde_yaml::Value> {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn params_render_as_sql() {
        let p = params("codes: [400, 403]\nname: o'k\nnone: []\nmap: {a-*: [x, y]}\n");
        assert_eq!(
            expand(
                "s IN (${codes}) AND n = ${name} OR x IN (${none}) AND m(${map})",
                &p
            )
            .unwrap(),
            r#"s IN (400, 403) AND n = 'o''k' OR x IN (NULL) AND m('{"a-*":["x","y"]}')"#
        );
        assert_eq!(expand("${#codes}+${#none}+${# map}", &p).unwrap(), "2+0+1");
        assert!(
            expand("${nope}", &p)
                .unwrap_err()
                .contains("unknown parameter")
        );
        assert!(expand("${codes", &p).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file() {
        let e = Rule::from_yaml(
            "r.yml",
            "RuleID: X\nLogTypes: [A]\nSeverity: Low\nCondition: 'true'\nTreshold: 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("r.yml") && e.contains("Treshold"), "{e}");
        let e = Rule::from_yaml(
            "r.yml",
            "RuleID: X\nLogTypes: [A]\nSeverity: Urgent\nCondition: 'true'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown severity"), "{e}");
    }

    #[test]
    fn shipped_rules_load() {
        let rules = load(&[]).unwrap();
        assert!(rules.iter().any(|r| r.id == "AWS.S3.ServerAccess.Error"));
    }
}
