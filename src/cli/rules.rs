//! `seclake rules list | test | eval`.

use std::io::{BufRead, Write};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::detect::eval::{RuleSet, events_to_batch};
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
            let mut selected = ctx.rules(&rules)?;
            if rules.is_empty() {
                selected.retain(|r| r.enabled);
            }
            let log_type = match log_type {
                Some(t) => ctx.registry.get(&t)?.log_type.clone(),
                None => {
                    let mut types: Vec<&String> =
                        selected.iter().flat_map(|r| &r.log_types).collect();
                    types.sort();
                    types.dedup();
                    match types.as_slice() {
                        [one] => (*one).clone(),
                        _ => {
                            return Err(Error::invalid(
                                "the selected rules cover several log types; pass --log-type",
                            ));
                        }
                    }
                }
            };
            let schema = ctx.registry.get(&log_type)?;
            let set = RuleSet::compile(&selected, &log_type, &schema.arrow_schema())?;
            let reader: Box<dyn BufRead> = if file == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?,
                ))
            };
            let mut any = false;
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| Error::io(&file, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let event: serde_json::Value =
                    serde_json::from_str(&line).map_err(|source| Error::Json {
                        context: format!("{file}: line {}", n + 1),
                        source,
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
