//! `seclake repl`.

use crate::error::Result;
use crate::repl::Repl;

use super::{Ctx, Outcome};

/// Interactive SQL shell.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Statements end with ';'. Backslash commands: \\? help, \\d tables, \\d TABLE,
\\format FMT, \\timing, \\maxrows N, \\i FILE, \\q quit. Piped input runs as a script:
  echo 'SELECT count(*) FROM aws_s3serveraccess;' | seclake repl"
)]
pub struct Args {
    /// Refuse statements that write files or change tables.
    #[arg(long)]
    pub read_only: bool,

    /// Initial output format: table, csv, tsv, json, ndjson.
    #[arg(long, default_value = "table", value_parser = super::query::parse_format)]
    pub format: crate::output::Format,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let engine = ctx.engine(args.read_only).await?;
    let mut repl = Repl::new(&engine);
    repl.format = args.format;
    repl.saved = ctx.queries()?;
    repl.run().await?;
    Ok(Outcome::Ok)
}
