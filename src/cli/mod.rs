//! Command-line interface: argument definitions and one module per subcommand (wiring only;
//! the work is in the library).

mod ingest;
mod query;
mod repl;
mod tables;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::lake::Lake;
use crate::schema::Registry;

/// seclake: an embedded security data lake for AWS logs.
///
/// Ingest S3 server access logs into Hive-partitioned Parquet tables
/// (`panther_logs.<table>/year=/month=/day=`) that DuckDB, Athena and Spark read as they are,
/// and search them with SQL.
#[derive(Debug, Parser)]
#[command(name = "seclake", version, about, long_about = None)]
pub struct Cli {
    /// Lake location: a local folder.
    #[arg(long, global = true, env = "SECLAKE_LAKE", default_value = "./lake")]
    pub lake: String,

    /// Extra folder of log-type schemas (*.yml); a schema with a shipped log type replaces it.
    #[arg(long, global = true, env = "SECLAKE_SCHEMAS")]
    pub schemas: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest log files, folders or globs (plain or gzip) into the lake, exactly once.
    Ingest(ingest::Args),
    /// List databases and tables with partitions, files, rows and bytes.
    Tables(tables::Args),
    /// Run SQL over the lake and print or save the result.
    Query(query::Args),
    /// Interactive SQL shell (history, completion, backslash commands).
    Repl(repl::Args),
}

/// What a command asks `main` to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// Worked, and found something the user asked about (exit 1).
    Found,
    /// Partly failed; details were printed (exit 2).
    Failed,
}

/// Context shared by subcommands.
pub struct Ctx {
    pub lake: Lake,
    pub registry: Arc<Registry>,
}

impl Ctx {
    /// A query session over the lake.
    pub async fn engine(&self, read_only: bool) -> Result<crate::engine::Engine> {
        let opts = crate::engine::EngineOptions { read_only };
        crate::engine::Engine::open(&self.lake, self.registry.clone(), opts).await
    }
}

impl Cli {
    /// Run the parsed command.
    pub async fn run(self) -> Result<Outcome> {
        let mut registry = Registry::builtin()?;
        if let Some(dir) = &self.schemas {
            registry.load_dir(dir)?;
        }
        let ctx = Ctx {
            lake: Lake::open(&self.lake)?,
            registry: Arc::new(registry),
        };
        match self.command {
            Command::Ingest(args) => ingest::run(&ctx, args).await,
            Command::Tables(args) => tables::run(&ctx, args).await,
            Command::Query(args) => query::run(&ctx, args).await,
            Command::Repl(args) => repl::run(&ctx, args).await,
        }
    }
}
