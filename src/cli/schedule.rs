//! `seclake schedule list | run-due | run NAME | daemon`.

use std::io::Write;
use std::sync::Arc;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::detect::schedule::{RunOutcome, Runner, SavedQuery, due_slot, last_run};
use crate::error::{Error, Result};

use super::{Ctx, Outcome};

/// Scheduled-query commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Each query: schedule, lookback, last run and its result, next run.
    List,
    /// Run every enabled query whose schedule fired since its last run (once, however many
    /// slots were missed). Safe to start every minute from cron; exit 2 if a query failed.
    #[command(after_help = "For system cron:
  * * * * * seclake --lake /data/lake schedule run-due >> /var/log/seclake-schedule.log 2>&1")]
    RunDue,
    /// Run one query now, for its latest slot (or now, for a saved query).
    Run {
        /// QueryName.
        name: String,
    },
    /// Stay running and run due queries every minute (no cron needed); stops on Ctrl-C or
    /// SIGTERM, after the query in progress.
    Daemon,
}

pub async fn run(ctx: &Ctx, cmd: Command) -> Result<Outcome> {
    match cmd {
        Command::List => list(ctx).await,
        Command::RunDue => run_due(ctx).await,
        Command::Run { name } => {
            let q = ctx.query_named(&name)?;
            let runner = runner(ctx)?;
            let outcome = runner.run(&q, false).await?;
            report(&[(name, Ok(outcome))], &runner).await
        }
        Command::Daemon => daemon(ctx).await,
    }
}

fn runner(ctx: &Ctx) -> Result<Runner<'_>> {
    Ok(Runner {
        lake: &ctx.lake,
        registry: ctx.registry.clone(),
        config: &ctx.config,
        now: super::now()?,
    })
}

async fn list(ctx: &Ctx) -> Result<Outcome> {
    let now = super::now()?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "query", "enabled", "schedule", "lookback", "last run", "result", "next run",
    ]);
    for q in ctx.queries()? {
        let last = last_run(&ctx.lake, &q.query_name).await?;
        let result = match &last {
            None => String::new(),
            Some(r) => match &r.error {
                Some(e) => format!("error: {e}"),
                None => format!("{} rows, {} alerts raised", r.rows, r.alerts_raised),
            },
        };
        let next = match (&q.when, due_slot(&q, last.as_ref(), now)) {
            (None, _) => "saved (run by name)".to_string(),
            (Some(_), Some(_)) if q.enabled => "due now".to_string(),
            (Some(w), _) => w
                .next_after(now)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        };
        t.add_row([
            q.query_name.clone(),
            if q.enabled { "yes" } else { "no" }.into(),
            q.when.as_ref().map(|w| w.to_string()).unwrap_or_default(),
            format!("{} min", q.lookback_minutes),
            last.map(|r| r.slot).unwrap_or_else(|| "never".into()),
            result,
            next,
        ]);
    }
    writeln!(std::io::stdout().lock(), "{t}").map_err(|e| Error::io("stdout", e))?;
    Ok(Outcome::Ok)
}

async fn run_due(ctx: &Ctx) -> Result<Outcome> {
    let queries: Vec<Arc<SavedQuery>> = ctx.queries()?;
    let runner = runner(ctx)?;
    let results = runner.run_due(&queries).await;
    report(&results, &runner).await
}

/// Print one line per query run, deliver pending alerts; Failed when a run failed.
async fn report(results: &[(String, Result<RunOutcome>)], runner: &Runner<'_>) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    let w = |e| Error::io("stdout", e);
    for (name, r) in results {
        match r {
            Ok(RunOutcome::NotDue) => {}
            Ok(RunOutcome::Busy(who)) => {
                writeln!(out, "{name}: skipped, already running ({who})").map_err(w)?
            }
            Ok(RunOutcome::Ran(rec)) => match &rec.error {
                Some(e) => {
                    failed = true;
                    writeln!(out, "{name}: FAILED for {}: {e}", rec.slot).map_err(w)?
                }
                None => writeln!(
                    out,
                    "{name}: ran for {}: {} rows, {} over threshold, alerts {} raised, {} created or updated",
                    rec.slot, rec.rows, rec.hits, rec.alerts_raised, rec.alerts_changed
                )
                .map_err(w)?,
            },
            Err(e) => {
                failed = true;
                writeln!(out, "{name}: FAILED: {e}").map_err(w)?
            }
        }
    }
    if let Some(d) = runner.deliver().await? {
        super::ingest::print_delivery(&mut out, &d).map_err(w)?;
    }
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}

async fn daemon(ctx: &Ctx) -> Result<Outcome> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::invalid(format!("cannot watch SIGTERM: {e}")))?;
    eprintln!("seclake scheduler: running due queries every minute; Ctrl-C or SIGTERM stops");
    let mut failed = false;
    loop {
        // A failing round is reported and the scheduler goes on.
        match run_due(ctx).await {
            Ok(Outcome::Failed) => failed = true,
            Ok(_) => {}
            Err(e) => {
                failed = true;
                eprintln!("seclake scheduler: {e}");
            }
        }
        let now = chrono::Utc::now();
        let wait = 60 - now.timestamp().rem_euclid(60) as u64;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("seclake scheduler: stopped");
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}
