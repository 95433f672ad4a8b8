//! `seclake detect`.

use std::io::Write;

use crate::detect::parse_time_arg;
use crate::detect::replay::{ReplayOptions, replay};
use crate::error::{Error, Result};

use super::{Ctx, Outcome};

/// Replay rules over stored events.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  seclake detect --since 2020-05-10
  seclake detect --since 7d --rule AWS.S3.ServerAccess.Insecure
  seclake detect --since '2020-05-10 00:00:00' --until '2020-05-11 00:00:00'

Alerts that already exist (raised on ingest or by an earlier replay) are left unchanged, so
replaying a range twice creates nothing twice.")]
pub struct Args {
    /// Events at or after this time: a date (UTC), a date and time, or an age (12h, 7d).
    #[arg(long)]
    pub since: String,
    /// Events before this time [default: no end].
    #[arg(long)]
    pub until: Option<String>,
    /// Only these rules (repeatable); disabled rules run when named.
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Outcome> {
    let now = chrono::Utc::now().timestamp_micros();
    let rules = ctx.rules_to_run(&args.rules)?;
    let rule_count = rules.len();
    let opts = ReplayOptions {
        since: parse_time_arg(&args.since, now)?,
        until: args
            .until
            .as_deref()
            .map(|u| parse_time_arg(u, now))
            .transpose()?,
        rules,
        config: ctx.config.clone(),
    };
    let s = replay(&ctx.lake, ctx.registry.clone(), &opts).await?;
    let mut out = std::io::stdout().lock();
    (|| -> std::io::Result<()> {
        writeln!(
            out,
            "events: {}; new rule matches: {}; alerts: {} raised, {} created",
            s.events, s.matches, s.alerts_raised, s.alerts_changed
        )?;
        let (secs, cond) = (s.eval_time.as_secs_f64(), s.condition_time.as_secs_f64());
        if s.events > 0 && secs > 0.0 && cond > 0.0 {
            writeln!(
                out,
                "rule conditions: {rule_count} rules x {} events in {cond:.3}s = {:.0} events/s",
                s.events,
                s.events as f64 / cond
            )?;
            writeln!(
                out,
                "rule evaluation with titles, dedup and context of {} matches: {secs:.3}s = {:.0} events/s",
                s.matches,
                s.events as f64 / secs
            )?;
        }
        super::ingest::print_delivery(&mut out, &s.delivery)
    })()
    .map_err(|e| Error::io("stdout", e))?;
    Ok(if s.delivery.errors.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
