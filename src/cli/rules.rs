//! `seclake rules list | test | eval`.

use std::io::{Read, Write};
use std::sync::Arc;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::detect::eval::{RuleSet, events_to_batch};
use crate::detect::rule::Rule;
use crate::error::{Error, Result};

use super::{Ctx, Outcome};

/// Rule commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List rules: id, enabled, severity, log types, threshold, dedup period, tests.
    List,
    /// Run every rule's embedded tests (exit 2 when one fails).
    #[command(after_help = "Examples:
  seclake rules test
  seclake rules test --rule AWS.S3.ServerAccess.Error
  seclake --rules ./my-rules rules test")]
    Test {
        /// Only these rules (repeatable).
        #[arg(long = "rule", value_name = "ID")]
        rules: Vec<String>,
    },
    /// Show which rules match JSON events (one object per line; `-` reads stdin). Exit 1 when
    /// something matched.
    #[command(after_help = "Examples:
  seclake rules eval events.jsonl
  seclake rules eval --rule AWS.S3.ServerAccess.Insecure --log-type AWS.S3ServerAccess -

Field names match columns case-insensitively (Panther's tlsVersion is tlsversion); times may be
RFC 3339, '2020-05-12 10:15:00' or the access-log form '[06/Feb/2019:00:00:38 +0000]'.")]
    Eval {
        /// File of JSON events, one per line; `-` for stdin.
        file: String,
        /// Log type of the events [default: the log type of the selected rules].
        #[arg(long)]
        log_type: Option<String>,
        /// Only these rules (repeatable); disabled rules run when named.
        #[arg(long = "rule", value_name = "ID")]
        rules: Vec<String>,
    },
}

pub async fn run(ctx: &Ctx, cmd: Command) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io("stdout", e);
    match cmd {
        Command::List => {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header([
                "rule",
                "enabled",
                "severity",
                "log types",
                "threshold",
                "dedup",
                "tests",
            ]);
            for r in ctx.rules(&[])? {
                t.add_row([
                    r.id.clone(),
                    if r.enabled { "yes" } else { "no" }.into(),
                    r.severity.to_string(),
                    r.log_types.join(", "),
                    r.threshold.to_string(),
                    format!("{} min", r.dedup_period_minutes),
                    r.tests.len().to_string(),
                ]);
            }
            writeln!(out, "{t}").map_err(io)?;
            Ok(Outcome::Ok)
        }
        Command::Test { rules } => {
            // Compile errors are test failures here, not a reason to stop.
            let rules = crate::detect::load_rules(&ctx.rule_dirs(), &rules)?;
            let results = crate::detect::run_tests(&rules, &ctx.registry)?;
            super::print_tests(
                &mut out,
                "rules",
                rules.len(),
                results
                    .iter()
                    .map(|r| (r.rule.as_str(), r.test.as_str(), r.failure.as_deref())),
            )
        }
        Command::Eval {
            file,
            log_type,
            rules,
        } => {
            let selected = ctx.rules_to_run(&rules)?;
            let mut text = String::new();
            if file == "-" {
                std::io::stdin()
                    .lock()
                    .read_to_string(&mut text)
                    .map_err(|e| Error::io("stdin", e))?;
            } else {
                text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            }
            // Events saved by Windows tools may start with a byte-order mark.
            let text = crate::parse::strip_bom_str(&text);
            let log_type = match log_type {
                Some(t) => ctx.registry.get(&t)?.log_type.clone(),
                None => events_log_type(ctx, &selected, text)?,
            };
            let schema = ctx.registry.get(&log_type)?;
            let set = RuleSet::compile(&selected, &log_type, &schema.arrow_schema())?;
            let mut any = false;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let event: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                    // serde_json counts lines within this one line: say where in the file.
                    let text = e.to_string();
                    let reason = text.rsplit_once(" at line ").map_or(&*text, |(r, _)| r);
                    Error::invalid(format!(
                        "{file}: line {}, column {}: not a JSON event: {reason}",
                        n + 1,
                        e.column()
                    ))
                })?;
                let batch = events_to_batch(&schema, &[event], false)
                    .map_err(|e| Error::invalid(format!("{file}: line {}: {e}", n + 1)))?;
                let hits = set.eval(&batch)?;
                if hits.is_empty() {
                    writeln!(out, "line {}: no rule matched", n + 1).map_err(io)?;
                }
                for (i, m) in hits {
                    any = true;
                    writeln!(
                        out,
                        "line {}: {} [{}] title={:?} dedup={:?}",
                        n + 1,
                        set.rules[i].rule.id,
                        set.rules[i].rule.severity,
                        m.titles.value(0),
                        m.dedups.value(0)
                    )
                    .map_err(io)?;
                }
            }
            Ok(if any { Outcome::Found } else { Outcome::Ok })
        }
    }
}

/// The log type of JSON events to evaluate: the one log type the rules cover, or, when they
/// cover several, the JSON log type whose `detect` keys the first event has (CloudTrail
/// records), else the one other type (events written with column names).
fn events_log_type(ctx: &Ctx, rules: &[Arc<Rule>], text: &str) -> Result<String> {
    let mut types: Vec<&String> = rules.iter().flat_map(|r| &r.log_types).collect();
    types.sort();
    types.dedup();
    if let [one] = types.as_slice() {
        return Ok((*one).clone());
    }
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut others = Vec::new();
    for t in &types {
        let schema = ctx.registry.get(t)?;
        if schema.parser == crate::schema::ParserKind::Json {
            let parser = crate::parse::json::JsonParser::new(schema.clone())?;
            if parser.detect_score(first.as_bytes()).is_some() {
                return Ok(schema.log_type.clone());
            }
        } else {
            others.push(schema.log_type.clone());
        }
    }
    match others.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::invalid(
            "the selected rules cover several log types and the events do not tell which; \
             pass --log-type",
        )),
    }
}
