//! `seclake ingest`.

use std::io::{IsTerminal, Write};

use crate::error::Result;
use crate::ingest::{IngestOptions, Summary, ingest};
use crate::lake::QUARANTINE_DB;
use crate::lake::compact::{CompactOptions, compact};

use super::{Ctx, Outcome};

/// Ingest files, folders and globs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake ingest ./access-logs/
  seclake ingest --lake /data/lake '2020-05-12-*.log'
  seclake ingest --log-type AWS.S3ServerAccess logs.gz
  seclake ingest ./AWSLogs/123456789012/CloudTrail/
  seclake --schemas schemas/examples ingest data/minio-audit/
  seclake --lake s3://security-lake/prod ingest s3://access-logs/test-public-bucket/
  seclake ingest 's3://access-logs/test-public-bucket/2020-05-12-*'
  seclake ingest --compact ./new-deliveries/            # then merge small files
  seclake ingest --rule AWS.S3.ServerAccess.IPWhitelist ./access-logs/   # a disabled rule too

Each file's log type is detected from its content (S3 access log lines, CloudTrail records,
or a custom JSON type's detect keys). Files already ingested (same path, size and
modification time; for S3 objects the same bucket, key and ETag, checked from the listing
without downloading) are skipped. A local log that grew since it was ingested, or a rotated
copy of one (app.log.1, app.log.2.gz), is read on from the last line stored, with a note.
Lines that do not parse are kept in panther_quarantine.<table> with the reason. The enabled
rules (or those named with --rule) run on every event; matches go to
panther_rule_matches.<table>, alerts to panther_views.alerts and the destinations in
seclake.yml.")]
pub struct Args {
    /// Files, folders (searched recursively), glob patterns, or s3://bucket/prefix/,
    /// s3://bucket/key and s3:// key globs; plain or gzip.
    #[arg(required = true)]
    pub paths: Vec<String>,

    /// Log type of every input (e.g. AWS.S3ServerAccess, AWS.CloudTrail); detected per file
    /// when omitted.
    #[arg(long)]
    pub log_type: Option<String>,

    /// Parser and encoder threads [default: number of cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Do not run detection rules.
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,

    /// Only these rules (repeatable) instead of the enabled ones; disabled rules run when named.
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,

    /// Afterwards, merge the small files of the tables written to (as `seclake compact` does):
    /// for a cron that ingests each new delivery.
    #[arg(long)]
    pub compact: bool,

    /// Input bytes per transaction (commit); smaller means more, smaller commits.
    #[arg(long, hide = true)]
    pub txn_bytes: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let mut opts = IngestOptions {
        log_type: args.log_type,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        ..Default::default()
    };
    if let Some(b) = args.txn_bytes {
        opts.txn_bytes = b.max(1);
    }
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    if !args.no_rules {
        opts.rules = ctx.rules_to_run(&args.rules)?;
        opts.config = ctx.config.clone();
    }
    let summary = ingest(&ctx.lake, &ctx.registry, &args.paths, &opts).await?;
    print_summary(&mut std::io::stdout().lock(), &summary)?;
    if summary.files_seen == 0 {
        // Folders and prefixes may be empty (a cron job ahead of the first delivery): say so,
        // but it is not an error. A path or glob that names nothing already failed above.
        eprintln!(
            "seclake: nothing to ingest: no files under {}",
            args.paths.join(", ")
        );
    }
    if args.compact && summary.files_written > 0 {
        // Plain table names: the log tables and their rule-match and quarantine tables.
        let tables = summary
            .tables
            .keys()
            .filter_map(|k| k.split_once('.').map(|(_, t)| t.to_string()))
            .collect();
        let opts = CompactOptions {
            tables,
            ..Default::default()
        };
        let done = compact(&ctx.lake, &ctx.registry, &opts).await?;
        super::compact::print_summary(&mut std::io::stdout().lock(), &done, false)
            .map_err(|e| crate::error::Error::io("stdout", e))?;
    }
    Ok(if summary.failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// Print what an ingest did.
pub fn print_summary(w: &mut impl Write, s: &Summary) -> Result<()> {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let io = |e| crate::error::Error::io("stdout", e);
    (|| -> std::io::Result<()> {
        if s.recovered != (0, 0) {
            writeln!(
                w,
                "recovered: {} interrupted transaction(s) completed, {} discarded",
                s.recovered.0, s.recovered.1
            )?;
        }
        let not_logs = match s.not_logs {
            0 => String::new(),
            n => format!(", {n} not logs (see notes)"),
        };
        writeln!(
            w,
            "files: {} found, {} ingested, {} skipped (already ingested){not_logs}, {} failed",
            s.files_seen,
            s.files_ingested,
            s.files_skipped,
            s.failed.len()
        )?;
        writeln!(
            w,
            "lines: {} read = {} rows written + {} quarantined",
            s.lines, s.rows, s.quarantined
        )?;
        // A table only empty files went to (they are recorded under the first log type, with
        // nothing to write) is not worth a line.
        for (table, c) in s.tables.iter().filter(|(_, c)| c.rows + c.quarantined > 0) {
            writeln!(
                w,
                "  {table}: {} rows, {} quarantined",
                c.rows, c.quarantined
            )?;
        }
        for (table, _) in s.tables.iter().filter(|(_, c)| c.quarantined > 0) {
            let name = table.rsplit('.').next().unwrap_or(table);
            writeln!(
                w,
                "  why: seclake query \"SELECT p_source_label, line, reason FROM \
                 {QUARANTINE_DB}.{name} ORDER BY p_parse_time DESC, line LIMIT 20\""
            )?;
        }
        writeln!(
            w,
            "input: {:.1} MiB in {:.2}s = {:.0} lines/s, {:.1} MiB/s; output: {} files, {:.1} MiB",
            s.bytes as f64 / 1048576.0,
            secs,
            s.lines as f64 / secs,
            s.bytes as f64 / 1048576.0 / secs,
            s.files_written,
            s.bytes_written as f64 / 1048576.0
        )?;
        if s.rule_matches > 0 || s.alerts_changed > 0 {
            writeln!(
                w,
                "detections: {} rule matches; alerts: {} raised, {} created or updated",
                s.rule_matches, s.alerts_raised, s.alerts_changed
            )?;
        }
        print_delivery(w, &s.delivery)?;
        for (file, note) in &s.notes {
            writeln!(w, "note: {file}: {note}")?;
        }
        for (file, why) in &s.failed {
            // Reasons from I/O errors name the file already.
            let why = why.strip_prefix(&format!("{file}: ")).unwrap_or(why);
            writeln!(w, "failed: {file}: {why}")?;
        }
        Ok(())
    })()
    .map_err(io)
}

/// Print what alert delivery did (nothing when there was nothing to deliver).
pub fn print_delivery(
    w: &mut impl Write,
    d: &crate::detect::sink::DeliveryReport,
) -> std::io::Result<()> {
    if d.delivered > 0 || d.pending > 0 {
        writeln!(
            w,
            "delivery: {} sent, {} alert(s) pending (retried on the next run)",
            d.delivered, d.pending
        )?;
    }
    for e in &d.errors {
        writeln!(w, "delivery failed: {e}")?;
    }
    Ok(())
}
