//! `seclake alerts`.

use crate::detect::parse_time_arg;
use crate::detect::rule::sql_string;
use crate::detect::sink;
use crate::error::Error;
use crate::error::Result;
use crate::lake::lock::{self, LockOptions};
use crate::output::Format;

use super::{Ctx, Outcome};

/// List alerts, newest first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake alerts --since 1d
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
    /// Include alerts still below their threshold.
    #[arg(long)]
    pub all: bool,
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
        filters.push(format!("detection_id = {}", sql_string(r)));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let sql = format!(
        "SELECT alert_id, severity, detection_id, title, event_count, first_event_time, \
         last_event_time, raised_at FROM panther_views.alerts {filter} \
         ORDER BY updated_at DESC, alert_id"
    );
    let engine = ctx.engine(true).await?;
    let rows = engine
        .print(&sql, args.format, 0, &mut std::io::stdout().lock())
        .await?;
    let _ = rows;
    Ok(outcome)
}
