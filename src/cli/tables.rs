//! `seclake tables`.

use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::error::{Error, Result};

use super::{Ctx, Outcome};

/// List the lake's tables.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(ctx: &Ctx, _args: Args) -> Result<Outcome> {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["database", "table", "partitions", "files", "rows", "bytes"]);
    for (db, name) in ctx.lake.tables().await? {
        let s = ctx.lake.table_stats(&db, &name).await?;
        table.add_row([
            db,
            name,
            s.partitions.to_string(),
            s.files.to_string(),
            s.rows.to_string(),
            human_bytes(s.bytes),
        ]);
    }
    writeln!(std::io::stdout().lock(), "{table}").map_err(|e| Error::io("stdout", e))?;
    Ok(Outcome::Ok)
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
