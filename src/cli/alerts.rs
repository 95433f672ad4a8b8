//! `seclake alerts`.

use crate::detect::parse_time_arg;
use crate::detect::rule::{Severity, sql_string};
use crate::detect::sink;
use crate::error::Error;
use crate::error::Result;
use crate::lake::lock::{self, LockOptions};
use crate::output::Format;

use super::{Ctx, Outcome};

/// Alerts the table format shows unless `--limit` says otherwise: a screenful or two.
const DEFAULT_TABLE_LIMIT: usize = 50;

/// List alerts: the most recently updated first, and among those the most severe.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake alerts --since 1d
  seclake alerts --severity high --limit 0
  seclake alerts --rule AWS.S3.ServerAccess.Error --format json
  seclake query \"SELECT * FROM panther_views.alerts WHERE severity = 'HIGH'\"

Alerts live in panther_views.alerts (newest version of each) and panther_views.alert_versions.")]
pub struct Args {
    /// Alerts updated at or after this time: a date, a date and time, or an age (1d, 12h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only alerts of this rule, scheduled query or policy.
    #[arg(long = "rule", value_name = "ID")]
    pub rule: Option<String>,
    /// Only alerts of this severity or higher: info, low, medium, high, critical.
    #[arg(long, value_name = "LEVEL")]
    pub severity: Option<Severity>,
    /// Include alerts still below their threshold.
    #[arg(long)]
    pub all: bool,
    /// Show at most N alerts (0: all). Default: 50 in the table format, all in the others.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// First retry delivery of alerts still pending for a destination.
    #[arg(long)]
    pub deliver: bool,
    /// table, csv, tsv, json or ndjson.
    #[arg(long, default_value = "table")]
    pub format: Format,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let mut outcome = Outcome::Ok;
    if args.deliver {
        // Under the ingest lock, so a concurrent ingest does not deliver the same items.
        let guard = lock::acquire(&ctx.lake, "ingest", LockOptions::default()).await?;
        let report = sink::deliver_pending(&ctx.lake, &ctx.config).await;
        guard.release().await?;
        let report = report?;
        let mut err = std::io::stderr().lock();
        super::ingest::print_delivery(&mut err, &report).map_err(|e| Error::io("stderr", e))?;
        if !report.errors.is_empty() {
            outcome = Outcome::Failed;
        }
    }
    let now = chrono::Utc::now().timestamp_micros();
    let mut filters = Vec::new();
    if !args.all {
        filters.push("raised".to_string());
    }
    if let Some(s) = &args.since {
        let t = crate::detect::ts_literal(parse_time_arg(s, now)?);
        filters.push(format!("updated_at >= {t}"));
    }
    if let Some(r) = &args.rule {
        // Ids as typed on a command line: letter case aside.
        filters.push(format!("lower(detection_id) = lower({})", sql_string(r)));
    }
    let rank = Severity::sql_rank("severity");
    if let Some(s) = args.severity {
        let at_least = Severity::ALL.iter().position(|x| *x == s).unwrap_or(0);
        filters.push(format!("{rank} >= {at_least}"));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let sql = format!(
        "SELECT alert_id, severity, detection_id, title, event_count, first_event_time, \
         last_event_time, raised_at FROM panther_views.alerts {filter} \
         ORDER BY updated_at DESC, {rank} DESC, last_event_time DESC, alert_id"
    );
    let limit = args.limit.unwrap_or(match args.format {
        Format::Table => DEFAULT_TABLE_LIMIT,
        _ => 0,
    });
    let engine = ctx.engine(true).await?;
    let rows = engine
        .print(&sql, args.format, (limit, 0), &mut std::io::stdout().lock())
        .await?;
    if limit != 0 && rows > limit {
        eprintln!("showing {limit} of {rows} alerts; --limit 0 shows all");
    }
    Ok(outcome)
}
