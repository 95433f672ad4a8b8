//! Command-line interface: argument definitions and one module per subcommand (wiring only;
//! the work is in the library).

mod alerts;
mod compact;
mod detect;
mod ingest;
mod posture;
mod query;
mod repl;
mod rules;
mod schedule;
mod tables;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::detect::rule::Rule;
use crate::error::Result;
use crate::lake::Lake;
use crate::schema::Registry;

/// seclake: an embedded security data lake for AWS logs.
///
/// Ingest S3 server access logs into Hive-partitioned Parquet tables
/// (`panther_logs.<table>/year=/month=/day=`) that DuckDB, Athena and Spark read as they are;
/// run detection rules on them as they arrive and scheduled queries on a cron, check S3 bucket
/// configurations against posture policies, raise deduplicated alerts, and search it all with
/// SQL.
#[derive(Debug, Parser)]
#[command(name = "seclake", version, about, long_about = None)]
pub struct Cli {
    /// Lake location: a local folder or s3://bucket/prefix.
    #[arg(long, global = true, env = "SECLAKE_LAKE", default_value = "./lake")]
    pub lake: String,

    /// Endpoint of an S3-compatible store (MinIO, LocalStack, ...), addressed path-style
    /// [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, the profile's endpoint_url, AWS].
    /// Credentials and region come from the AWS environment variables, AWS_PROFILE and
    /// ~/.aws/{config,credentials}, web identity or instance metadata, as for the AWS CLI.
    #[arg(long, global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Retries of a failed S3 request (5xx, throttling, dropped connection), with
    /// exponential backoff.
    #[arg(
        long,
        global = true,
        env = "SECLAKE_S3_RETRIES",
        default_value_t = 10,
        value_name = "N"
    )]
    pub s3_retries: usize,

    /// Extra folder of log-type schemas (*.yml), besides the shipped ones and the config's
    /// schemas_dirs; a schema with a shipped log type replaces it.
    #[arg(long, global = true, env = "SECLAKE_SCHEMAS")]
    pub schemas: Option<PathBuf>,

    /// Extra folder of rules (*.yml), besides the shipped ones and the config's rules_dirs; a
    /// rule with a shipped RuleID replaces it.
    #[arg(
        long = "rules",
        global = true,
        env = "SECLAKE_RULES",
        value_name = "DIR"
    )]
    pub rules_dir: Option<PathBuf>,

    /// Extra folder of scheduled and saved queries (*.yml), besides the shipped ones and the
    /// config's queries_dirs; a query with a shipped QueryName replaces it.
    #[arg(
        long = "queries",
        global = true,
        env = "SECLAKE_QUERIES",
        value_name = "DIR"
    )]
    pub queries_dir: Option<PathBuf>,

    /// Extra folder of posture policies (*.yml); a policy with a shipped PolicyID replaces it.
    #[arg(
        long = "policies",
        global = true,
        env = "SECLAKE_POLICIES",
        value_name = "DIR"
    )]
    pub policies_dir: Option<PathBuf>,

    /// Configuration file (destinations, rule folders); by default seclake.yml in the lake.
    #[arg(long, global = true, env = "SECLAKE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest log files, folders, globs or s3:// prefixes (plain or gzip) into the lake, exactly
    /// once.
    Ingest(ingest::Args),
    /// List databases and tables with partitions, files, rows and bytes.
    Tables(tables::Args),
    /// Merge each day's small files into few large ones (after many small ingests).
    Compact(compact::Args),
    /// Run SQL over the lake and print or save the result.
    Query(query::Args),
    /// Interactive SQL shell (history, completion, backslash commands).
    Repl(repl::Args),
    /// Detection rules: list them, run their tests, try them on events.
    #[command(subcommand)]
    Rules(rules::Command),
    /// Run rules over events already in the lake (new rules, backfills), without duplicating
    /// alerts that exist.
    Detect(detect::Args),
    /// List alerts, newest and most severe first.
    Alerts(alerts::Args),
    /// Scheduled queries: list them, run the due ones (for cron), run one, or run a scheduler.
    #[command(subcommand)]
    Schedule(schedule::Command),
    /// Cloud resource snapshots (S3 bucket configurations).
    #[command(subcommand)]
    Resources(posture::ResourcesCommand),
    /// Posture policies over resource snapshots: list, test, evaluate.
    #[command(subcommand)]
    Policies(posture::PoliciesCommand),
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
    pub config: Config,
    /// `--rules`, when given.
    pub rules_dir: Option<PathBuf>,
    /// `--queries`, when given.
    pub queries_dir: Option<PathBuf>,
    /// `--policies`, when given.
    pub policies_dir: Option<PathBuf>,
}

impl Ctx {
    /// A query session over the lake.
    pub async fn engine(&self, read_only: bool) -> Result<crate::engine::Engine> {
        let opts = crate::engine::EngineOptions { read_only };
        crate::engine::Engine::open(&self.lake, self.registry.clone(), opts).await
    }

    /// Folders of user rules: the config's `rules_dirs`, then `--rules`.
    pub fn rule_dirs(&self) -> Vec<&std::path::Path> {
        content_dirs(&self.config.rules_dirs, self.rules_dir.as_deref())
    }

    /// Folders of user policies: the config's `policies_dirs`, then `--policies`.
    pub fn policy_dirs(&self) -> Vec<&std::path::Path> {
        content_dirs(&self.config.policies_dirs, self.policies_dir.as_deref())
    }

    /// Rules: shipped, then [`Ctx::rule_dirs`]; `only` keeps those ids. Each is checked
    /// against its log types.
    pub fn rules(&self, only: &[String]) -> Result<Vec<Arc<Rule>>> {
        let mut rules = crate::detect::load_rules(&self.rule_dirs(), only)?;
        crate::detect::check(&mut rules, &self.registry)?;
        Ok(rules)
    }

    /// The rules a command runs: those named in `named` (disabled ones included), or every
    /// enabled rule when none is named.
    pub fn rules_to_run(&self, named: &[String]) -> Result<Vec<Arc<Rule>>> {
        let mut rules = self.rules(named)?;
        if named.is_empty() {
            rules.retain(|r| r.enabled);
        }
        Ok(rules)
    }

    /// Scheduled and saved queries: shipped, the config's `queries_dirs`, then `--queries`.
    pub fn queries(&self) -> Result<Vec<Arc<crate::detect::schedule::SavedQuery>>> {
        crate::detect::schedule::load(&content_dirs(
            &self.config.queries_dirs,
            self.queries_dir.as_deref(),
        ))
    }

    /// The saved or scheduled query called `name`.
    pub fn query_named(&self, name: &str) -> Result<Arc<crate::detect::schedule::SavedQuery>> {
        let all = self.queries()?;
        all.iter()
            .find(|q| q.query_name == name)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|q| q.query_name.as_str()).collect();
                crate::Error::invalid(format!(
                    "no saved query {name:?} (there are: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Print embedded-test results, `(item, test, failure)` each, as `ok`/`FAIL` lines and a
/// summary naming `count` `what` (rules, policies); Failed when a test failed.
fn print_tests<'a>(
    out: &mut impl std::io::Write,
    what: &str,
    count: usize,
    results: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> Result<Outcome> {
    let io = |e| crate::Error::io("stdout", e);
    let (mut total, mut failed) = (0, 0);
    for (item, test, failure) in results {
        total += 1;
        match failure {
            None => writeln!(out, "ok    {item} / {test}"),
            Some(f) => {
                failed += 1;
                writeln!(out, "FAIL  {item} / {test}: {f}")
            }
        }
        .map_err(io)?;
    }
    writeln!(
        out,
        "{count} {what}, {total} tests: {} passed, {failed} failed",
        total - failed
    )
    .map_err(io)?;
    Ok(if failed == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// Configured content folders, then the one given by a flag.
fn content_dirs<'a>(
    configured: &'a [PathBuf],
    flag: Option<&'a std::path::Path>,
) -> Vec<&'a std::path::Path> {
    configured
        .iter()
        .map(PathBuf::as_path)
        .chain(flag)
        .collect()
}

/// The current time; `SECLAKE_NOW` (RFC 3339) replaces the clock, for tests and rehearsals of
/// schedules.
pub fn now() -> Result<chrono::DateTime<chrono::Utc>> {
    match std::env::var("SECLAKE_NOW") {
        Ok(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| crate::Error::invalid(format!("SECLAKE_NOW={s:?}: {e}"))),
        Err(_) => Ok(chrono::Utc::now()),
    }
}

impl Cli {
    /// Whether the command answers questions about stored data, so that a lake that does not
    /// exist (a mistyped `--lake`) would answer "nothing" rather than fail.
    fn reads_data(&self) -> bool {
        // Not the cron jobs (`compact`, `alerts --deliver`), which may run before any ingest.
        match &self.command {
            Command::Query(_) | Command::Repl(_) | Command::Tables(_) | Command::Detect(_) => true,
            Command::Alerts(a) => !a.deliver,
            _ => false,
        }
    }

    /// Run the parsed command.
    pub async fn run(self) -> Result<Outcome> {
        // A local lake is created by the commands that store things; one that reads would
        // create an empty folder and answer "no rows" for a mistyped path.
        if self.reads_data()
            && !self.lake.contains("://")
            && !std::path::Path::new(&self.lake).exists()
        {
            return Err(crate::Error::invalid(format!(
                "no lake at {}: nothing was ingested there (`seclake ingest` creates it; --lake \
                 or SECLAKE_LAKE name another)",
                self.lake
            )));
        }
        let s3 = crate::lake::s3::S3Settings {
            endpoint: self.s3_endpoint.clone(),
            retries: self.s3_retries,
            ..Default::default()
        };
        let lake = Lake::open_with(&self.lake, Arc::new(crate::lake::s3::Stores::new(s3)))?;
        let config = Config::load(&lake, self.config.as_deref()).await?;
        let mut registry = Registry::builtin()?;
        for dir in content_dirs(&config.schemas_dirs, self.schemas.as_deref()) {
            registry.load_dir(dir)?;
        }
        let ctx = Ctx {
            lake,
            registry: Arc::new(registry),
            config,
            rules_dir: self.rules_dir,
            queries_dir: self.queries_dir,
            policies_dir: self.policies_dir,
        };
        match self.command {
            Command::Ingest(args) => ingest::run(&ctx, args).await,
            Command::Tables(args) => tables::run(&ctx, args).await,
            Command::Compact(args) => compact::run(&ctx, args).await,
            Command::Query(args) => query::run(&ctx, args).await,
            Command::Repl(args) => repl::run(&ctx, args).await,
            Command::Rules(cmd) => rules::run(&ctx, cmd).await,
            Command::Detect(args) => detect::run(&ctx, args).await,
            Command::Alerts(args) => alerts::run(&ctx, args).await,
            Command::Schedule(cmd) => schedule::run(&ctx, cmd).await,
            Command::Resources(cmd) => posture::resources(&ctx, cmd).await,
            Command::Policies(cmd) => posture::run(&ctx, cmd).await,
        }
    }
}
