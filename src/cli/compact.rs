//! `seclake compact`.

use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::error::{Error, Result};
use crate::lake::compact::{CompactOptions, CompactSummary, compact};

use super::tables::human_bytes;
use super::{Ctx, Outcome};

/// Merge each day's small files into few large ones.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake compact                               # every table
  seclake compact aws_s3serveraccess --dry-run  # what would be merged
  seclake compact panther_rule_matches.aws_cloudtrail

Frequent small ingests leave a day's folder with many small files, and every query pays per
file. In each day's folder, files with fewer rows than --small-rows are merged in time order
into files of up to --target-rows rows, encoded as ingest encodes them. Larger files are left
alone: merging interleaves rows of different sources, which compress worse side by side. The
new files replace the old ones through the same commit protocol as ingest (a crash leaves
either the old files or, after the next run, the new ones), under the ingest lock. A plain
table name selects that table in every database.")]
pub struct Args {
    /// Tables to compact, as `db.table` or `table` [default: every log, rule-match and
    /// quarantine table].
    pub tables: Vec<String>,

    /// Files with fewer rows are merged [default: a row group, 131072].
    #[arg(long, value_name = "ROWS")]
    pub small_rows: Option<u64>,

    /// Merged files hold at most this many rows [default: 2000000].
    #[arg(long, value_name = "ROWS")]
    pub target_rows: Option<u64>,

    /// Only show what would be merged.
    #[arg(long)]
    pub dry_run: bool,

    /// Files merged at once [default: number of cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let mut opts = CompactOptions {
        tables: args.tables,
        dry_run: args.dry_run,
        ..Default::default()
    };
    if let Some(r) = args.target_rows {
        opts.target_rows = r.max(1);
    }
    if let Some(r) = args.small_rows {
        opts.small_rows = r.max(1);
    }
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    let summary = compact(&ctx.lake, &ctx.registry, &opts).await?;
    print_summary(&mut std::io::stdout().lock(), &summary, opts.dry_run)
        .map_err(|e| Error::io("stdout", e))?;
    Ok(Outcome::Ok)
}

/// One row per table compacted, then notes on what was left alone.
pub fn print_summary(
    out: &mut impl Write,
    s: &CompactSummary,
    dry_run: bool,
) -> std::io::Result<()> {
    if s.tables.iter().all(|t| t.files_in == 0) {
        writeln!(out, "nothing to compact")?;
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let after = if dry_run {
            "files after"
        } else {
            "files written"
        };
        table.set_header([
            "table",
            "partitions",
            "files merged",
            after,
            "rows",
            "bytes",
        ]);
        for t in s.tables.iter().filter(|t| t.files_in > 0) {
            let bytes = if dry_run {
                human_bytes(t.bytes_in)
            } else {
                format!(
                    "{} -> {}",
                    human_bytes(t.bytes_in),
                    human_bytes(t.bytes_out)
                )
            };
            table.add_row([
                format!("{}.{}", t.db, t.table),
                t.partitions.to_string(),
                t.files_in.to_string(),
                t.files_out.to_string(),
                t.rows.to_string(),
                bytes,
            ]);
        }
        writeln!(out, "{table}")?;
    }
    for t in &s.tables {
        if let Some(first) = t.other_schema.first() {
            writeln!(
                out,
                "note: {}.{}: {} file(s) left alone, written with another schema than the \
                 log type's current one (e.g. {first})",
                t.db,
                t.table,
                t.other_schema.len()
            )?;
        }
    }
    for (name, why) in &s.skipped {
        writeln!(out, "note: {name} skipped: {why}")?;
    }
    let verb = if dry_run { "planned" } else { "done" };
    writeln!(out, "{verb} in {:.2} s", s.elapsed.as_secs_f64())
}
