//! `seclake query`.

use std::io::{IsTerminal, Write};

use futures::StreamExt;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Format;

use super::{Ctx, Outcome};

/// Run SQL over the lake.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake query \"SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE month=5\"
  seclake query -f hunt.sql --format csv > out.csv
  seclake query -f hunt.sql --output result.parquet

Databases: panther_logs (default), panther_quarantine, panther_rule_matches,
panther_cloudsecurity, panther_views (all_logs). Partition columns year, month, day are
integers: WHERE year=2020 AND month=5 AND day>=10 reads only those folders, and so does a
p_event_time range (only the folders of its days). Panther's time macros expand to such
ranges: p_occurs_since('6 h'), p_occurs_between(start, end), p_occurs_after(t),
p_occurs_before(t), p_occurs_around(t, '30 m').
Security functions: glob_match, cidr_contains, is_private_ip, is_public_ip, arn_account,
arn_service, arn_region, arn_partition, arn_resource, json_get_str and the other json_*.")]
pub struct Args {
    /// SQL to run (several statements may be separated by `;`).
    pub sql: Option<String>,

    /// Read the SQL from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "sql")]
    pub file: Option<std::path::PathBuf>,

    /// Run the saved or scheduled query with this QueryName, over its lookback window ending
    /// now (see `seclake schedule list`).
    #[arg(long, conflicts_with_all = ["sql", "file"], value_name = "NAME")]
    pub saved: Option<String>,

    /// Output format: table, csv, tsv, json, ndjson.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    pub format: Format,

    /// Write the result to a file instead of stdout; `.parquet` writes Parquet, `.csv`,
    /// `.tsv`, `.json`, `.ndjson` pick that format.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,

    /// Cut table cells longer than N characters, ending them with `…` (0: never). Default:
    /// 60 when printing to a terminal, never otherwise (a file, a pipe, --format csv/json).
    #[arg(long, value_name = "N")]
    pub max_width: Option<usize>,

    /// Refuse statements that write files or change tables (COPY, INSERT, CREATE, …).
    #[arg(long)]
    pub read_only: bool,

    /// Benchmark: run the (last) statement once to warm up, then N times, and print the
    /// median wall time instead of the result (as bench/query.sh and the DuckDB peer do).
    #[arg(long, hide = true)]
    pub bench_runs: Option<usize>,
}

/// clap value parser for [`Format`].
pub fn parse_format(s: &str) -> std::result::Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let sql = match (&args.sql, &args.file, &args.saved) {
        (Some(s), _, _) => s.clone(),
        (None, Some(f), _) => std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?,
        (None, None, Some(name)) => ctx.query_named(name)?.sql_for(super::now()?)?,
        (None, None, None) => {
            return Err(Error::invalid(
                "give SQL as an argument, with -f FILE or --saved NAME",
            ));
        }
    };
    let engine = ctx.engine(args.read_only).await?;
    let statements = crate::repl::split_statements(&sql)?;
    if statements.is_empty() {
        return Err(Error::invalid("no SQL statement given"));
    }
    if let Some(runs) = args.bench_runs {
        let (last, setup) = statements.split_last().expect("non-empty");
        for s in setup {
            engine.sql(s).await?.collect().await?;
        }
        return bench(&engine, last, runs).await;
    }
    match &args.output {
        Some(path) => {
            let p = path.display().to_string();
            if p.to_ascii_lowercase().ends_with(".parquet") {
                let last = statements.last().expect("non-empty");
                for s in &statements[..statements.len() - 1] {
                    engine.sql(s).await?.collect().await?;
                }
                write_parquet(&engine, last, path).await?;
            } else {
                let format = Format::from_extension(&p).unwrap_or(args.format);
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
                );
                run_statements(&engine, &statements, (format, 0), &mut f).await?;
                f.flush().map_err(|e| Error::io(path, e))?;
            }
        }
        None => {
            let stdout = std::io::stdout();
            let max_cell = args.max_width.unwrap_or(if stdout.is_terminal() {
                crate::output::TERMINAL_MAX_CELL
            } else {
                0
            });
            let mut out = std::io::BufWriter::new(stdout.lock());
            run_statements(&engine, &statements, (args.format, max_cell), &mut out).await?;
            out.flush().map_err(|e| Error::io("stdout", e))?;
        }
    }
    Ok(Outcome::Ok)
}

/// Run statements in order, printing each result (table cells cut at `max_cell` characters,
/// 0: never).
pub async fn run_statements(
    engine: &Engine,
    statements: &[String],
    (format, max_cell): (Format, usize),
    out: &mut impl Write,
) -> Result<()> {
    for s in statements {
        engine.print(s, format, (0, max_cell), out).await?;
    }
    Ok(())
}

async fn bench(engine: &Engine, sql: &str, runs: usize) -> Result<Outcome> {
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..=runs {
        let start = std::time::Instant::now();
        let batches = engine.sql(sql).await?.collect().await?;
        rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!("median_ms={median:.1}\trows={rows}");
    Ok(Outcome::Ok)
}

async fn write_parquet(engine: &Engine, sql: &str, path: &std::path::Path) -> Result<()> {
    let df = engine.sql(sql).await?;
    let schema = crate::lake::writer::plain_schema(df.schema().inner());
    let mut stream = df.execute_stream().await?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    while let Some(batch) = stream.next().await {
        w.write(&crate::lake::writer::cast_batch(&batch?, &schema)?)?;
    }
    w.close()?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}
